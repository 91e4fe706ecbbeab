"""sample_weight, warm_start, early stopping and the loss's fast path."""

import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from flatgen import PoisonedCNNClassifier, PoisonedMLPClassifier
from flatgen.estimators._training import PoisonTrainer
from flatgen.estimators._weights import canonical_training_set
from flatgen.poison import poison_loss

from .conftest import blobs

FAST = {"hidden_layer_sizes": (16, 16), "max_iter": 150, "random_state": 0}


def quiet_fit(clf, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(*args, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("poison_factor", [0.0, 0.5])
def test_integer_weights_equal_repeated_rows_bit_for_bit(spirals, poison_factor):
    X, _, y, _ = spirals
    weights = np.random.RandomState(1).randint(0, 4, len(y))
    order = np.random.RandomState(2).permutation(len(y))
    params = dict(FAST, poison_factor=poison_factor)
    repeated = quiet_fit(
        PoisonedMLPClassifier(**params), X.repeat(weights, 0), y.repeat(weights)
    )
    weighted = quiet_fit(
        PoisonedMLPClassifier(**params),
        X[order],
        y[order],
        sample_weight=weights[order],
    )
    assert_array_equal(repeated.predict_proba(X), weighted.predict_proba(X))
    assert_array_equal(repeated.loss_curve_, weighted.loss_curve_)


@pytest.mark.slow
def test_weights_change_the_fit(spirals):
    X, _, y, _ = spirals
    weights = np.where(y == 1, 5.0, 1.0)
    plain = quiet_fit(PoisonedMLPClassifier(**FAST), X, y)
    weighted = quiet_fit(PoisonedMLPClassifier(**FAST), X, y, sample_weight=weights)
    assert not np.array_equal(plain.predict_proba(X), weighted.predict_proba(X))
    # A heavy class is predicted more often.
    assert (weighted.predict(X) == 1).mean() > (plain.predict(X) == 1).mean()


def test_canonical_rows_merge_duplicates_and_drop_zero_weights():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [1.0, 0.0]])
    y = np.array([0, 1, 0, 1, 1])
    w = np.array([1.0, 2.0, 3.0, 0.0, 1.0])
    X_c, y_c, w_c = canonical_training_set(X, y, w)
    # Sorted by label, then features; the (1, 0) rows of class 0 merged.
    assert_array_equal(X_c, [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert_array_equal(y_c, [0, 1, 1])
    assert_array_equal(w_c, [4.0, 2.0, 1.0])


def test_class_with_zero_total_weight_is_not_learned():
    X, y = blobs()
    weights = np.where(y == 2, 0.0, 1.0)
    clf = quiet_fit(PoisonedMLPClassifier(**FAST), X, y, sample_weight=weights)
    assert_array_equal(clf.classes_, [0, 1])


def test_weighted_poison_draws_follow_the_weights():
    from flatgen.poison import JitterSource

    X = torch.tensor([[0.0], [10.0], [20.0]])
    y = torch.tensor([0, 1, 0])
    w = torch.tensor([1.0, 0.0, 3.0])
    gen = torch.Generator().manual_seed(0)
    source = JitterSource(X, y, w, 2, 1000, 1e-3, gen)
    points, labels, _ = source.draw(4)
    sources = points.round().flatten()
    assert not bool((sources == 10).any())
    share = float((sources == 20).double().mean())
    assert 0.7 < share < 0.8  # 3 / (1 + 3)


@pytest.mark.slow
def test_warm_start_continues_from_the_fitted_weights(spirals):
    X, _, y, _ = spirals
    first = quiet_fit(PoisonedMLPClassifier(**FAST, warm_start=True), X, y)
    weights_after_first = [p.detach().clone() for p in first.net_.module_.parameters()]
    curve_first = first.loss_curve_.copy()
    quiet_fit(first, X, y)
    assert first.n_iter_ == 2 * FAST["max_iter"]
    assert len(first.loss_curve_) == 2 * len(curve_first)
    assert_array_equal(first.loss_curve_[: len(curve_first)], curve_first)
    # The second fit starts where the first ended, not from a fresh init.
    assert first.loss_curve_[len(curve_first)] < curve_first[0] * 0.8
    moved = [p.detach() for p in first.net_.module_.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(weights_after_first, moved))
    cold = quiet_fit(PoisonedMLPClassifier(**FAST), X, y)
    assert cold.n_iter_ == FAST["max_iter"]


def test_warm_start_refuses_new_classes():
    X, y = blobs(n_classes=3)
    clf = quiet_fit(PoisonedMLPClassifier(**FAST, warm_start=True), X, y)
    with pytest.raises(ValueError, match="warm_start can only continue"):
        clf.fit(X, np.where(y == 2, 3, y))


@pytest.mark.parametrize(
    "change",
    [{"hidden_layer_sizes": (16, 4)}, {"activation": "tanh"}],
    ids=["layers", "activation"],
)
def test_warm_start_refuses_a_changed_architecture(change):
    X, y = blobs()
    clf = quiet_fit(PoisonedMLPClassifier(**FAST, warm_start=True), X, y)
    weights = [p.detach().clone() for p in clf.module_.parameters()]
    rng_state = torch.get_rng_state()
    with pytest.raises(ValueError, match="architecture parameters changed"):
        clf.set_params(**change).fit(X, y)
    # Nothing was trained, and checking drew no weights from torch's RNG.
    assert all(torch.equal(a, b) for a, b in zip(weights, clf.module_.parameters()))
    assert torch.equal(rng_state, torch.get_rng_state())
    # Other parameters may change between warm fits.
    clf.set_params(hidden_layer_sizes=(16, 16), activation="relu", max_iter=10)
    assert quiet_fit(clf, X, y).n_iter_ == 160


def test_warm_start_of_a_cnn_refuses_new_channels():
    images, labels = np.random.RandomState(0).rand(20, 1, 6, 6), np.arange(20) % 2
    cnn = PoisonedCNNClassifier(
        conv_channels=(3,), hidden_layer_sizes=(8,), max_iter=5, warm_start=True
    )
    quiet_fit(cnn, images, labels)
    with pytest.raises(ValueError, match="architecture parameters changed"):
        cnn.set_params(conv_channels=(4,)).fit(images, labels)


@pytest.mark.slow
def test_early_stopping_keeps_the_best_block():
    X, y = blobs(n_samples=300)
    clf = quiet_fit(
        PoisonedMLPClassifier(
            hidden_layer_sizes=(16,),
            max_iter=4000,
            early_stopping=True,
            n_iter_no_change=3,
            random_state=0,
        ),
        X,
        y,
    )
    assert clf.stopped_early_
    assert clf.n_iter_ < 4000
    # Stopped short of fitting every training row: the warning says why.
    assert clf.train_accuracy_ < 1
    with pytest.warns(ConvergenceWarning, match="Early stopping ended the fit"):
        clone(clf).fit(X, y)
    assert len(clf.validation_scores_) == len(clf.loss_curve_)
    assert clf.best_validation_score_ == clf.validation_scores_.max()
    assert clf.best_validation_score_ > 0.75


def test_early_stopping_off_records_nothing(spirals):
    X, _, y, _ = spirals
    clf = quiet_fit(PoisonedMLPClassifier(**FAST), X, y)
    assert clf.validation_scores_ is None and not clf.stopped_early_


def test_early_stopping_on_too_few_rows_says_which_parameter():
    X, y = blobs(n_samples=6)
    clf = PoisonedMLPClassifier(**FAST, early_stopping=True, validation_fraction=0.9)
    with pytest.raises(ValueError, match="validation_fraction"):
        clf.fit(X, y)


@pytest.mark.slow
def test_cnn_takes_sample_weight():
    rng = np.random.RandomState(0)
    X = rng.rand(40, 1, 4, 4).astype(np.float32)
    y = np.arange(40) % 2
    clf = quiet_fit(
        PoisonedCNNClassifier(conv_channels=(2,), hidden_layer_sizes=(4,), max_iter=20),
        X,
        y,
        sample_weight=np.arange(40) % 3,
    )
    assert clf.predict(X).shape == (40,)


@pytest.mark.parametrize("kind", ["reverse", "random"])
def test_binary_fast_path_equals_the_general_objective(kind):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(30, 3, generator=gen)
    y = torch.randint(0, 2, (30,), generator=gen)
    w = torch.rand(30, generator=gen)
    module = torch.nn.Linear(3, 2)
    trainer = PoisonTrainer(
        X,
        y,
        w,
        n_epochs=1,
        batch_size=None,
        poison_factor=0.7,
        poison_kind=kind,
        poison_source=None,
        learning_rate="constant",
        learning_rate_init=0.1,
        max_grad_norm=None,
        generator=gen,
        n_classes=2,
    )
    X_p = torch.randn(12, 3, generator=gen)
    y_p = torch.randint(0, 2, (12,), generator=gen)
    inputs = torch.cat([X, X_p])
    weight = w / w.sum()
    for train_weight in (1.0, 3.0):
        fast = trainer.loss(module, inputs, y, weight, (y_p, 1 - y_p), train_weight)
        logits = module(inputs)
        ce = torch.nn.functional.cross_entropy(logits[:30], y, reduction="none")
        general = train_weight * (ce * weight).sum() + 0.7 * poison_loss(
            logits[30:], y_p, 1 - y_p, kind
        )
        torch.testing.assert_close(fast, general, rtol=1e-6, atol=1e-7)
