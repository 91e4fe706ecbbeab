"""Every single-model display: from_estimator(model, X, y, **params) measures,
from_analyzer(fitted analyzer) draws what was measured; the two agree."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from flatgen import (
    BasinAnalyzer,
    BasinDisplay,
    DecisionRegionsDisplay,
    LossSlice,
    LossSliceDisplay,
    MarginPlotter,
    PerturbationAnimation,
    PerturbationPath,
    PoisonedMLPClassifier,
    VolumeConvergenceDisplay,
    VolumeEstimator,
)

from .conftest import blobs


@pytest.fixture(scope="module")
def fitted():
    X, y = blobs(n_samples=60, n_classes=2)
    clf = PoisonedMLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0)
    return clf.fit(X, y), X, y


CASES = [
    (BasinDisplay, BasinAnalyzer, {"n_directions": 8, "cutoff": 0.5}, "losses"),
    (LossSliceDisplay, LossSlice, {"n_dims": 2, "resolution": 5}, "losses"),
    (
        VolumeConvergenceDisplay,
        VolumeEstimator,
        {"n_directions": 16, "cutoff": 0.5, "max_radius": 100},
        "log10_volume",
    ),
    (DecisionRegionsDisplay, MarginPlotter, {"grid_resolution": 20}, "grid_labels"),
    (PerturbationAnimation, PerturbationPath, {"n_frames": 4}, "losses"),
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "display, analyzer, params, attribute",
    CASES,
    ids=[display.__name__ for display, *_ in CASES],
)
def test_from_estimator_draws_what_the_analyzer_measures(
    fitted, display, analyzer, params, attribute
):
    clf, X, y = fitted
    if analyzer is not MarginPlotter:
        params = {**params, "random_state": 0}
    direct = display.from_estimator(clf, X, y, **params)
    fitted_analyzer = analyzer(**params).fit(clf, X, y)
    if display is PerturbationAnimation:
        via = display.from_analyzer(fitted_analyzer, X, y)
    else:
        via = display.from_analyzer(fitted_analyzer)
    assert type(direct) is display
    assert_array_equal(getattr(direct, attribute), getattr(via, attribute))
    assert np.size(getattr(direct, attribute)) > 1


def test_volume_display_from_a_fitted_estimator_still_works_with_a_warning(fitted):
    clf, X, y = fitted
    volume = VolumeEstimator(
        n_directions=16, cutoff=0.5, max_radius=100, random_state=0
    )
    volume.fit(clf, X, y)
    with pytest.warns(FutureWarning, match="from_analyzer"):
        old = VolumeConvergenceDisplay.from_estimator(volume)
    assert_array_equal(
        old.log10_volume, VolumeConvergenceDisplay.from_analyzer(volume).log10_volume
    )


def test_decision_regions_from_plotter_is_from_analyzer(fitted):
    clf, X, y = fitted
    plotter = MarginPlotter(grid_resolution=20).fit(clf, X, y)
    assert_array_equal(
        DecisionRegionsDisplay.from_plotter(plotter).grid_labels,
        DecisionRegionsDisplay.from_analyzer(plotter).grid_labels,
    )
