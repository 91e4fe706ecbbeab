"""Display objects: they draw arrays computed elsewhere and never touch torch."""

from ._animation import PerturbationAnimation
from ._basin import OKABE_ITO, BasinDisplay
from ._margins import MarginDistributionDisplay
from ._ranking import MeasureRankingDisplay
from ._regions import DecisionRegionsDisplay
from ._slices import LossSliceDisplay
from ._sweeps import PoisonSweepDisplay, VolumeGapDisplay
from ._volume import VolumeConvergenceDisplay

__all__ = [
    "BasinDisplay",
    "DecisionRegionsDisplay",
    "LossSliceDisplay",
    "MarginDistributionDisplay",
    "MeasureRankingDisplay",
    "OKABE_ITO",
    "PerturbationAnimation",
    "PoisonSweepDisplay",
    "VolumeConvergenceDisplay",
    "VolumeGapDisplay",
]
