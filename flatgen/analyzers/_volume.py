"""VolumeEstimator: Monte-Carlo log-volume of the loss basin."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Hidden, Interval, StrOptions

from ..landscape import (
    basin_log10_volume,
    log10_ball_volume,
    volume_from_radii,
)
from ._common import FlatnessAnalyzer

_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


class VolumeEstimator(FlatnessAnalyzer):
    """Monte-Carlo estimate of the log-volume of a network's loss basin.

    The basin (the region around the minimum where the training loss stays
    below a cutoff) is treated as star-shaped; its volume in the ``n``
    perturbed dimensions is estimated from the basin radius along many rays
    (:func:`flatgen.landscape.basin_log10_volume`). Poisoned minima have
    exponentially smaller volume (Huang et al., 2019).

    Three estimators (``method``):

    - ``'preconditioned'`` (default): rays drawn from a curvature model of
      the training loss measured with Hessian-vector products (converged
      Lanczos eigenpairs, a probed diagonal, a low-rank correction) and
      reweighted exactly, so the estimate is unbiased and, on near-quadratic
      basins, no longer set by one ray. Checked against exact ellipsoid
      volumes to within 0.01 orders of magnitude in 1,500-2,000 dimensions,
      where the naive estimate is hundreds of orders low.
    - ``'naive'``: rays uniform on the sphere of ``space``,
      ``V = omega_n mean(r^n)``.
    - ``'paper'``: the paper's recipe: radii along filter-normalized
      directions (each filter's part scaled to that filter's norm) and the
      same formula. The radii are in units of those directions, which are
      not uniform in any fixed coordinates (a filter with fan-in 2 weighs as
      much as one with fan-in 32): the number compares networks of one
      architecture, as in the paper, but is not a volume in ``space``.

    Parameters
    ----------
    n_directions : int, default=1000
        Number of rays.
    cutoff : float or list of float, default=0.1
        One or several loss cutoffs (absolute cross-entropy, or multiples of
        the minimum's loss with ``cutoff_type='relative'``).
    cutoff_type : {'absolute', 'relative'}, default='absolute'
        How ``cutoff`` is read.
    max_radius : float, default=1.0
        Largest displacement searched, as a multiple of the length of the
        paper's filter-normalized direction: ``max_radius * ||theta||`` in
        raw space, ``max_radius * sqrt(n_filters)`` in filter-normalized
        coordinates (``max_radius`` itself for ``'paper'``).
    method : {'preconditioned', 'naive', 'paper'}, default='preconditioned'
        See above.
    space : {'filter_normalized', 'raw'}, default='filter_normalized'
        Coordinates of the volume. ``'raw'``: weight space itself.
        ``'filter_normalized'``: each weight divided by the norm of its
        filter, ``z_i = theta_i / ||W_f(i)||`` (a linear change of
        variables): ``log10_volume_raw_ = log10_volume_ + log10_scale_det_``.
        ``'paper'`` works only in ``'filter_normalized'``.
    rank : int or 'full', default=40
        Lanczos steps per stage of the preconditioner, or ``'full'`` for the
        exact quadratic model (the whole Hessian of the ``n_dims_`` perturbed
        weights, eigendecomposed; up to 20,000 of them: the swiss-roll
        network's 3,229 take a few seconds). See
        :func:`~flatgen.landscape.basin_log10_volume`.
    n_probes : int, default=64
        Probe vectors for the preconditioner's diagonal.
    include_bias : bool, default=False
        Perturb biases too; ``n_dims_`` counts them then.
    rtol : float, default=1e-6
        Relative tolerance of the radii. A relative error ``eps`` in the
        radii shifts ``log10 V`` by about ``n * eps / ln 10``; that bound is
        stored in ``log10_volume_tolerance_`` and widens the interval.
    confidence_level : float, default=0.95
        Nominal coverage of ``log10_volume_ci_``.
    max_capped_fraction : float, default=0.05
        Share of rays reaching ``max_radius`` above which the volume counts
        as saturated: a :class:`~flatgen.landscape.VolumeSaturationWarning`
        is raised and the score is NaN (see ``score_``).
    random_state : int, RandomState instance or None, default=None
        Seeds the rays and the curvature probes; ray ``k`` depends only on
        the seed and ``k``, so ``n_jobs`` never changes the result.
    n_jobs : int, default=None
        Number of joblib workers over chunks of 128 rays.
    n_threads : int, default=1
        Number of torch threads per worker.
    verbose : int, default=0
        Progress bar over chunks of rays when positive.
    estimator : str, default='deprecated'
        Former name of ``method`` (it read like the ``estimator`` passed to
        :meth:`fit`); still accepted, with a FutureWarning.

    Attributes
    ----------
    cutoffs_ : ndarray of shape (n_cutoffs,)
        Absolute loss cutoffs.
    space_ : str
        Coordinates of ``log10_volume_`` (``'paper'`` for the paper's
        direction units).
    radii_ : ndarray of shape (n_cutoffs, n_directions)
        Basin radius along each ray, per cutoff: Euclidean in ``space``
        (in direction units for ``'paper'``).
    capped_ : ndarray of bool of shape (n_cutoffs, n_directions)
        Radii that hit ``max_radius`` (lower bounds).
    capped_fraction_ : ndarray of shape (n_cutoffs,)
        Share of capped rays.
    capped_volume_share_ : ndarray of shape (n_cutoffs,)
        Share of each estimate carried by the rays that reached the search
        cap: near 1, the volume is mostly the cap's ball, whatever the basin
        beyond it.
    saturated_ : ndarray of bool of shape (n_cutoffs,)
        ``capped_fraction_ > max_capped_fraction``: the volume there is a
        lower bound only.
    log10_volume_ : ndarray of shape (n_cutoffs,)
        Estimated ``log10`` of the basin volume per cutoff, in ``space_``.
    log10_volume_ci_ : ndarray of shape (n_cutoffs, 2)
        Confidence interval: the Monte-Carlo standard error over rays (delta
        method on the log scale, widened below by the bisection tolerance)
        where at least 10 % of the rays carry the estimate; otherwise
        distribution-free bounds (Markov's inequality below, the ball of
        ``max_radius`` above), see ``conservative_ci_``.
    conservative_ci_ : ndarray of bool of shape (n_cutoffs,)
        Where the interval is the distribution-free one.
    log10_volume_raw_ : ndarray of shape (n_cutoffs,)
        The volume in raw weight space (NaN for ``'paper'``).
    log10_scale_det_ : float
        ``sum log10 ||W_f(i)||`` over perturbed weights: the offset between
        filter-normalized and raw volumes.
    effective_sample_size_ : ndarray of shape (n_cutoffs,)
        How many rays carry the estimate; far below ``n_directions`` means
        one ray dominates and the interval is optimistic.
    convergence_n_directions_ : ndarray of shape (n_checkpoints,)
        Numbers of rays of the running estimates.
    convergence_log10_volume_ : ndarray of shape (n_cutoffs, n_checkpoints)
        Estimate from the first rays only: it should level off.
    convergence_log10_volume_ci_ : ndarray of shape (n_cutoffs, n_checkpoints, 2)
        Their intervals.
    log10_volume_tolerance_ : float
        Bound on the error of ``log10_volume_`` due to ``rtol``.
    mean_log_radius_ : ndarray of shape (n_cutoffs,)
        Mean natural log of the radii.
    radius_quantiles_ : ndarray of shape (n_cutoffs, 5)
        5, 25, 50, 75 and 95 % quantiles of the radii.
    preconditioner_rank_ : int
        Low-rank directions of the curvature model (0 unless
        ``'preconditioned'``).
    n_dims_ : int
        Number of perturbed parameters ``n``.
    base_loss_, base_accuracy_ : float
        Training loss and accuracy at the minimum.
    score_ : float
        ``log10_volume_[0]``, or NaN when the first cutoff is saturated: a
        saturated volume is the same lower bound for every flat enough
        model, so it must not win a grid search (scikit-learn ranks NaN
        scores last and warns about them).
    warnings_ : list of str
        Every warning raised by the fit, in words.
    n_evaluations_ : int
        Loss evaluations used.
    n_hvp_ : int
        Hessian-vector products used.

    See Also
    --------
    flatgen.landscape.basin_log10_volume : The engine, for any torch loss.

    References
    ----------
    .. [1] W. R. Huang et al., "Understanding Generalization through
       Visualizations", arXiv:1906.03291, 2019.
    .. [2] A. Scherlis and N. Belrose, "Estimating the probability of
       sampling a trained neural network at random", arXiv:2501.18812, 2025.

    Examples
    --------
    >>> from flatgen import PoisonedMLPClassifier, VolumeEstimator, make_spirals
    >>> X, y = make_spirals(100, random_state=0)
    >>> clf = PoisonedMLPClassifier(max_iter=500, random_state=0).fit(X, y)
    >>> volume = VolumeEstimator(n_directions=20, cutoff=[2, 4],
    ...                          cutoff_type="relative", random_state=0)
    >>> volume.fit(clf, X, y).log10_volume_.shape
    (2,)
    """

    _parameter_constraints = {
        **FlatnessAnalyzer._parameter_constraints,
        "cutoff": [Interval(Real, 0, None, closed="neither"), "array-like"],
        "method": [StrOptions({"preconditioned", "naive", "paper"})],
        "estimator": [
            StrOptions({"preconditioned", "naive", "paper"}),
            Hidden(StrOptions({"deprecated"})),
        ],
        "space": [StrOptions({"filter_normalized", "raw"})],
        "rank": [Interval(Integral, 0, None, closed="left"), StrOptions({"full"})],
        "n_probes": [Interval(Integral, 1, None, closed="left")],
        "confidence_level": [Interval(Real, 0, 1, closed="neither")],
        "max_capped_fraction": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(
        self,
        n_directions=1000,
        cutoff=0.1,
        cutoff_type="absolute",
        max_radius=1.0,
        *,
        method="preconditioned",
        space="filter_normalized",
        rank=40,
        n_probes=64,
        include_bias=False,
        rtol=1e-6,
        confidence_level=0.95,
        max_capped_fraction=0.05,
        random_state=None,
        n_jobs=None,
        n_threads=1,
        verbose=0,
        estimator="deprecated",
    ):
        self.n_directions = n_directions
        self.cutoff = cutoff
        self.cutoff_type = cutoff_type
        self.max_radius = max_radius
        self.method = method
        self.space = space
        self.rank = rank
        self.n_probes = n_probes
        self.include_bias = include_bias
        self.rtol = rtol
        self.confidence_level = confidence_level
        self.max_capped_fraction = max_capped_fraction
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.n_threads = n_threads
        self.verbose = verbose
        self.estimator = estimator

    def _method(self):
        if self.estimator == "deprecated":
            return self.method
        warnings.warn(
            "VolumeEstimator's 'estimator' parameter was renamed 'method' (it "
            "read like the model passed to fit); use method="
            f"{self.estimator!r}. 'estimator' will be removed in a later release.",
            FutureWarning,
            stacklevel=3,
        )
        return self.estimator

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, estimator, X, y):
        """Estimate the basin volume of ``estimator``'s training loss on ``X, y``.

        Parameters
        ----------
        estimator : fitted network model
            A flatgen classifier, a skorch net, an sklearn ``MLPClassifier``, a
            ``torch.nn.Module`` returning logits, or a Pipeline ending in one
            (see :ref:`any-model`).
            It is not modified.
        X : array-like of shape (n_samples, ...)
            Training inputs.
        y : array-like of shape (n_samples,)
            Training labels (class indices for skorch nets and modules).

        Returns
        -------
        self : VolumeEstimator
            The estimator, with results in its ``*_`` attributes.

        Warns
        -----
        flatgen.landscape.VolumeSaturationWarning
            When more than ``max_capped_fraction`` of the rays reach
            ``max_radius`` at some cutoff.
        sklearn.exceptions.ConvergenceWarning
            When the effective sample size is below 10 % of the rays.
        """
        method = self._method()
        if method == "paper" and self.space != "filter_normalized":
            raise ValueError(
                "method='paper' measures along the paper's filter-normalized "
                f"directions; it needs space='filter_normalized'. Got "
                f"space={self.space!r} instead."
            )
        if method == "paper":
            result = self._fit_paper(estimator, X, y)
        else:
            result = self._fit_engine(estimator, X, y, method)
        self.radii_ = np.atleast_2d(result.radii)
        self.capped_ = np.atleast_2d(result.capped)
        self.capped_fraction_ = np.atleast_1d(result.capped_fraction)
        self.capped_volume_share_ = np.atleast_1d(result.capped_volume_share)
        self.saturated_ = self.capped_fraction_ > self.max_capped_fraction
        self.log10_volume_ = np.atleast_1d(result.log10_volume)
        self.log10_volume_ci_ = np.reshape(result.log10_volume_ci, (-1, 2))
        self.conservative_ci_ = np.atleast_1d(result.conservative_ci)
        self.log10_volume_tolerance_ = result.log10_volume_tolerance
        self.effective_sample_size_ = np.atleast_1d(result.effective_sample_size)
        self.convergence_n_directions_ = result.convergence_n_directions
        self.convergence_log10_volume_ = np.atleast_2d(result.convergence_log10_volume)
        self.convergence_log10_volume_ci_ = np.reshape(
            result.convergence_log10_volume_ci,
            (len(self.cutoffs_), len(result.convergence_n_directions), 2),
        )
        self.preconditioner_rank_ = result.preconditioner_rank
        self.n_hvp_ = result.n_hvp
        self.warnings_ = list(result.warnings)
        log_radii = np.log(self.radii_)
        self.mean_log_radius_ = log_radii.mean(axis=1)
        self.radius_quantiles_ = np.quantile(self.radii_, _QUANTILES, axis=1).T
        self.score_ = (
            float("nan") if self.saturated_[0] else float(self.log10_volume_[0])
        )
        return self

    def _fit_paper(self, estimator, X, y):
        radii, capped, landscape, _ = self._measure(estimator, X, y, self.cutoff)
        self.space_ = "paper"
        loss = landscape.basin_loss()
        self.log10_scale_det_ = loss.log10_filter_norm_det
        self.n_hvp_ = 0
        self.log10_volume_raw_ = np.full(len(self.cutoffs_), np.nan)
        return volume_from_radii(
            radii,
            capped,
            self.n_dims_,
            self.cutoffs_,
            rtol=float(self.rtol),
            confidence_level=float(self.confidence_level),
            max_capped_fraction=float(self.max_capped_fraction),
            estimator="paper",
            loss0=self.base_loss_,
            log10_volume_bound=float(
                log10_ball_volume([self.max_radius], self.n_dims_)
            ),
        )

    def _fit_engine(self, estimator, X, y, method):
        landscape = self._prepare(estimator, X, y, self.cutoff)
        loss0 = self.base_loss_
        loss = landscape.basin_loss(self.space)
        self.n_dims_ = loss.n_dims
        self.space_ = self.space
        self.log10_scale_det_ = loss.log10_filter_norm_det
        result = basin_log10_volume(
            loss,
            loss.n_dims,
            self.cutoffs_,
            n_directions=self.n_directions,
            estimator=method,
            rank=self.rank,
            n_probes=self.n_probes,
            max_radius=float(self.max_radius) * loss.paper_scale(),
            rtol=float(self.rtol),
            confidence_level=float(self.confidence_level),
            max_capped_fraction=float(self.max_capped_fraction),
            random_state=self.random_state,
            hvp=loss.hvp,
            loss0=loss0,
            n_jobs=self.n_jobs,
            n_threads=self.n_threads,
            verbose=self.verbose,
        )
        self.n_evaluations_ = result.n_evaluations
        offset = loss.log10_scale_det
        self.log10_volume_raw_ = np.atleast_1d(result.log10_volume) + offset
        return result

    def plot_convergence(self, ax=None, *, cutoff_index=0, **kwargs):
        """Draw the running estimate against the number of rays.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when None.
        cutoff_index : int, default=0
            Which cutoff to draw.
        **kwargs
            Passed to :meth:`flatgen.VolumeConvergenceDisplay.plot`.

        Returns
        -------
        display : VolumeConvergenceDisplay
            The drawn display.
        """
        from ..plotting import VolumeConvergenceDisplay

        return VolumeConvergenceDisplay.from_analyzer(
            self, cutoff_index=cutoff_index
        ).plot(ax=ax, **kwargs)
