"""AnnealedVolumeEstimator: a network's basin volume measured by annealing."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from ..landscape import annealed_log10_volume, log10_unit_ball_volume
from ._common import FlatnessAnalyzer


class AnnealedVolumeEstimator(FlatnessAnalyzer):
    """Log-volume of a network's loss basin by thermodynamic integration.

    Where :class:`VolumeEstimator` averages over rays (exact on near-quadratic
    basins, hundreds of orders low where higher-order terms shape the
    basin), this analyzer anneals: it integrates the Gibbs measure of the
    training loss from the basin's calibrated quadratic model to the loss
    itself, with Hamiltonian Monte Carlo chains, and inverts the Laplace
    transform at its saddle point
    (:func:`flatgen.landscape.annealed_log10_volume`). The interval comes
    from independent runs and each run's forward/backward hysteresis; the
    diagnostics say when it may be too narrow.

    Parameters
    ----------
    cutoff : float or list of float, default=0.5
        One or several loss cutoffs (each measured by its own runs).
    cutoff_type : {'absolute', 'relative'}, default='absolute'
        How ``cutoff`` is read.
    max_radius : float, default=1.0
        Radius of the ball the basin is measured in, as a multiple of the
        length of the paper's filter-normalized direction (as for
        :class:`VolumeEstimator`).
    space : {'filter_normalized', 'raw'}, default='filter_normalized'
        Coordinates of the volume.
    basin : {'star', 'sublevel'}, default='star'
        The set measured: the star-shaped basin (every point whose segment
        from the trained weights stays below the cutoff, the set
        :class:`VolumeEstimator`'s rays measure), or the sublevel set of the
        loss inside the cap ball as far as the chains reach it (on trained
        networks dominated by low-loss regions behind ridges).
    segment_points : int, default=16
        Points along each segment at which ``basin='star'`` checks the loss.
    start : {'auto', 'model', 'cap ball'}, default='auto'
        Where the paths start (see
        :func:`flatgen.landscape.annealed_log10_volume`); with the
        adaptive whitening, ``'auto'`` is the cap ball.
    metric : {'adaptive', 'model'}, default='adaptive'
        HMC's whitening on a path from the cap ball: adapted to the chains'
        gradients (per weight), or the calibrated quadratic model's. The
        adaptive one suits networks, whose loss at the cap is far from its
        quadratic model at the weights (the engine's default is 'model',
        for the rotated bodies of the test bed).
    n_runs : int, default=4
        Independent runs per cutoff.
    n_chains : int, default=16
        HMC chains per run.
    stone_spread : float, default=0.5
        Spacing of the path: the spread (nats) of each stepping stone's
        log-weights; smaller is slower and less biased.
    max_temperatures : int, default=2000
        Most points on each leg of the path.
    n_steps : int, default=20
        HMC transitions per point.
    n_leapfrog : int, default=10
        Leapfrog steps per transition.
    include_bias : bool, default=False
        Perturb biases too.
    confidence_level : float, default=0.95
        Nominal coverage of ``log10_volume_ci_``.
    random_state : int, RandomState instance or None, default=None
        Seeds every run.
    n_jobs : int, default=None
        joblib workers over runs.
    n_threads : int, default=1
        torch threads per worker.
    verbose : int, default=0
        Progress bar over runs when positive.

    Attributes
    ----------
    cutoffs_ : ndarray of shape (n_cutoffs,)
        Absolute loss cutoffs.
    log10_volume_ : ndarray of shape (n_cutoffs,)
        Estimated ``log10`` of the basin volume in ``space``.
    log10_volume_ci_ : ndarray of shape (n_cutoffs, 2)
        Interval over runs (Student's t; the runs' spread floored by their
        own jackknife standard errors), widened by half the hysteresis.
    log10_volume_raw_ : ndarray of shape (n_cutoffs,)
        The volume in raw weight space.
    run_log10_volumes_ : ndarray of shape (n_cutoffs, n_runs)
        Each run's estimate.
    hysteresis_ : ndarray of shape (n_cutoffs, n_runs)
        Forward minus backward estimate of each run.
    run_standard_errors_ : ndarray of shape (n_cutoffs, n_runs)
        Each run's jackknife standard error of its saddle-point inversion
        (a floor under the runs' spread in the interval).
    n_temperatures_ : ndarray of shape (n_cutoffs, n_runs)
        Points on each run's path.
    rhat_ : ndarray of shape (n_cutoffs,)
        Split R-hat of the loss over each run's chains at its last
        temperature, the largest over runs.
    run_rhats_ : ndarray of shape (n_cutoffs, n_runs)
        Each run's split R-hat.
    acceptance_ : ndarray of shape (n_cutoffs,)
        Mean HMC acceptance rate.
    log10_model_volume_ : ndarray of shape (n_cutoffs,)
        Volume of the calibrated quadratic model's basin; NaN on paths from
        the cap ball with ``metric='adaptive'`` (the default), which build
        no model.
    star_shaped_share_ : ndarray of shape (n_cutoffs,)
        Share of final samples reached from the minimum by a straight
        segment inside the basin (1: the set measured is the star-shaped
        basin of :class:`VolumeEstimator`).
    cap_share_ : ndarray of shape (n_cutoffs,)
        Share of the HMC trajectories at the saddle point that reflected
        off the cap ball: well above 0, the basin reaches ``max_radius``
        and the estimate depends on it (from 0.5 a
        :class:`~flatgen.landscape.VolumeSaturationWarning`).
    log10_cap_volume_ : float
        ``log10`` volume of the cap ball in ``space`` (radius
        ``max_radius`` paper directions): no estimate exceeds it, and
        where ``cap_share_`` is near 1 the cap, not the loss, bounds the
        basin, so estimates then depend on ``max_radius``.
    start_ : ndarray of str of shape (n_cutoffs,)
        Where the paths started: ``'model'`` (the calibrated quadratic
        model) or ``'cap ball'`` (where the model reaches the cap).
    metric_ : ndarray of str of shape (n_cutoffs,)
        The whitening HMC used: ``'adaptive'`` or ``'model'``.
    reliable_ : ndarray of bool of shape (n_cutoffs,)
        False where a convergence diagnostic warned (the cap's warning
        leaves it: the chains measured the capped set).
    n_dims_ : int
        Number of perturbed parameters.
    log10_scale_det_ : float
        Offset between filter-normalized and raw volumes.
    base_loss_, base_accuracy_ : float
        Training loss and accuracy at the minimum.
    score_ : float
        ``log10_volume_[0]``, or NaN when it is not reliable (larger is
        flatter).
    n_gradients_ : int
        Loss-and-gradient evaluations.
    n_evaluations_ : int
        Loss evaluations of the radius searches.
    n_hvp_ : int
        Hessian-vector products.
    seconds_ : float
        Wall time of the measurement.
    warnings_ : list of str
        Every warning raised by the fit, in words.

    See Also
    --------
    VolumeEstimator : Ray estimators of the same basin.
    flatgen.landscape.annealed_log10_volume : The engine, for any torch loss.

    Examples
    --------
    >>> from flatgen import (AnnealedVolumeEstimator, PoisonedMLPClassifier,
    ...                      make_spirals)
    >>> X, y = make_spirals(100, random_state=0)
    >>> clf = PoisonedMLPClassifier(hidden_layer_sizes=(8,), max_iter=500,
    ...                             random_state=0).fit(X, y)
    >>> volume = AnnealedVolumeEstimator(cutoff=2.0, cutoff_type="relative",
    ...     n_runs=2, n_chains=4, n_steps=4, random_state=0)
    >>> volume.fit(clf, X, y).log10_volume_.shape
    (1,)
    """

    _parameter_constraints = {
        **FlatnessAnalyzer._parameter_constraints,
        "cutoff": [Interval(Real, 0, None, closed="neither"), "array-like"],
        "space": [StrOptions({"filter_normalized", "raw"})],
        "basin": [StrOptions({"star", "sublevel"})],
        "segment_points": [Interval(Integral, 2, 1000, closed="both")],
        "start": [StrOptions({"auto", "model", "cap ball"})],
        "metric": [StrOptions({"model", "adaptive"})],
        "n_runs": [Interval(Integral, 2, 1000, closed="both")],
        "n_chains": [Interval(Integral, 2, 100_000, closed="both")],
        "stone_spread": [Interval(Real, 0, None, closed="neither")],
        "max_temperatures": [Interval(Integral, 2, 100_000, closed="both")],
        "n_steps": [Interval(Integral, 2, 100_000, closed="both")],
        "n_leapfrog": [Interval(Integral, 1, 10_000, closed="both")],
        "confidence_level": [Interval(Real, 0, 1, closed="neither")],
    }

    def __init__(
        self,
        cutoff=0.5,
        cutoff_type="absolute",
        max_radius=1.0,
        *,
        space="filter_normalized",
        basin="star",
        segment_points=16,
        start="auto",
        metric="adaptive",
        n_runs=4,
        n_chains=16,
        stone_spread=0.5,
        max_temperatures=2000,
        n_steps=20,
        n_leapfrog=10,
        include_bias=False,
        confidence_level=0.95,
        random_state=None,
        n_jobs=None,
        n_threads=1,
        verbose=0,
    ):
        self.cutoff = cutoff
        self.cutoff_type = cutoff_type
        self.max_radius = max_radius
        self.space = space
        self.basin = basin
        self.segment_points = segment_points
        self.start = start
        self.metric = metric
        self.n_runs = n_runs
        self.n_chains = n_chains
        self.stone_spread = stone_spread
        self.max_temperatures = max_temperatures
        self.n_steps = n_steps
        self.n_leapfrog = n_leapfrog
        self.include_bias = include_bias
        self.confidence_level = confidence_level
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.n_threads = n_threads
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, estimator, X, y):
        """Measure the basin volume of ``estimator``'s training loss on ``X, y``.

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
            Training labels.

        Returns
        -------
        self : AnnealedVolumeEstimator
            The analyzer, with results in its ``*_`` attributes.

        Warns
        -----
        sklearn.exceptions.ConvergenceWarning
            When a run's paths lag, the runs disagree, HMC barely accepts, or
            the set sampled is not star-shaped.
        flatgen.landscape.VolumeSaturationWarning
            When at least half of the trajectories at the saddle point reflect
            off the cap ball (``cap_share_``): the value is the basin's volume
            inside the cap and grows with ``max_radius``.
        """
        landscape = self._prepare(estimator, X, y, self.cutoff)
        loss = landscape.basin_loss(self.space)
        self.n_dims_ = loss.n_dims
        self.log10_scale_det_ = loss.log10_filter_norm_det
        cap_radius = float(self.max_radius) * loss.paper_scale()
        self.log10_cap_volume_ = float(
            log10_unit_ball_volume(loss.n_dims) + loss.n_dims * np.log10(cap_radius)
        )
        results = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with landscape.threads():
                for cutoff in self.cutoffs_:
                    results.append(
                        annealed_log10_volume(
                            loss,
                            loss.n_dims,
                            float(cutoff),
                            basin=self.basin,
                            segment_points=self.segment_points,
                            start=self.start,
                            metric=self.metric,
                            n_runs=self.n_runs,
                            n_chains=self.n_chains,
                            stone_spread=float(self.stone_spread),
                            max_temperatures=self.max_temperatures,
                            n_steps=self.n_steps,
                            n_leapfrog=self.n_leapfrog,
                            max_radius=cap_radius,
                            confidence_level=float(self.confidence_level),
                            random_state=self.random_state,
                            hvp=loss.hvp,
                            value_and_grad=loss.losses_and_grads,
                            loss0=self.base_loss_,
                            # The network's precision: the whitening basis
                            # is kept in it (half the memory traffic).
                            dtype=loss.objective.theta0.dtype,
                            n_jobs=self.n_jobs,
                            n_threads=self.n_threads,
                            verbose=self.verbose,
                        )
                    )
        for record in caught:
            warnings.warn(record.message, stacklevel=2)
        self.warnings_ = [str(record.message) for record in caught]

        def stack(name):
            return np.array([getattr(r, name) for r in results])

        self.log10_volume_ = stack("log10_volume")
        self.log10_volume_ci_ = stack("log10_volume_ci").reshape(-1, 2)
        self.log10_volume_raw_ = self.log10_volume_ + loss.log10_scale_det
        self.run_log10_volumes_ = stack("run_log10_volumes")
        self.hysteresis_ = stack("hysteresis")
        self.run_standard_errors_ = stack("run_standard_errors")
        self.n_temperatures_ = stack("n_temperatures")
        self.rhat_ = stack("rhat")
        self.run_rhats_ = stack("run_rhats")
        self.acceptance_ = stack("acceptance")
        self.log10_model_volume_ = stack("log10_model_volume")
        self.star_shaped_share_ = stack("star_shaped_share")
        self.cap_share_ = stack("cap_share")
        self.start_ = stack("start")
        self.metric_ = stack("metric")
        self.reliable_ = stack("reliable").astype(bool)
        self.n_gradients_ = int(stack("n_gradients").sum())
        self.n_evaluations_ = int(stack("n_evaluations").sum())
        self.n_hvp_ = int(stack("n_hvp").sum())
        self.seconds_ = float(stack("seconds").sum())
        self.score_ = (
            float(self.log10_volume_[0]) if self.reliable_[0] else float("nan")
        )
        return self
