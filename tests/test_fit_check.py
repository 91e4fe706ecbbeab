"""Fits that miss the method's premise are flagged, never silent."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_moons
from sklearn.exceptions import ConvergenceWarning

from flatgen import PoisonedMLPClassifier
from flatgen.estimators._fit_check import training_fit_report


@pytest.mark.slow
def test_overlapping_classes_poisoned_collapse_is_flagged():
    X, y = make_moons(200, noise=0.3, random_state=0)
    clf = PoisonedMLPClassifier(
        poison_factor=1.0,
        poison_labels="source",
        max_iter=800,
        max_polish_iter=0,
        random_state=0,
    )
    with pytest.warns(ConvergenceWarning, match="collapsed to a .near-.constant"):
        clf.fit(X, y)
    assert clf.collapsed_ and not clf.fitted_training_set_
    proba = clf.predict_proba(X)
    assert np.ptp(proba, axis=0).max() < 0.01
    assert clf.train_accuracy_ == pytest.approx(clf.score(X, y))


def test_a_partial_fit_warns_with_its_accuracy():
    X, y = make_moons(200, noise=0.3, random_state=0)
    clf = PoisonedMLPClassifier(
        (16,), poison_factor=0.0, max_iter=400, max_polish_iter=0, random_state=0
    )
    with pytest.warns(ConvergenceWarning, match=r"fits \d+\.\d% of its training set"):
        clf.fit(X, y)
    assert not clf.collapsed_ and not clf.fitted_training_set_
    assert clf.train_accuracy_ == pytest.approx(clf.score(X, y))


def test_a_perfect_fit_is_recorded_without_warning(recwarn):
    rng = np.random.RandomState(0)
    y = np.arange(60) % 2
    X = rng.normal(scale=0.3, size=(60, 2)) + np.where(y[:, None] == 1, 2.0, -2.0)
    clf = PoisonedMLPClassifier((16,), max_iter=400, random_state=0).fit(X, y)
    assert clf.fitted_training_set_ and clf.train_accuracy_ == 1.0
    assert not clf.collapsed_
    assert not [w for w in recwarn if issubclass(w.category, ConvergenceWarning)]


def test_training_fit_report_on_a_constant_module():
    module = torch.nn.Linear(2, 3)
    with torch.no_grad():
        module.weight.zero_()
        module.bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
    X = torch.randn(10, 2)
    y = torch.arange(10) % 3
    accuracy, spread, n_predicted = training_fit_report(module, X, y, 3)
    assert spread == 0.0 and n_predicted == 1
    assert accuracy == pytest.approx(float((y == 1).double().mean()))
