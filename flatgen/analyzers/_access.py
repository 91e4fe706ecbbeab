"""Reach the torch network and the training data inside a fitted estimator.

Analyzers go through the classifiers' public ``module_``,
``network_inputs`` and ``encode_labels``; this module adds what a Pipeline
in front of the classifier needs, in one place.
"""

import copy

from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ..estimators._base import BasePoisonedClassifier

SUPPORTED = "PoisonedMLPClassifier, PoisonedCNNClassifier or a Pipeline ending in one"


def network_classifier(estimator):
    """Return the flatgen classifier at the end of ``estimator``.

    Parameters
    ----------
    estimator : fitted flatgen classifier or Pipeline ending in one
        The model.

    Returns
    -------
    classifier : PoisonedMLPClassifier or PoisonedCNNClassifier
        ``estimator`` itself, or the last step of the Pipeline.

    Raises
    ------
    TypeError
        If there is no flatgen network classifier at the end.
    sklearn.exceptions.NotFittedError
        If it is not fitted.
    """
    last = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    if not isinstance(last, BasePoisonedClassifier):
        raise TypeError(
            f"Flatness analyzers need a torch network classifier ({SUPPORTED}); "
            f"got {type(last).__name__}. Margins of any classifier, SVC "
            "included, are measured in input space instead."
        )
    check_is_fitted(last)
    return last


def network_inputs(estimator, X):
    """Return ``X`` as the network sees it: the Pipeline's transformers, then its own.

    Parameters
    ----------
    estimator : fitted flatgen classifier or Pipeline ending in one
        The model.
    X : array-like of shape (n_samples, ...)
        Inputs, as passed to the estimator's ``predict``.

    Returns
    -------
    X_network : ndarray of float32
        Inputs shaped for the network.
    """
    classifier = network_classifier(estimator)
    if isinstance(estimator, Pipeline):
        for _, step in estimator.steps[:-1]:
            if step is not None and step != "passthrough":
                X = step.transform(X)
    return classifier.network_inputs(X)


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
    classifier = network_classifier(estimator)
    if isinstance(estimator, Pipeline):
        check_is_fitted(estimator)
    X = network_inputs(estimator, X)
    if y is None:
        raise ValueError("y is required: the basin is measured on the training loss.")
    y = column_or_1d(y)
    if len(y) != len(X):
        raise ValueError(
            f"X and y have inconsistent numbers of samples: {len(X)} and {len(y)}."
        )
    codes = classifier.encode_labels(y)
    module = copy.deepcopy(classifier.module_).eval()
    return module, X, codes
