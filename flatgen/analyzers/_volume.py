"""VolumeEstimator: Monte-Carlo log-volume of the loss basin."""

from numbers import Integral, Real

import numpy as np
from scipy.special import gammaln, logsumexp
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

from ._common import FlatnessAnalyzer

_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def log10_ball_volume(radii, n_dims, axis=-1):
    """Log10 volume of a star-shaped region from its radii along random directions.

    ``V = omega_n * E[r^n]`` with ``omega_n = pi^(n/2) / Gamma(n/2 + 1)`` the
    volume of the unit ball, estimated by the mean of ``r_i^n``, all in log
    space so that ``n`` in the thousands does not overflow:
    ``log V = (n/2) log pi - lgamma(n/2 + 1) + logsumexp(n log r_i) - log M``.

    Parameters
    ----------
    radii : array-like
        Positive radii along ``M`` directions (along ``axis``).
    n_dims : int
        Dimension ``n`` of the space the directions live in.
    axis : int, default=-1
        Axis of ``radii`` that runs over directions.

    Returns
    -------
    log10_volume : float or ndarray
        ``log10 V``, reduced over ``axis``.

    Examples
    --------
    >>> from flatgen.analyzers import log10_ball_volume
    >>> round(float(10 ** log10_ball_volume([1.0, 1.0], n_dims=2)), 6)  # unit disk
    3.141593
    """
    radii = np.asarray(radii, dtype=float)
    if not isinstance(n_dims, Integral) or n_dims < 1:
        raise ValueError(f"n_dims must be a positive integer. Got {n_dims!r} instead.")
    if radii.ndim == 0 or radii.shape[axis] == 0:
        raise ValueError(
            f"radii must hold at least one radius along axis {axis}. Got shape "
            f"{radii.shape} instead."
        )
    if not np.all(np.isfinite(radii) & (radii >= 0)):
        raise ValueError("radii must be finite and non-negative; got NaN, inf or < 0.")
    n = float(n_dims)
    # A zero radius adds nothing to mean(r^n): log(0) = -inf is exact here.
    with np.errstate(divide="ignore"):
        log_radii = np.log(radii)
    log_mean_power = logsumexp(n * log_radii, axis=axis) - np.log(radii.shape[axis])
    log_volume = 0.5 * n * np.log(np.pi) - gammaln(0.5 * n + 1) + log_mean_power
    return log_volume / np.log(10)


class VolumeEstimator(FlatnessAnalyzer):
    """Monte-Carlo estimate of the log-volume of a network's loss basin.

    The basin (the region around the minimum where the training loss stays
    below a cutoff) is treated as star-shaped: its volume in the ``n``
    perturbed dimensions is ``V = omega_n E_phi[r(phi)^n]``, estimated from
    the radii along ``n_directions`` random filter-normalized directions
    (see :class:`BasinAnalyzer`). Poisoned minima have exponentially smaller
    volume (Huang et al., 2019).

    With ``n`` in the thousands the largest radius dominates
    ``mean(r^n)``, so the estimate is reported with the mean log-radius,
    radius quantiles and a bootstrap confidence interval over directions:
    two models differ really only where their intervals do not overlap.
    Several cutoffs are measured in one call on the same directions.

    Parameters
    ----------
    n_directions : int, default=1000
        Number of random directions.
    cutoff : float or list of float, default=0.1
        One or several loss cutoffs (absolute cross-entropy, or multiples of
        the minimum's loss with ``cutoff_type='relative'``).
    cutoff_type : {'absolute', 'relative'}, default='absolute'
        How ``cutoff`` is read.
    max_radius : float, default=1.0
        Largest radius searched.
    include_bias : bool, default=False
        Perturb biases too; ``n_dims_`` counts them then.
    rtol : float, default=1e-6
        Relative tolerance of the radii. A relative error ``eps`` in the
        radii shifts ``log10 V`` by about ``n * eps / ln 10``; that bound is
        stored in ``log10_volume_tolerance_``.
    n_bootstrap : int, default=1000
        Bootstrap resamples of the directions for the confidence interval.
    confidence_level : float, default=0.95
        Coverage of the percentile bootstrap interval.
    random_state : int, RandomState instance or None, default=None
        Seeds the directions and the bootstrap.
    n_jobs : int, default=None
        Number of joblib workers over chunks of 128 directions.
    n_threads : int, default=1
        Number of torch threads per worker.
    verbose : int, default=0
        Progress bar over chunks of directions when positive.

    Attributes
    ----------
    cutoffs_ : ndarray of shape (n_cutoffs,)
        Absolute loss cutoffs.
    radii_ : ndarray of shape (n_cutoffs, n_directions)
        Basin radius along each direction, per cutoff.
    capped_ : ndarray of bool of shape (n_cutoffs, n_directions)
        Radii that hit ``max_radius``.
    log10_volume_ : ndarray of shape (n_cutoffs,)
        Estimated ``log10`` of the basin volume per cutoff. Its first entry
        is returned when the estimator is called as a scorer.
    log10_volume_ci_ : ndarray of shape (n_cutoffs, 2)
        Bootstrap confidence interval of ``log10_volume_``.
    log10_volume_tolerance_ : float
        Bound on the error of ``log10_volume_`` due to ``rtol``.
    mean_log_radius_ : ndarray of shape (n_cutoffs,)
        Mean natural log of the radii, a robust flatness summary.
    radius_quantiles_ : ndarray of shape (n_cutoffs, 5)
        5, 25, 50, 75 and 95 % quantiles of the radii.
    n_dims_ : int
        Number of perturbed parameters ``n``.
    base_loss_, base_accuracy_ : float
        Training loss and accuracy at the minimum.
    score_ : float
        ``log10_volume_[0]``.
    n_evaluations_ : int
        Loss evaluations used.

    References
    ----------
    .. [1] W. R. Huang et al., "Understanding Generalization through
       Visualizations", arXiv:1906.03291, 2019.

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
        "n_bootstrap": [Interval(Integral, 1, None, closed="left")],
        "confidence_level": [Interval(Real, 0, 1, closed="neither")],
    }

    def __init__(
        self,
        n_directions=1000,
        cutoff=0.1,
        cutoff_type="absolute",
        max_radius=1.0,
        *,
        include_bias=False,
        rtol=1e-6,
        n_bootstrap=1000,
        confidence_level=0.95,
        random_state=None,
        n_jobs=None,
        n_threads=1,
        verbose=0,
    ):
        self.n_directions = n_directions
        self.cutoff = cutoff
        self.cutoff_type = cutoff_type
        self.max_radius = max_radius
        self.include_bias = include_bias
        self.rtol = rtol
        self.n_bootstrap = n_bootstrap
        self.confidence_level = confidence_level
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.n_threads = n_threads
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, estimator, X, y):
        """Estimate the basin volume of ``estimator``'s training loss on ``X, y``.

        Parameters
        ----------
        estimator : fitted flatgen classifier or Pipeline ending in one
            The model to measure; it is not modified.
        X : array-like of shape (n_samples, ...)
            Training inputs.
        y : array-like of shape (n_samples,)
            Training labels.

        Returns
        -------
        self : VolumeEstimator
            The estimator, with results in its ``*_`` attributes.
        """
        self.radii_, self.capped_, _ = self._measure(estimator, X, y, self.cutoff)
        n = self.n_dims_
        self.log10_volume_ = log10_ball_volume(self.radii_, n)
        self.log10_volume_tolerance_ = float(n * self.rtol / np.log(10))
        log_radii = np.log(self.radii_)
        self.mean_log_radius_ = log_radii.mean(axis=1)
        self.radius_quantiles_ = np.quantile(self.radii_, _QUANTILES, axis=1).T
        # Bootstrap over directions; its own stream, after the directions' seed.
        rng = check_random_state(self.random_state)
        rng.randint(np.iinfo(np.int32).max)
        resamples = rng.randint(
            self.n_directions, size=(self.n_bootstrap, self.n_directions)
        )
        boot = log10_ball_volume(self.radii_[:, resamples], n)
        tail = 50 * (1 - self.confidence_level)
        self.log10_volume_ci_ = np.percentile(boot, [tail, 100 - tail], axis=1).T
        self.score_ = float(self.log10_volume_[0])
        return self
