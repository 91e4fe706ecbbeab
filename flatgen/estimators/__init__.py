"""scikit-learn classifiers trained with the poison objective."""

from ._base import TrainingRun
from ._batched import BatchedPoisonFitter, batch_key
from ._cnn import PoisonedCNNClassifier
from ._mlp import PoisonedMLPClassifier
from ._training import PoisonTrainer

__all__ = [
    "BatchedPoisonFitter",
    "PoisonTrainer",
    "PoisonedMLPClassifier",
    "PoisonedCNNClassifier",
    "TrainingRun",
    "batch_key",
]
