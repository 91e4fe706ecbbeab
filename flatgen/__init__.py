"""flatgen: see and measure why neural networks generalize.

Poisoned training of PyTorch networks as scikit-learn estimators, after
Huang et al., "Understanding Generalization through Visualizations" (2019).
"""

from .datasets import SpiralSampler, make_spirals
from .estimators import PoisonedCNNClassifier, PoisonedMLPClassifier
from .exceptions import TrainingDivergedError
from .poison import ArraySampler

__version__ = "0.1.0"

__all__ = [
    "ArraySampler",
    "PoisonedCNNClassifier",
    "PoisonedMLPClassifier",
    "SpiralSampler",
    "TrainingDivergedError",
    "make_spirals",
]
