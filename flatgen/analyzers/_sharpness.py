"""Sharpness analyzers: worst-case and average loss increase, tolerated scales."""

import warnings
from numbers import Integral, Real

from sklearn.base import _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions

from ..landscape import (
    TrainingObjective,
    average_sharpness,
    pac_bayes_sigma,
    perturbation_scale,
    worst_case_radius,
    worst_case_sharpness,
)
from ..landscape._sharpness import SCALES
from ._common import FlatnessAnalyzer
from ._deprecation import DEPRECATED, former_name, renamed
from ._seeds import analysis_seeds

_COMMON = {
    "scale": [StrOptions(set(SCALES))],
    "include_bias": ["boolean"],
    "random_state": ["random_state"],
    "n_threads": [Interval(Integral, 1, None, closed="left"), None],
}


def _landscape(analyzer, estimator, X, y):
    """Landscape, trained weights and perturbation scale of a fitted model."""
    landscape = TrainingObjective.from_model(
        estimator,
        X,
        y,
        include_bias=analyzer.include_bias,
        n_threads=analyzer.n_threads,
    )
    with landscape.threads():
        analyzer.base_loss_ = landscape.base_loss()[0]
    theta0 = landscape.theta0
    scale = perturbation_scale(
        landscape.evaluator.layout, theta0, analyzer.scale, analyzer.include_bias
    )
    return landscape, theta0, scale


class SharpnessAnalyzer(FlatnessAnalyzer):
    """Worst-case or average loss increase under weight perturbations.

    With ``kind='worst_case'``: ``max_{||u|| <= radius} L(theta* + s * u) -
    L(theta*)``, by projected gradient ascent from seeded random starts (the
    sharpness SAM minimizes, Foret et al. 2021); with ``scale='adaptive'``
    (``s = |theta*|``) the adaptive worst-case sharpness of Andriushchenko
    et al. (2023), invariant to rescaling the layers of a ReLU network.
    With ``kind='average'``: ``E_u[L(theta* + radius * s * u)] - L(theta*)``,
    ``u ~ N(0, I)``. The loss is the mean training cross-entropy.

    Parameters
    ----------
    kind : {'worst_case', 'average'}, default='worst_case'
        Maximum over a ball, or mean under Gaussian noise.
    scale : {'adaptive', 'filter_normalized', 'raw'}, default='adaptive'
        Per-weight scale ``s`` of the perturbation: ``|theta*|``, the
        weight's filter norm, or 1.
    radius : float, default=0.1
        Radius of the ball of ``u`` (worst case) or standard deviation of
        the noise multiplier (average).
    n_steps : int, default=20
        Gradient-ascent steps per start (worst case).
    n_restarts : int, default=1
        Random starts (worst case); the largest increase is kept.
    n_draws : int, default=64
        Gaussian draws (average).
    include_bias : bool, default=False
        Whether biases and normalization parameters are perturbed.
    random_state : int, RandomState instance or None, default=None
        Seeds the starts or the draws.
    n_threads : int, default=1
        Number of torch threads.
    n_samples : int, default='deprecated'
        Former name of ``n_draws`` (Monte-Carlo draws are ``n_draws`` across
        analyzers; ``n_samples`` is the data's size in scikit-learn); still
        accepted, with a FutureWarning.

    Attributes
    ----------
    sharpness_ : float
        The loss increase (larger is sharper).
    std_error_ : float
        Monte-Carlo standard error (average); nan for the worst case, whose
        ascent gives a lower bound of the maximum.
    base_loss_ : float
        Training loss at the minimum.
    score_ : float
        ``-sharpness_``, returned when called as a scorer: larger is
        flatter, like every flatness scorer.

    Examples
    --------
    >>> from flatgen import PoisonedMLPClassifier, SharpnessAnalyzer, make_spirals
    >>> X, y = make_spirals(100, random_state=0)
    >>> clf = PoisonedMLPClassifier(max_iter=300, random_state=0).fit(X, y)
    >>> SharpnessAnalyzer(random_state=0).fit(clf, X, y).sharpness_ >= 0
    True
    """

    _parameter_constraints = {
        **_COMMON,
        "kind": [StrOptions({"worst_case", "average"})],
        "radius": [Interval(Real, 0, None, closed="neither")],
        "n_steps": [Interval(Integral, 1, None, closed="left")],
        "n_restarts": [Interval(Integral, 1, None, closed="left")],
        "n_draws": [Interval(Integral, 2, None, closed="left")],
        "n_samples": former_name([Interval(Integral, 2, None, closed="left")]),
    }

    def __init__(
        self,
        kind="worst_case",
        scale="adaptive",
        radius=0.1,
        *,
        n_steps=20,
        n_restarts=1,
        n_draws=64,
        include_bias=False,
        random_state=None,
        n_threads=1,
        n_samples=DEPRECATED,
    ):
        self.kind = kind
        self.scale = scale
        self.radius = radius
        self.n_steps = n_steps
        self.n_restarts = n_restarts
        self.n_draws = n_draws
        self.include_bias = include_bias
        self.random_state = random_state
        self.n_threads = n_threads
        self.n_samples = n_samples

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, estimator, X, y):
        """Measure the sharpness of ``estimator``'s training loss on ``X, y``.

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
        self : SharpnessAnalyzer
            The analyzer, with results in its ``*_`` attributes.
        """
        landscape, theta0, scale = _landscape(self, estimator, X, y)
        (seed,) = analysis_seeds(self.random_state)
        with landscape.threads():
            if self.kind == "worst_case":
                self.sharpness_, _ = worst_case_sharpness(
                    landscape.loss_and_grad,
                    theta0,
                    scale,
                    float(self.radius),
                    n_steps=self.n_steps,
                    n_restarts=self.n_restarts,
                    seed=seed,
                )
                self.std_error_ = float("nan")
            else:
                self.sharpness_, self.std_error_ = average_sharpness(
                    lambda thetas: landscape.evaluator.evaluate(thetas)[0],
                    theta0,
                    scale,
                    float(self.radius),
                    n_samples=renamed(self, "n_draws", "n_samples"),
                    seed=seed,
                )
        self.score_ = -self.sharpness_
        return self


class PACBayesAnalyzer(FlatnessAnalyzer):
    """PAC-Bayes flatness: the largest weight noise the minimum tolerates.

    The largest ``sigma`` with ``E_u[L(theta* + sigma * s * u)] - L(theta*)
    <= bound``, ``u ~ N(0, I)``, by a bracketing root search on ``log sigma``
    (Chandrupatla's method) with common random numbers; Jiang et al.
    (2020) found ``1 / sigma**2`` ("pacbayes.flatness") among the measures
    most correlated with the generalization gap. Their bound is 0.1 on the
    training error; here it is on the mean training cross-entropy.

    Parameters
    ----------
    bound : float, default=0.1
        Largest tolerated mean loss increase.
    scale : {'adaptive', 'filter_normalized', 'raw'}, default='raw'
        Per-weight scale ``s`` of the noise (``'raw'``: Jiang et al.'s
        ``pacbayes.flatness``; ``'adaptive'``: their magnitude-aware
        variant).
    n_draws : int, default=64
        Gaussian draws, reused at every sigma.
    sigma_max : float, default=10.0
        Upper end of the search.
    rtol : float, default=1e-3
        Relative precision of sigma.
    include_bias : bool, default=False
        Whether biases and normalization parameters are perturbed.
    random_state : int, RandomState instance or None, default=None
        Seeds the draws.
    n_threads : int, default=1
        Number of torch threads.
    n_samples : int, default='deprecated'
        Former name of ``n_draws`` (Monte-Carlo draws are ``n_draws`` across
        analyzers; ``n_samples`` is the data's size in scikit-learn); still
        accepted, with a FutureWarning.

    Attributes
    ----------
    sigma_ : float
        The largest tolerated noise level.
    capped_ : bool
        Whether the loss stayed below the bound up to ``sigma_max`` (then
        ``sigma_`` is only a lower bound; a ConvergenceWarning says so).
    flatness_ : float
        ``1 / sigma_**2`` (larger is sharper).
    n_evaluations_ : int
        Noise levels tried.
    base_loss_ : float
        Training loss at the minimum.
    score_ : float
        ``-flatness_``, returned when called as a scorer: larger is flatter,
        like every flatness scorer.

    Examples
    --------
    >>> from flatgen import PACBayesAnalyzer, PoisonedMLPClassifier, make_spirals
    >>> X, y = make_spirals(100, random_state=0)
    >>> clf = PoisonedMLPClassifier(max_iter=300, random_state=0).fit(X, y)
    >>> PACBayesAnalyzer(random_state=0).fit(clf, X, y).sigma_ > 0
    True
    """

    _parameter_constraints = {
        **_COMMON,
        "bound": [Interval(Real, 0, None, closed="neither")],
        "n_draws": [Interval(Integral, 2, None, closed="left")],
        "n_samples": former_name([Interval(Integral, 2, None, closed="left")]),
        "sigma_max": [Interval(Real, 0, None, closed="neither")],
        "rtol": [Interval(Real, 0, 1, closed="neither")],
    }

    def __init__(
        self,
        bound=0.1,
        scale="raw",
        *,
        n_draws=64,
        sigma_max=10.0,
        rtol=1e-3,
        include_bias=False,
        random_state=None,
        n_threads=1,
        n_samples=DEPRECATED,
    ):
        self.bound = bound
        self.scale = scale
        self.n_draws = n_draws
        self.sigma_max = sigma_max
        self.rtol = rtol
        self.include_bias = include_bias
        self.random_state = random_state
        self.n_threads = n_threads
        self.n_samples = n_samples

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, estimator, X, y):
        """Find the largest tolerated noise of ``estimator``'s weights on ``X, y``.

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
        self : PACBayesAnalyzer
            The analyzer, with results in its ``*_`` attributes.
        """
        landscape, theta0, scale = _landscape(self, estimator, X, y)
        (seed,) = analysis_seeds(self.random_state)
        with landscape.threads():
            self.sigma_, self.capped_, self.n_evaluations_ = pac_bayes_sigma(
                lambda thetas: landscape.evaluator.evaluate(thetas)[0],
                theta0,
                scale,
                bound=float(self.bound),
                n_samples=renamed(self, "n_draws", "n_samples"),
                sigma_max=float(self.sigma_max),
                rtol=float(self.rtol),
                seed=seed,
            )
        return _tolerated(
            self, "sigma", f"the mean loss increase at sigma_max={self.sigma_max:g}"
        )


class WorstCaseFlatnessAnalyzer(FlatnessAnalyzer):
    """Worst-case flatness: the largest ball of weights the minimum tolerates.

    The largest ``radius`` with ``max_{||u|| <= radius} L(theta* + s * u) -
    L(theta*) <= bound``, the maximum found by projected gradient ascent (as
    in :class:`SharpnessAnalyzer`, from the same seeded starts at every
    radius) and the radius by a bracketing root search on ``log radius``.
    The worst-case sharpness then needs no radius set by hand: each model
    gets the one at which its loss rises by ``bound``. Jiang et al. (2020)
    rank networks by ``1 / radius**2`` ("sharpness.flatness"; with
    ``scale='adaptive'`` "sharpness.mag.flatness"); their bound is 0.1 on
    the training error, here it is on the mean training cross-entropy. On a
    quadratic ``radius = sqrt(2 bound / lambda_max(S H S))``; on a network
    the ascent finds a lower bound of each maximum, so ``radius_`` is an
    upper bound of the exact radius.

    Parameters
    ----------
    bound : float, default=0.1
        Largest tolerated loss increase.
    scale : {'adaptive', 'filter_normalized', 'raw'}, default='raw'
        Per-weight scale ``s`` of the perturbation (``'raw'``: Jiang et
        al.'s ``sharpness.flatness``; ``'adaptive'``: their magnitude-aware
        variant).
    n_steps : int, default=20
        Gradient-ascent steps per start and radius.
    n_restarts : int, default=1
        Random starts per radius; the largest increase is kept.
    radius_max : float, default=10.0
        Upper end of the search.
    rtol : float, default=1e-3
        Relative precision of the radius.
    include_bias : bool, default=False
        Whether biases and normalization parameters are perturbed.
    random_state : int, RandomState instance or None, default=None
        Seeds the starts.
    n_threads : int, default=1
        Number of torch threads.

    Attributes
    ----------
    radius_ : float
        The largest tolerated radius.
    capped_ : bool
        Whether the loss stayed below the bound up to ``radius_max`` (then
        ``radius_`` is only a lower bound; a ConvergenceWarning says so).
    flatness_ : float
        ``1 / radius_**2`` (larger is sharper).
    n_evaluations_ : int
        Radii tried, each ``n_restarts * (n_steps + 1)`` gradients.
    base_loss_ : float
        Training loss at the minimum.
    score_ : float
        ``-flatness_``, returned when called as a scorer: larger is flatter,
        like every flatness scorer.

    See Also
    --------
    SharpnessAnalyzer : The loss increase at a given radius.
    PACBayesAnalyzer : The same search under Gaussian noise.

    Examples
    --------
    >>> from flatgen import PoisonedMLPClassifier, WorstCaseFlatnessAnalyzer
    >>> from flatgen import make_spirals
    >>> X, y = make_spirals(100, random_state=0)
    >>> clf = PoisonedMLPClassifier(max_iter=300, random_state=0).fit(X, y)
    >>> WorstCaseFlatnessAnalyzer(n_steps=5, random_state=0).fit(clf, X, y).radius_ > 0
    True
    """

    _parameter_constraints = {
        **_COMMON,
        "bound": [Interval(Real, 0, None, closed="neither")],
        "n_steps": [Interval(Integral, 1, None, closed="left")],
        "n_restarts": [Interval(Integral, 1, None, closed="left")],
        "radius_max": [Interval(Real, 0, None, closed="neither")],
        "rtol": [Interval(Real, 0, 1, closed="neither")],
    }

    def __init__(
        self,
        bound=0.1,
        scale="raw",
        *,
        n_steps=20,
        n_restarts=1,
        radius_max=10.0,
        rtol=1e-3,
        include_bias=False,
        random_state=None,
        n_threads=1,
    ):
        self.bound = bound
        self.scale = scale
        self.n_steps = n_steps
        self.n_restarts = n_restarts
        self.radius_max = radius_max
        self.rtol = rtol
        self.include_bias = include_bias
        self.random_state = random_state
        self.n_threads = n_threads

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, estimator, X, y):
        """Find the largest tolerated ball around ``estimator``'s weights on ``X, y``.

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
        self : WorstCaseFlatnessAnalyzer
            The analyzer, with results in its ``*_`` attributes.
        """
        landscape, theta0, scale = _landscape(self, estimator, X, y)
        (seed,) = analysis_seeds(self.random_state)
        with landscape.threads():
            self.radius_, self.capped_, self.n_evaluations_ = worst_case_radius(
                landscape.loss_and_grad,
                theta0,
                scale,
                bound=float(self.bound),
                n_steps=self.n_steps,
                n_restarts=self.n_restarts,
                radius_max=float(self.radius_max),
                rtol=float(self.rtol),
                seed=seed,
            )
        return _tolerated(
            self,
            "radius",
            "the largest loss increase found in the ball of "
            f"radius_max={self.radius_max:g}",
        )


def _tolerated(analyzer, name, at_cap):
    """Finish a search for the largest tolerated scale ``name_``: flag, check, score.

    Sets ``flatness_ = 1 / scale**2`` and ``score_``; warns when the search
    reached its cap (``at_cap`` says where the loss stayed within the bound)
    and refuses a scale of zero (no minimum to measure).
    """
    scale = getattr(analyzer, f"{name}_")
    if analyzer.capped_:
        warnings.warn(
            f"{at_cap[0].upper()}{at_cap[1:]} stayed within bound="
            f"{analyzer.bound:g}: {name}_ is only a lower bound and flatness_ an "
            f"upper bound. Raise {name}_max.",
            ConvergenceWarning,
            stacklevel=3,
        )
    if scale <= 0:
        raise ValueError(
            f"The training loss rises above the bound at any {name}: the "
            "estimator's loss is not finite or not at a minimum on this X, y."
        )
    analyzer.flatness_ = 1.0 / scale**2
    analyzer.score_ = -analyzer.flatness_
    return analyzer
