"""Analyzers that measure fitted networks: basin radius, volume, curvature."""

from ._basin import BasinAnalyzer
from ._curvature import CurvatureAnalyzer
from ._margins import MarginAnalyzer, MarginPlotter
from ._path import PerturbationPath
from ._slices import LossSlice
from ._volume import VolumeEstimator, log10_ball_volume

__all__ = [
    "BasinAnalyzer",
    "CurvatureAnalyzer",
    "LossSlice",
    "MarginAnalyzer",
    "MarginPlotter",
    "PerturbationPath",
    "VolumeEstimator",
    "log10_ball_volume",
]
