"""Display objects: they draw arrays computed elsewhere and never touch torch."""

from ._animation import PerturbationAnimation
from ._basin import OKABE_ITO, BasinDisplay
from ._slices import LossSliceDisplay

__all__ = ["BasinDisplay", "LossSliceDisplay", "OKABE_ITO", "PerturbationAnimation"]
