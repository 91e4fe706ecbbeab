"""Displays: decision regions, margin distributions, sweeps, volume vs gap."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

from flatgen import (  # noqa: E402
    DecisionRegionsDisplay,
    MarginDistributionDisplay,
    MarginPlotter,
    PoisonedMLPClassifier,
    PoisonSweepDisplay,
    VolumeEstimator,
    VolumeGapDisplay,
)

from .conftest import blobs  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


class CountingSVC(SVC):
    """SVC that counts the points passed to predict."""

    n_predicted = 0

    def predict(self, X):
        CountingSVC.n_predicted += len(X)
        return super().predict(X)


@pytest.fixture(scope="module")
def small_nets():
    X, y = blobs(n_samples=60, n_classes=2, seed=1)
    X_test, y_test = blobs(n_samples=60, n_classes=2, seed=2)
    nets = [
        PoisonedMLPClassifier(
            hidden_layer_sizes=(8, 8),
            poison_factor=beta,
            max_iter=150,
            random_state=seed,
        ).fit(X, y)
        for beta in (0.0, 0.5, 2.0)
        for seed in (0, 1)
    ]
    return nets, X, y, X_test, y_test


def test_decision_regions_display_draws_without_recomputing(spirals):
    X_train, X_test, y_train, y_test = spirals
    svc = CountingSVC(kernel="linear").fit(X_train, y_train)
    plotter = MarginPlotter(grid_resolution=40, n_directions=8, random_state=0).fit(
        svc, X_train, y_train, X_test=X_test, y_test=y_test
    )
    before = CountingSVC.n_predicted
    fig, ax = plt.subplots()
    disp = plotter.plot(ax=ax)
    assert isinstance(disp, DecisionRegionsDisplay)
    assert disp.ax_ is ax and disp.figure_ is fig
    xx, yy = np.meshgrid(disp.grid_x, disp.grid_y)
    grid = (
        SVC(kernel="linear")
        .fit(X_train, y_train)
        .predict(np.column_stack([xx.ravel(), yy.ravel()]))
    )
    assert_array_equal(disp.classes[disp.grid_labels], grid.reshape(xx.shape))
    # Misclassified training points get a cross each.
    crosses = [
        c
        for c in ax.collections
        if c.get_offsets().shape[0] == np.sum(~plotter.correct_)
    ]
    assert np.sum(~plotter.correct_) > 0 and crosses
    disp.plot()  # re-plot on a new figure from stored arrays
    assert disp.ax_ is not ax
    assert CountingSVC.n_predicted == before
    assert ax.get_title() == "CountingSVC"


def test_from_estimator_returns_the_fitted_plotter_with_its_display(spirals):
    X_train, _, y_train, _ = spirals
    pipe = make_pipeline(StandardScaler(), SVC()).fit(X_train, y_train)
    fig, ax = plt.subplots()
    plotter = MarginPlotter.from_estimator(
        pipe, X_train, y_train, ax=ax, grid_resolution=20, n_directions=8
    )
    assert plotter.display_.ax_ is ax
    assert plotter.margins_.shape == (len(X_train),)
    assert ax.get_xlabel() and ax.get_ylabel()


def test_margin_distribution_display(spirals):
    X_train, _, y_train, _ = spirals
    plotters = [
        MarginPlotter(n_directions=8, random_state=0, grid_resolution=2).fit(
            SVC(gamma=g).fit(X_train, y_train), X_train, y_train
        )
        for g in (0.1, 10.0)
    ]
    disp = MarginDistributionDisplay.from_plotters(plotters, ["smooth", "wiggly"])
    assert_allclose(disp.medians_, [np.median(p.margins_) for p in plotters])
    fig, ax = plt.subplots()
    assert disp.plot(ax=ax).ax_ is ax and disp.figure_ is fig
    assert ax.get_yscale() == "log"
    ticks = [t.get_text().split("\n")[0] for t in ax.get_xticklabels()]
    assert ticks == ["smooth", "wiggly"]
    disp.plot(kind="ecdf", log_scale=False)
    assert len(disp.artists_) == 2
    assert_array_equal(disp.artists_[0].get_xdata(), np.sort(disp.margins[0]))
    default = MarginDistributionDisplay.from_plotters(plotters)
    assert default.labels == ["SVC", "SVC"]
    with pytest.raises(ValueError, match="one label per model"):
        MarginDistributionDisplay([np.ones(3)], ["a", "b"])
    with pytest.raises(ValueError, match="non-negative"):
        MarginDistributionDisplay([np.array([1.0, -1.0])], ["a"])
    with pytest.raises(ValueError, match="kind must be 'box' or 'ecdf'"):
        disp.plot(kind="violin")
    with pytest.raises(ValueError, match="must be fitted"):
        MarginDistributionDisplay.from_plotters([MarginPlotter()])


def test_poison_sweep_display_from_cv_results():
    X, y = blobs(n_samples=60, n_classes=2, seed=1)
    search = GridSearchCV(
        PoisonedMLPClassifier(hidden_layer_sizes=(8,), max_iter=100, random_state=0),
        {"poison_factor": [1.0, 0.0, 0.3]},
        cv=KFold(2),
        return_train_score=True,
    ).fit(X, y)
    res = search.cv_results_
    disp = PoisonSweepDisplay.from_cv_results(res)
    order = np.argsort(np.asarray(res["param_poison_factor"], dtype=float))
    assert_array_equal(disp.poison_factors, [0.0, 0.3, 1.0])
    assert_allclose(disp.train_scores, res["mean_train_score"][order])
    assert_allclose(disp.test_scores, res["mean_test_score"][order])
    assert_allclose(disp.gaps_, disp.train_scores - disp.test_scores)
    fig, ax = plt.subplots()
    disp.plot(ax=ax)
    assert disp.ax_ is ax and disp.figure_ is fig
    assert set(disp.lines_) == {"train", "test", "gap"}
    assert_allclose(disp.lines_["test"].get_ydata(), disp.test_scores)
    assert ax.get_xscale() == "symlog"
    assert "validation" in disp.lines_["test"].get_label()
    disp.plot(show_gap=False)
    assert set(disp.lines_) == {"train", "test"}
    with pytest.raises(ValueError, match="return_train_score=True"):
        no_train = {k: v for k, v in res.items() if "train" not in k}
        PoisonSweepDisplay.from_cv_results(no_train)
    two_params = dict(res, param_max_iter=np.array([1, 2, 1], dtype=object))
    with pytest.raises(ValueError, match="also varied.*select"):
        PoisonSweepDisplay.from_cv_results(two_params)
    picked = PoisonSweepDisplay.from_cv_results(two_params, select={"max_iter": 1})
    assert_array_equal(picked.poison_factors, [0.3, 1.0])


@pytest.mark.slow
def test_poison_sweep_display_from_estimators(small_nets):
    nets, X, y, X_test, y_test = small_nets
    disp = PoisonSweepDisplay.from_estimators(nets, X, y, X_test, y_test)
    assert_array_equal(disp.poison_factors, [0.0, 0.5, 2.0])
    expected = [
        np.mean([n.score(X_test, y_test) for n in nets[2 * i : 2 * i + 2]])
        for i in range(3)
    ]
    assert_allclose(disp.test_scores, expected)
    pipes = [make_pipeline(StandardScaler(), n) for n in nets[:2]]
    for p in pipes:
        p[0].fit(X)
    disp = PoisonSweepDisplay.from_estimators(pipes, X, y, X_test, y_test)
    assert_array_equal(disp.poison_factors, [0.0])
    with pytest.raises(ValueError, match="one value per poison factor"):
        PoisonSweepDisplay([0, 1], [1.0], [0.5, 0.5])


def test_volume_gap_display(small_nets):
    nets, X, y, X_test, y_test = small_nets
    volumes = [
        VolumeEstimator(n_directions=20, cutoff=[1.0, 2.0], random_state=0).fit(n, X, y)
        for n in nets
    ]
    gaps = [n.score(X, y) - n.score(X_test, y_test) for n in nets]
    disp = VolumeGapDisplay.from_estimators(volumes, gaps)
    assert disp.log10_volumes.shape == (6, 2)
    assert_allclose(disp.log10_volumes[:, 1], [v.log10_volume_[1] for v in volumes])
    assert_array_equal(disp.cutoffs, [1.0, 2.0])
    for j in range(2):
        if np.isfinite(disp.spearman_[j]):
            assert disp.spearman_[j] == pytest.approx(
                spearmanr(gaps, disp.log10_volumes[:, j]).statistic
            )
    fig, ax = plt.subplots()
    disp.plot(ax=ax)
    assert disp.ax_ is ax and disp.figure_ is fig
    assert len(disp.collections_) == 2
    assert_allclose(disp.collections_[0].get_offsets()[:, 1], disp.log10_volumes[:, 0])
    mixed = volumes[:1] + [
        VolumeEstimator(cutoff=3.0, n_directions=5).fit(nets[1], X, y)
    ]
    with pytest.raises(ValueError, match="different cutoffs"):
        VolumeGapDisplay.from_estimators(mixed, gaps[:2])
    with pytest.raises(ValueError, match=r"shape \(n_models, n_cutoffs\)"):
        VolumeGapDisplay([0.1, 0.2], [[1.0, 2.0]], [0.5])
