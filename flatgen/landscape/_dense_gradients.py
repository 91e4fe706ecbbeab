"""Cross-entropy and its gradient of a dense network at many weight vectors.

The annealed volume's and the learning coefficient's chains ask, at every
step, for the loss and its gradient at a handful of weight vectors of the
same small network. Through automatic differentiation each layer's
operation is recorded and replayed per call, which on the swiss-roll MLP
(3,370 weights, 200 points) costs more than the products themselves. For a
plain ``nn.Sequential`` of ``nn.Linear`` layers and elementwise activations
(those of :func:`~flatgen.landscape._sequential_hessian.analytic_layers` on
rows) the backward pass is written out here: per layer one batched product
forward, two backward, and a slope multiplication per activation; the
softmax and the loss from one log-softmax. The numbers agree with autograd
to rounding (float32: relative 1e-6; float64: 1e-13), not bit for bit: the
products are summed in another order.
"""

import torch

from ._sequential_hessian import _Affine, analytic_layers

__all__ = ["dense_layers", "many_losses_and_grads"]


def dense_layers(module):
    """Return the module's dense analytic layers, or None.

    Parameters
    ----------
    module : torch.nn.Module
        The network.

    Returns
    -------
    ops : list or None
        From :func:`~flatgen.landscape._sequential_hessian.analytic_layers`
        for inputs of shape (n_samples, n_features); None when the module
        is not a plain sequential stack of ``nn.Linear`` layers and known
        activations (the caller then differentiates automatically).
    """
    return analytic_layers(module, 2)


def many_losses_and_grads(ops, layout, thetas, X, y, reduction="mean"):
    """Cross-entropy and its gradient at each of many weight vectors.

    Parameters
    ----------
    ops : list
        From :func:`dense_layers` (their copied weights are not used).
    layout : ParameterLayout
        Order of the flat vectors (the module's parameters, which are the
        layers' own, in layer order).
    thetas : torch.Tensor of shape (B, n_params)
        Flat weight vectors.
    X : torch.Tensor of shape (n_samples, n_features)
        Inputs, in the weights' dtype and on their device.
    y : torch.Tensor of int64 of shape (n_samples,)
        Class labels.
    reduction : {'mean', 'sum'}, default='mean'
        Over the samples, of the losses and their gradients.

    Returns
    -------
    losses : torch.Tensor of shape (B,)
    grads : torch.Tensor of shape (B, n_params)
    """
    thetas = thetas.detach()
    params = list(layout.unflatten(thetas).values())
    grads = torch.empty_like(thetas)
    grad_pieces = list(layout.unflatten(grads).values())
    n_vectors = len(thetas)
    # Forward: each affine layer keeps its input (its weights' gradient is
    # the output gradient times it), each activation its slope.
    h, saved, start = X, [], 0
    for op in ops:
        if isinstance(op, _Affine):
            saved.append(h)
            weight = params[start]
            if op.n_pieces == 2:
                bias = params[start + 1].unsqueeze(-2)
                h = torch.baddbmm(bias, h.expand(n_vectors, -1, -1), weight.mT)
            else:
                h = torch.matmul(h, weight.mT)
        else:
            # A private copy: the rule may act in place, and some rules'
            # slopes are read from z, others from a.
            a = op.rule.in_place(op.layer, h.clone())
            saved.append(op.rule.derivatives(op.layer, h, a)[0])
            h = a
        start += op.n_pieces
    log_probs = torch.log_softmax(h, dim=-1)
    labels = y.view(1, -1, 1).expand(n_vectors, -1, 1)
    sample_losses = -log_probs.gather(-1, labels).squeeze(-1)
    # d loss_i / d logits = softmax - one-hot, then the reduction's factor.
    g = log_probs.exp_()
    g.scatter_add_(-1, labels, torch.full_like(g[..., :1], -1.0))
    if reduction == "mean":
        losses = sample_losses.mean(1)
        g /= X.shape[0]
    else:
        losses = sample_losses.sum(1)
    # Backward, writing each parameter's gradient into its slice of grads.
    for index in range(len(ops) - 1, -1, -1):
        op = ops[index]
        start -= op.n_pieces
        if isinstance(op, _Affine):
            grad_pieces[start].copy_(torch.matmul(g.mT, saved[index]))
            if op.n_pieces == 2:
                grad_pieces[start + 1].copy_(g.sum(dim=-2))
            if index > 0:
                g = torch.bmm(g, params[start])
        else:
            g = g * saved[index]
    return losses, grads
