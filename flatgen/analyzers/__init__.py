"""Analyzers that measure fitted networks: basins, curvature, sharpness, norms."""

from ._annealed_volume import AnnealedVolumeEstimator
from ._basin import BasinAnalyzer
from ._curvature import CurvatureAnalyzer
from ._llc import LearningCoefficientAnalyzer
from ._margins import MarginAnalyzer, MarginPlotter
from ._norms import NormAnalyzer
from ._path import PerturbationPath
from ._relative_flatness import RelativeFlatnessAnalyzer
from ._sharpness import (
    PACBayesAnalyzer,
    SharpnessAnalyzer,
    WorstCaseFlatnessAnalyzer,
)
from ._slices import LossSlice
from ._volume import VolumeEstimator, log10_ball_volume

__all__ = [
    "AnnealedVolumeEstimator",
    "BasinAnalyzer",
    "CurvatureAnalyzer",
    "LearningCoefficientAnalyzer",
    "LossSlice",
    "MarginAnalyzer",
    "MarginPlotter",
    "NormAnalyzer",
    "PACBayesAnalyzer",
    "PerturbationPath",
    "RelativeFlatnessAnalyzer",
    "SharpnessAnalyzer",
    "VolumeEstimator",
    "WorstCaseFlatnessAnalyzer",
    "log10_ball_volume",
]
