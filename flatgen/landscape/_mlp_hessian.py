"""Exact Hessian-vector products of a dense network, without autograd.

For a stack of ``nn.Linear`` layers and elementwise activations under the
mean cross-entropy, the product ``H v`` follows from one forward pass in
``v``'s direction and one backward pass of that pass (Pearlmutter's
R-operator), written out layer by layer. Compared with double
backpropagation this builds no graph, runs a fixed sequence of a few
matmuls per layer, and takes any number of vectors at once (their products
are broadcast matmuls), which on small networks, where autograd's per-node
overhead dominates, is several times cheaper per vector.
"""

import torch
import torch.nn as nn

__all__ = ["DenseHessian", "dense_layers"]

# Activation -> (function, first derivative, second derivative), the
# derivatives from the activation's input ``z`` and output ``a``. ReLU's
# second derivative is zero almost everywhere (autograd agrees).
_ACTIVATIONS = {
    nn.ReLU: (torch.relu, lambda z, a: (z > 0).to(z.dtype), None),
    nn.Tanh: (torch.tanh, lambda z, a: 1 - a * a, lambda z, a: -2 * a * (1 - a * a)),
    nn.Identity: (None, None, None),
}


def dense_layers(module):
    """Split a plain dense stack into ``(linear, activation)`` pairs, or None.

    The module qualifies when it is a :class:`torch.nn.Sequential` of
    :class:`torch.nn.Linear` layers (with bias), each followed by at most one
    ReLU, Tanh or Identity, ending in a Linear, in training-independent
    mode (no dropout or normalization), with parameters listed exactly in
    layer order. Anything else returns None (the caller falls back to
    autograd).
    """
    if not isinstance(module, nn.Sequential) or len(module) == 0:
        return None
    layers = []
    for child in module:
        if isinstance(child, nn.Linear):
            if child.bias is None:
                return None
            layers.append([child, None])
        elif type(child) in _ACTIVATIONS and layers and layers[-1][1] is None:
            layers[-1][1] = type(child)
        else:
            return None
    if layers[-1][1] not in (None, nn.Identity):
        return None
    expected = [p for linear, _ in layers for p in (linear.weight, linear.bias)]
    actual = list(module.parameters())
    if len(actual) != len(expected) or any(
        a is not b for a, b in zip(actual, expected)
    ):
        return None
    return [(linear, activation) for linear, activation in layers]


class DenseHessian:
    """Products ``H V`` of a dense stack's mean cross-entropy Hessian.

    Parameters
    ----------
    layers : list of (torch.nn.Linear, type or None)
        From :func:`dense_layers`.
    X : torch.Tensor of shape (n_samples, n_features)
    y : torch.Tensor of int64 of shape (n_samples,)
    sample_block : int, default=None
        If given, the forward quantities are recomputed per block of this
        many samples at every product (bounded memory); by default they are
        computed once and kept.
    """

    def __init__(self, layers, X, y, *, sample_block=None):
        # Copies: later changes to the module do not reach the operator.
        self._weights = [linear.weight.detach().clone() for linear, _ in layers]
        self._biases = [linear.bias.detach().clone() for linear, _ in layers]
        self._activations = [_ACTIVATIONS.get(act, (None,) * 3) for _, act in layers]
        self._X = X.reshape(len(X), -1)
        self._n_samples = len(X)
        self._y = y
        self._sample_block = sample_block
        self._cache = None if sample_block else self._forward(slice(None))

    def _forward(self, block):
        """Activations, derivatives and the backpropagated loss gradients."""
        a = self._X[block]
        inputs, slopes, curvatures = [a], [], []
        for W, b, (function, first, second) in zip(
            self._weights, self._biases, self._activations
        ):
            z = torch.addmm(b, a, W.T)
            a = z if function is None else function(z)
            slopes.append(None if first is None else first(z, a))
            curvatures.append(None if second is None else second(z, a))
            inputs.append(a)
        # The softmax and its derivatives in float64 (an (n, classes) block,
        # negligible work): near a fitted minimum p (1 - p) and p - 1 cancel
        # in float32 and the curvature would be good to ~1e-4 only.
        probs = torch.softmax(inputs.pop().double(), dim=1)
        # d loss / d logits of the mean cross-entropy over ALL samples.
        deltas = [None] * len(self._weights)
        delta = probs.clone()
        delta[torch.arange(len(delta), device=delta.device), self._y[block]] -= 1
        delta = (delta / self._n_samples).to(a.dtype)
        upstream = []  # d loss / d (output of layer l), before the slope
        for layer in range(len(self._weights) - 1, -1, -1):
            deltas[layer] = delta
            if layer:
                grad_a = delta @ self._weights[layer]
                upstream.insert(0, grad_a)
                slope = slopes[layer - 1]
                delta = grad_a if slope is None else grad_a * slope
        return inputs, slopes, curvatures, probs, deltas, [None, *upstream]

    def products(self, V_pieces):
        """Hessian products of a batch of vectors given per layer.

        Parameters
        ----------
        V_pieces : list of (torch.Tensor, torch.Tensor)
            Per layer, the weight part ``(b, out, in)`` and the bias part
            ``(b, out)`` of ``b`` vectors, or ``(out, in)`` and ``(out,)``
            for a single vector (plain matmuls: less overhead).

        Returns
        -------
        list of (torch.Tensor, torch.Tensor)
            The same pieces of ``H v`` for each vector.
        """
        if self._cache is not None:
            return self._products(self._cache, V_pieces)
        step = self._sample_block
        total = None
        for start in range(0, self._n_samples, step):
            part = self._products(self._forward(slice(start, start + step)), V_pieces)
            total = (
                part
                if total is None
                else [(tw + w, tb + b) for (tw, tb), (w, b) in zip(total, part)]
            )
        return total

    def _products(self, cache, V_pieces):
        inputs, slopes, curvatures, probs, deltas, upstream = cache
        n_layers = len(self._weights)
        # R-forward: directional derivatives of every pre-activation.
        r_z, r_inputs = [], [None]
        r_a = None
        for layer, (dW, db) in enumerate(V_pieces):
            z_dot = torch.matmul(inputs[layer], dW.mT) + db.unsqueeze(-2)
            if r_a is not None:
                z_dot = z_dot + torch.matmul(r_a, self._weights[layer].T)
            r_z.append(z_dot)
            if layer + 1 < n_layers:
                slope = slopes[layer]
                r_a = z_dot if slope is None else z_dot * slope
                r_inputs.append(r_a)
        # Softmax Jacobian on the logits' direction, over all samples' mean.
        r_logits = r_z[-1].double()
        r_delta = probs * (r_logits - (probs * r_logits).sum(-1, keepdim=True))
        r_delta = (r_delta / self._n_samples).to(r_z[-1].dtype)
        out = [None] * n_layers
        for layer in range(n_layers - 1, -1, -1):
            dW, _ = V_pieces[layer]
            delta = deltas[layer]
            hv_W = torch.matmul(r_delta.mT, inputs[layer])
            if r_inputs[layer] is not None:
                hv_W = hv_W + torch.matmul(delta.T, r_inputs[layer])
            out[layer] = (hv_W, r_delta.sum(-2))
            if layer:
                r_grad_a = torch.matmul(r_delta, self._weights[layer]) + torch.matmul(
                    delta, dW
                )
                slope, curvature = slopes[layer - 1], curvatures[layer - 1]
                r_delta = r_grad_a if slope is None else r_grad_a * slope
                if curvature is not None:
                    r_delta = r_delta + upstream[layer] * curvature * r_z[layer - 1]
        return out
