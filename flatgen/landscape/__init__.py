"""Landscape engine: a model's training objective and what is measured on it.

:class:`TrainingObjective` is a trained network's training loss as a
function of its weights, built from any supported model
(:meth:`TrainingObjective.from_model`) or from a torch module and its data
(arrays or batches). The measurements (basin radii and volumes, curvature,
sharpness, norms, the learning coefficient) are pure computations on it or on
the callables it provides, used by the flatness analyzers. Nothing here
modifies the module it is given: every function works on flat copies of the
parameters or on a deep copy of the module.
"""

from ._annealed import AnnealedVolume, annealed_log10_volume
from ._criterion import CriterionEvaluator, HalfSquaredError
from ._curvature import (
    LossHessian,
    hessian_trace,
    top_hessian_eigenpairs,
    top_hessian_eigenvalue,
)
from ._data import BatchesEvaluator, DataBatches, batches_loss, is_batches
from ._directions import filter_normalized_directions
from ._evaluate import BatchedEvaluator
from ._known_basins import KnownBasin, make_basin
from ._llc import (
    LangevinPreconditioner,
    LearningCoefficient,
    local_learning_coefficient,
    split_rhat,
)
from ._network_loss import NetworkBasinLoss
from ._norms import fisher_rao_norm, log10_norm_products, log10_path_norm
from ._objective import TrainingObjective
from ._parameters import (
    ParameterLayout,
    ParameterSpec,
    flatten_parameters,
    module_with_parameters,
)
from ._radius import BasinRadii, basin_radii
from ._relative_flatness import layer_weight_name, relative_flatness
from ._sharpness import (
    NetworkLoss,
    average_sharpness,
    pac_bayes_sigma,
    perturbation_scale,
    worst_case_radius,
    worst_case_sharpness,
)
from ._volume import (
    BasinVolume,
    CurvaturePreconditioner,
    VolumeSaturationWarning,
    basin_log10_volume,
    log10_ball_volume,
    log10_unit_ball_volume,
    volume_from_radii,
)

__all__ = [
    "AnnealedVolume",
    "annealed_log10_volume",
    "KnownBasin",
    "make_basin",
    "BasinRadii",
    "BasinVolume",
    "BatchesEvaluator",
    "CriterionEvaluator",
    "HalfSquaredError",
    "CurvaturePreconditioner",
    "DataBatches",
    "LangevinPreconditioner",
    "LearningCoefficient",
    "local_learning_coefficient",
    "split_rhat",
    "batches_loss",
    "is_batches",
    "NetworkBasinLoss",
    "NetworkLoss",
    "average_sharpness",
    "fisher_rao_norm",
    "log10_norm_products",
    "log10_path_norm",
    "pac_bayes_sigma",
    "perturbation_scale",
    "worst_case_radius",
    "worst_case_sharpness",
    "VolumeSaturationWarning",
    "basin_log10_volume",
    "layer_weight_name",
    "log10_ball_volume",
    "log10_unit_ball_volume",
    "volume_from_radii",
    "BatchedEvaluator",
    "LossHessian",
    "ParameterLayout",
    "ParameterSpec",
    "basin_radii",
    "filter_normalized_directions",
    "flatten_parameters",
    "hessian_trace",
    "module_with_parameters",
    "top_hessian_eigenpairs",
    "top_hessian_eigenvalue",
    "TrainingObjective",
    "relative_flatness",
]
