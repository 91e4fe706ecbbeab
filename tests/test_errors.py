"""Bad input gets a clear error naming what was wrong."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from flatgen import (
    PoisonedCNNClassifier,
    PoisonedMLPClassifier,
    TrainingDivergedError,
)


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    return rng.randn(40, 3), np.arange(40) % 2


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_X(data, bad):
    X, y = data
    X = X.copy()
    X[3, 1] = bad
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        PoisonedMLPClassifier(max_iter=2).fit(X, y)


@pytest.mark.slow
def test_wrong_number_of_features_at_predict(data):
    X, y = data
    clf = PoisonedMLPClassifier(max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="X has 2 features, but .* expecting 3"):
        clf.predict(X[:, :2])


@pytest.mark.parametrize("value", [-0.5, np.nan])
def test_bad_poison_factor(data, value):
    with pytest.raises(ValueError, match="'poison_factor' parameter .* must be"):
        PoisonedMLPClassifier(poison_factor=value).fit(*data)


def test_unknown_poison_loss(data):
    with pytest.raises(
        ValueError, match="'poison_loss' parameter .*'reverse'.*Got 'flip'"
    ):
        PoisonedMLPClassifier(poison_loss="flip").fit(*data)


def test_single_class(data):
    X, _ = data
    with pytest.raises(ValueError, match="at least 2 classes"):
        PoisonedMLPClassifier(max_iter=2).fit(X, np.zeros(len(X)))


def test_empty_X():
    with pytest.raises(ValueError, match="0 sample"):
        PoisonedMLPClassifier().fit(np.empty((0, 3)), np.empty(0))


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score"])
def test_not_fitted(data, method):
    X, y = data
    args = (X, y) if method == "score" else (X,)
    with pytest.raises(NotFittedError):
        getattr(PoisonedMLPClassifier(), method)(*args)


def test_divergence_raises_instead_of_returning_broken_model(data):
    X, y = data
    clf = PoisonedMLPClassifier(
        learning_rate_init=1e12, max_grad_norm=None, max_iter=50, random_state=0
    )
    with pytest.raises(TrainingDivergedError, match="diverged.*learning_rate_init"):
        clf.fit(X * 1e3, y)
    assert not hasattr(clf, "net_")


def test_bad_hidden_layer_sizes(data):
    with pytest.raises(ValueError, match="hidden_layer_sizes must hold positive"):
        PoisonedMLPClassifier(hidden_layer_sizes=(4, 0), max_iter=2).fit(*data)


def test_unavailable_or_unknown_device(data):
    with pytest.raises(ValueError, match="device='nonsense' is not a torch device"):
        PoisonedMLPClassifier(device="nonsense", max_iter=2).fit(*data)


def test_poison_source_with_foreign_labels(data):
    X, y = data

    def sampler(n_samples, random_state=None):
        return np.zeros((n_samples, 3)), np.full(n_samples, 7)

    clf = PoisonedMLPClassifier(poison_factor=1.0, poison_source=sampler, max_iter=2)
    with pytest.raises(ValueError, match="labels that are not among the classes"):
        clf.fit(X, y)


def test_poison_source_with_wrong_shape(data):
    X, y = data

    def sampler(n_samples, random_state=None):
        return np.zeros((n_samples, 5)), np.zeros(n_samples, dtype=int)

    clf = PoisonedMLPClassifier(poison_factor=1.0, poison_source=sampler, max_iter=2)
    with pytest.raises(ValueError, match="points of shape \\(5,\\)"):
        clf.fit(X, y)


@pytest.mark.slow
def test_cnn_image_shape_mismatch():
    X = np.zeros((10, 64))
    y = np.arange(10) % 2
    with pytest.raises(ValueError, match="image_shape must be .* n_features \\(64\\)"):
        PoisonedCNNClassifier(image_shape=(1, 7, 7), max_iter=1).fit(X, y)
    clf = PoisonedCNNClassifier(max_iter=1).fit(X.reshape(10, 1, 8, 8), y)
    with pytest.raises(ValueError, match="images of shape \\(2, 4, 8\\)"):
        clf.predict(np.zeros((2, 2, 4, 8)))
