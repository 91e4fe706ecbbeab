"""One convention per kind of thing: display constructors and parameter names.

Every single-model display: from_estimator(model, X, y, **params) measures,
from_analyzer(fitted analyzer) draws what was measured; the two agree. Renamed
analyzer parameters keep working under their former names, with a warning.
"""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from flatgen import (
    BasinAnalyzer,
    BasinDisplay,
    CurvatureAnalyzer,
    DecisionRegionsDisplay,
    LossSlice,
    LossSliceDisplay,
    MarginPlotter,
    PACBayesAnalyzer,
    PerturbationAnimation,
    PerturbationPath,
    PoisonedMLPClassifier,
    SharpnessAnalyzer,
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
    (LossSliceDisplay, LossSlice, {"n_dims": 2, "grid_resolution": 5}, "losses"),
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


@pytest.mark.parametrize(
    "make, old, new, value",
    [
        (lambda **p: LossSlice(n_dims=1, **p), "resolution", "grid_resolution", 5),
        (
            lambda **p: CurvatureAnalyzer(n_iter=20, **p),
            "n_trace_samples",
            "n_probes",
            3,
        ),
        (lambda **p: SharpnessAnalyzer("average", **p), "n_samples", "n_draws", 4),
        (lambda **p: PACBayesAnalyzer(**p), "n_samples", "n_draws", 4),
    ],
)
def test_renamed_parameters_still_work_with_a_warning(fitted, make, old, new, value):
    clf, X, y = fitted
    current = make(**{new: value}, random_state=0).fit(clf, X, y)
    with pytest.warns(FutureWarning, match=f"'{old}' parameter was renamed '{new}'"):
        former = make(**{old: value}, random_state=0).fit(clf, X, y)
    for name, found in vars(current).items():
        if name.endswith("_") and not name.startswith("_"):
            assert_array_equal(np.asarray(vars(former)[name]), np.asarray(found))


def test_plotting_imports_neither_torch_nor_the_engine():
    # Figures are redrawn from saved results: the displays import what
    # measures (analyzers, torch) only when from_estimator measures.
    import subprocess
    import sys

    code = (
        "import sys, flatgen.plotting; "
        "print('torch' in sys.modules, 'flatgen.landscape' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]
