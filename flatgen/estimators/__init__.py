"""scikit-learn classifiers trained with the poison objective."""

from ._batched import BatchedPoisonFitter, batch_key
from ._cnn import PoisonedCNNClassifier
from ._mlp import PoisonedMLPClassifier

__all__ = [
    "BatchedPoisonFitter",
    "PoisonedMLPClassifier",
    "PoisonedCNNClassifier",
    "batch_key",
]
