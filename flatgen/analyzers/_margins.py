"""Input-space margins of any classifier, measured (MarginAnalyzer) and drawn."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, column_or_1d
from tqdm.auto import tqdm

from ._boundary_search import LabelOracle, boundary_distances

# Coordinates of (point, ray, scan distance) held at once by the search (32 MB).
_SEARCH_FLOATS = 1 << 22


def _linear_binary(estimator):
    """``(w, decision_function)`` when the exact linear formula applies, else None."""
    if isinstance(estimator, Pipeline):
        return None  # a transformer bends input space: distances are not |f|/||w||
    try:
        coef = np.asarray(estimator.coef_, dtype=float)
    except (AttributeError, ValueError):  # kernel SVC raises AttributeError
        return None
    decision = getattr(estimator, "decision_function", None)
    classes = getattr(estimator, "classes_", None)
    if decision is None or classes is None or len(classes) != 2:
        return None
    if coef.ndim != 2 or coef.shape[0] != 1:
        return None
    return coef.ravel(), decision


class MarginAnalyzer(BaseEstimator):
    """Input-space margins of any fitted classifier.

    The margin of a point is its distance, in input space, to the nearest
    point the classifier labels differently: the distance to the decision
    boundary. For a binary linear model (``coef_`` and
    ``decision_function``, e.g. ``SVC(kernel='linear')``) it is exact,
    ``|f(x)| / ||w||``. For anything else with a ``predict`` method (flatgen
    networks, kernel SVMs, Pipelines, trees) it is found numerically in any
    number of features: rays from each point are scanned at geometrically
    spaced distances, the closest label changes are bisected to ``rtol``, and
    the best ray is rotated towards the boundary normal. The result is an
    upper bound on the true distance that is tight for smooth boundaries
    (within ``rtol`` for linear ones, tested); a boundary feature narrower
    than the angle between scanned rays can be missed.

    It draws nothing: :class:`MarginPlotter` adds the decision regions for
    a plot, and :class:`~flatgen.MarginDistributionDisplay` draws the
    margins of several models.

    Calling the analyzer, ``analyzer(estimator, X, y)``, returns the median
    margin of ``X`` computed on a fresh analyzer, so it can serve as a scorer
    in ``GridSearchCV(scoring=...)``; it never labels a plotting grid.

    Parameters
    ----------
    method : {'auto', 'exact', 'search'}, default='auto'
        ``'exact'`` uses ``|decision_function| / ||coef_||`` and needs a
        binary linear classifier; ``'search'`` uses the numerical search with
        ``predict`` only; ``'auto'`` picks ``'exact'`` where it applies.
    n_directions : int, default=64
        Rays scanned from each point (evenly spaced angles for 2 features,
        random directions otherwise), plus up to 8 rays towards the nearest
        differently-labelled points.
    n_refine : int, default=40
        Rounds of direction refinement after the scan.
    max_distance : float, default=None
        Search radius. Points with no other label within it get this margin
        and are flagged in ``capped_``. None: the diagonal of the data's
        bounding box.
    rtol : float, default=1e-4
        Relative precision of the numerical margins.
    batch_size : int, default=65536
        Points per ``predict`` call.
    random_state : int, RandomState instance or None, default=None
        Seeds the ray directions.
    verbose : int, default=0
        Show a progress bar of the search when positive.

    Attributes
    ----------
    method_ : str
        ``'exact'`` or ``'search'``.
    classes_ : ndarray of shape (n_classes,)
        Class labels (the estimator's ``classes_`` when it has them).
    predictions_ : ndarray of shape (n_samples,)
        Predicted labels of ``X``.
    correct_ : ndarray of bool of shape (n_samples,) or None
        ``predictions_ == y``; None without ``y``.
    margins_ : ndarray of shape (n_samples,)
        Distance of each point of ``X`` to the decision boundary.
    capped_ : ndarray of bool of shape (n_samples,)
        True where no boundary was found within ``max_distance_``.
    median_margin_ : float
        Median of ``margins_``; also ``score_``.
    max_distance_ : float
        Search radius used.
    test_predictions_, test_correct_, test_margins_ : ndarray or None
        The same for ``X_test``, when given.
    X_, y_, X_test_, y_test_ : ndarray or None
        The measured data.
    estimator_name_ : str
        Class name of the measured estimator.
    n_predictions_ : int
        Points passed to ``predict`` in total.

    See Also
    --------
    MarginPlotter : The same measurement plus the decision regions, drawn.
    flatgen.plotting.MarginDistributionDisplay : Compares margins of models.

    References
    ----------
    W. R. Huang, Z. Emam, M. Goldblum, L. Fowl, J. K. Terry, F. Huang and
    T. Goldstein, "Understanding Generalization through Visualizations",
    ICBINB workshop, NeurIPS 2020. arXiv:1906.03291.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from sklearn.svm import SVC
    >>> from flatgen import MarginAnalyzer
    >>> X, y = make_blobs(60, centers=2, random_state=0)
    >>> svc = SVC(kernel="linear").fit(X, y)
    >>> analyzer = MarginAnalyzer().fit(svc, X, y)
    >>> analyzer.method_, analyzer.margins_.shape
    ('exact', (60,))
    >>> bool(analyzer.margins_.min() > 0)
    True
    """

    _parameter_constraints = {
        "method": [StrOptions({"auto", "exact", "search"})],
        "n_directions": [Interval(Integral, 1, None, closed="left")],
        "n_refine": [Interval(Integral, 0, None, closed="left")],
        "max_distance": [Interval(Real, 0, None, closed="neither"), None],
        "rtol": [Interval(Real, 0, 1, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        method="auto",
        *,
        n_directions=64,
        n_refine=40,
        max_distance=None,
        rtol=1e-4,
        batch_size=65536,
        random_state=None,
        verbose=0,
    ):
        self.method = method
        self.n_directions = n_directions
        self.n_refine = n_refine
        self.max_distance = max_distance
        self.rtol = rtol
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, estimator, X, y=None, *, X_test=None, y_test=None):
        """Measure margins of ``X`` (and ``X_test``).

        Parameters
        ----------
        estimator : fitted classifier
            Anything with ``predict``: a flatgen network, ``SVC``, a Pipeline.
            Not modified.
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Points whose margins are measured (the training set, usually),
            in the estimator's input space. Images may keep their shape.
        y : array-like of shape (n_samples,), default=None
            True labels; ``correct_`` records which points are predicted
            right.
        X_test : array-like, default=None
            Further points to measure (e.g. the test set).
        y_test : array-like of shape (n_test_samples,), default=None
            Their labels.

        Returns
        -------
        self : MarginAnalyzer
            Fitted analyzer.
        """
        self._validate_params()
        oracle, _ = self._measure(estimator, X, y, X_test, y_test)
        self.n_predictions_ = oracle.n_calls
        return self

    def _measure(self, estimator, X, y, X_test, y_test):
        """Set every measured attribute; return the label oracle and the points."""
        if not callable(getattr(estimator, "predict", None)):
            raise TypeError(
                "estimator must be a fitted classifier with a predict method; got "
                f"{type(estimator).__name__}."
            )
        check_is_fitted(estimator)
        # The classifier is asked in the float dtype it was given (float32
        # for most torch models), whatever precision the search runs in.
        given = getattr(X, "dtype", None)
        query_dtype = given if given is not None and given.kind == "f" else None
        X = self._check_points(X, "X")
        y = self._check_labels(y, X, "y")
        if X_test is None and y_test is not None:
            raise ValueError("y_test was given without X_test.")
        X_test = None if X_test is None else self._check_points(X_test, "X_test")
        if X_test is not None and X_test.shape[1:] != X.shape[1:]:
            raise ValueError(
                f"X_test has samples of shape {X_test.shape[1:]}, X has "
                f"{X.shape[1:]}; they must match."
            )
        y_test = self._check_labels(y_test, X_test, "y_test")

        sample_shape = X.shape[1:]
        oracle = LabelOracle(
            estimator.predict, sample_shape, self.batch_size, dtype=query_dtype
        )
        flat = X.reshape(len(X), -1)
        flat_test = None if X_test is None else X_test.reshape(len(X_test), -1)
        points = flat if flat_test is None else np.concatenate([flat, flat_test])
        self.max_distance_ = (
            float(self.max_distance)
            if self.max_distance is not None
            else float(np.linalg.norm(points.max(axis=0) - points.min(axis=0))) or 1.0
        )

        labels = oracle(points)
        self.method_, linear = self._resolve_method(estimator, X)
        if self.method_ == "exact":
            w, decision = linear
            margins = np.abs(
                np.asarray(decision(points), dtype=float)
            ) / np.linalg.norm(w)
            capped = np.zeros(len(points), dtype=bool)
        else:
            margins, capped = self._search(oracle, points, labels)

        n = len(X)
        self.X_, self.y_ = X, y
        self.X_test_, self.y_test_ = X_test, y_test
        self.predictions_, self.margins_, self.capped_ = (
            labels[:n],
            margins[:n],
            capped[:n],
        )
        self.correct_ = None if y is None else self.predictions_ == y
        if X_test is None:
            self.test_predictions_ = self.test_margins_ = self.test_correct_ = None
        else:
            self.test_predictions_ = labels[n:]
            self.test_margins_ = margins[n:]
            self.test_correct_ = None if y_test is None else labels[n:] == y_test
        self.classes_ = self._classes(estimator, labels, y, y_test)
        self.median_margin_ = self.score_ = float(np.median(self.margins_))
        self.estimator_name_ = type(estimator).__name__
        if isinstance(estimator, Pipeline):
            self.estimator_name_ = type(estimator.steps[-1][1]).__name__
        return oracle, points

    def __call__(self, estimator, X, y=None):
        """Return the median margin of ``X`` under ``estimator``.

        Parameters
        ----------
        estimator : fitted classifier
            Anything with ``predict``; not modified.
        X : array-like of shape (n_samples, n_features)
            Points to measure.
        y : array-like of shape (n_samples,), default=None
            Labels (unused by the score; accepted for the scorer signature).

        Returns
        -------
        score : float
            Median distance of the points to the decision boundary.
        """
        # A plain analyzer, even when called on a MarginPlotter: a score
        # never labels a plotting grid.
        params = {
            name: value
            for name, value in self.get_params(deep=False).items()
            if name in MarginAnalyzer._get_param_names()
        }
        return float(MarginAnalyzer(**params).fit(estimator, X, y).median_margin_)

    # -- pieces of fit -----------------------------------------------------

    @staticmethod
    def _check_points(X, name):
        X = check_array(X, allow_nd=True, dtype="numeric", input_name=name)
        return np.asarray(X, dtype=float)

    @staticmethod
    def _check_labels(y, X, name):
        if y is None:
            return None
        y = column_or_1d(y)
        if X is None or len(y) != len(X):
            raise ValueError(
                f"{name} has {len(y)} labels for "
                f"{0 if X is None else len(X)} samples; they must match."
            )
        return y

    def _resolve_method(self, estimator, X):
        """Return the method to use and, for 'exact', ``(w, decision_function)``."""
        linear = _linear_binary(estimator) if X.ndim == 2 else None
        exact_ok = linear is not None and len(linear[0]) == X.shape[1]
        if self.method == "exact" and not exact_ok:
            raise ValueError(
                "method='exact' needs a binary linear classifier on unshaped "
                "features (coef_ with one row and decision_function, e.g. "
                f"SVC(kernel='linear')); got {type(estimator).__name__}. Use "
                "method='search'."
            )
        if self.method == "search" or not exact_ok:
            return "search", None
        return "exact", linear

    def _search(self, oracle, points, labels):
        rng = check_random_state(self.random_state)
        d = points.shape[1]
        n_rays = (2 if d == 1 else self.n_directions) + 8
        chunk = max(1, _SEARCH_FLOATS // (n_rays * 48 * d))
        margins = np.empty(len(points))
        capped = np.empty(len(points), dtype=bool)
        bar = tqdm(
            total=len(points),
            desc="margins",
            unit="pt",
            disable=not self.verbose,
            leave=False,
        )
        with bar:
            for start in range(0, len(points), chunk):
                stop = start + chunk
                margins[start:stop], capped[start:stop] = boundary_distances(
                    oracle,
                    points[start:stop],
                    labels[start:stop],
                    reference=points,
                    reference_labels=labels,
                    max_distance=self.max_distance_,
                    n_directions=self.n_directions,
                    rtol=float(self.rtol),
                    n_scan=48,
                    n_refine=self.n_refine,
                    n_starts=4,
                    rng=rng,
                )
                bar.update(len(margins[start:stop]))
        return margins, capped

    @staticmethod
    def _classes(estimator, labels, y, y_test):
        classes = getattr(estimator, "classes_", None)  # Pipelines forward it
        if classes is not None:
            return np.asarray(classes)
        seen = [labels] + [v for v in (y, y_test) if v is not None]
        return np.unique(np.concatenate(seen))


class MarginPlotter(MarginAnalyzer):
    """Input-space margins and decision regions of any fitted classifier.

    A :class:`MarginAnalyzer` that, for two-feature data, also labels a grid
    over the data, so that :meth:`plot` draws the decision regions with the
    training points marked right or wrong (the paper's pictures: a clean
    network has wide margins, a poisoned one draws islands and fingers
    around the points). Called as a scorer it measures margins only, like
    :class:`MarginAnalyzer`: scores never label the grid.

    Parameters
    ----------
    method : {'auto', 'exact', 'search'}, default='auto'
        See :class:`MarginAnalyzer`.
    n_directions : int, default=64
        See :class:`MarginAnalyzer`.
    n_refine : int, default=40
        See :class:`MarginAnalyzer`.
    max_distance : float, default=None
        See :class:`MarginAnalyzer`.
    rtol : float, default=1e-4
        See :class:`MarginAnalyzer`.
    grid_resolution : int, default=200
        Grid points per axis for the decision regions (2 features only).
    grid_padding : float, default=0.1
        Grid extent beyond the data, as a fraction of the data's range.
    batch_size : int, default=65536
        Points per ``predict`` call.
    random_state : int, RandomState instance or None, default=None
        Seeds the ray directions.
    verbose : int, default=0
        Show a progress bar of the search when positive.

    Attributes
    ----------
    grid_x_, grid_y_ : ndarray of shape (grid_resolution,) or None
        Grid coordinates of the decision regions (2 features only).
    grid_labels_ : ndarray of int of shape (grid_resolution, grid_resolution)
        Index into ``classes_`` of the predicted label at
        ``(grid_x_[j], grid_y_[i])`` in row ``i``, column ``j``; None unless
        ``X`` has 2 features.
    n_predictions_ : int
        Points passed to ``predict`` in total, grid included.
    margins_, capped_, predictions_, correct_, median_margin_ : ndarray, float
        As measured by :class:`MarginAnalyzer`, like its other attributes
        (``method_``, ``classes_``, ``max_distance_``, ``test_*``, ``X_``,
        ``y_``, ``estimator_name_``).

    See Also
    --------
    MarginAnalyzer : The measurement alone.
    flatgen.plotting.DecisionRegionsDisplay : Draws the decision regions.
    flatgen.plotting.MarginDistributionDisplay : Compares margins of models.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from sklearn.svm import SVC
    >>> from flatgen import MarginPlotter
    >>> X, y = make_blobs(60, centers=2, random_state=0)
    >>> svc = SVC(kernel="linear").fit(X, y)
    >>> plotter = MarginPlotter(grid_resolution=50).fit(svc, X, y)
    >>> plotter.margins_.shape, plotter.grid_labels_.shape
    ((60,), (50, 50))
    """

    _parameter_constraints = {
        **MarginAnalyzer._parameter_constraints,
        "grid_resolution": [Interval(Integral, 2, None, closed="left")],
        "grid_padding": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        method="auto",
        *,
        n_directions=64,
        n_refine=40,
        max_distance=None,
        rtol=1e-4,
        grid_resolution=200,
        grid_padding=0.1,
        batch_size=65536,
        random_state=None,
        verbose=0,
    ):
        super().__init__(
            method,
            n_directions=n_directions,
            n_refine=n_refine,
            max_distance=max_distance,
            rtol=rtol,
            batch_size=batch_size,
            random_state=random_state,
            verbose=verbose,
        )
        self.grid_resolution = grid_resolution
        self.grid_padding = grid_padding

    def fit(self, estimator, X, y=None, *, X_test=None, y_test=None):
        """Measure margins of ``X`` (and ``X_test``) and label the plot grid.

        Parameters
        ----------
        estimator : fitted classifier
            Anything with ``predict``: a flatgen network, ``SVC``, a Pipeline.
            Not modified.
        X : array-like of shape (n_samples, n_features) or (n_samples, ...)
            Points whose margins are measured (the training set, usually).
        y : array-like of shape (n_samples,), default=None
            True labels; mark points right or wrong in the plot.
        X_test : array-like, default=None
            Further points to measure and draw (e.g. the test set).
        y_test : array-like of shape (n_test_samples,), default=None
            Their labels.

        Returns
        -------
        self : MarginPlotter
            Fitted plotter.
        """
        self._validate_params()
        oracle, points = self._measure(estimator, X, y, X_test, y_test)
        self._label_grid(oracle, points)
        self.n_predictions_ = oracle.n_calls
        return self

    @classmethod
    def from_estimator(
        cls, estimator, X, y=None, *, X_test=None, y_test=None, ax=None, **params
    ):
        """Measure margins and draw the decision regions in one call.

        Parameters
        ----------
        estimator : fitted classifier
            Anything with ``predict``.
        X : array-like of shape (n_samples, 2)
            Points to measure and draw.
        y : array-like of shape (n_samples,), default=None
            True labels.
        X_test, y_test : array-like, default=None
            Test points to draw as well.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **params
            Hyperparameters of the plotter.

        Returns
        -------
        plotter : MarginPlotter
            Fitted, with the drawn display in ``display_``.
        """
        plotter = cls(**params).fit(estimator, X, y, X_test=X_test, y_test=y_test)
        plotter.display_ = plotter.plot(ax=ax)
        return plotter

    def plot(self, ax=None, **kwargs):
        """Draw the decision regions and the points.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        **kwargs
            Passed to :meth:`flatgen.plotting.DecisionRegionsDisplay.plot`.

        Returns
        -------
        display : flatgen.plotting.DecisionRegionsDisplay
            With ``ax_`` and ``figure_`` set.
        """
        from ..plotting import DecisionRegionsDisplay

        check_is_fitted(self, "margins_")
        return DecisionRegionsDisplay.from_analyzer(self).plot(ax=ax, **kwargs)

    def _label_grid(self, oracle, points):
        self.grid_x_ = self.grid_y_ = self.grid_labels_ = None
        if self.X_.ndim != 2 or self.X_.shape[1] != 2:
            return
        low, high = points.min(axis=0), points.max(axis=0)
        pad = self.grid_padding * np.where(high > low, high - low, 1.0)
        self.grid_x_ = np.linspace(
            low[0] - pad[0], high[0] + pad[0], self.grid_resolution
        )
        self.grid_y_ = np.linspace(
            low[1] - pad[1], high[1] + pad[1], self.grid_resolution
        )
        xx, yy = np.meshgrid(self.grid_x_, self.grid_y_)
        grid_labels = oracle(np.column_stack([xx.ravel(), yy.ravel()]))
        codes = np.searchsorted(self.classes_, grid_labels)
        codes = np.clip(codes, 0, len(self.classes_) - 1)
        self.grid_labels_ = codes.reshape(xx.shape)
