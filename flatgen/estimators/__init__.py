"""scikit-learn classifiers trained with the poison objective."""

from ._cnn import PoisonedCNNClassifier
from ._mlp import PoisonedMLPClassifier

__all__ = ["PoisonedMLPClassifier", "PoisonedCNNClassifier"]
