"""Flatness analyzers on fitted estimators."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import gammaln
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from flatgen import (
    BasinAnalyzer,
    CurvatureAnalyzer,
    LossSlice,
    MarginAnalyzer,
    NormAnalyzer,
    PACBayesAnalyzer,
    PoisonedCNNClassifier,
    PoisonedMLPClassifier,
    RelativeFlatnessAnalyzer,
    SharpnessAnalyzer,
    VolumeEstimator,
    WorstCaseFlatnessAnalyzer,
)
from flatgen.analyzers import log10_ball_volume
from flatgen.landscape import VolumeSaturationWarning

from .conftest import blobs


@pytest.fixture(scope="module")
def fitted():
    X, y = blobs(n_samples=90, n_classes=3)
    clf = PoisonedMLPClassifier(
        hidden_layer_sizes=(16, 16), max_iter=400, random_state=0
    )
    return clf.fit(X, y), X, y


def snapshot(estimator):
    module = estimator.net_.module_
    return (
        [p.detach().clone() for p in module.parameters()],
        [p.requires_grad for p in module.parameters()],
        module.training,
    )


def assert_unchanged(estimator, before):
    params, grads, training = snapshot(estimator)
    assert all(torch.equal(a, b) for a, b in zip(params, before[0]))
    assert grads == before[1] and training == before[2]


@pytest.mark.parametrize(
    "analyzer",
    [
        BasinAnalyzer(
            n_directions=40, cutoff=2, cutoff_type="relative", random_state=0
        ),
        VolumeEstimator(n_directions=40, cutoff=[2, 5], cutoff_type="relative"),
        CurvatureAnalyzer(n_probes=3, random_state=0),
        SharpnessAnalyzer(n_steps=3, random_state=0),
        SharpnessAnalyzer("average", "filter_normalized", n_draws=8),
        PACBayesAnalyzer(n_draws=8, random_state=0),
        WorstCaseFlatnessAnalyzer(n_steps=3, random_state=0),
        NormAnalyzer(),
        RelativeFlatnessAnalyzer(),
    ],
)
def test_analyzers_leave_the_estimator_bit_identical(fitted, analyzer):
    clf, X, y = fitted
    before = snapshot(clf)
    proba = clf.predict_proba(X)
    analyzer.fit(clf, X, y)
    assert_unchanged(clf, before)
    assert_array_equal(clf.predict_proba(X), proba)


def test_basin_radii_are_reproducible_and_seeded(fitted):
    clf, X, y = fitted
    params = {"n_directions": 30, "cutoff": 3, "cutoff_type": "relative"}
    a = BasinAnalyzer(**params, random_state=1).fit(clf, X, y)
    b = BasinAnalyzer(**params, random_state=1).fit(clf, X, y)
    c = BasinAnalyzer(**params, random_state=2).fit(clf, X, y)
    assert_array_equal(a.radii_, b.radii_)
    assert not np.array_equal(a.radii_, c.radii_)
    assert a.radii_.shape == (30,) and np.all(a.radii_ > 0)
    assert a.profile_losses_.shape == (20, 41)
    # The profiles cross the cutoff where the radii say.
    for radius, losses in zip(a.radii_, a.profile_losses_):
        if radius < 1:
            assert (
                np.interp(radius * 0.99, a.profile_distances_, losses) < a.cutoff_ * 1.1
            )


@pytest.mark.slow
def test_n_jobs_does_not_change_results(fitted):
    clf, X, y = fitted
    params = {"n_directions": 300, "cutoff": 2, "cutoff_type": "relative"}
    serial = BasinAnalyzer(**params, random_state=0, n_jobs=1).fit(clf, X, y)
    parallel = BasinAnalyzer(**params, random_state=0, n_jobs=2).fit(clf, X, y)
    assert_array_equal(serial.radii_, parallel.radii_)


def test_log10_ball_volume_matches_closed_form():
    # Ball of radius 0.5 in 7 dimensions: all radii equal.
    n, r = 7, 0.5
    exact = (n / 2 * np.log(np.pi) - gammaln(n / 2 + 1) + n * np.log(r)) / np.log(10)
    assert_allclose(log10_ball_volume(np.full(10, r), n), exact)
    # Huge n stays finite: the largest radius dominates.
    big = log10_ball_volume([0.1, 0.2], 100_000)
    assert np.isfinite(big)


def test_volume_estimator_reports_uncertainty(fitted):
    clf, X, y = fitted
    vol = VolumeEstimator(
        n_directions=60, cutoff=[2, 5], cutoff_type="relative", random_state=0
    ).fit(clf, X, y)
    assert vol.radii_.shape == (2, 60)
    # A larger cutoff gives a larger basin.
    assert vol.log10_volume_[1] > vol.log10_volume_[0]
    assert np.all(vol.log10_volume_ci_[:, 0] <= vol.log10_volume_)
    assert np.all(vol.log10_volume_ <= vol.log10_volume_ci_[:, 1] + 1e-9)
    assert vol.radius_quantiles_.shape == (2, 5)
    assert vol.n_dims_ == 2 * 16 + 16 * 16 + 16 * 3
    assert vol.log10_volume_tolerance_ == pytest.approx(vol.n_dims_ * 1e-6 / np.log(10))
    assert_allclose(vol.capped_fraction_, vol.capped_.mean(axis=1))
    assert_allclose(vol.log10_volume_raw_, vol.log10_volume_ + vol.log10_scale_det_)
    if vol.saturated_[0]:
        assert np.isnan(vol.score_)
    else:
        assert vol.score_ == vol.log10_volume_[0]


def test_saturated_volume_warns_and_cannot_win_a_search(fitted):
    clf, X, y = fitted
    with pytest.warns(VolumeSaturationWarning, match="only a lower bound"):
        vol = VolumeEstimator(
            n_directions=20,
            cutoff=5,
            cutoff_type="relative",
            max_radius=1e-6,
            random_state=0,
        ).fit(clf, X, y)
    assert vol.capped_fraction_[0] == 1.0 and vol.saturated_[0]
    assert np.isnan(vol.score_)
    assert any("search cap" in message for message in vol.warnings_)
    # Every radius is the cap itself.
    assert_allclose(vol.radii_, vol.radii_.max())


@pytest.mark.slow
def test_analyzers_as_grid_search_scorers():
    X, y = blobs(n_samples=60, n_classes=2)
    search = GridSearchCV(
        PoisonedMLPClassifier(hidden_layer_sizes=(8,), max_iter=200, random_state=0),
        {"poison_factor": [0.0, 0.5]},
        scoring={
            "accuracy": "accuracy",
            # These small nets have flat directions that reach the cap on most
            # rays; accept that here to check the scorer plumbing.
            "log_volume": VolumeEstimator(
                n_directions=20,
                cutoff=3,
                cutoff_type="relative",
                random_state=0,
                max_capped_fraction=1.0,
            ),
            "radius": BasinAnalyzer(
                n_directions=20, cutoff=3, cutoff_type="relative", random_state=0
            ),
        },
        refit=False,
        cv=2,
        return_train_score=True,
    ).fit(X, y)
    assert np.all(np.isfinite(search.cv_results_["mean_train_log_volume"]))
    assert np.all(search.cv_results_["mean_train_radius"] > 0)


@pytest.mark.slow
def test_pipelines_and_cnns_are_supported():
    X, y = blobs(n_samples=60)
    pipe = make_pipeline(
        StandardScaler(), PoisonedMLPClassifier(hidden_layer_sizes=(8,), max_iter=200)
    ).fit(X, y)
    assert BasinAnalyzer(10, 2, "relative", random_state=0)(pipe, X, y) > 0
    rng = np.random.RandomState(0)
    images, labels = rng.rand(40, 1, 6, 6), np.arange(40) % 2
    cnn = PoisonedCNNClassifier(
        conv_channels=(3,), hidden_layer_sizes=(8,), max_iter=50
    )
    cnn.fit(images, labels)
    before = snapshot(cnn)
    basin = BasinAnalyzer(10, 2, "relative", random_state=0).fit(cnn, images, labels)
    assert np.all(basin.radii_ > 0)
    assert_unchanged(cnn, before)


def test_errors(fitted):
    clf, X, y = fitted
    with pytest.raises(NotFittedError):
        BasinAnalyzer().fit(PoisonedMLPClassifier(), X, y)
    svc = SVC().fit(X, y)
    with pytest.raises(TypeError, match="torch network classifier .* got SVC"):
        BasinAnalyzer().fit(svc, X, y)
    with pytest.raises(ValueError, match="X has 3 features"):
        BasinAnalyzer().fit(clf, np.c_[X, X[:, :1]], y)
    with pytest.raises(ValueError, match="labels the estimator was not fitted on"):
        BasinAnalyzer().fit(clf, X, y + 10)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        BasinAnalyzer().fit(clf, X, y[:-1])
    with pytest.raises(ValueError, match="already reaches cutoff"):
        BasinAnalyzer(cutoff=1e-12).fit(clf, X, y)
    with pytest.raises(ValueError, match="'n_directions' parameter"):
        BasinAnalyzer(n_directions=0).fit(clf, X, y)
    with pytest.raises(ValueError, match="relative cutoff .* must exceed 1"):
        VolumeEstimator(cutoff=0.5, cutoff_type="relative").fit(clf, X, y)


def test_non_finite_loss_is_reported(fitted):
    clf, X, y = fitted
    broken = PoisonedMLPClassifier(hidden_layer_sizes=(16, 16), max_iter=5).fit(X, y)
    with torch.no_grad():
        next(broken.net_.module_.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="not finite"):
        BasinAnalyzer(cutoff=10).fit(broken, X, y)


def test_curvature_is_positive_at_a_minimum(fitted):
    clf, X, y = fitted
    curv = CurvatureAnalyzer(n_probes=20, random_state=0).fit(clf, X, y)
    assert curv.top_eigenvalue_ > 0
    assert curv.trace_ > 0
    raw = CurvatureAnalyzer(filter_normalized=False, n_probes=0, random_state=0)
    assert np.isnan(raw.fit(clf, X, y).trace_)


def test_basin_display_draws_saved_arrays_without_recomputing(fitted):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flatgen import BasinDisplay

    clf, X, y = fitted
    basin = BasinAnalyzer(n_directions=12, cutoff=3, cutoff_type="relative")
    basin.set_params(n_profiles=5, random_state=0).fit(clf, X, y)
    fig, ax = plt.subplots()
    display = basin.plot(ax=ax)
    assert display.ax_ is ax and display.figure_ is fig
    assert len(display.lines_) == 5
    assert_allclose(display.lines_[0].get_ydata(), basin.profile_losses_[0])
    # A display rebuilt from plain arrays draws the same curves.
    again = BasinDisplay(
        basin.profile_distances_, basin.profile_losses_, basin.radii_, basin.cutoff_
    ).plot()
    assert_allclose(again.lines_[2].get_xdata(), basin.profile_distances_)
    assert ax.get_yscale() == "log"
    labelled = basin.plot(label="clean")
    assert labelled.lines_[0].get_label() == "clean"
    assert labelled.ax_.get_legend() is not None
    plt.close("all")


def test_public_network_access_matches_prediction(fitted):
    clf, X, y = fitted
    inputs = clf.network_inputs(X)
    assert inputs.dtype == np.float32 and inputs.shape == X.shape
    with torch.no_grad():
        logits = clf.module_(torch.as_tensor(inputs)).numpy()
    assert_array_equal(clf.classes_[logits.argmax(1)], clf.predict(X))
    assert_array_equal(clf.classes_[clf.encode_labels(y)], y)
    assert clf.encode_labels(y).dtype == np.int64
    with pytest.raises(ValueError, match=r"not fitted on: \[7\]"):
        clf.encode_labels(np.array([0, 7]))
    unfitted = PoisonedMLPClassifier()
    for access in (
        lambda: unfitted.module_,
        lambda: unfitted.network_inputs(X),
        lambda: unfitted.encode_labels(y),
    ):
        with pytest.raises(NotFittedError):
            access()


def test_analyzers_use_only_public_estimator_access():
    # The estimators' private hooks and the skorch net behind them may
    # change; analyzers must go through module_, network_inputs and
    # encode_labels.
    from pathlib import Path

    import flatgen.analyzers
    import flatgen.landscape

    paths = [
        *Path(flatgen.analyzers.__file__).parent.glob("*.py"),
        *Path(flatgen.landscape.__file__).parent.glob("*.py"),
    ]
    assert any(path.name == "_models.py" for path in paths)
    for path in paths:
        text = path.read_text()
        for private in ("._prepare_X", ".net_.", "._logits", "._trainer"):
            assert private not in text, f"{path.name} uses {private}"


def test_analysis_seeds_are_shared_across_analyzers(fitted):
    from flatgen.analyzers._seeds import analysis_seeds
    from flatgen.landscape import TrainingObjective

    clf, X, y = fitted
    (seed,) = analysis_seeds(3)
    assert analysis_seeds(3, 2)[0] == seed
    landscape = TrainingObjective.from_model(clf, X, y)
    first_two = landscape.directions(2, seed).numpy()
    plane = LossSlice(n_dims=2, grid_resolution=3, random_state=3).fit(clf, X, y)
    assert_array_equal(plane.directions_, first_two)
    # Chunked draws give the same vectors.
    assert_array_equal(landscape.directions(1, seed, start=1).numpy(), first_two[1:])


@pytest.mark.parametrize(
    "analyzer, attribute",
    [
        (SharpnessAnalyzer(n_steps=5), "sharpness_"),
        (SharpnessAnalyzer("average", n_draws=16), "sharpness_"),
        (PACBayesAnalyzer(n_draws=16), "flatness_"),
        (WorstCaseFlatnessAnalyzer(n_steps=3, scale="adaptive"), "flatness_"),
        (NormAnalyzer("log10_path_norm"), "log10_path_norm_"),
    ],
)
def test_sharpness_and_norm_scorers_are_seeded(fitted, analyzer, attribute):
    clf, X, y = fitted
    first = (
        analyzer.set_params(random_state=4)
        if "random_state" in (analyzer.get_params())
        else analyzer
    )
    value = getattr(first.fit(clf, X, y), attribute)
    # Measures of sharpness score their negative: larger is flatter.
    assert np.isfinite(value) and first.score_ == -value
    # The scorer returns the same number from a fresh clone.
    assert first(clf, X, y) == -value


def test_pac_bayes_search_that_never_crosses_warns(fitted):
    from sklearn.exceptions import ConvergenceWarning

    clf, X, y = fitted
    with pytest.warns(ConvergenceWarning, match="sigma_ is only a lower bound"):
        pac = PACBayesAnalyzer(bound=1e6, sigma_max=0.01, n_draws=4).fit(clf, X, y)
    assert pac.capped_ and pac.sigma_ == 0.01


def test_worst_case_flatness_that_never_crosses_warns(fitted):
    from sklearn.exceptions import ConvergenceWarning

    clf, X, y = fitted
    with pytest.warns(ConvergenceWarning, match="radius_ is only a lower bound"):
        flat = WorstCaseFlatnessAnalyzer(bound=1e6, radius_max=0.01, n_steps=2)
        flat.fit(clf, X, y)
    assert flat.capped_ and flat.radius_ == 0.01 and flat.flatness_ == 1e4
    # Not capped: the search ends where the ascent's sharpness meets the bound.
    flat = WorstCaseFlatnessAnalyzer(n_steps=3, random_state=0).fit(clf, X, y)
    at = SharpnessAnalyzer(radius=flat.radius_, scale="raw", n_steps=3, random_state=0)
    beyond = clone(at).set_params(radius=1.01 * flat.radius_)
    assert at.fit(clf, X, y).sharpness_ <= 0.1 < beyond.fit(clf, X, y).sharpness_


SCORERS = {
    "basin": BasinAnalyzer(n_directions=50, cutoff=0.5, random_state=0),
    "curvature": CurvatureAnalyzer(random_state=0),
    "sharpness": SharpnessAnalyzer(random_state=0),
    "pac_bayes": PACBayesAnalyzer(random_state=0),
    "worst_case_flatness": WorstCaseFlatnessAnalyzer(random_state=0),
    "fisher_rao": NormAnalyzer(norm="fisher_rao"),
    "margin": MarginAnalyzer(random_state=0),
    "relative_flatness": RelativeFlatnessAnalyzer(),
}


@pytest.mark.parametrize("name", list(SCORERS))
def test_every_flatness_scorer_says_larger_is_flatter(
    spirals, clean_and_poisoned, name
):
    X_train, _, y_train, _ = spirals
    scorer = SCORERS[name]
    clean, poisoned = clean_and_poisoned[0.0], clean_and_poisoned[1.0]
    # The paper's pair: the clean minimum is the flatter by every measure.
    assert scorer(clean, X_train, y_train) > scorer(poisoned, X_train, y_train)


@pytest.mark.slow
def test_grid_search_scored_by_curvature_picks_the_flattest_model():
    X, y = blobs(n_samples=60, n_classes=2)
    everything = [(np.arange(60), np.arange(60))]  # score on the training set
    search = GridSearchCV(
        PoisonedMLPClassifier(hidden_layer_sizes=(8,), max_iter=150, random_state=0),
        {"poison_factor": [0.0, 1.0]},
        scoring=CurvatureAnalyzer(random_state=0),
        cv=everything,
    ).fit(X, y)
    eigenvalues = []
    for params in search.cv_results_["params"]:
        model = clone(search.estimator).set_params(**params).fit(X, y)
        curvature = CurvatureAnalyzer(random_state=0).fit(model, X, y)
        eigenvalues.append(curvature.top_eigenvalue_)
    assert search.best_index_ == int(np.argmin(eigenvalues))
    assert_allclose(search.cv_results_["mean_test_score"], -np.asarray(eigenvalues))
