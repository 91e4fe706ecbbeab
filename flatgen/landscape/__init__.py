"""Landscape engine: perturbed-weight losses, basin radii and curvature.

Pure computations on a torch module and its training data, used by the
flatness analyzers. Nothing here modifies the module it is given: every
function works on flat copies of the parameters or on a deep copy of the
module.
"""

from ._curvature import LossHessian, hessian_trace, top_hessian_eigenvalue
from ._directions import filter_normalized_directions
from ._evaluate import BatchedEvaluator
from ._parameters import (
    ParameterLayout,
    ParameterSpec,
    flatten_parameters,
    module_with_parameters,
)
from ._radius import BasinRadii, basin_radii

__all__ = [
    "BasinRadii",
    "BatchedEvaluator",
    "LossHessian",
    "ParameterLayout",
    "ParameterSpec",
    "basin_radii",
    "filter_normalized_directions",
    "flatten_parameters",
    "hessian_trace",
    "module_with_parameters",
    "top_hessian_eigenvalue",
]
