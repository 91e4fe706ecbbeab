"""Norm-based complexity measures of a trained network (Jiang et al., 2020).

Products of layer norms grow like the product of the layers' scales, so
they are returned as log10 values: ``sum_l log10 ||W_l||**2``.
"""

import numpy as np
import torch

from ._parameters import ParameterLayout, flatten_parameters, module_with_parameters


def _weight_matrices(module):
    """Each weight tensor (at least 2-D) as a (out, in * kernel) float64 matrix."""
    return [
        p.detach().double().reshape(p.shape[0], -1)
        for p in module.parameters()
        if p.ndim >= 2
    ]


def log10_norm_products(module):
    """Return log10 products of the squared Frobenius and spectral norms.

    Parameters
    ----------
    module : torch.nn.Module
        The network (its weight matrices and convolution kernels; a kernel
        is reshaped to ``(out_channels, in_channels * kernel size)``, as in
        Jiang et al.'s code).

    Returns
    -------
    log10_frobenius : float
        ``sum_l log10 ||W_l||_F**2``.
    log10_spectral : float
        ``sum_l log10 ||W_l||_2**2``.
    """
    matrices = _weight_matrices(module)
    if not matrices:
        raise ValueError("The module has no weight matrices.")
    frobenius = sum(2 * np.log10(float(torch.linalg.norm(w))) for w in matrices)
    spectral = sum(
        2 * np.log10(float(torch.linalg.matrix_norm(w, ord=2))) for w in matrices
    )
    return float(frobenius), float(spectral)


def log10_path_norm(module, input_shape):
    """Return log10 of the squared path norm of a ReLU network.

    The sum over all input-output paths of the product of the squared
    weights on the path, computed as Jiang et al. (2020) do: one forward pass
    of the network with every weight squared and biases set to 0, on an
    input of ones, summed over the outputs. Exact for networks of linear
    layers, convolutions, ReLUs and average pooling; with max pooling it is
    that forward pass, not a sum over paths.

    Parameters
    ----------
    module : torch.nn.Module
        The network; not modified.
    input_shape : tuple of int
        Shape of one input sample.

    Returns
    -------
    log10_path_norm : float
        log10 of the squared path norm.
    """
    layout = ParameterLayout.from_module(module)
    theta = flatten_parameters(module)
    index, active = layout.groups(False, device=theta.device)
    squared = module_with_parameters(module, theta.square() * active[index]).eval()
    first = next(module.parameters())
    ones = torch.ones((1, *input_shape), dtype=first.dtype, device=first.device)
    with torch.no_grad():
        total = float(squared(ones).double().sum())
    return float(np.log10(total)) if total > 0 else float("-inf")


def fisher_rao_norm(network_loss, include_bias=False):
    """Return the Fisher-Rao norm of the trained weights (Liang et al., 2019).

    ``||theta||_fr**2 = E_i <theta, grad_theta loss_i>**2``: the empirical
    Fisher information as a quadratic form at the weights themselves. For a
    bias-free ReLU network with ``L + 1`` weight layers it equals ``(L +
    1)**2 E_i <dloss_i/dlogits, logits>**2``. Computed by one forward-mode
    pass along ``theta`` for all samples.

    Parameters
    ----------
    network_loss : NetworkLoss
        The network's training loss.
    include_bias : bool, default=False
        Whether ``theta`` includes the biases (the homogeneity identity above
        holds for the weights alone).

    Returns
    -------
    fisher_rao : float
        The squared Fisher-Rao norm.
    """
    theta = network_loss.theta0
    index, active = network_loss.layout.groups(include_bias, device=theta.device)
    tangent = theta * active[index].to(theta.dtype)
    derivatives = network_loss.directional_derivatives(tangent).double()
    return float(derivatives.square().mean())
