"""Analyzers that measure fitted networks: basin radius, volume, curvature."""

from ._basin import BasinAnalyzer
from ._curvature import CurvatureAnalyzer
from ._volume import VolumeEstimator, log10_ball_volume

__all__ = ["BasinAnalyzer", "CurvatureAnalyzer", "VolumeEstimator", "log10_ball_volume"]
