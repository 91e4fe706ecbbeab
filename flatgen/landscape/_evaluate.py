"""Training loss and accuracy at many parameter vectors in one call."""

import copy
import math
import threading
from numbers import Integral, Real

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from ._parameters import ParameterLayout
from ._sequential import ACTIVATIONS, sequential_layers
from ._sequential_hessian import analytic_layers, many_logits

__all__ = ["BatchedEvaluator"]

# CPU caps on the widest activation of a chunk. Fused path: chunks within
# about 2 MiB stay in the L2 cache between layers; bigger ones made the tiny
# MLP up to 2-3x slower (the products become bound by memory bandwidth) and
# the 6x256 MLP 0.8x. vmap path: on SmallCNN, chunks of ~16 directions on
# 200 digits (~13 MiB) were fastest, 2 directions 20 % slower, 100 2x slower.
_CPU_CHUNK_BYTES = {
    "fused": 2 * 1024**2,
    "patches": 16 * 1024**2,
    "vmap": 16 * 1024**2,
    "loop": 16 * 1024**2,
}
# A vector whose widest activation alone takes this much is compute-bound:
# batching vectors saves no overhead and costs cache. The fused path then
# runs one vector at a time in the (samples, units) layout, each layer one
# addmm, the fastest form of these products (6x256 MLP, 500 points, 32
# vectors, one thread, best of 5: 0.202 s, against 0.255 s in fused chunks
# of 2 vectors and 0.287 s by the loop path); modules off the fused and
# patches paths go one vector at a time through the loop path on CPU
# (digits SmallCNN, 400 images, 64 vectors: loop path 0.222 s, a
# functional_call loop 0.246 s, vmap chunks of 4 0.253 s, of 20 0.269 s).
_MATMUL_BOUND_BYTES = 256 * 1024
_PER_VECTOR_CHUNK_BYTES = 8 * 1024**2


def _module_device_dtype(module):
    for tensor in module.parameters():
        return tensor.device, tensor.dtype
    raise ValueError("The module has no parameters to perturb.")


def _fused_plan(module):
    """Return the layer list for the fused MLP path, or None if unsupported."""
    layers = sequential_layers(module)
    if layers is None:
        return None
    names = {id(p): name for name, p in module.named_parameters()}
    plan = []
    for layer in layers:
        if type(layer) is nn.Linear:
            bias = None if layer.bias is None else names[id(layer.bias)]
            plan.append(("linear", names[id(layer.weight)], bias))
        elif type(layer) in ACTIVATIONS:
            plan.append(("activation", layer, None))
        else:
            return None
    if plan[0][0] != "linear":
        return None
    return plan


class BatchedEvaluator:
    """Mean cross-entropy and accuracy on fixed data at many weight settings.

    The evaluator holds its own deep copy of the module, in eval mode, so
    the caller's module is never touched. Each call evaluates a batch of
    flat parameter vectors (ordered as :class:`ParameterLayout`), split into
    equal chunks so that the activations stay within ``max_batch_bytes``.
    Each thread keeps the buffers of its calls (chunks of vectors, layer
    outputs) for the next call while they take at most 64 MiB, so that
    many small calls, as in a root search, allocate nothing; threads
    sharing an evaluator never share them.

    Four code paths give the same numbers (to float32 rounding):

    - a fused path for an :class:`torch.nn.Sequential` made only of
      ``nn.Linear`` and elementwise activations (``ReLU``, ``Tanh``,
      ``Sigmoid``, ``GELU``, ``LeakyReLU``, ``Identity``, ``Dropout``), such
      as :class:`flatgen.networks.MLP`: the weights of all vectors in a
      chunk are strided views of the input (no copy), every layer is one
      ``torch.baddbmm`` with the bias folded in (the first one's inputs
      shared by the chunk), written into two buffers used in turn, the
      views of a chunk's whole forward built once per chunk shape,
      activations act in place (where a single
      vector's products are large, on CPU, one vector at a time with one
      ``torch.addmm`` per layer instead);
    - a patches path for a plain ``nn.Sequential`` of ``nn.Conv2d``,
      pooling, ``nn.Flatten``, ``nn.Linear`` and elementwise layers on
      images (e.g. :class:`flatgen.networks.SmallCNN`): convolutions as
      matrix products on channels-last patches, the first layer's shared
      by the chunk, pooling with the vectors folded into the batch;
    - a general path for any other module: ``torch.func.vmap`` over
      ``torch.func.functional_call`` with the stacked parameters;
    - a loop path: one vector at a time, copied into the evaluator's own
      module copy, chosen on CPU for modules off the fused and patches paths whose
      activations per vector are large (from 256 KiB), where batching saves
      no overhead and loses cache (e.g. a CNN on a few hundred images).

    On every path the loss is ``logsumexp - picked logit`` per sample (for
    two classes ``softplus`` of the margin, which keeps losses below the
    logits' float32 spacing), on a sample dimension padded so that the same
    weights give the same bits wherever they sit in a chunk.

    Parameters
    ----------
    module : torch.nn.Module
        Network mapping ``X`` to logits of shape (n_samples, n_classes). It
        is copied, not modified.
    X : array-like or torch.Tensor
        Inputs, shaped as the network expects (e.g. the output of an
        estimator's ``_prepare_X``). Converted to the module's dtype and
        device.
    y : array-like of int of shape (n_samples,)
        Encoded labels in ``[0, n_classes)``.
    max_batch_bytes : int, default=256 * 1024**2
        Rough bound on the memory for activations of one chunk. If a single
        parameter vector would exceed it, the samples are processed in
        blocks as well.
    chunk_size : int, default=None
        Largest number of parameter vectors per chunk; each call splits its
        vectors into chunks of equal size (within one) no larger than this.
        By default as many as fit ``max_batch_bytes``, and on CPU no more
        than keep the widest activation of a chunk within about 2 MiB on
        the fused path (cache-friendly) or 16 MiB on the patches, vmap and
        loop paths; a fused path that runs one vector at a time keeps each
        chunk's weight vectors within 8 MiB.
    path : {'auto', 'fused', 'patches', 'vmap', 'loop'}, default='auto'
        Force a code path; 'fused' and 'patches' raise ``ValueError`` if
        the module is not supported by them.
    copy_module : bool, default=True
        Whether to work on a deep copy of ``module``. False hands over a
        copy the caller owns and never uses concurrently (one evaluator per
        batch of data shares its source's copy).

    Attributes
    ----------
    layout : ParameterLayout
        Layout of the module's parameters.
    path : str
        The code path in use, 'fused', 'patches', 'vmap' or 'loop'.
    n_samples : int
        Number of samples.
    chunk_size : int
        Largest number of parameter vectors per chunk actually used.
    sample_block : int
        Samples per block actually used (``n_samples`` unless a single
        vector's activations exceed ``max_batch_bytes``).
    device : torch.device
        Device of the module, where all work happens.

    Examples
    --------
    >>> import torch
    >>> from flatgen.landscape import BatchedEvaluator, flatten_parameters
    >>> from flatgen.networks import MLP
    >>> net = MLP(2, 2, (8,))
    >>> X, y = torch.randn(50, 2), torch.randint(0, 2, (50,))
    >>> evaluator = BatchedEvaluator(net, X, y)
    >>> evaluator.path
    'fused'
    >>> theta = flatten_parameters(net)
    >>> loss, accuracy = evaluator.evaluate(torch.stack([theta, 2 * theta]))
    >>> loss.shape, loss.dtype
    ((2,), dtype('float64'))
    """

    def __init__(
        self,
        module,
        X,
        y,
        *,
        max_batch_bytes=256 * 1024**2,
        chunk_size=None,
        path="auto",
        copy_module=True,
    ):
        if not isinstance(max_batch_bytes, Real) or max_batch_bytes <= 0:
            raise ValueError(
                f"max_batch_bytes must be positive; got {max_batch_bytes!r}."
            )
        if chunk_size is not None and (
            not isinstance(chunk_size, Integral) or chunk_size < 1
        ):
            raise ValueError(
                f"chunk_size must be a positive integer or None; got {chunk_size!r}."
            )
        if path not in {"auto", "fused", "patches", "vmap", "loop"}:
            raise ValueError(
                "path must be 'auto', 'fused', 'patches', 'vmap' or 'loop'; got "
                f"{path!r}."
            )
        self.device, self._dtype = _module_device_dtype(module)
        self._module = (copy.deepcopy(module) if copy_module else module).eval()
        self._loop_lock = threading.Lock()
        self._local = threading.local()  # each thread's _Workspace
        self.layout = ParameterLayout.from_module(self._module)
        self._X = torch.as_tensor(X).to(self.device, self._dtype)
        self._y = torch.as_tensor(y).to(self.device, torch.int64)
        if self._y.ndim != 1 or len(self._y) != len(self._X):
            raise ValueError(
                f"y must be 1-D with one label per sample; got shape "
                f"{tuple(self._y.shape)} for {len(self._X)} samples."
            )
        # The two-class loss is softplus(sign * (logit 1 - logit 0)).
        self._margin_sign = 1.0 - 2.0 * self._y.to(self._dtype)
        self.n_samples = len(self._X)
        if self.n_samples == 0:
            raise ValueError("X holds no samples.")

        self._plan = _fused_plan(self._module) if self._X.ndim == 2 else None
        if self._plan is not None:
            self._last_affine = max(
                i for i, (kind, _, _) in enumerate(self._plan) if kind == "linear"
            )
        if path == "fused" and self._plan is None:
            raise ValueError(
                "path='fused' needs an nn.Sequential of nn.Linear layers and "
                "elementwise activations applied to 2-D inputs."
            )
        self._patch_ops = None
        if self._X.ndim == 4:
            self._patch_ops = analytic_layers(self._module, 4)
        if path == "patches" and self._patch_ops is None:
            raise ValueError(
                "path='patches' needs a plain nn.Sequential of nn.Conv2d, "
                "pooling, nn.Flatten, nn.Linear and elementwise layers applied "
                "to 4-D images."
            )
        chosen = path == "auto"
        if chosen:
            path = "fused" if self._plan is not None else "vmap"
            if self._patch_ops is not None:
                path = "patches"
        self.path = path
        if self.path == "patches":
            self._X_last = self._X.permute(0, 2, 3, 1).contiguous()
        self._set_chunking(max_batch_bytes, chunk_size, chosen)
        if self.path == "fused" and not self._per_vector:
            # Transposed inputs: the fused chunks keep activations as
            # (vectors, features, samples), the inputs shared by the chunk.
            self._XT = self._X.T.contiguous()

    def __getstate__(self):
        state = self.__dict__.copy()
        # Locks and thread-local workspaces do not pickle; each copy gets its own.
        del state["_loop_lock"], state["_local"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._loop_lock = threading.Lock()
        self._local = threading.local()

    # -- sizing --------------------------------------------------------------
    def _bytes_per_sample(self):
        """Activation bytes per sample and parameter vector, and the widest."""
        itemsize = self._X.element_size()
        if self.path == "fused":
            widths = [self._X.shape[1]] + [
                self._module.get_parameter(weight).shape[0]
                for kind, weight, _ in self._plan
                if kind == "linear"
            ]
            # Two layers' activations are alive at once.
            widest = max(widths)
            return 2 * widest * itemsize, widest * itemsize
        if self.path == "patches":
            # Each layer's output, and each convolution's patches.
            sizes, a = [], self._X_last[:1]
            with torch.no_grad():
                for op in self._patch_ops:
                    a, state = op.forward(a)
                    sizes.append(a.numel() * itemsize)
                    if hasattr(state, "rows"):
                        sizes.append(state.rows.numel() * itemsize)
            return max(sum(sizes), 1), max(sizes)
        sizes = []

        def record(layer, inputs, output):
            if isinstance(output, torch.Tensor):
                sizes.append(output[0].numel() * output.element_size())

        hooks = [
            layer.register_forward_hook(record)
            for layer in self._module.modules()
            if next(layer.children(), None) is None
        ]
        try:
            with torch.no_grad():
                self._module(self._X[:1])
        finally:
            for hook in hooks:
                hook.remove()
        # Summing every layer's output over-estimates the peak: safe.
        return max(sum(sizes), 1), max(sizes, default=1)

    def _set_chunking(self, max_batch_bytes, chunk_size, chosen=False):
        per_sample, widest = self._bytes_per_sample()
        per_vector = per_sample * self.n_samples
        compute_bound = widest * self.n_samples >= _MATMUL_BOUND_BYTES
        if chosen and self.path == "vmap" and self.device.type == "cpu":
            self.path = "loop" if compute_bound else "vmap"
        # See _MATMUL_BOUND_BYTES: compute-bound dense stacks on CPU run one
        # vector at a time in the (samples, units) layout.
        self._per_vector = (
            self.path == "fused" and compute_bound and self.device.type == "cpu"
        )
        if per_vector <= max_batch_bytes:
            self.sample_block = self.n_samples
            auto = int(max_batch_bytes // per_vector)
            if self.device.type == "cpu":
                cap = _CPU_CHUNK_BYTES[self.path]
                auto = min(auto, cap // (widest * self.n_samples))
                if self._per_vector:
                    # Chunks of weight vectors within the caches: 6x256 MLP,
                    # 48 vectors, 0.265-0.273 s in chunks of 4-8 (6-10 MB),
                    # 0.314 s in chunks of 32 (42 MB).
                    vector_bytes = self.layout.n_params * self._X.element_size()
                    auto = _PER_VECTOR_CHUNK_BYTES // vector_bytes
        else:
            self.sample_block = max(1, int(max_batch_bytes // per_sample))
            auto = 1
        self.chunk_size = int(chunk_size) if chunk_size is not None else max(1, auto)

    # -- evaluation ----------------------------------------------------------
    def evaluate(self, thetas):
        """Mean training cross-entropy and accuracy at each parameter vector.

        Parameters
        ----------
        thetas : torch.Tensor or array-like of shape (B, n_params)
            Flat parameter vectors (a single vector of shape (n_params,) is
            treated as B = 1).

        Returns
        -------
        loss : ndarray of shape (B,), dtype float64
            Mean cross-entropy over the samples (summed in float64).
        accuracy : ndarray of shape (B,), dtype float64
            Fraction of samples whose largest logit is their label.
        """
        thetas = self._check_thetas(thetas)
        return self._evaluate_chunks(
            len(thetas), lambda start, stop, workspace: thetas[start:stop]
        )

    def _check_thetas(self, thetas):
        thetas = torch.as_tensor(thetas)
        if thetas.ndim == 1:
            thetas = thetas[None]
        if thetas.ndim != 2 or thetas.shape[1] != self.layout.n_params:
            raise ValueError(
                f"thetas must have shape (B, {self.layout.n_params}); got "
                f"{tuple(thetas.shape)}."
            )
        return thetas

    def evaluate_along(self, theta0, directions, rows, steps):
        """Loss and accuracy at ``theta0 + steps[i] * directions[rows[i]]``.

        The same as :meth:`evaluate` on the stacked vectors, but each chunk
        of perturbed vectors is formed just before it is evaluated, so no
        (B, n_params) array is ever built: on large networks that array
        costs more memory traffic than the forward passes save.

        Parameters
        ----------
        theta0 : torch.Tensor of shape (n_params,)
            Centre.
        directions : torch.Tensor of shape (n_directions, n_params)
            Directions.
        rows : array-like of int of shape (B,)
            Direction of each evaluation.
        steps : array-like of float of shape (B,)
            Step along it.

        Returns
        -------
        loss, accuracy : ndarray of shape (B,), dtype float64
            See :meth:`evaluate`.
        """
        return self._evaluate_chunks(
            len(rows), self._along_chunks(theta0, directions, rows, steps)
        )

    def loss_along(self, theta0, directions, rows, steps):
        """Loss alone at ``theta0 + steps[i] * directions[rows[i]]``.

        :meth:`evaluate_along` without the accuracy, which a root search
        never reads (on the swiss-roll MLP counting the hits took about a
        tenth of an evaluation).

        Parameters
        ----------
        theta0, directions, rows, steps
            See :meth:`evaluate_along`.

        Returns
        -------
        loss : ndarray of shape (B,), dtype float64
            See :meth:`evaluate`.
        """
        return self._evaluate_chunks(
            len(rows),
            self._along_chunks(theta0, directions, rows, steps),
            accuracy=False,
        )[0]

    def _along_chunks(self, theta0, directions, rows, steps):
        """Return the ``make_chunk`` of ``theta0 + steps * directions[rows]``."""
        theta0 = torch.as_tensor(theta0).to(self.device, self._dtype)
        rows = torch.as_tensor(rows, dtype=torch.int64, device=directions.device)
        steps = torch.as_tensor(steps, dtype=self._dtype, device=self.device)
        if len(rows) != len(steps):
            raise ValueError(
                f"rows and steps must have the same length; got {len(rows)} "
                f"and {len(steps)}."
            )
        same_place = (
            directions.device == self.device and directions.dtype == self._dtype
        )
        # Consecutive rows (a root search's rounds while every direction is
        # open) need no gather: each chunk reads a slice of the directions.
        first = int(rows[0]) if len(rows) else 0
        consecutive = same_place and torch.equal(
            rows, torch.arange(first, first + len(rows), device=rows.device)
        )

        def chunk(start, stop, workspace):
            out = workspace.vectors(stop - start, len(theta0))
            if consecutive:
                along = directions[first + start : first + stop]
                return torch.addcmul(theta0, steps[start:stop, None], along, out=out)
            if same_place:
                torch.index_select(directions, 0, rows[start:stop], out=out)
            else:
                out.copy_(directions[rows[start:stop]])
            return torch.addcmul(theta0, steps[start:stop, None], out, out=out)

        return chunk

    def evaluate_combinations(self, theta0, directions, coefficients):
        """Loss and accuracy at ``theta0 + coefficients[i] @ directions``.

        Each chunk of vectors is formed just before it is evaluated (one
        small matrix product), so, as in :meth:`evaluate_along`, no
        (B, n_params) array is built: a 2-D slice of a large network would
        otherwise spend a good part of its time writing and reading it.

        Parameters
        ----------
        theta0 : torch.Tensor of shape (n_params,)
            Centre.
        directions : torch.Tensor of shape (k, n_params)
            Directions spanning the combinations.
        coefficients : array-like of shape (B, k)
            Coefficients of each evaluation.

        Returns
        -------
        loss, accuracy : ndarray of shape (B,), dtype float64
            See :meth:`evaluate`.
        """
        theta0 = torch.as_tensor(theta0).to(self.device, self._dtype)
        directions = torch.as_tensor(directions).to(self.device, self._dtype)
        coefficients = torch.as_tensor(
            coefficients, dtype=self._dtype, device=self.device
        )
        if coefficients.ndim != 2 or coefficients.shape[1] != len(directions):
            raise ValueError(
                f"coefficients must have shape (B, {len(directions)}); got "
                f"{tuple(coefficients.shape)}."
            )

        def chunk(start, stop, workspace):
            out = workspace.vectors(stop - start, len(theta0))
            return torch.addmm(theta0, coefficients[start:stop], directions, out=out)

        return self._evaluate_chunks(len(coefficients), chunk)

    def _evaluate_chunks(self, n_vectors, make_chunk, accuracy=True):
        """Mean loss and accuracy (None unless ``accuracy``) of every chunk."""
        loss_sum = torch.zeros(n_vectors, dtype=torch.float64, device=self.device)
        correct = torch.zeros(n_vectors, dtype=torch.float64, device=self.device)
        forward = {
            "fused": self._fused_logits,
            "patches": self._patch_logits,
            "vmap": self._vmap_logits,
            "loop": self._loop_logits,
        }[self.path]
        class_dim = 1 if self.path == "fused" and not self._per_vector else 2
        # One workspace per thread (threads sharing the evaluator never
        # share it), kept between calls while it is small. Buffers made
        # under torch.inference_mode cannot be written outside it.
        workspace = getattr(self._local, "workspace", None)
        if workspace is None or (
            workspace.inference and not torch.is_inference_mode_enabled()
        ):
            workspace = _Workspace(self.device, self._dtype)
        with torch.no_grad():
            # Equal chunks (the longer first): 1,000 vectors with at most 81
            # per chunk as 13 of 76-77, not 12 of 81 and one of 28, whose
            # per-chunk overhead and narrower products cost more per vector.
            n_chunks = -(-n_vectors // self.chunk_size)
            base, longer = divmod(n_vectors, max(n_chunks, 1))
            stop = 0
            for index in range(n_chunks):
                start, stop = stop, stop + base + (index < longer)
                chunk = make_chunk(start, stop, workspace)
                chunk = chunk.to(self.device, self._dtype)
                for first in range(0, self.n_samples, self.sample_block):
                    block = slice(first, first + self.sample_block)
                    logits = forward(chunk, block, workspace)
                    loss, hits = _loss_and_hits(
                        logits,
                        self._y[block],
                        self._margin_sign[block],
                        class_dim,
                        workspace,
                        accuracy,
                    )
                    loss_sum[start:stop] += loss
                    if accuracy:
                        correct[start:stop] += hits
        kept = workspace.nbytes <= _KEPT_WORKSPACE_BYTES
        self._local.workspace = workspace if kept else None
        return (
            (loss_sum / self.n_samples).cpu().numpy(),
            (correct / self.n_samples).cpu().numpy() if accuracy else None,
        )

    def loss(self, thetas):
        """Mean training cross-entropy at each parameter vector.

        Parameters
        ----------
        thetas : torch.Tensor or array-like of shape (B, n_params)
            Flat parameter vectors.

        Returns
        -------
        loss : ndarray of shape (B,), dtype float64
            See :meth:`evaluate`.
        """
        thetas = self._check_thetas(thetas)
        return self._evaluate_chunks(
            len(thetas),
            lambda start, stop, workspace: thetas[start:stop],
            accuracy=False,
        )[0]

    def _fused_logits(self, thetas, block, workspace):
        """Logits of shape (B, n_classes, n_block) by stacked matmuls.

        Compute-bound stacks on CPU: (B, n_block, n_classes), one vector at
        a time (see ``_MATMUL_BOUND_BYTES``). Every layer writes into the
        ``workspace``'s buffers, so the logits are only valid until the
        next call.
        """
        if self._per_vector:
            params = workspace.parameters(self.layout, thetas)
            n_classes = params[self._plan[self._last_affine][1]].shape[1]
            logits = thetas.new_empty(len(thetas), len(self._y[block]), n_classes)
            for i in range(len(thetas)):
                self._rows_logits(params, i, block, workspace, logits[i])
            return logits
        h, steps = workspace.program(
            thetas, block, lambda: self._fused_program(thetas, block, workspace)
        )
        for weight, bias, out, activations in steps:
            if bias is not None:
                torch.baddbmm(bias, weight, h, out=out)
            else:
                torch.bmm(weight, h, out=out)
            h = out
            for in_place, layer in activations:
                h = in_place(layer, h)
        return h

    def _fused_program(self, thetas, block, workspace):
        """Return the inputs and steps of the fused forward of one chunk.

        Each step is ``(weight, bias, out, activations)``: one batched
        product (weights and biases strided views of ``thetas``) into
        ``out``, then the activations that follow it, applied in place.
        Hidden layers alternate between the workspace's two layer buffers
        (each reads the one it does not write), the logits have their own.
        """
        params = self.layout.unflatten(thetas)
        n_vectors, n_block = len(thetas), len(self._y[block])
        layers = []
        for kind, first, second in self._plan:
            if kind == "activation":
                layers[-1][3].append((ACTIVATIONS[type(first)].in_place, first))
                continue
            weight = params[first]  # (B, out, in), a strided view of thetas
            bias = params[second][:, :, None] if second is not None else None
            layers.append([weight, bias, (n_vectors, weight.shape[1], n_block), []])
        slots = [index % 2 for index in range(len(layers) - 1)] + [_LOGITS]
        # Size every buffer before taking views: growing one replaces it.
        for slot in set(slots):
            workspace.buffer(
                slot,
                max(
                    math.prod(layer[2]) for layer, s in zip(layers, slots) if s == slot
                ),
            )
        steps = [
            (weight, bias, workspace.buffer(slot, math.prod(shape)).view(shape), acts)
            for (weight, bias, shape, acts), slot in zip(layers, slots)
        ]
        # The inputs are shared by the chunk (a stride-0 batch). Each
        # vector's product has the same shape whatever the chunk's size, so
        # its numbers do not depend on the chunking.
        return self._XT[:, block].expand(n_vectors, -1, -1), steps

    def _rows_logits(self, params, index, block, workspace, out):
        """Logits of vector ``index`` into ``out`` (n_block, n_classes), by addmm."""
        h = self._X[block]
        last = self._last_affine
        for position, (kind, first, second) in enumerate(self._plan):
            if kind == "activation":
                h = ACTIVATIONS[type(first)].in_place(first, h)
                continue
            weight = params[first][index]
            target = (
                out if position == last else workspace.take((len(h), weight.shape[0]))
            )
            if second is not None:
                torch.addmm(params[second][index], h, weight.T, out=target)
            else:
                torch.mm(h, weight.T, out=target)
            h = target
        if h is not out:  # an activation after the last layer made a copy
            out.copy_(h)
        return out

    def _patch_logits(self, thetas, block, workspace=None):
        """Logits of shape (B, n_block, n_classes) by matmuls on patches.

        Convolutions as matrix products on the channels-last patches of
        their inputs (the first layer's are shared by the whole chunk, one
        broadcast product), pooling with the vectors folded into the batch.
        On the digits SmallCNN (400 images, 64 vectors, one thread) 0.20 s
        against the loop path's 0.32 s, whose small convolutions run far
        below the machine's matmul rate.
        """
        params = list(self.layout.unflatten(thetas).values())
        return many_logits(self._patch_ops, self._X_last[block], params)

    def _loop_logits(self, thetas, block, workspace=None):
        """Logits of shape (B, n_block, n_classes), one vector at a time.

        Each vector is copied into the private module copy's parameters
        (cheaper than ``functional_call``'s re-parametrization on every
        vector), under a lock so that threads sharing the evaluator never
        mix vectors.
        """
        params = self.layout.unflatten(thetas)
        targets = [(self._module.get_parameter(name), name) for name in params]
        logits = []
        with self._loop_lock:
            for i in range(len(thetas)):
                for target, name in targets:
                    target.copy_(params[name][i])
                logits.append(self._module(self._X[block]))
        return torch.stack(logits)

    def _vmap_logits(self, thetas, block, workspace=None):
        """Logits of shape (B, n_block, n_classes) by vmap(functional_call)."""
        params = self.layout.unflatten(thetas)

        def forward(p, x):
            return functional_call(self._module, p, (x,))

        return vmap(forward, in_dims=(0, None))(params, self._X[block])


# Buffers of a _Workspace: two for hidden layers (0 and 1), then these.
_VECTORS, _MARGINS, _LOGITS = 2, 3, 4
# A thread's workspace is kept between calls up to this size (dropped after
# a call that needed more), so repeated calls on small networks neither
# allocate nor page-fault, and large ones hold no memory between calls.
_KEPT_WORKSPACE_BYTES = 64 * 1024**2
# Most fused programs kept per workspace (one per chunk shape in use).
_MAX_PROGRAMS = 8


class _Workspace:
    """Reusable memory of evaluation calls: layer outputs and weight views.

    Hidden layers write into two flat buffers used in turn (each layer's
    output goes to the buffer its input is not in). On CPU a fresh tensor
    of a few megabytes per layer came straight from the operating system
    and was page-faulted in on first touch: on the swiss-roll MLP (chunks
    of 81 vectors) those allocations cost more than the matrix products (72
    against 36 us per evaluation). The chunks of perturbed vectors are
    written into one buffer too, so the views of a chunk of the same shape
    (the fused path's whole forward: weights, biases, outputs) are built
    once and reused for as long as that buffer lives: building them cost
    about 0.2 ms per chunk, a tenth of a chunk's products on that MLP.
    """

    def __init__(self, device, dtype):
        self._device, self._dtype = device, dtype
        self.inference = torch.is_inference_mode_enabled()  # of its buffers
        self._flat = [None] * 5
        self._turn = 0
        self._programs = {}
        self._views_of = None
        self._views = None
        self._margins_shape = None  # the shape whose padding columns are zero

    @property
    def nbytes(self):
        """Bytes held by the buffers."""
        return sum(f.numel() * f.element_size() for f in self._flat if f is not None)

    def buffer(self, slot, numel):
        """Return the first ``numel`` elements of buffer ``slot``, grown if needed.

        Growing replaces the buffer, so every cached view is dropped.
        """
        flat = self._flat[slot]
        if flat is None or flat.numel() < numel:
            flat = torch.empty(numel, dtype=self._dtype, device=self._device)
            self._flat[slot] = flat
            self._programs.clear()
            self._views_of = self._views = self._margins_shape = None
        return flat[:numel]

    def take(self, shape):
        """Return a tensor of ``shape`` in the next layer buffer (undefined)."""
        turn, self._turn = self._turn, 1 - self._turn
        return self.buffer(turn, math.prod(shape)).view(shape)

    def vectors(self, n_vectors, n_params):
        """Return an (n_vectors, n_params) tensor in the chunks' buffer.

        Allocated on first use (a call on given vectors never needs it) at
        the first chunk's size, the largest of the call.
        """
        return self.buffer(_VECTORS, n_vectors * n_params).view(n_vectors, n_params)

    def margins(self, n_vectors, n_samples):
        """Return a zeroed-tail (n_vectors, padded) tensor for two-class margins.

        ``padded`` is ``n_samples`` rounded up to ``_SAMPLE_ALIGNMENT``; the
        columns past ``n_samples`` hold zeros, the others are undefined.
        """
        padded = n_samples + -n_samples % _SAMPLE_ALIGNMENT
        out = self.buffer(_MARGINS, n_vectors * padded).view(n_vectors, padded)
        # Only the first n_samples columns are ever written: the padding of
        # the same shape stays zero from one chunk to the next.
        if self._margins_shape != (n_vectors, n_samples):
            out[:, n_samples:].zero_()
            self._margins_shape = (n_vectors, n_samples)
        return out

    def _owns(self, thetas):
        """Whether ``thetas`` is a chunk written into this workspace's buffer."""
        flat = self._flat[_VECTORS]
        return (
            flat is not None
            and thetas.data_ptr() == flat.data_ptr()
            and thetas.is_contiguous()
        )

    def parameters(self, layout, thetas):
        """Return ``layout.unflatten(thetas)``, reused for chunks of this workspace.

        Views of vectors the caller passed in are never kept, so a kept
        workspace holds no reference to the caller's memory.
        """
        if not self._owns(thetas):
            return layout.unflatten(thetas)
        if self._views_of != thetas.shape:
            self._views = layout.unflatten(thetas)
            self._views_of = thetas.shape
        return self._views

    def program(self, thetas, block, build):
        """Return ``build()``, reused for chunks of this workspace of the same shape."""
        if not self._owns(thetas):
            return build()
        key = (thetas.shape, block.start, block.stop)
        program = self._programs.get(key)
        if program is None:
            program = build()  # may grow buffers, which clears the cache
            if len(self._programs) >= _MAX_PROGRAMS:
                self._programs.clear()
            self._programs[key] = program
        return program


# Per-sample losses are computed on a sample dimension padded to a multiple
# of this many: vectorized elementwise kernels handle the last few elements
# of a tensor (and of each thread's share) by a scalar path whose exp/log
# round differently, so without the padding the same weights could give a
# different last bit depending on their place in a chunk.
_SAMPLE_ALIGNMENT = 64


def _loss_and_hits(logits, y, sign, class_dim, workspace, with_hits=True):
    """Sum of cross-entropies and number of hits (None unless ``with_hits``).

    ``sign`` is ``1 - 2 * y`` in the logits' dtype (used for two classes).
    """
    if logits.shape[class_dim] == 2:
        return _binary_loss_and_hits(logits, y, sign, class_dim, workspace, with_hits)
    sample_dim = 3 - class_dim
    n_samples = logits.shape[sample_dim]
    pad = -n_samples % _SAMPLE_ALIGNMENT
    if pad:
        shape = list(logits.shape)
        shape[sample_dim] += pad
        padded = logits.new_zeros(shape)
        padded.narrow(sample_dim, 0, n_samples).copy_(logits)
        logits, y = padded, torch.cat([y, y.new_zeros(pad)])
    losses, hits = _losses_and_hits(logits, y, class_dim, with_hits)
    return (
        losses[:, :n_samples].sum(dim=1, dtype=torch.float64),
        hits[:, :n_samples].sum(dim=1, dtype=torch.float64) if with_hits else None,
    )


def _losses_and_hits(logits, y, class_dim, with_hits=True):
    """Per-sample cross-entropies and hits, each of shape (B, n_samples)."""
    shape = [1, 1, 1]
    shape[3 - class_dim] = -1  # the sample dimension
    labels = y.view(shape)
    index_shape = list(logits.shape)
    index_shape[class_dim] = 1
    picked = logits.gather(class_dim, labels.expand(index_shape))
    losses = torch.logsumexp(logits, dim=class_dim, keepdim=True) - picked
    if not with_hits:
        return losses.squeeze(class_dim), None
    # A hit is argmax == label with argmax's tie rule (first maximum wins):
    # no earlier class reaches the label's logit and no later one exceeds
    # it. Spelled out because argmax over a short non-innermost dimension
    # took longer than all the matrix products of the tiny MLP on CPU.
    shape[3 - class_dim], shape[class_dim] = 1, -1
    classes = torch.arange(logits.shape[class_dim], device=logits.device).view(shape)
    beaten = torch.where(classes < labels, logits >= picked, logits > picked)
    return losses.squeeze(class_dim), ~beaten.any(dim=class_dim)


def _binary_loss_and_hits(logits, y, sign, class_dim, workspace, with_hits=True):
    """:func:`_loss_and_hits` for two classes, from the margin alone.

    With ``m`` the other class's logit minus the label's, the cross-entropy
    is ``softplus(m)``: accurate where the loss is tiny (``logsumexp - picked``
    loses it to cancellation) and 1.7x faster on the swiss-roll MLP's
    chunks. A hit is ``m < 0``, or ``m == 0`` for label 0 (argmax's tie rule:
    the first maximum wins). ``sign`` is ``1 - 2 * y`` in the logits'
    dtype. Only the margins are padded (into the ``workspace``), not the
    logits.
    """
    n_samples = len(y)
    margins = workspace.margins(len(logits), n_samples)
    margin = margins[:, :n_samples]
    torch.sub(logits.select(class_dim, 1), logits.select(class_dim, 0), out=margin)
    margin.mul_(sign)
    loss = F.softplus(margins)[:, :n_samples].sum(dim=1, dtype=torch.float64)
    if not with_hits:
        return loss, None
    hits = torch.where(y == 0, margin <= 0, margin < 0)
    return loss, hits.sum(dim=1, dtype=torch.float64)
