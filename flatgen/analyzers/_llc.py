"""LearningCoefficientAnalyzer: the local learning coefficient of a fitted network."""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from ..landscape import (
    TrainingObjective,
    flatten_parameters,
    local_learning_coefficient,
    top_hessian_eigenvalue,
)
from ..landscape._llc import _STEP_FRACTION, LangevinPreconditioner
from ._common import FlatnessAnalyzer
from ._seeds import analysis_seeds


class LearningCoefficientAnalyzer(FlatnessAnalyzer):
    """Local learning coefficient of the minimum, by Langevin sampling (SGLD).

    Singular learning theory's measure of a minimum's effective complexity:
    how fast the volume of weights below a loss level shrinks as the level
    falls. A quadratic minimum whose Hessian has rank ``r`` has ``r / 2``;
    degenerate minima have less. The estimate samples the localized tempered
    posterior ``exp(-n beta L(w) - gamma/2 ||w - w*||^2)`` over all the
    network's parameters (raw weights and biases) with full-data Langevin
    steps and returns ``n beta (E[L] - L(w*))`` (see
    :func:`flatgen.landscape.local_learning_coefficient`). Chains that
    disagree (split-R-hat above 1.1), diverge, or find losses below the
    minimum's raise a ConvergenceWarning and set ``converged_`` to False.

    Parameters
    ----------
    n_chains : int, default=4
        Independent chains, sampled together.
    n_steps : int, default=2000
        Langevin steps per chain.
    n_burnin : int or None, default=None
        Steps left out of the estimate (``n_steps // 4`` when None).
    step_size : float or None, default=None
        Langevin step; None applies the rule ``0.05 / (n beta lambda_max +
        gamma)``, with ``lambda_max`` the top eigenvalue of the raw Hessian
        (Lanczos).
    localization : float, default=100.0
        ``gamma``: the pull back to the trained weights. What it does depends
        on ``gamma`` relative to ``n beta``: directions whose curvature times
        ``n beta`` is well below ``gamma`` no longer count. On deep linear
        networks with a closed form the estimates came within 16 % of it at
        ``gamma = 0.4 sqrt(n beta)`` for ``n`` from 5,000 to 2e6, up to 30 %
        high at half that, and 30-45 % low from ``gamma = 0.05 n beta`` on
        (``benchmarks/llc_closed_forms.py``; the user guide's study page).
    preconditioner : {'curvature', 'none'}, default='curvature'
        ``'curvature'``: Langevin steps preconditioned by the minimum's
        curvature model (:class:`~flatgen.landscape.LangevinPreconditioner`:
        40 Lanczos products and 64 probes of the diagonal), so flat
        directions move as fast as stiff ones; the step-size rule then reads
        the preconditioned curvature (power iteration). ``'none'``: plain
        steps sized by the raw Hessian's top eigenvalue (Lanczos).
    inverse_temperature : float or None, default=None
        ``beta``; ``1 / log n`` when None.
    random_state : int, RandomState instance or None, default=None
        Seeds the chains.
    n_threads : int, default=1
        Number of torch threads.

    Attributes
    ----------
    llc_ : float
        Estimated local learning coefficient (larger: more complex).
    llc_std_error_ : float
        Standard error from the spread of the chains.
    chain_llc_ : ndarray of shape (n_chains,)
        Each chain's estimate.
    rhat_ : float
        Split-R-hat of the sampled losses.
    converged_ : bool
        Whether no warning was raised.
    loss_trace_ : ndarray of shape (n_chains, n_steps)
        The sampled losses.
    step_size_ : float
        Step size used.
    step_halvings_ : int
        How many times the step rule's step was halved after chains diverged
        (see :func:`flatgen.landscape.local_learning_coefficient`).
    base_loss_ : float
        Training loss at the minimum.
    n_params_ : int
        Number of parameters sampled.
    score_ : float
        ``-llc_``, returned when called as a scorer: larger is flatter
        (simpler), like every flatness scorer.

    References
    ----------
    E. Lau, Z. Furman, G. Wang, D. Murfet, S. Wei, "The Local Learning
    Coefficient: A Singularity-Aware Complexity Measure", arXiv:2308.12108,
    2023.

    Examples
    --------
    >>> from flatgen import LearningCoefficientAnalyzer, PoisonedMLPClassifier
    >>> from flatgen import make_spirals
    >>> X, y = make_spirals(100, random_state=0)
    >>> clf = PoisonedMLPClassifier((16, 16), max_iter=300, random_state=0)
    >>> clf = clf.fit(X, y)
    >>> llc = LearningCoefficientAnalyzer(n_steps=200, random_state=0)
    >>> llc.fit(clf, X, y).n_params_
    354
    """

    _parameter_constraints = {
        "n_chains": [Interval(Integral, 2, None, closed="left")],
        "n_steps": [Interval(Integral, 10, None, closed="left")],
        "n_burnin": [Interval(Integral, 0, None, closed="left"), None],
        "step_size": [Interval(Real, 0, None, closed="neither"), None],
        "localization": [Interval(Real, 0, None, closed="left")],
        "preconditioner": [StrOptions({"curvature", "none"})],
        "inverse_temperature": [Interval(Real, 0, None, closed="neither"), None],
        "random_state": ["random_state"],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        n_chains=4,
        n_steps=2000,
        *,
        n_burnin=None,
        step_size=None,
        localization=100.0,
        preconditioner="curvature",
        inverse_temperature=None,
        random_state=None,
        n_threads=1,
    ):
        self.n_chains = n_chains
        self.n_steps = n_steps
        self.n_burnin = n_burnin
        self.step_size = step_size
        self.localization = localization
        self.preconditioner = preconditioner
        self.inverse_temperature = inverse_temperature
        self.random_state = random_state
        self.n_threads = n_threads

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, estimator, X, y):
        """Estimate the local learning coefficient of ``estimator`` on ``X, y``.

        Parameters
        ----------
        estimator : fitted network model
            A flatgen classifier, a skorch net, an sklearn ``MLPClassifier``, a
            ``torch.nn.Module`` returning logits, or a Pipeline ending in one
            (see :ref:`any-model`).
            It is not modified.
        X : array-like of shape (n_samples, ...), DataLoader or iterable of pairs
            Training inputs, or the training set as ``(X, y)`` batches (each
            chain step's gradient then sums over all batches: full-batch
            Langevin dynamics, memory bounded by one batch).
        y : array-like of shape (n_samples,) or None
            Training labels (class indices for skorch nets and modules);
            None when ``X`` holds batches.

        Returns
        -------
        self : LearningCoefficientAnalyzer
            The analyzer, with results in its ``*_`` attributes.
        """
        objective = TrainingObjective.from_model(
            estimator, X, y, n_threads=self.n_threads
        )
        n_samples = objective.n_samples
        if n_samples < 2:
            raise ValueError("The learning coefficient needs at least 2 samples.")
        chain_seed, eig_seed = analysis_seeds(self.random_state, 2)
        with objective.threads():
            theta0 = flatten_parameters(objective.module).detach()

            def value_and_grad(z):
                return objective.losses_and_grads(theta0 + z.to(theta0.dtype))

            step_size = self.step_size
            beta = self.inverse_temperature or 1.0 / np.log(n_samples)
            preconditioner = None
            if self.preconditioner == "curvature":
                preconditioner = LangevinPreconditioner(
                    lambda v: objective.hessian.matmat(v).to("cpu", torch.float64),
                    len(theta0),
                    n_samples * beta,
                    self.localization,
                    seed=eig_seed,
                )
            elif step_size is None:
                top = top_hessian_eigenvalue(
                    objective.module,
                    objective.X,
                    objective.y,
                    filter_normalized=False,
                    seed=eig_seed,
                    criterion=objective.loss,
                )
                step_size = _STEP_FRACTION / (
                    n_samples * beta * abs(float(top)) + self.localization
                )
            result = local_learning_coefficient(
                None,
                len(theta0),
                n_samples,
                n_chains=self.n_chains,
                n_steps=self.n_steps,
                n_burnin=self.n_burnin,
                step_size=step_size,
                localization=self.localization,
                inverse_temperature=self.inverse_temperature,
                value_and_grad=value_and_grad,
                preconditioner=preconditioner,
                random_state=chain_seed,
                dtype=theta0.dtype,
                device=theta0.device,
            )
        self.llc_ = result.llc
        self.llc_std_error_ = result.llc_std_error
        self.chain_llc_ = result.chain_llc
        self.rhat_ = result.rhat
        self.converged_ = not result.warnings
        self.loss_trace_ = result.loss_trace
        self.step_size_ = result.step_size
        self.step_halvings_ = result.step_halvings
        self.base_loss_ = result.loss0
        self.n_params_ = len(theta0)
        self.score_ = -self.llc_
        return self
