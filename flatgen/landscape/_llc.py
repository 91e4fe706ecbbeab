"""Local learning coefficient of a minimum by Langevin sampling (singular learning).

The local learning coefficient (LLC) ``lambda`` of a minimum ``w*`` says how
fast the volume of weights with loss below ``L(w*) + eps`` shrinks as ``eps``
falls: ``V(eps) ~ eps^lambda`` (up to log factors). A quadratic minimum of
Hessian rank ``r`` has ``lambda = r / 2``; degenerate (singular) minima have
less, and are "simpler" in this sense. Following Lau et al. (2023, "Quantifying
degeneracy in singular models via the learning coefficient"), the estimator
samples the localized tempered posterior

    p(w) ~ exp(-n beta L(w) - gamma/2 ||w - w*||^2),   beta = 1 / log n,

with stochastic-gradient Langevin dynamics (here with full-data gradients)
and reports ``lambda = n beta (E_p[L] - L(w*))``. For a quadratic
``L = L(w*) + 1/2 sum_i a_i z_i^2`` the posterior is Gaussian and
``n beta E_p[L - L(w*)] = 1/2 sum_i n beta a_i / (n beta a_i + gamma)``,
which tends to ``r / 2`` as ``gamma -> 0``: the ground truth of the tests.
"""

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from ._volume import _check_int

__all__ = [
    "LangevinPreconditioner",
    "LearningCoefficient",
    "local_learning_coefficient",
    "split_rhat",
]

# Step-size rule: epsilon * (n beta lambda_max + gamma) = this fraction. The
# Langevin discretization then inflates the stiffest direction's variance by
# 1 / (1 - fraction / 4), 1.3 %, and less in the others (0.01 mixed 5x more
# slowly: rank-8 quadratic, 5,000 steps, estimate 10 % low from burn-in).
_STEP_FRACTION = 0.05
# From the rule's step, a run whose loss stops being finite restarts at half
# the step, at most this many times (1/256 of the rule's step at the last);
# the estimate then comes from a run _SETTLE_HALVINGS halvings further in.
_MAX_STEP_HALVINGS = 8
_SETTLE_HALVINGS = 3
# Chains whose split-R-hat of the sampled losses exceeds this have not mixed.
_RHAT_LIMIT = 1.1


@dataclass(frozen=True)
class LearningCoefficient:
    """Result of :func:`local_learning_coefficient`.

    Attributes
    ----------
    llc : float
        Estimated local learning coefficient (mean over chains).
    llc_std_error : float
        Standard error of ``llc`` from the spread of the chains' estimates.
    chain_llc : ndarray of shape (n_chains,)
        Each chain's estimate.
    rhat : float
        Split-R-hat of the sampled losses over chains (after burn-in); near
        1 when the chains agree.
    loss_trace : ndarray of shape (n_chains, n_steps)
        Loss at every step of every chain.
    step_size : float
        Langevin step size used.
    step_halvings : int
        How many times the rule's step was halved after a run diverged, the
        three further halvings of the final run included (0 with a given
        ``step_size``).
    localization : float
        ``gamma``.
    inverse_temperature : float
        ``beta``.
    n_samples : int
        ``n`` of ``n beta``.
    loss0 : float
        Loss at the minimum.
    n_evaluations : int
        Loss-and-gradient evaluations (per chain).
    warnings : tuple of str
        The warnings raised, in words.
    """

    llc: float
    llc_std_error: float
    chain_llc: np.ndarray
    rhat: float
    loss_trace: np.ndarray
    step_size: float
    localization: float
    inverse_temperature: float
    n_samples: int
    loss0: float
    n_evaluations: int
    warnings: tuple = field(default=())
    step_halvings: int = 0


def split_rhat(traces):
    """Split-R-hat (Gelman et al.) of chains of one scalar.

    Parameters
    ----------
    traces : ndarray of shape (n_chains, n_draws)
        Draws of each chain (after burn-in).

    Returns
    -------
    rhat : float
        Potential scale reduction; NaN with fewer than 4 draws per chain.
    """
    traces = np.asarray(traces, dtype=float)
    half = traces.shape[1] // 2
    if half < 2:
        return float("nan")
    halves = np.concatenate([traces[:, :half], traces[:, half : 2 * half]])
    within = halves.var(axis=1, ddof=1).mean()
    between = half * halves.mean(axis=1).var(ddof=1)
    if within == 0:
        return 1.0 if between == 0 else float("inf")
    pooled = (half - 1) / half * within + between / half
    return float(math.sqrt(pooled / within))


def _autograd_value_and_grad(loss_fn):
    def value_and_grad(w):
        w = w.detach().requires_grad_(True)
        with torch.enable_grad():
            losses = loss_fn(w)
            if not isinstance(losses, torch.Tensor) or not losses.requires_grad:
                raise TypeError(
                    "loss_fn must be differentiable by torch autograd (pass "
                    "value_and_grad= otherwise)."
                )
            (grad,) = torch.autograd.grad(losses.sum(), w)
        return losses.detach(), grad.detach()

    return value_and_grad


def _top_curvature(value_and_grad, n_dims, dtype, device, generator, n_iter=30):
    """Largest Hessian eigenvalue at 0 by power iteration on gradient differences.

    A finite difference of gradients needs no double backpropagation, so any
    ``value_and_grad`` serves; its relative step keeps rounding small.
    """
    v = torch.randn(n_dims, generator=generator, dtype=torch.float64)
    v = (v / v.norm()).to(device, dtype)
    _, g0 = value_and_grad(torch.zeros((1, n_dims), dtype=dtype, device=device))
    h = 1e-4 if dtype == torch.float64 else 1e-2
    value = 0.0
    for _ in range(n_iter):
        _, g = value_and_grad((h * v)[None])
        hv = (g[0] - g0[0]) / h
        value = float(torch.dot(hv.double(), v.double()))
        norm = hv.norm()
        if not torch.isfinite(norm) or norm == 0:
            break
        v = hv / norm
    return abs(value)


def _top_posterior_curvature(
    value_and_grad, n_dims, n_beta, localization, scale, dtype, device, generator
):
    """Top eigenvalue of ``S^1/2 (n beta H + gamma) S^1/2`` (S the preconditioner)."""
    if scale is None:
        curvature = _top_curvature(value_and_grad, n_dims, dtype, device, generator)
        return n_beta * curvature + localization
    if isinstance(scale, torch.Tensor):
        root = scale.sqrt()

        def forward(z):
            return z * root

        def backward(g):
            return g * root

        largest = float(scale.max())
    else:

        def forward(z):
            return scale.apply(z.to("cpu", torch.float64)).to(device, dtype)

        def backward(g):
            return scale.transpose_apply(g.to("cpu", torch.float64)).to(device, dtype)

        # gamma A^T A: its top eigenvalue by power iteration on the map.
        v = torch.randn(n_dims, generator=generator, dtype=torch.float64)[None]
        for _ in range(30):
            v = scale.transpose_apply(scale.apply(v))
            largest = float(v.norm())
            v = v / v.norm()

    def scaled(z):
        losses, grads = value_and_grad(forward(z))
        return losses, backward(grads)

    curvature = _top_curvature(scaled, n_dims, dtype, device, generator)
    return n_beta * curvature + localization * largest


class LangevinPreconditioner:
    """A constant Langevin preconditioner ``P = A A^T`` from the curvature.

    ``A = M^{-1/2}`` for ``M ~ n beta H + gamma``, with ``H`` modelled as in
    the volume engine (converged top eigenpairs split off, the rest's
    diagonal; see :class:`~flatgen.landscape.CurvaturePreconditioner`), its
    curvatures floored at ``gamma / (n beta)``. A constant ``P`` leaves the
    sampled posterior unchanged; it lets every direction move at the pace of
    its own curvature, where plain steps, sized for the stiffest direction,
    barely move the flat ones (on poisoned swiss-roll networks, a 100 to
    1,000 times smaller step).

    Parameters
    ----------
    hvp : callable
        Hessian-vector products of the loss at the minimum, ``(B, n) -> (B,
        n)``.
    n_dims : int
        Number of parameters.
    n_beta : float
        ``n beta``.
    localization : float
        ``gamma``.
    rank : int, default=40
        Lanczos products for the split-off eigenpairs.
    n_probes : int, default=64
        Probes of the diagonal.
    seed : int, default=0
        Seed of the Lanczos start and the probes.

    Attributes
    ----------
    n_products : int
        Hessian-vector products spent.
    """

    def __init__(
        self, hvp, n_dims, n_beta, localization, *, rank=40, n_probes=64, seed=0
    ):
        from ._volume import CurvaturePreconditioner

        floor = max(float(localization), 1e-6) / float(n_beta)
        self._model = CurvaturePreconditioner.from_curvature(
            hvp,
            n_dims,
            rank=min(rank, n_dims),
            n_probes=n_probes,
            floor=floor,
            seed=seed,
        )
        self._scale = 1.0 / math.sqrt(n_beta)
        self.n_products = self._model.n_products

    def apply(self, vectors):
        """Map rows ``u`` to ``A u`` (float64).

        Parameters
        ----------
        vectors : torch.Tensor of shape (B, n)
            Rows.

        Returns
        -------
        mapped : torch.Tensor of shape (B, n)
            ``A u`` for each row, float64.
        """
        return self._model.apply(vectors.double()) * self._scale

    def transpose_apply(self, vectors):
        """Map rows ``g`` to ``A^T g`` (float64).

        Parameters
        ----------
        vectors : torch.Tensor of shape (B, n)
            Rows.

        Returns
        -------
        mapped : torch.Tensor of shape (B, n)
            ``A^T g`` for each row, float64.
        """
        return self._model.transpose_apply(vectors.double()) * self._scale


def _check_number(name, value, low):
    ok = isinstance(value, (int, float, np.integer, np.floating))
    if isinstance(value, bool) or not ok or not np.isfinite(value) or value < low:
        raise ValueError(
            f"{name} must be a finite number >= {low}. Got {value!r} instead."
        )


def local_learning_coefficient(
    loss_fn,
    n_dims,
    n_samples,
    *,
    n_chains=4,
    n_steps=1000,
    n_burnin=None,
    step_size=None,
    localization=100.0,
    inverse_temperature=None,
    loss0=None,
    value_and_grad=None,
    preconditioner=None,
    random_state=None,
    dtype=torch.float64,
    device=None,
):
    """Estimate the local learning coefficient of a minimum by Langevin sampling.

    Parameters
    ----------
    loss_fn : callable
        Maps a (B, n_dims) tensor of displacements ``z = w - w*`` to the B
        mean training losses ``L(w* + z)``; differentiable by autograd unless
        ``value_and_grad`` is given.
    n_dims : int
        Number of parameters.
    n_samples : int
        Number of training samples ``n`` behind the mean loss.
    n_chains : int, default=4
        Independent chains (sampled together, one batched call per step).
    n_steps : int, default=1000
        Langevin steps per chain.
    n_burnin : int, default=None
        Steps left out of the estimate; ``n_steps // 4`` when None.
    step_size : float, default=None
        Langevin step ``epsilon``. None applies the rule
        ``epsilon = 0.05 / (n beta lambda_max + gamma)``, with ``lambda_max``
        the top Hessian eigenvalue at the minimum (power iteration on
        gradients): the discretization then inflates the posterior variance
        by at most 1.3 %, in the stiffest direction. The rule reads the
        curvature at the minimum only: where a chain's loss stops being
        finite (chains leaving a very flat minimum meet far steeper walls,
        as clean networks do at a weak localization, within a few steps),
        the run starts again at half the step, up to 8 times, and the
        estimate comes from a run at an eighth of the first step that ran
        through (which lies near the edge of stability, where the
        discretization inflates the posterior); ``step_halvings`` counts the
        halvings. A given step is used as it is.
    localization : float, default=100.0
        ``gamma``, the strength of the pull back to the minimum (keeps the
        chains in the minimum's basin; larger values bias the estimate low,
        by ``gamma / (n beta a + gamma)`` in a direction of curvature ``a``).
    inverse_temperature : float, default=None
        ``beta``; ``1 / log n`` when None (Watanabe's WBIC temperature).
    loss0 : float, default=None
        ``L(w*)`` if known.
    value_and_grad : callable, default=None
        Maps (B, n_dims) displacements to ``(losses (B,), gradients (B,
        n_dims))``; by autograd through ``loss_fn`` when None.
    preconditioner : array-like of shape (n_dims,), LangevinPreconditioner or None
        A constant preconditioner ``P`` of the Langevin steps
        (``w -= eps/2 P grad U`` plus noise of covariance ``eps P``): the
        posterior is the same, the pace of each direction its own. A vector
        is a diagonal ``P``; an object with ``apply`` and ``transpose_apply``
        is ``P = A A^T`` (see :class:`LangevinPreconditioner`). None: plain
        steps. The step-size rule then reads the top eigenvalue of the
        preconditioned posterior curvature.
    random_state : int, RandomState instance or None, default=None
        Seeds the chains' noise.
    dtype : torch.dtype, default=torch.float64
        Dtype of the displacements.
    device : torch.device, default=None
        Device of the displacements (CPU when None).

    Returns
    -------
    result : LearningCoefficient
        The estimate, its standard error over chains, the chains' estimates,
        split-R-hat, the loss traces and the settings used.

    Raises
    ------
    ValueError
        For bad options, before any step.

    Warns
    -----
    sklearn.exceptions.ConvergenceWarning
        When the chains disagree (split-R-hat above 1.1), when the estimate
        is negative (the chains found losses below the minimum's: not a
        minimum, or steps too large), or when a chain's loss stops being
        finite (then the estimate is NaN).

    References
    ----------
    E. Lau, Z. Furman, G. Wang, D. Murfet, S. Wei, "The Local Learning
    Coefficient: A Singularity-Aware Complexity Measure", arXiv:2308.12108,
    2023. S. Watanabe, "A widely applicable Bayesian information criterion",
    JMLR 14, 2013.

    Examples
    --------
    >>> import torch
    >>> from flatgen.landscape import local_learning_coefficient
    >>> def loss(z):  # quadratic of rank 2 in 4 dimensions: lambda = 1
    ...     return 0.5 * (z[:, :2] ** 2).sum(1)
    >>> result = local_learning_coefficient(
    ...     loss, 4, 10_000, n_steps=4000, localization=0.01, random_state=0
    ... )
    >>> round(result.llc, 1)
    1.0
    """
    _check_int("n_dims", n_dims, 1)
    _check_int("n_samples", n_samples, 2)
    _check_int("n_chains", n_chains, 2)
    _check_int("n_steps", n_steps, 10)
    if n_burnin is None:
        n_burnin = n_steps // 4
    _check_int("n_burnin", n_burnin, 0)
    if n_burnin > n_steps - 4:
        raise ValueError(
            f"n_burnin must leave at least 4 steps of the {n_steps}; got {n_burnin}."
        )
    _check_number("localization", localization, 0)
    if step_size is not None:
        _check_number("step_size", step_size, 0)
        if step_size == 0:
            raise ValueError("step_size must be positive. Got 0 instead.")
    if inverse_temperature is None:
        inverse_temperature = 1.0 / math.log(n_samples)
    _check_number("inverse_temperature", inverse_temperature, 0)
    if n_chains * n_dims * 8 * 2 > 2 * 1024**3:
        raise ValueError(
            f"n_chains={n_chains} chains of {n_dims} parameters would hold more "
            "than 2 GiB of state; use fewer chains."
        )
    if not callable(loss_fn) and value_and_grad is None:
        raise TypeError(f"loss_fn must be callable. Got {type(loss_fn).__name__}.")
    device = torch.device("cpu") if device is None else torch.device(device)
    if value_and_grad is None:
        value_and_grad = _autograd_value_and_grad(loss_fn)
    rng = check_random_state(random_state)
    generator = torch.Generator(device="cpu").manual_seed(
        int(rng.randint(np.iinfo(np.int32).max))
    )
    n_beta = n_samples * inverse_temperature
    origin = torch.zeros((1, n_dims), dtype=dtype, device=device)
    if loss0 is None:
        loss0 = float(value_and_grad(origin)[0][0])
    scale = None
    if preconditioner is not None and not hasattr(preconditioner, "apply"):
        scale = torch.as_tensor(preconditioner, dtype=dtype).to(device).reshape(-1)
        if scale.shape != (n_dims,) or not torch.all(
            torch.isfinite(scale) & (scale > 0)
        ):
            raise ValueError(
                f"preconditioner must hold {n_dims} positive finite numbers."
            )
    elif preconditioner is not None:
        scale = preconditioner
    ruled = step_size is None
    if ruled:
        step_size = _STEP_FRACTION / _top_posterior_curvature(
            value_and_grad,
            n_dims,
            n_beta,
            localization,
            scale,
            dtype,
            device,
            generator,
        )

    def run(step):
        trace, diverged_at = _langevin_run(
            value_and_grad,
            (n_chains, n_dims),
            n_steps,
            step,
            n_beta,
            localization,
            scale,
            generator,
            dtype,
            device,
        )
        return trace, diverged_at, n_steps if diverged_at is None else diverged_at + 1

    halvings, n_evaluations = 0, 0
    while True:
        trace, diverged_at, used = run(step_size)
        n_evaluations += used
        if diverged_at is None or not ruled or halvings == _MAX_STEP_HALVINGS:
            break
        halvings += 1
        step_size /= 2
    if ruled and halvings and diverged_at is None:
        # The first step that ran through lies within a factor 2 of where
        # the chains diverge, where the discretization inflates the
        # posterior (on a quartic basin +24 % there, +2 % at an eighth):
        # the estimate comes from a run at an eighth of it.
        halvings += _SETTLE_HALVINGS
        step_size /= 2**_SETTLE_HALVINGS
        trace, diverged_at, used = run(step_size)
        n_evaluations += used
    messages = []
    if diverged_at is not None:
        advice = (
            f"even at 1/{2**halvings} of the step rule's step"
            if ruled
            else "the steps are too large for this loss (lower step_size)"
        )
        messages.append(
            f"A chain's loss stopped being finite at step {diverged_at}: {advice}; "
            "the estimate is NaN."
        )
    kept = trace[:, n_burnin:]
    chain_llc = n_beta * (kept.mean(axis=1) - loss0)
    llc = float(chain_llc.mean())
    std_error = float(chain_llc.std(ddof=1) / math.sqrt(n_chains))
    rhat = split_rhat(kept) if np.all(np.isfinite(kept)) else float("nan")
    if np.isfinite(rhat) and rhat > _RHAT_LIMIT:
        messages.append(
            f"The chains disagree (split-R-hat {rhat:.3f} > {_RHAT_LIMIT}): they "
            "have not mixed; run more steps (n_steps) or more chains before "
            "trusting the estimate."
        )
    if np.isfinite(llc) and llc < 0:
        messages.append(
            f"The estimate is negative ({llc:.4g}): the chains found losses below "
            "the minimum's, so the weights are not at a minimum (or the steps are "
            "too large)."
        )
    for message in messages:
        warnings.warn(message, ConvergenceWarning, stacklevel=2)
    return LearningCoefficient(
        llc=llc,
        llc_std_error=std_error,
        chain_llc=chain_llc,
        rhat=rhat,
        loss_trace=trace,
        step_size=float(step_size),
        localization=float(localization),
        inverse_temperature=float(inverse_temperature),
        n_samples=int(n_samples),
        loss0=float(loss0),
        n_evaluations=n_evaluations,
        warnings=tuple(messages),
        step_halvings=halvings,
    )


def _langevin_run(
    value_and_grad,
    shape,
    n_steps,
    step_size,
    n_beta,
    localization,
    scale,
    generator,
    dtype,
    device,
):
    """Langevin chains from the minimum: their loss traces, and where one diverged.

    Returns the ``(n_chains, n_steps)`` trace (NaN after a divergence) and
    the step at which a chain's loss stopped being finite, or None.
    """
    n_chains, n_dims = shape
    w = torch.zeros(shape, dtype=dtype, device=device)
    trace = np.empty((n_chains, n_steps))
    noise_scale = math.sqrt(step_size)
    for t in range(n_steps):
        losses, grads = value_and_grad(w)
        trace[:, t] = losses.detach().to("cpu", torch.float64).numpy()
        if not np.all(np.isfinite(trace[:, t])):
            trace[:, t + 1 :] = np.nan
            return trace, t
        noise = torch.randn(shape, generator=generator, dtype=dtype)
        if scale is None:
            w = (
                w
                - 0.5 * step_size * (n_beta * grads + localization * w)
                + noise_scale * noise.to(device)
            )
        elif isinstance(scale, torch.Tensor):
            # Langevin with a constant preconditioner: the same posterior,
            # every direction moving at the pace of its own curvature.
            w = (
                w
                - 0.5 * step_size * scale * (n_beta * grads + localization * w)
                + noise_scale * scale.sqrt() * noise.to(device)
            )
        else:
            # A map A with P = A A^T: drift P grad, noise A xi.
            # The map's factors live on the CPU, in float64.
            force = (n_beta * grads + localization * w).to("cpu", torch.float64)
            drift = scale.apply(scale.transpose_apply(force)).to(device, dtype)
            w = (
                w
                - 0.5 * step_size * drift
                + noise_scale * scale.apply(noise.double()).to(device, dtype)
            )
    return trace, None
