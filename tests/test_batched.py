"""Many networks trained together: each result is an ordinary, equivalent fit."""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.base import clone

from flatgen import (
    BatchedPoisonFitter,
    PoisonedCNNClassifier,
    PoisonedMLPClassifier,
    make_spirals,
)


@pytest.fixture(scope="module")
def data():
    return make_spirals(120, noise=0.5, random_state=0)


def _net(**params):
    defaults = {
        "hidden_layer_sizes": (16, 16),
        "solver": "adam",
        "max_iter": 200,
        "max_polish_iter": 50,
    }
    return PoisonedMLPClassifier(**{**defaults, **params})


def test_clean_models_match_separate_fits(data):
    X, y = data
    # Weight decay and a step size per model, as a separate fit has them.
    nets = [
        _net(random_state=0, alpha=1e-3),
        _net(random_state=1, alpha=1e-3, learning_rate_init=0.003),
    ]
    batched = BatchedPoisonFitter(nets).fit(X, y).estimators_
    for template, fitted in zip(nets, batched):
        alone = clone(template).fit(X, y)
        # No poison draws: the same arithmetic, summed in another order.
        assert_allclose(fitted.predict_proba(X), alone.predict_proba(X), atol=1e-4)
        assert_allclose(fitted.loss_curve_, alone.loss_curve_, rtol=1e-4)
        assert fitted.n_iter_ == alone.n_iter_
        assert fitted.train_accuracy_ == alone.train_accuracy_
    # The templates are not touched.
    assert not hasattr(nets[0], "net_")


def test_sgd_with_momentum_matches_separate_fits(data):
    X, y = data
    nets = [
        _net(solver="sgd", momentum=0.9, learning_rate_init=0.05, random_state=s)
        for s in (3, 4)
    ]
    batched = BatchedPoisonFitter(nets).fit(X, y).estimators_
    for template, fitted in zip(nets, batched):
        alone = clone(template).fit(X, y)
        assert_allclose(fitted.loss_curve_, alone.loss_curve_, rtol=1e-4)


def test_poisoned_models_are_ordinary_fitted_estimators(data, tmp_path):
    X, y = data
    nets = [_net(poison_factor=f, random_state=0) for f in (0.0, 0.3, 1.0)]
    batched = BatchedPoisonFitter(nets).fit(X, y).estimators_
    for template, fitted in zip(nets, batched):
        alone = clone(template).fit(X, y)
        assert fitted.poison_factor == template.poison_factor
        assert len(fitted.loss_curve_) == len(alone.loss_curve_)
        # Own poison draws, same objective: the losses start alike.
        assert_allclose(fitted.loss_curve_[:5], alone.loss_curve_[:5], rtol=0.05)
        for name in ("train_accuracy_", "collapsed_", "n_polish_iter_", "n_iter_"):
            assert hasattr(fitted, name)
        restored = pickle.loads(pickle.dumps(fitted))
        assert_allclose(restored.predict_proba(X), fitted.predict_proba(X))


def test_only_seed_step_size_and_poison_factor_may_differ(data):
    X, y = data
    with pytest.raises(ValueError, match=r"differs from estimators\[0\] in \['hidden"):
        BatchedPoisonFitter([_net(), _net(hidden_layer_sizes=(8,))]).fit(X, y)
    with pytest.raises(ValueError, match="sets early_stopping=True"):
        BatchedPoisonFitter([_net(early_stopping=True)]).fit(X, y)
    with pytest.raises(TypeError, match="PoisonedMLPClassifier only"):
        BatchedPoisonFitter([PoisonedCNNClassifier()]).fit(X, y)
    with pytest.raises(ValueError, match="at least one estimator"):
        BatchedPoisonFitter([]).fit(X, y)
    assert np.unique(y).size == 2
