"""MarginPlotter: input-space margins of any classifier."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import make_blobs
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils._param_validation import InvalidParameterError

from flatgen import MarginPlotter, PoisonedMLPClassifier

from .conftest import blobs


def linear_svc(n_features, seed=0):
    X, y = make_blobs(
        80, n_features=n_features, centers=2, cluster_std=1.5, random_state=seed
    )
    return SVC(kernel="linear").fit(X, y), X, y


def exact_linear_margins(svc, X):
    return np.abs(svc.decision_function(X)) / np.linalg.norm(svc.coef_)


@pytest.mark.parametrize("n_features", [2, 5])
@pytest.mark.parametrize("method", ["auto", "search"])
def test_linear_svc_margins_equal_the_closed_form(n_features, method):
    svc, X, y = linear_svc(n_features)
    plotter = MarginPlotter(method, random_state=0).fit(svc, X, y)
    assert plotter.method_ == ("exact" if method == "auto" else "search")
    expected = exact_linear_margins(svc, X)
    assert_allclose(plotter.margins_, expected, rtol=0.01)
    # The search only ever finds real points of the other class: upper bounds.
    assert np.all(plotter.margins_ >= expected * (1 - 1e-6))
    assert not plotter.capped_.any()
    assert plotter.median_margin_ == pytest.approx(np.median(plotter.margins_))


def test_multiclass_search_matches_the_distance_to_the_argmax_polytope():
    # For argmax of affine scores, a point's distance to its region's boundary
    # is min_j (f_c - f_j) / ||w_c - w_j||: an independent exact reference.
    X, y = blobs(n_samples=90, n_classes=3)
    clf = LogisticRegression(C=10).fit(X, y)
    scores = clf.decision_function(X)
    own = np.argmax(scores, axis=1)
    expected = np.full(len(X), np.inf)
    for j in range(3):
        gap = scores[np.arange(len(X)), own] - scores[:, j]
        norm = np.linalg.norm(clf.coef_[own] - clf.coef_[j], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):  # own == j rows
            expected = np.where(own == j, expected, np.minimum(expected, gap / norm))
    plotter = MarginPlotter(random_state=0).fit(clf, X, y)
    assert plotter.method_ == "search"
    assert_allclose(plotter.margins_, expected, rtol=0.01)


def test_pipelines_are_measured_in_their_input_space():
    svc, X, y = linear_svc(2)
    X = X * [1.0, 10.0]  # a scaler in the pipeline bends raw-space distances
    pipe = make_pipeline(StandardScaler(), SVC(kernel="linear")).fit(X, y)
    plotter = MarginPlotter(random_state=0).fit(pipe, X, y)
    assert plotter.method_ == "search"
    scaler, model = pipe[0], pipe[-1]
    w_raw = model.coef_.ravel() / scaler.scale_
    expected = np.abs(pipe.decision_function(X)) / np.linalg.norm(w_raw)
    assert_allclose(plotter.margins_, expected, rtol=0.01)
    assert plotter.estimator_name_ == "SVC"


def test_method_exact_needs_a_binary_linear_model():
    X, y = make_blobs(60, centers=2, random_state=0)
    rbf = SVC().fit(X, y)
    with pytest.raises(ValueError, match="method='exact' needs a binary linear"):
        MarginPlotter("exact").fit(rbf, X, y)


class FlatImageClassifier(ClassifierMixin, BaseEstimator):
    """Nearest-centroid classifier on images of shape (1, 2, 2)."""

    def fit(self, X, y):
        X = np.asarray(X).reshape(len(X), -1)
        self.classes_ = np.unique(y)
        self.centroids_ = np.stack([X[y == c].mean(axis=0) for c in self.classes_])
        return self

    def predict(self, X):
        X = np.asarray(X)
        assert X.shape[1:] == (1, 2, 2)
        distances = ((X.reshape(len(X), 1, -1) - self.centroids_) ** 2).sum(-1)
        return self.classes_[np.argmin(distances, axis=1)]


def test_any_number_of_features_and_image_shaped_input():
    rng = np.random.RandomState(0)
    y = np.arange(40) % 2
    X = (rng.standard_normal((40, 4)) + 3 * y[:, None]).reshape(40, 1, 2, 2)
    clf = FlatImageClassifier().fit(X, y)
    plotter = MarginPlotter(random_state=0).fit(clf, X, y)
    # Nearest centroid: the boundary is the bisecting hyperplane.
    c0, c1 = clf.centroids_
    flat = X.reshape(40, -1)
    expected = np.abs((flat - (c0 + c1) / 2) @ (c1 - c0)) / np.linalg.norm(c1 - c0)
    assert_allclose(plotter.margins_, expected, rtol=0.01)
    assert plotter.grid_labels_ is None
    with pytest.raises(ValueError, match="2 features.*margins_"):
        plotter.plot()


@pytest.mark.slow
def test_margins_are_reproducible_and_leave_the_estimator_unchanged(spirals):
    X_train, X_test, y_train, y_test = spirals
    clf = PoisonedMLPClassifier(
        hidden_layer_sizes=(16, 16), max_iter=300, random_state=0
    ).fit(X_train, y_train)
    before = clf.predict_proba(X_test)
    weights = [p.detach().clone() for p in clf.net_.module_.parameters()]
    first = MarginPlotter(random_state=0, n_directions=16).fit(clf, X_train, y_train)
    again = MarginPlotter(random_state=0, n_directions=16).fit(clf, X_train, y_train)
    assert_array_equal(first.margins_, again.margins_)
    assert_array_equal(clf.predict_proba(X_test), before)
    for w, p in zip(weights, clf.net_.module_.parameters()):
        assert torch_equal(w, p)
    assert_array_equal(first.predictions_, clf.predict(X_train))
    assert_array_equal(first.correct_, clf.predict(X_train) == y_train)


def torch_equal(a, b):
    return bool((a == b).all())


@pytest.mark.slow
def test_test_points_and_the_decision_grid(spirals):
    X_train, X_test, y_train, y_test = spirals
    svc = SVC(gamma=0.5).fit(X_train, y_train)
    plotter = MarginPlotter(grid_resolution=30, random_state=0).fit(
        svc, X_train, y_train, X_test=X_test, y_test=y_test
    )
    assert plotter.test_margins_.shape == (len(X_test),)
    assert_array_equal(plotter.test_correct_, svc.predict(X_test) == y_test)
    xx, yy = np.meshgrid(plotter.grid_x_, plotter.grid_y_)
    grid = svc.predict(np.column_stack([xx.ravel(), yy.ravel()])).reshape(xx.shape)
    assert_array_equal(plotter.classes_[plotter.grid_labels_], grid)
    both = np.concatenate([X_train, X_test])
    low, high = both[:, 0].min(), both[:, 0].max()
    assert plotter.grid_x_[0] < low < high < plotter.grid_x_[-1]


def test_the_plotter_is_a_median_margin_scorer():
    X, y = make_blobs(60, centers=2, cluster_std=2.0, random_state=0)
    plotter = MarginPlotter()
    svc = SVC(kernel="linear", C=1.0).fit(X, y)
    assert plotter(svc, X, y) == pytest.approx(np.median(exact_linear_margins(svc, X)))
    assert not hasattr(plotter, "margins_")  # scoring works on a clone
    cv = KFold(2)
    search = GridSearchCV(
        SVC(kernel="linear"), {"C": [1e-3, 1.0]}, scoring=plotter, cv=cv
    ).fit(X, y)
    for i, C in enumerate([1e-3, 1.0]):
        expected = []
        for train, test in cv.split(X):
            fold = SVC(kernel="linear", C=C).fit(X[train], y[train])
            expected.append(np.median(exact_linear_margins(fold, X[test])))
        assert search.cv_results_["mean_test_score"][i] == pytest.approx(
            np.mean(expected)
        )


def test_clean_networks_have_wider_margins_than_poisoned_ones(
    spirals, clean_and_poisoned
):
    X_train, _, y_train, _ = spirals
    medians = {}
    for beta, clf in clean_and_poisoned.items():
        medians[beta] = (
            MarginPlotter(n_directions=32, random_state=0)
            .fit(clf, X_train, y_train)
            .median_margin_
        )
    assert medians[0.0] > 2 * medians[1.0]


def test_errors():
    svc, X, y = linear_svc(2)
    with pytest.raises(TypeError, match="predict method; got ndarray"):
        MarginPlotter().fit(X, X, y)
    with pytest.raises(NotFittedError):
        MarginPlotter().fit(SVC(), X, y)
    with pytest.raises(InvalidParameterError, match="grid_resolution"):
        MarginPlotter(grid_resolution=1).fit(svc, X, y)
    with pytest.raises(InvalidParameterError, match="n_directions"):
        MarginPlotter(n_directions=0).fit(svc, X, y)
    with pytest.raises(ValueError, match="y has 79 labels for 80 samples"):
        MarginPlotter().fit(svc, X, y[:-1])
    with pytest.raises(ValueError, match="NaN"):
        MarginPlotter().fit(svc, np.where(X > 5, np.nan, X), y)
    with pytest.raises(ValueError, match="y_test was given without X_test"):
        MarginPlotter().fit(svc, X, y, y_test=y)
    with pytest.raises(ValueError, match="X_test has samples of shape"):
        MarginPlotter().fit(svc, X, y, X_test=X[:, :1])
    with pytest.raises(NotFittedError):
        MarginPlotter().plot()


def test_scores_never_label_the_plotting_grid():
    from flatgen import MarginAnalyzer

    X, y = make_blobs(40, centers=2, random_state=0)
    svc = SVC(kernel="rbf").fit(X, y)
    calls = []

    class Counting(ClassifierMixin, BaseEstimator):
        def fit(self, X, y):
            return self

        def predict(self, X):
            calls.append(len(X))
            return svc.predict(X)

    counting = Counting()
    counting.classes_ = svc.classes_
    analyzer = MarginAnalyzer(n_directions=8, random_state=0).fit(counting, X, y)
    assert not hasattr(analyzer, "grid_labels_")
    measured = sum(calls)
    assert measured == analyzer.n_predictions_ > 0
    calls.clear()
    plotter = MarginPlotter(grid_resolution=50, n_directions=8, random_state=0)
    score = plotter(counting, X, y)
    assert sum(calls) == measured  # the same search, no grid
    calls.clear()
    fitted = plotter.fit(counting, X, y)
    assert sum(calls) == measured + 50 * 50 == fitted.n_predictions_
    assert fitted.grid_labels_.shape == (50, 50)
    assert score == fitted.median_margin_ == analyzer.median_margin_
    assert_array_equal(analyzer.margins_, fitted.margins_)
