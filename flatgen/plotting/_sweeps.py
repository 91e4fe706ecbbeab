"""Displays over many models: poison-factor sweeps and log-volume vs gap."""

import numpy as np

from ._basin import OKABE_ITO

_MARKERS = ("o", "s", "^", "D", "v", "P")


def _find_param_key(keys, param, where):
    """``param_<param>`` or the unique ``param_<...>__<param>`` among ``keys``."""
    exact = f"param_{param}"
    if exact in keys:
        return exact
    nested = [k for k in keys if k.startswith("param_") and k.endswith(f"__{param}")]
    if len(nested) == 1:
        return nested[0]
    found = sorted(k for k in keys if k.startswith("param_"))
    raise ValueError(
        f"{where} has no unique column for parameter {param!r} (looked for "
        f"{exact!r} or 'param_<step>__{param}'); its parameter columns are {found}."
    )


def _get_param(estimator, param):
    params = estimator.get_params()
    if param in params:
        return params[param]
    nested = [k for k in params if k.endswith(f"__{param}")]
    if len(nested) == 1:
        return params[nested[0]]
    raise ValueError(
        f"{type(estimator).__name__} has no unique parameter {param!r}; pass "
        "param= with its full name (e.g. 'clf__poison_factor')."
    )


class PoisonSweepDisplay:
    """Train and test accuracy, and their gap, against the poison factor.

    The paper's sweep: every model fits its training set, while test accuracy
    falls and the generalization gap grows as the poison factor rises.
    Create it with :meth:`from_cv_results` (a ``GridSearchCV`` fitted with
    ``return_train_score=True``), :meth:`from_estimators`, or from arrays.

    Parameters
    ----------
    poison_factors : array-like of shape (n_factors,)
        Poison factors, increasing.
    train_scores, test_scores : array-like of shape (n_factors,)
        Mean training and held-out accuracy at each factor.
    train_std, test_std : array-like of shape (n_factors,), default=None
        Their standard deviations over folds or seeds (drawn as bands).
    test_label : str, default='test'
        What the held-out scores are ('test' or 'validation').

    Attributes
    ----------
    gaps_ : ndarray of shape (n_factors,)
        Generalization gap, ``train_scores - test_scores``.
    ax_ : matplotlib Axes
        Axes drawn on.
    figure_ : matplotlib Figure
        Figure drawn on.
    lines_ : dict of str to matplotlib Line2D
        ``'train'``, ``'test'`` and (when drawn) ``'gap'`` curves.

    Examples
    --------
    >>> from flatgen.plotting import PoisonSweepDisplay
    >>> disp = PoisonSweepDisplay([0, 0.1, 1], [1, 1, 1], [0.95, 0.5, 0.2])
    >>> disp.gaps_.round(2).tolist()
    [0.05, 0.5, 0.8]
    """

    def __init__(
        self,
        poison_factors,
        train_scores,
        test_scores,
        train_std=None,
        test_std=None,
        test_label="test",
    ):
        self.poison_factors = np.asarray(poison_factors, dtype=float)
        self.train_scores = np.asarray(train_scores, dtype=float)
        self.test_scores = np.asarray(test_scores, dtype=float)
        n = len(self.poison_factors)
        for name, values in (
            ("train_scores", self.train_scores),
            ("test_scores", self.test_scores),
        ):
            if values.shape != (n,):
                raise ValueError(
                    f"{name} must have one value per poison factor ({n}); got "
                    f"shape {values.shape}."
                )
        if n == 0:
            raise ValueError("poison_factors must not be empty.")
        if np.any(self.poison_factors < 0) or not np.all(
            np.isfinite(self.poison_factors)
        ):
            raise ValueError("poison_factors must be finite and non-negative.")
        self.train_std = None if train_std is None else np.asarray(train_std, float)
        self.test_std = None if test_std is None else np.asarray(test_std, float)
        self.test_label = test_label
        self.gaps_ = self.train_scores - self.test_scores

    @classmethod
    def from_cv_results(
        cls, cv_results, *, param="poison_factor", select=None, score="score"
    ):
        """Build the display from a search's ``cv_results_``.

        Parameters
        ----------
        cv_results : dict
            ``GridSearchCV(..., return_train_score=True).cv_results_``.
        param : str, default='poison_factor'
            The swept parameter; ``'<step>__poison_factor'`` in a Pipeline is
            found automatically.
        select : dict, default=None
            Values of other searched parameters to keep, e.g.
            ``{'hidden_layer_sizes': (32, 32)}``, when the search varied more
            than ``param``.
        score : str, default='score'
            Metric name (``'score'`` for a single metric, else its key in
            ``scoring``).

        Returns
        -------
        display : PoisonSweepDisplay
            With validation scores as the held-out curve.
        """
        keys = list(cv_results)
        key = _find_param_key(keys, param, "cv_results")
        train_key, test_key = f"mean_train_{score}", f"mean_test_{score}"
        if train_key not in cv_results:
            raise ValueError(
                f"cv_results has no {train_key!r}: fit the search with "
                "return_train_score=True to plot the generalization gap."
            )
        if test_key not in cv_results:
            raise ValueError(f"cv_results has no {test_key!r} (score={score!r}).")
        rows = np.ones(len(cv_results[key]), dtype=bool)
        for name, value in (select or {}).items():
            column = cv_results[_find_param_key(keys, name, "cv_results")]
            rows &= np.array([v == value for v in column], dtype=bool)
        others = [
            k
            for k in keys
            if k.startswith("param_")
            and k != key
            and len({repr(v) for v in np.asarray(cv_results[k], dtype=object)[rows]})
            > 1
        ]
        if others:
            raise ValueError(
                f"The search also varied {others}; choose their values with "
                "select={...} so each poison factor has one row."
            )
        if not np.any(rows):
            raise ValueError(f"No row of cv_results matches select={select!r}.")
        factors = np.asarray(cv_results[key], dtype=float)[rows]
        order = np.argsort(factors, kind="stable")

        def column(name):
            return np.asarray(cv_results[name], dtype=float)[rows][order]

        return cls(
            factors[order],
            column(train_key),
            column(test_key),
            column(f"std_train_{score}"),
            column(f"std_test_{score}"),
            test_label="validation",
        )

    @classmethod
    def from_estimators(
        cls, estimators, X_train, y_train, X_test, y_test, *, param="poison_factor"
    ):
        """Score fitted estimators and average over models sharing a factor.

        Parameters
        ----------
        estimators : list of fitted classifiers
            E.g. one model per poison factor and seed.
        X_train, y_train : array-like
            The data they were fitted on.
        X_test, y_test : array-like
            Held-out data.
        param : str, default='poison_factor'
            Parameter to read the factor from (``get_params()``).

        Returns
        -------
        display : PoisonSweepDisplay
            Means and standard deviations over models with the same factor.
        """
        estimators = list(estimators)
        if not estimators:
            raise ValueError("estimators must hold at least one fitted model.")
        factors = np.array([float(_get_param(e, param)) for e in estimators])
        train = np.array([e.score(X_train, y_train) for e in estimators])
        test = np.array([e.score(X_test, y_test) for e in estimators])
        unique = np.unique(factors)
        groups = [factors == f for f in unique]
        return cls(
            unique,
            [train[g].mean() for g in groups],
            [test[g].mean() for g in groups],
            [train[g].std() for g in groups],
            [test[g].std() for g in groups],
        )

    def plot(self, ax=None, *, show_gap=True, colors=None):
        """Draw train and held-out accuracy (and the gap) against the factor.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        show_gap : bool, default=True
            Also draw the generalization gap (train minus held-out).
        colors : list of 3 colors, default=None
            Train, held-out and gap colours; Okabe-Ito when None.

        Returns
        -------
        self : PoisonSweepDisplay
            With ``ax_``, ``figure_`` and ``lines_`` set.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5.5, 4))
        colors = list(colors or (OKABE_ITO[0], OKABE_ITO[1], OKABE_ITO[3]))
        x = self.poison_factors
        series = [
            ("train", self.train_scores, self.train_std, "train accuracy", "-", "o"),
            (
                "test",
                self.test_scores,
                self.test_std,
                f"{self.test_label} accuracy",
                "-",
                "s",
            ),
        ]
        if show_gap:
            series.append(
                (
                    "gap",
                    self.gaps_,
                    None,
                    f"generalization gap (train − {self.test_label})",
                    "--",
                    "^",
                )
            )
        self.lines_ = {}
        for (key, values, std, label, style, marker), color in zip(series, colors):
            (line,) = ax.plot(
                x, values, linestyle=style, marker=marker, color=color, label=label
            )
            self.lines_[key] = line
            if std is not None and np.any(std > 0):
                ax.fill_between(
                    x, values - std, values + std, color=color, alpha=0.2, linewidth=0
                )
        positive = x[x > 0]
        if positive.size and (x.min() == 0 or x.max() / positive.min() > 20):
            # symlog keeps poison_factor=0 on the axis next to log-spaced factors.
            ax.set_xscale("symlog", linthresh=positive.min())
        ax.set_xlabel("poison factor β")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        self.ax_, self.figure_ = ax, ax.figure
        return self


class VolumeGapDisplay:
    """Log basin volume against generalization gap, one series per cutoff.

    The paper's headline scatter: models with a larger generalization gap sit
    in basins with smaller volume. Each series is labelled with Spearman's
    rank correlation, which does not depend on the cutoff's scale.

    Parameters
    ----------
    generalization_gaps : array-like of shape (n_models,)
        Train minus test accuracy of each model.
    log10_volumes : array-like of shape (n_models, n_cutoffs)
        log10 basin volume of each model at each cutoff.
    cutoffs : array-like of shape (n_cutoffs,)
        The loss cutoffs.
    log10_volume_ci : array-like of shape (n_models, n_cutoffs, 2), default=None
        Confidence intervals, drawn as error bars.
    labels : list of str, default=None
        Model names, written next to the points when given.

    Attributes
    ----------
    spearman_ : ndarray of shape (n_cutoffs,)
        Spearman rank correlation of volume and gap at each cutoff (NaN for
        fewer than 3 models).
    ax_ : matplotlib Axes
        Axes drawn on.
    figure_ : matplotlib Figure
        Figure drawn on.
    collections_ : list
        One scatter per cutoff.

    Examples
    --------
    >>> from flatgen.plotting import VolumeGapDisplay
    >>> disp = VolumeGapDisplay([0.0, 0.4, 0.8], [[-50], [-80], [-95]], [0.5])
    >>> disp.spearman_.tolist()
    [-1.0]
    """

    def __init__(
        self,
        generalization_gaps,
        log10_volumes,
        cutoffs,
        log10_volume_ci=None,
        labels=None,
    ):
        from scipy.stats import spearmanr

        self.generalization_gaps = np.asarray(generalization_gaps, dtype=float)
        self.log10_volumes = np.atleast_2d(np.asarray(log10_volumes, dtype=float))
        self.cutoffs = np.atleast_1d(np.asarray(cutoffs, dtype=float))
        n, k = len(self.generalization_gaps), len(self.cutoffs)
        if self.log10_volumes.shape != (n, k):
            raise ValueError(
                f"log10_volumes must have shape (n_models, n_cutoffs) = ({n}, {k}); "
                f"got {self.log10_volumes.shape}."
            )
        self.log10_volume_ci = (
            None if log10_volume_ci is None else np.asarray(log10_volume_ci, float)
        )
        if self.log10_volume_ci is not None and self.log10_volume_ci.shape != (n, k, 2):
            raise ValueError(
                f"log10_volume_ci must have shape ({n}, {k}, 2); got "
                f"{self.log10_volume_ci.shape}."
            )
        if labels is not None and len(labels) != n:
            raise ValueError(f"Got {len(labels)} labels for {n} models.")
        self.labels = labels
        spearman = np.full(k, np.nan)
        if n >= 3 and np.ptp(self.generalization_gaps) > 0:
            for j in range(k):
                if np.ptp(self.log10_volumes[:, j]) > 0:
                    spearman[j] = spearmanr(
                        self.generalization_gaps, self.log10_volumes[:, j]
                    ).statistic
        self.spearman_ = spearman

    @classmethod
    def from_estimators(cls, volume_estimators, generalization_gaps, labels=None):
        """Build the display from fitted :class:`~flatgen.VolumeEstimator` objects.

        Parameters
        ----------
        volume_estimators : list of VolumeEstimator
            One per model, fitted with the same ``cutoff`` and
            ``cutoff_type``.
        generalization_gaps : array-like of shape (n_models,)
            Train minus test accuracy of each model.
        labels : list of str, default=None
            Model names.

        Returns
        -------
        display : VolumeGapDisplay
            Not yet drawn; call :meth:`plot`.
        """
        volume_estimators = list(volume_estimators)
        if not volume_estimators:
            raise ValueError("volume_estimators must not be empty.")
        for v in volume_estimators:
            if not hasattr(v, "log10_volume_"):
                raise ValueError(
                    "Every volume estimator must be fitted; got an unfitted "
                    f"{type(v).__name__}."
                )
        settings = {(repr(v.cutoff), v.cutoff_type) for v in volume_estimators}
        if len(settings) > 1:
            raise ValueError(
                "The volume estimators used different cutoffs "
                f"{sorted(settings)}; fit them all with the same cutoff and "
                "cutoff_type."
            )
        first = volume_estimators[0]
        cutoffs = np.atleast_1d(np.asarray(first.cutoff, dtype=float))
        return cls(
            generalization_gaps,
            np.stack([np.atleast_1d(v.log10_volume_) for v in volume_estimators]),
            cutoffs,
            np.stack(
                [np.reshape(v.log10_volume_ci_, (-1, 2)) for v in volume_estimators]
            ),
            labels,
        )

    def plot(self, ax=None, *, colors=None, show_ci=True):
        """Draw log10 volume against generalization gap for every cutoff.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        colors : list of color, default=None
            One colour per cutoff; Okabe-Ito when None.
        show_ci : bool, default=True
            Draw confidence intervals when the display has them.

        Returns
        -------
        self : VolumeGapDisplay
            With ``ax_``, ``figure_`` and ``collections_`` set.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5.5, 4))
        colors = list(OKABE_ITO if colors is None else colors)
        self.collections_ = []
        x = self.generalization_gaps
        for j, cutoff in enumerate(self.cutoffs):
            color = colors[j % len(colors)]
            y = self.log10_volumes[:, j]
            label = f"cutoff {cutoff:g}"
            if np.isfinite(self.spearman_[j]):
                label += f" (Spearman ρ = {self.spearman_[j]:.2f})"
            if show_ci and self.log10_volume_ci is not None:
                ci = self.log10_volume_ci[:, j]
                ax.errorbar(
                    x,
                    y,
                    yerr=np.abs(ci.T - y),
                    fmt="none",
                    ecolor=color,
                    alpha=0.5,
                    linewidth=1,
                )
            self.collections_.append(
                ax.scatter(
                    x,
                    y,
                    color=color,
                    marker=_MARKERS[j % len(_MARKERS)],
                    label=label,
                    edgecolors="0.1",
                    linewidths=0.4,
                    zorder=3,
                )
            )
        if self.labels is not None:
            for xi, yi, name in zip(x, self.log10_volumes[:, 0], self.labels):
                ax.annotate(
                    name,
                    (xi, yi),
                    xytext=(4, 4),
                    textcoords="offset points",
                    fontsize="x-small",
                )
            ax.margins(x=0.08)  # room for the last label
        if show_ci and self.log10_volume_ci is not None:
            # A volume set by a few rays has only a sure upper bound (the ball
            # of the search cap), thousands of orders up: clip the view to
            # the estimates and lower ends, so such whiskers run off the top.
            points = self.log10_volumes[np.isfinite(self.log10_volumes)]
            lows = self.log10_volume_ci[..., 0]
            lows = lows[np.isfinite(lows)]
            if points.size:
                bottom = min(points.min(), lows.min() if lows.size else np.inf)
                top = points.max()
                pad = 0.08 * max(top - bottom, 1.0)
                ax.set_ylim(bottom - pad, top + pad)
        ax.set_xlabel("generalization gap (train − test accuracy)")
        ax.set_ylabel("log$_{10}$ basin volume")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        self.ax_, self.figure_ = ax, ax.figure
        return self
