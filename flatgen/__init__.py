"""flatgen: see and measure why neural networks generalize.

Poisoned training of PyTorch networks as scikit-learn estimators, after
Huang et al., "Understanding Generalization through Visualizations" (2019).
"""

from .analyzers import (
    BasinAnalyzer,
    CurvatureAnalyzer,
    LossSlice,
    MarginPlotter,
    PerturbationPath,
    VolumeEstimator,
)
from .datasets import SpiralSampler, make_spirals
from .estimators import PoisonedCNNClassifier, PoisonedMLPClassifier
from .exceptions import TrainingDivergedError
from .plotting import (
    BasinDisplay,
    DecisionRegionsDisplay,
    LossSliceDisplay,
    MarginDistributionDisplay,
    PerturbationAnimation,
    PoisonSweepDisplay,
    VolumeConvergenceDisplay,
    VolumeGapDisplay,
)
from .poison import ArraySampler

__version__ = "0.1.0"

__all__ = [
    "ArraySampler",
    "BasinAnalyzer",
    "BasinDisplay",
    "CurvatureAnalyzer",
    "DecisionRegionsDisplay",
    "LossSlice",
    "LossSliceDisplay",
    "MarginDistributionDisplay",
    "MarginPlotter",
    "PerturbationAnimation",
    "PerturbationPath",
    "PoisonedCNNClassifier",
    "PoisonedMLPClassifier",
    "PoisonSweepDisplay",
    "SpiralSampler",
    "TrainingDivergedError",
    "VolumeConvergenceDisplay",
    "VolumeEstimator",
    "VolumeGapDisplay",
    "make_spirals",
]
