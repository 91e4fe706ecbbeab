"""flatgen: see and measure why neural networks generalize.

Poisoned training of PyTorch networks as scikit-learn estimators, after
Huang et al., "Understanding Generalization through Visualizations" (2019).
"""

from .analyzers import (
    BasinAnalyzer,
    CurvatureAnalyzer,
    LossSlice,
    PerturbationPath,
    VolumeEstimator,
)
from .datasets import SpiralSampler, make_spirals
from .estimators import PoisonedCNNClassifier, PoisonedMLPClassifier
from .exceptions import TrainingDivergedError
from .plotting import BasinDisplay, LossSliceDisplay, PerturbationAnimation
from .poison import ArraySampler

__version__ = "0.1.0"

__all__ = [
    "ArraySampler",
    "BasinAnalyzer",
    "BasinDisplay",
    "CurvatureAnalyzer",
    "LossSlice",
    "LossSliceDisplay",
    "PerturbationAnimation",
    "PerturbationPath",
    "PoisonedCNNClassifier",
    "PoisonedMLPClassifier",
    "SpiralSampler",
    "TrainingDivergedError",
    "VolumeEstimator",
    "make_spirals",
]
