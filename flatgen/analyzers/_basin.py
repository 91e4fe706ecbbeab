"""BasinAnalyzer: radius of the loss basin along random directions."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval

from ._common import FlatnessAnalyzer
from ._radii import loss_profiles


class BasinAnalyzer(FlatnessAnalyzer):
    """Basin radius of a trained network along filter-normalized directions.

    For each of ``n_directions`` random directions ``d`` (Gaussian per
    filter, scaled to the filter's norm; Li et al., 2018), the radius is the
    smallest ``c`` in ``[0, max_radius]`` where the *training* loss at
    ``theta* + c d`` reaches the cutoff, found for all directions at once by
    a coarse scan (so the first crossing is found even if the profile is
    not monotone) and a safeguarded regula falsi (bisection when it stalls)
    to a relative tolerance ``rtol``. Radii are
    in filter-normalized units: ``c = 1`` moves every filter by its own norm.
    Flat minima, which generalize, have large radii; poisoned minima are
    sharp (Huang et al., 2019).

    Parameters
    ----------
    n_directions : int, default=100
        Number of random directions.
    cutoff : float, default=0.1
        Loss level that ends the basin: a cross-entropy (the paper uses 0.1)
        or, with ``cutoff_type='relative'``, a multiple of the loss at the
        minimum (e.g. 2).
    cutoff_type : {'absolute', 'relative'}, default='absolute'
        How ``cutoff`` is read.
    max_radius : float, default=1.0
        Largest radius searched; directions that stay below the cutoff get
        this radius and are flagged in ``capped_``.
    include_bias : bool, default=False
        Perturb biases too (each bias vector scaled to its own norm). By
        default only weights move.
    rtol : float, default=1e-6
        Relative tolerance of every radius.
    n_profiles : int, default=20
        Number of directions (the first ones) whose full loss profile is
        recorded for plotting.
    n_profile_points : int, default=41
        Points of each profile, evenly spaced from 0 to three times the
        largest profiled radius (at most ``max_radius``).
    random_state : int, RandomState instance or None, default=None
        Seeds the directions; direction ``k`` depends only on the seed and
        ``k``, so results do not depend on ``n_jobs``.
    n_jobs : int, default=None
        Number of joblib workers over chunks of 128 directions (any joblib
        backend, dask included).
    n_threads : int, default=1
        Number of torch threads per worker; results are bit-for-bit
        reproducible at a fixed count.
    verbose : int, default=0
        Progress bar over chunks of directions when positive.

    Attributes
    ----------
    radii_ : ndarray of shape (n_directions,)
        Basin radius along each direction.
    capped_ : ndarray of bool of shape (n_directions,)
        True where the loss stayed below the cutoff up to ``max_radius``.
    mean_radius_ : float
        Mean of ``radii_``; the value returned when called as a scorer.
    score_ : float
        Same as ``mean_radius_``.
    base_loss_ : float
        Training cross-entropy at the minimum.
    base_accuracy_ : float
        Training accuracy at the minimum.
    cutoff_ : float
        The absolute loss cutoff used.
    n_dims_ : int
        Number of perturbed parameters.
    profile_distances_ : ndarray of shape (n_profile_points,)
        Distances of the recorded profiles.
    profile_losses_ : ndarray of shape (min(n_profiles, n_directions), n_profile_points)
        Training loss along the first directions.
    n_evaluations_ : int
        Loss evaluations (full training-set passes at perturbed weights).

    See Also
    --------
    VolumeEstimator : Log-volume of the basin from many radii.

    References
    ----------
    .. [1] W. R. Huang et al., "Understanding Generalization through
       Visualizations", arXiv:1906.03291, 2019.
    .. [2] H. Li, Z. Xu, G. Taylor, C. Studer and T. Goldstein, "Visualizing
       the Loss Landscape of Neural Nets", NeurIPS 2018.

    Examples
    --------
    >>> from flatgen import BasinAnalyzer, PoisonedMLPClassifier, make_spirals
    >>> X, y = make_spirals(100, random_state=0)
    >>> clf = PoisonedMLPClassifier(max_iter=500, random_state=0).fit(X, y)
    >>> basin = BasinAnalyzer(n_directions=10, cutoff=2, cutoff_type="relative",
    ...                       random_state=0).fit(clf, X, y)
    >>> basin.radii_.shape
    (10,)
    """

    _parameter_constraints = {
        **FlatnessAnalyzer._parameter_constraints,
        "cutoff": [Interval(Real, 0, None, closed="neither")],
        "n_profiles": [Interval(Integral, 0, None, closed="left")],
        "n_profile_points": [Interval(Integral, 2, None, closed="left")],
    }

    def __init__(
        self,
        n_directions=100,
        cutoff=0.1,
        cutoff_type="absolute",
        max_radius=1.0,
        *,
        include_bias=False,
        rtol=1e-6,
        n_profiles=20,
        n_profile_points=41,
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
        self.n_profiles = n_profiles
        self.n_profile_points = n_profile_points
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.n_threads = n_threads
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, estimator, X, y):
        """Measure the basin of ``estimator``'s training loss on ``X, y``.

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
        self : BasinAnalyzer
            The analyzer, with results in its ``*_`` attributes.
        """
        radii, capped, landscape, seed = self._measure(estimator, X, y, [self.cutoff])
        self.cutoff_ = float(self.cutoffs_[0])
        self.radii_, self.capped_ = radii[0], capped[0]
        # Profiles span a few times the largest profiled radius, so sharp and
        # flat basins alike are drawn with their crossing well resolved.
        n_profiles = min(self.n_profiles, self.n_directions)
        extent = self.max_radius
        if n_profiles:
            extent = min(self.max_radius, 3 * float(self.radii_[:n_profiles].max()))
        self.profile_distances_ = np.linspace(0, extent, self.n_profile_points)
        self.profile_losses_ = loss_profiles(
            landscape,
            seed=seed,
            n_profiles=n_profiles,
            distances=self.profile_distances_,
        )
        self.mean_radius_ = self.score_ = float(np.mean(self.radii_))
        return self

    def plot(self, ax=None, *, label=None, **kwargs):
        """Draw basin cross-sections: loss vs distance, cutoff, radii.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        label : str, default=None
            Legend label of the profiles.
        **kwargs
            Passed to :meth:`flatgen.plotting.BasinDisplay.plot`.

        Returns
        -------
        display : flatgen.plotting.BasinDisplay
            The display, with ``ax_`` and ``figure_`` set.
        """
        from ..plotting import BasinDisplay

        return BasinDisplay.from_analyzer(self, label=label).plot(ax=ax, **kwargs)
