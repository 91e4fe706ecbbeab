"""Reach the torch network and the training data inside a fitted estimator."""

import copy

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ..estimators._base import BasePoisonedClassifier

SUPPORTED = "PoisonedMLPClassifier, PoisonedCNNClassifier or a Pipeline ending in one"


def network_and_data(estimator, X, y):
    """Return a copy of the fitted network and ``X, y`` prepared for it.

    Parameters
    ----------
    estimator : fitted flatgen classifier or Pipeline ending in one
        The model to analyze. It is not modified: the network is deep-copied.
    X : array-like of shape (n_samples, ...)
        Data, as passed to the estimator's ``predict`` (a Pipeline's
        transformers are applied first).
    y : array-like of shape (n_samples,)
        Labels from the estimator's ``classes_``.

    Returns
    -------
    module : torch.nn.Module
        A deep copy of the trained network, in eval mode.
    X : ndarray
        Inputs shaped for the network (float32).
    y : ndarray of int64
        Labels encoded as indices into ``classes_``.

    Raises
    ------
    TypeError
        If ``estimator`` is not a flatgen network classifier.
    sklearn.exceptions.NotFittedError
        If it is not fitted.
    ValueError
        If ``X`` does not fit the network or ``y`` holds unknown labels.
    """
    if isinstance(estimator, Pipeline):
        check_is_fitted(estimator)
        for _, step in estimator.steps[:-1]:
            if step is not None and step != "passthrough":
                X = step.transform(X)
        estimator = estimator.steps[-1][1]
    if not isinstance(estimator, BasePoisonedClassifier):
        raise TypeError(
            f"Flatness analyzers need a torch network classifier ({SUPPORTED}); "
            f"got {type(estimator).__name__}. Margins of any classifier, SVC "
            "included, are measured in input space instead."
        )
    check_is_fitted(estimator)
    X = estimator._prepare_X(X, reset=False)
    if y is None:
        raise ValueError("y is required: the basin is measured on the training loss.")
    y = column_or_1d(y)
    if len(y) != len(X):
        raise ValueError(
            f"X and y have inconsistent numbers of samples: {len(X)} and {len(y)}."
        )
    codes = np.clip(
        np.searchsorted(estimator.classes_, y), 0, len(estimator.classes_) - 1
    )
    unknown = estimator.classes_[codes] != y
    if np.any(unknown):
        raise ValueError(
            "y holds labels the estimator was not fitted on: "
            f"{np.unique(y[unknown])[:5].tolist()}; known classes are "
            f"{estimator.classes_.tolist()}."
        )
    module = copy.deepcopy(estimator.net_.module_).eval()
    return module, X, codes.astype(np.int64)
