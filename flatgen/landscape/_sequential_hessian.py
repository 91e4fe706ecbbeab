"""Exact Hessian-vector products of a sequential network, without autograd.

For a plain ``nn.Sequential`` of ``nn.Linear`` and ``nn.Conv2d`` layers,
elementwise activations, max and average pooling and ``nn.Flatten`` under
the mean cross-entropy, the product ``H v`` follows from one forward pass
in ``v``'s direction and one backward pass of that pass (Pearlmutter's
R-operator), written out layer by layer. A convolution is read as a dense
layer on the patches of its channels-last input (one strided copy; the
backward pass folds them back by one strided add per kernel offset), so
every layer's work is a few matrix products. Compared with double
backpropagation this builds no graph, keeps the softmax block in float64,
and takes any number of vectors at once (their products are broadcast
matmuls). The same layers also give the logits at many weight vectors at
once (:func:`many_logits`, the batched evaluator's patches path).
"""

import math
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..networks import MaxPool2d, strided_max, strided_pool_kernel
from ._sequential import ACTIVATIONS, sequential_layers

__all__ = ["SequentialHessian", "analytic_layers", "many_logits"]

# Forward state of the whole set kept between products up to this size;
# above it the state is recomputed per block of samples at every product.
_MAX_CACHE_BYTES = 1024**3
_BLOCK_BYTES = 128 * 1024**2


class _Affine:
    """``nn.Linear``, or ``nn.Conv2d`` as a dense layer on its patches.

    Rows: a Linear's rows are the samples; a convolution's are the
    (sample, output position) pairs, each holding one patch of its input,
    so ``rows @ matrix.T`` is the layer's output in both cases. Image
    tensors are kept channels-last, ``(n, height, width, channels)``: a
    convolution's output rows are then its output as they stand, and
    patches are one strided copy (``F.unfold`` loops over samples on the
    CPU and, with the transposes to channels-first, cost more than the
    matmuls on small images).
    """

    def __init__(self, layer):
        self.weight = layer.weight.detach().clone()
        self.bias = None if layer.bias is None else layer.bias.detach().clone()
        self.n_pieces = 1 if self.bias is None else 2
        self.conv = isinstance(layer, nn.Conv2d)
        if self.conv:
            self.kernel = layer.kernel_size
            self.stride = layer.stride
            self.padding = layer.padding
            self.dilation = layer.dilation
        self.matrix = self._as_matrix(self.weight, ())

    def _as_matrix(self, weight, lead):
        """Weights ``(*lead, *weight.shape)`` as ``(*lead, out, fan_in)``."""
        if self.conv:  # (out, C, kh, kw) -> (out, kh, kw, C), as the patches
            weight = weight.movedim(-3, -1)
        return weight.reshape(*lead, self.weight.shape[0], -1)

    def _output_hw(self, height, width):
        return tuple(
            (size + 2 * pad - dil * (k - 1) - 1) // s + 1
            for size, pad, dil, k, s in zip(
                (height, width), self.padding, self.dilation, self.kernel, self.stride
            )
        )

    def _patch_view(self, padded, out_hw):
        """View of padded images ``(B, Hp, Wp, C)`` as their patches."""
        b, _, _, c = padded.shape
        sb, sh, sw, sc = padded.stride()
        (kh, kw), (dh, dw), (th, tw) = self.kernel, self.dilation, self.stride
        return padded.as_strided(
            (b, *out_hw, kh, kw, c), (sb, th * sh, tw * sw, dh * sh, dw * sw, sc)
        )

    def _rows(self, x, lead, state):
        """Map inputs ``(*lead, n, *in)`` to rows ``(*lead, R, fan_in)``."""
        if not self.conv:
            return x
        ph, pw = self.padding
        images = x.reshape(-1, *state.in_shape)
        padded = F.pad(images, (0, 0, pw, pw, ph, ph)).contiguous()
        patches = self._patch_view(padded, state.out_hw)
        return patches.reshape(*lead, -1, self.matrix.shape[1])

    def _fold(self, rows, lead, state):
        """Map input rows ``(*lead, R, fan_in)`` to inputs, summing overlaps."""
        if not self.conv:
            return rows
        height, width, channels = state.in_shape
        (ph, pw), (kh, kw) = self.padding, self.kernel
        n_images = rows.numel() // (math.prod(state.out_hw) * rows.shape[-1])
        padded = rows.new_zeros(n_images, height + 2 * ph, width + 2 * pw, channels)
        target = self._patch_view(padded, state.out_hw)
        cols = rows.reshape(n_images, *state.out_hw, kh, kw, channels)
        # One strided add per kernel offset (never overlapping within one).
        for i in range(kh):
            for j in range(kw):
                target[:, :, :, i, j].add_(cols[:, :, :, i, j])
        inner = padded[:, ph : ph + height, pw : pw + width]
        return inner.reshape(*lead, state.n, height, width, channels)

    def forward(self, a):
        state = SimpleNamespace(n=len(a), in_shape=tuple(a.shape[1:]))
        if self.conv:
            state.out_hw = self._output_hw(*a.shape[1:3])
        state.rows = self._rows(a, (), state)
        if self.bias is None:
            z = state.rows @ self.matrix.T
        else:
            z = torch.addmm(self.bias, state.rows, self.matrix.T)
        return self._from_rows(z, (), state), state

    def many(self, x, pieces, lead):
        """Return the outputs at many weight vectors.

        ``x`` is ``(*lead, n, *in)``, or ``(n, *in)`` shared by all of them
        (the network's inputs).
        """
        shared = x.ndim == (4 if self.conv else 2)
        state = SimpleNamespace(n=x.shape[0 if shared else len(lead)])
        if self.conv:
            state.in_shape = tuple(x.shape[-3:])
            state.out_hw = self._output_hw(*x.shape[-3:-1])
        rows = self._rows(x, () if shared else lead, state)
        z = torch.matmul(rows, self._as_matrix(pieces[0], lead).mT)
        if self.bias is not None:
            z += pieces[1].unsqueeze(-2)
        return self._from_rows(z, lead, state)

    def _from_rows(self, rows, lead, state):
        if not self.conv:
            return rows
        return rows.view(*lead, state.n, *state.out_hw, rows.shape[-1])

    def _to_rows(self, g, lead):
        return g.reshape(*lead, -1, g.shape[-1]) if self.conv else g

    def backward(self, state, g, need_input):
        state.grad_rows = self._to_rows(g, ())
        if not need_input:
            return None
        return self._fold(state.grad_rows @ self.matrix, (), state)

    def r_forward(self, state, r_in, pieces, lead):
        if not (self.conv or lead):
            return self._dense_r_forward(state, r_in, pieces)
        direction = self._as_matrix(pieces[0], lead)
        if lead:
            r = torch.matmul(state.rows, direction.mT)
            if self.bias is not None:
                r += pieces[1].unsqueeze(-2)
        elif self.bias is not None:
            r = torch.addmm(pieces[1], state.rows, direction.T)
        else:
            r = state.rows @ direction.T
        r_rows = None
        if r_in is not None:
            # Accumulated in place: one pass less over the largest tensors.
            r_rows = self._rows(r_in, lead, state)
            _flat(r).addmm_(_flat(r_rows), self.matrix.T)
        return self._from_rows(r, lead, state), (r_rows, direction)

    # A dense layer's single-vector products without the row mappings:
    # on a small network each product is a few dozen tiny matmuls, and the
    # generic path's reshapes and calls were a tenth of its time.
    def _dense_r_forward(self, state, r_in, pieces):
        direction = pieces[0]
        if self.bias is None:
            r = state.rows @ direction.T
        else:
            r = torch.addmm(pieces[1], state.rows, direction.T)
        if r_in is not None:
            r.addmm_(r_in, self.matrix.T)
        return r, (r_in, direction)

    def _dense_r_backward(self, state, saved, r_g, need_input):
        r_in, direction = saved
        hv_weight = r_g.T @ state.rows
        if r_in is not None:
            hv_weight.addmm_(state.grad_rows.T, r_in)
        out = [hv_weight] if self.bias is None else [hv_weight, r_g.sum(0)]
        if not need_input:
            return None, out
        r_grad = state.grad_rows @ direction
        r_grad.addmm_(r_g, self.matrix)
        return r_grad, out

    def r_backward(self, state, saved, r_g, pieces, lead, need_input):
        if not (self.conv or lead):
            return self._dense_r_backward(state, saved, r_g, need_input)
        r_rows, direction = saved
        r_g_rows = self._to_rows(r_g, lead)
        hv_weight = torch.matmul(r_g_rows.mT, state.rows)
        if r_rows is not None:
            if lead:
                hv_weight += torch.matmul(state.grad_rows.T, r_rows)
            else:
                hv_weight.addmm_(state.grad_rows.T, r_rows)
        if self.conv:  # back to (out, C, kh, kw)
            out_channels, channels, kh, kw = self.weight.shape
            hv_weight = hv_weight.view(*lead, out_channels, kh, kw, channels)
            hv_weight = hv_weight.movedim(-1, -3)
        out = [hv_weight]
        if self.bias is not None:
            out.append(r_g_rows.sum(-2))
        if not need_input:
            return None, out
        r_grad_rows = torch.matmul(state.grad_rows, direction)
        _flat(r_grad_rows).addmm_(_flat(r_g_rows), self.matrix)
        return self._fold(r_grad_rows, lead, state), out


def _flat(rows):
    """``(*lead, R, width)`` as ``(lead * R, width)``: a view if contiguous."""
    return rows.reshape(-1, rows.shape[-1])


class _Elementwise:
    """An activation ``a = f(z)``: slopes ``f'(z)``, curvatures ``f''(z)``."""

    n_pieces = 0

    def __init__(self, layer, rule):
        self.layer = layer
        self.rule = rule

    def forward(self, z):
        # A private copy: the rule may act in place (nn.ReLU(inplace=True)).
        a = self.rule.in_place(self.layer, z.clone())
        slope, curvature = self.rule.derivatives(self.layer, z, a)
        return a, SimpleNamespace(slope=slope, curvature=curvature)

    def many(self, h, pieces, lead):
        return self.rule.in_place(self.layer, h)  # h is the caller's buffer

    def backward(self, state, g, need_input):
        # The R-backward's second-order term is (d loss / d a) f''(z) Rz:
        # its first two factors are kept as one tensor.
        state.second_order = None
        if state.curvature is not None:
            state.second_order = g * state.curvature
        state.curvature = None
        return g * state.slope

    def r_forward(self, state, r_in, pieces, lead):
        keep = r_in if state.second_order is not None else None
        return r_in * state.slope, keep

    def r_backward(self, state, r_z, r_g, pieces, lead, need_input):
        r_grad = r_g * state.slope
        if state.second_order is not None:
            r_grad.addcmul_(state.second_order, r_z)
        return r_grad, []


def _channels_first(images):
    """Channels-last images ``(B, H, W, C)`` as a channels-first view."""
    return images.permute(0, 3, 1, 2)


class _MaxPool:
    """``nn.MaxPool2d``: a fixed selection of inputs (piecewise linear)."""

    n_pieces = 0

    def __init__(self, layer):
        self.layer = layer

    def _pool(self, images, return_indices=False):
        """Max-pool channels-last images (the output channels-first)."""
        m = self.layer
        return F.max_pool2d(
            _channels_first(images),
            m.kernel_size,
            m.stride,
            m.padding,
            m.dilation,
            ceil_mode=m.ceil_mode,
            return_indices=return_indices,
        )

    def forward(self, a):
        out, index = self._pool(a, return_indices=True)
        out = out.permute(0, 2, 3, 1).contiguous()
        n, height, width, channels = a.shape
        state = SimpleNamespace(
            image_shape=(height, width, channels),
            out_shape=tuple(out.shape[1:]),
            # Flat input position of each output, per channel: (n, HW', C).
            index=index.permute(0, 2, 3, 1).reshape(n, -1, channels),
        )
        return out, state

    def many(self, h, pieces, lead):
        kernel = strided_pool_kernel(self.layer)
        if kernel is not None:
            # The channels-last images pooled in place: the same values as
            # the pool's, without two transposes.
            return strided_max(h, kernel, height_dim=-3)
        out = self._pool(h.reshape(-1, *h.shape[-3:])).permute(0, 2, 3, 1)
        return out.reshape(*h.shape[: len(lead) + 1], *out.shape[1:])

    def _scatter(self, state, g, lead):
        index = state.index.expand(*lead, *state.index.shape)
        n, _, channels = state.index.shape
        height, width, _ = state.image_shape
        out = g.new_zeros(*lead, n, height * width, channels)
        out.scatter_add_(-2, index, g.reshape(index.shape))
        return out.view(*lead, n, *state.image_shape)

    def backward(self, state, g, need_input):
        return self._scatter(state, g, ())

    def r_forward(self, state, r_in, pieces, lead):
        index = state.index.expand(*lead, *state.index.shape)
        n, _, channels = state.index.shape
        flat = r_in.reshape(*lead, n, -1, channels)
        return flat.gather(-2, index).view(*lead, n, *state.out_shape), None

    def r_backward(self, state, saved, r_g, pieces, lead, need_input):
        return self._scatter(state, r_g, lead), []


class _AveragePool:
    """``nn.AvgPool2d`` or ``nn.AdaptiveAvgPool2d``: a fixed linear map.

    Its adjoint, needed by the backward passes, comes from autograd on a
    zero input (the map does not depend on its input's values).
    """

    n_pieces = 0

    def __init__(self, layer):
        self.layer = layer

    def _apply(self, images):
        return self.layer(_channels_first(images)).permute(0, 2, 3, 1)

    def _is_identity(self, height, width):
        """Tell whether the layer pools adaptively to the input's own size.

        That pool (SmallCNN's on small images) is the identity: skipped.
        """
        if not isinstance(self.layer, nn.AdaptiveAvgPool2d):
            return False
        size = self.layer.output_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        target = tuple(s if s is not None else n for s, n in zip(size, (height, width)))
        return target == (height, width)

    def forward(self, a):
        identity = self._is_identity(*a.shape[1:3])
        out = a if identity else self._apply(a).contiguous()
        return out, SimpleNamespace(in_shape=tuple(a.shape[1:]), identity=identity)

    def many(self, h, pieces, lead):
        if self._is_identity(*h.shape[-3:-1]):
            return h
        out = self._apply(h.reshape(-1, *h.shape[-3:]))
        return out.reshape(*h.shape[: len(lead) + 1], *out.shape[1:])

    def _adjoint(self, g, lead, in_shape):
        images = g.reshape(-1, *g.shape[-3:])
        with torch.enable_grad():
            zero = g.new_zeros(len(images), *in_shape, requires_grad=True)
            (grad,) = torch.autograd.grad(self._apply(zero), zero, images)
        return grad.reshape(*g.shape[: len(lead) + 1], *in_shape)

    def backward(self, state, g, need_input):
        return g if state.identity else self._adjoint(g, (), state.in_shape)

    def r_forward(self, state, r_in, pieces, lead):
        if state.identity:
            return r_in, None
        out = self._apply(r_in.reshape(-1, *state.in_shape))
        return out.reshape(*r_in.shape[: len(lead) + 1], *out.shape[1:]), None

    def r_backward(self, state, saved, r_g, pieces, lead, need_input):
        if state.identity:
            return r_g, []
        return self._adjoint(r_g, lead, state.in_shape), []


class _Flatten:
    """``nn.Flatten``: channels-last images to rows in channels-first order."""

    n_pieces = 0

    def forward(self, a):
        n, height, width, channels = a.shape
        state = SimpleNamespace(shape=(channels, height, width))
        return a.permute(0, 3, 1, 2).reshape(n, -1), state

    def many(self, h, pieces, lead):
        return h.movedim(-1, -3).flatten(-3)

    def _unflatten(self, state, g):
        return g.reshape(*g.shape[:-1], *state.shape).movedim(-3, -1)

    def backward(self, state, g, need_input):
        return self._unflatten(state, g)

    def r_forward(self, state, r_in, pieces, lead):
        return r_in.movedim(-1, -3).flatten(-3), None

    def r_backward(self, state, saved, r_g, pieces, lead, need_input):
        return self._unflatten(state, r_g), []


def analytic_layers(module, input_ndim):
    """Return the module as a list of analytic layers, or None.

    The module qualifies when it is a plain sequential network (see
    :func:`~flatgen.landscape._sequential.sequential_layers`) made of an
    image stage (``nn.Conv2d`` with zero padding given as numbers and one
    group, ``nn.MaxPool2d``, ``nn.AvgPool2d``, ``nn.AdaptiveAvgPool2d``) on
    batched images, then ``nn.Flatten`` (from dimension 1), then a dense
    stage (``nn.Linear``), or only the dense stage on rows, with the
    elementwise activations of
    :data:`~flatgen.landscape._sequential.ACTIVATIONS` with known
    derivatives anywhere, and a trainable layer first. Anything else
    returns None and the caller falls back to autograd.

    Parameters
    ----------
    module : torch.nn.Module
        The network.
    input_ndim : int
        Dimensions of the batched inputs (4 for images, 2 for rows).

    Returns
    -------
    ops : list or None
    """
    layers = sequential_layers(module)
    if layers is None:
        return None
    images = input_ndim == 4  # the stage reached: images, else rows
    if input_ndim not in (2, 4):
        return None
    ops = []
    for layer in layers:
        kind = type(layer)
        if kind in ACTIVATIONS:
            rule = ACTIVATIONS[kind]
            if rule.derivatives is None:
                continue  # the identity (Dropout is one in eval mode)
            if kind is nn.GELU and layer.approximate != "none":
                return None  # its derivatives are not written out
            ops.append(_Elementwise(layer, rule))
        elif kind is nn.Linear and not images:
            ops.append(_Affine(layer))
        elif kind is nn.Conv2d and images:
            if (
                layer.groups != 1
                or layer.padding_mode != "zeros"
                or isinstance(layer.padding, str)
            ):
                return None
            ops.append(_Affine(layer))
        elif kind in (nn.MaxPool2d, MaxPool2d) and images and not layer.return_indices:
            ops.append(_MaxPool(layer))
        elif kind in (nn.AvgPool2d, nn.AdaptiveAvgPool2d) and images:
            ops.append(_AveragePool(layer))
        elif kind is nn.Flatten and images:
            if layer.start_dim != 1 or layer.end_dim not in (-1, 3):
                return None
            ops.append(_Flatten())
            images = False
        else:
            return None
    if images or not ops or not isinstance(ops[0], _Affine):
        return None
    return ops


def many_logits(ops, X, params):
    """Logits of the network at many weight vectors, by matmuls on patches.

    Parameters
    ----------
    ops : list
        From :func:`analytic_layers` (their weights are not used).
    X : torch.Tensor of shape (n, ...)
        Inputs, channels-last ``(n, height, width, channels)`` for images.
    params : list of torch.Tensor
        Per parameter, in the module's order, ``(k, *param.shape)``.

    Returns
    -------
    logits : torch.Tensor of shape (k, n, n_classes)
    """
    lead = (len(params[0]),)
    h, start = X, 0
    for op in ops:
        h = op.many(h, params[start : start + op.n_pieces], lead)
        start += op.n_pieces
    return h


def _tensors_bytes(value):
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, SimpleNamespace):
        return sum(_tensors_bytes(v) for v in vars(value).values())
    return 0


class SequentialHessian:
    """Products ``H V`` of a sequential network's mean cross-entropy Hessian.

    Parameters
    ----------
    ops : list
        From :func:`analytic_layers` (the weights are copied there: later
        changes to the module do not reach the operator).
    X : torch.Tensor of shape (n_samples, ...)
        Inputs shaped for the network.
    y : torch.Tensor of int64 of shape (n_samples,)
    sample_block : int, default=None
        If given, the forward quantities are recomputed per block of this
        many samples at every product (bounded memory). By default they are
        computed once and kept, unless they would exceed 1 GiB: then they
        are recomputed per block of about 128 MiB.

    Attributes
    ----------
    state_bytes_per_sample : int
        Memory of one sample's forward quantities (a vector's directional
        pass takes about as much).
    flops_per_sample : int
        Multiply-adds of one sample's forward pass through the trainable
        layers (a product costs about four of them).
    """

    def __init__(self, ops, X, y, *, sample_block=None):
        self._ops = ops
        # Images go channels-last once (see _Affine).
        self._X = X.permute(0, 2, 3, 1).contiguous() if X.ndim == 4 else X
        self._n_samples = len(X)
        self._y = y
        if X.ndim == 2:
            # A dense stack's sizes follow from its widths: each layer keeps
            # its inputs, output gradients and activation derivatives (a
            # bound), and costs out x in multiply-adds.
            shapes = [op.matrix.shape for op in ops if isinstance(op, _Affine)]
            self.flops_per_sample = sum(out * fan for out, fan in shapes)
            self.state_bytes_per_sample = X.element_size() * sum(
                fan + 3 * out for out, fan in shapes
            )
        else:
            # One image's pass gives the sizes (cheap next to the full one).
            probe, _ = self._forward(slice(0, 1))
            self.state_bytes_per_sample = sum(_tensors_bytes(s) for s in probe)
            self.flops_per_sample = sum(
                state.rows.shape[0] * op.matrix.numel()
                for op, state in zip(ops, probe)
                if isinstance(op, _Affine)
            )
        if sample_block is None:
            total = self.state_bytes_per_sample * self._n_samples
            if total > _MAX_CACHE_BYTES:
                sample_block = max(1, _BLOCK_BYTES // self.state_bytes_per_sample)
        self._sample_block = sample_block
        self._cache = None if sample_block else self._forward(slice(None))

    @property
    def sample_block(self):
        """Samples per recomputed block, or None when the state is kept."""
        return self._sample_block

    def _forward(self, block):
        """Every layer's forward state, then the backward pass of the loss."""
        a = self._X[block]
        states = []
        for op in self._ops:
            a, state = op.forward(a)
            states.append(state)
        if a.ndim != 2:
            raise ValueError(
                f"The network's output must be (n_samples, n_classes) logits; "
                f"got shape {tuple(a.shape)}."
            )
        # The softmax and its derivatives in float64 (an (n, classes) block,
        # negligible work): near a fitted minimum p (1 - p) and p - 1 cancel
        # in float32 and the curvature would be good to ~1e-4 only.
        probs = torch.softmax(a.double(), dim=1)
        delta = probs.clone()
        delta[torch.arange(len(delta), device=delta.device), self._y[block]] -= 1
        g = (delta / self._n_samples).to(a.dtype)
        for index in range(len(self._ops) - 1, -1, -1):
            g = self._ops[index].backward(states[index], g, need_input=index > 0)
        return states, probs

    def products(self, pieces, lead):
        """Hessian products of vectors given per parameter.

        Parameters
        ----------
        pieces : list of torch.Tensor
            Per parameter, in the module's order, the vectors' parts of shape
            ``(*lead, *param.shape)``.
        lead : tuple of int
            ``(b,)`` for ``b`` vectors, ``()`` for a single one (plain
            matmuls: less overhead).

        Returns
        -------
        list of torch.Tensor
            The same parts of ``H v``.
        """
        if self._cache is not None:
            return self._products(self._cache, pieces, lead)
        step = self._sample_block
        total = None
        for start in range(0, self._n_samples, step):
            cache = self._forward(slice(start, start + step))
            part = self._products(cache, pieces, lead)
            total = part if total is None else [t + p for t, p in zip(total, part)]
        return total

    def _products(self, cache, pieces, lead):
        states, probs = cache
        per_op, start = [], 0
        for op in self._ops:
            per_op.append(pieces[start : start + op.n_pieces])
            start += op.n_pieces
        # R-forward: directional derivatives of every layer's output.
        r, saved = None, []
        for op, state, own in zip(self._ops, states, per_op):
            r, keep = op.r_forward(state, r, own, lead)
            saved.append(keep)
        # Softmax Jacobian on the logits' direction, over all samples' mean.
        r_logits = r.double()
        r_g = probs * (r_logits - (probs * r_logits).sum(-1, keepdim=True))
        r_g = (r_g / self._n_samples).to(r.dtype)
        out = []
        for index in range(len(self._ops) - 1, -1, -1):
            op = self._ops[index]
            r_g, parts = op.r_backward(
                states[index], saved[index], r_g, per_op[index], lead, index > 0
            )
            out[:0] = parts
        return out
