"""Reading a plain ``nn.Sequential`` as a list of layers, shared by engines.

The batched loss evaluator (its fused path) and the analytic Hessian
products both run a network layer by layer without calling its
``forward``; this is only valid for a :class:`torch.nn.Sequential` whose
``forward`` simply chains its children, with its parameters owned by those
children in order. The elementwise activations they know are declared once
here: the evaluator applies them in place, the Hessian needs their first
and second derivatives.
"""

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ACTIVATIONS", "Activation", "sequential_layers"]

_SQRT_2 = 2.0**0.5
_INV_SQRT_2PI = (2.0 * torch.pi) ** -0.5


class Activation(NamedTuple):
    """How the engines apply an elementwise activation ``a = f(z)``.

    Attributes
    ----------
    in_place : callable
        ``in_place(layer, h)`` returns ``f(h)``, overwriting ``h`` where the
        operation allows it (the evaluator's chunks are private buffers).
    derivatives : callable or None
        ``derivatives(layer, z, a)`` returns ``(f'(z), f''(z))``, the second
        None where it is zero almost everywhere (piecewise-linear units:
        autograd agrees); None for the identity. For GELU, those of the
        exact form (``approximate='none'``).
    """

    in_place: Callable
    derivatives: Callable | None


def _gelu_derivatives(layer, z, a):
    density = torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
    cdf = 0.5 * (1.0 + torch.erf(z / _SQRT_2))
    return cdf + z * density, density * (2.0 - z * z)


def _sigmoid_derivatives(layer, z, a):
    slope = a * (1 - a)
    return slope, slope * (1 - 2 * a)


def _tanh_derivatives(layer, z, a):
    slope = 1 - a * a
    return slope, -2 * a * slope


# Dropout is the identity: both engines evaluate in eval mode.
ACTIVATIONS = {
    nn.ReLU: Activation(
        lambda m, h: h.relu_(), lambda m, z, a: ((z > 0).to(z.dtype), None)
    ),
    nn.Tanh: Activation(lambda m, h: h.tanh_(), _tanh_derivatives),
    nn.Sigmoid: Activation(lambda m, h: h.sigmoid_(), _sigmoid_derivatives),
    nn.GELU: Activation(
        lambda m, h: F.gelu(h, approximate=m.approximate),
        _gelu_derivatives,  # of the exact form; the analytic Hessian skips 'tanh'
    ),
    nn.LeakyReLU: Activation(
        lambda m, h: F.leaky_relu_(h, m.negative_slope),
        # Filled in z's dtype: a float32 0.2 would be off by 1e-8 in float64.
        lambda m, z, a: (
            torch.full_like(z, m.negative_slope).masked_fill_(z > 0, 1.0),
            None,
        ),
    ),
    nn.Identity: Activation(lambda m, h: h, None),
    nn.Dropout: Activation(lambda m, h: h, None),
}


def sequential_layers(module):
    """Return the children of a plain sequential network, or None.

    Parameters
    ----------
    module : torch.nn.Module
        Candidate network.

    Returns
    -------
    layers : list of torch.nn.Module or None
        The children in order when ``module`` is an ``nn.Sequential`` (or a
        subclass that keeps its ``forward``) with at least one child, whose
        parameters are exactly its children's own, listed in child order;
        None otherwise (the caller then runs the module as a whole).
    """
    if not isinstance(module, nn.Sequential) or len(module) == 0:
        return None
    # A subclass that overrides forward may not simply chain its children.
    if type(module).forward is not nn.Sequential.forward:
        return None
    layers = list(module)
    owned = [p for layer in layers for p in layer.parameters()]
    actual = list(module.parameters())
    if len(owned) != len(actual) or any(a is not b for a, b in zip(owned, actual)):
        return None
    return layers
