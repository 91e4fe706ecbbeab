"""Log-volume of a loss basin: preconditioned importance sampling along rays.

The basin ``B = {z : loss(z) < cutoff}`` around a minimum at ``z = 0`` is
treated as star-shaped. With a linear change of variables ``z = P u`` its
volume is ``V = |det P| omega_n E_v[rho(v)^n]``, where ``v`` is uniform on
the unit sphere of ``u``-space and ``rho(v)`` is the basin's radius along
``v`` there (Monte Carlo over rays in polar coordinates). Any invertible
``P`` gives an unbiased estimate; a good one makes ``rho`` nearly constant,
so the average is no longer set by the single longest ray:

- ``estimator='naive'``: ``P = I``: directions uniform on the sphere of
  ``z`` (the paper's formula). On a basin whose curvature spans decades the
  average of ``r^n`` is dominated by one direction and is low by orders of
  magnitude (Jensen: it sees the mean curvature where the volume needs the
  mean log-curvature).
- ``estimator='preconditioned'``: ``P = M^{-1/2}`` for a curvature model
  ``M`` the engine measures itself from Hessian-vector products: the
  converged extreme eigenpairs of ``H`` (Lanczos) deflate ``H``, a probe
  estimate of the remainder's diagonal whitens it, and a second Lanczos run
  on the whitened operator adds a low-rank correction. On a quadratic basin
  with an exact model every ray has the same ``rho`` and the estimate is
  exact; this is importance sampling of directions by the angular Gaussian
  of ``M^{-1}`` (Scherlis & Belrose, 2025). The full model, its diagonal
  alone and ``P = I`` are ranked by the Jensen gap each leaves (from a few
  products) and the best is used, so it never does worse than uniform rays
  on a quadratic basin.
"""

import math
import warnings
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import gammaln, logsumexp
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from .._torch_utils import torch_threads
from ._directions import _direction_seed
from ._dispatch import map_chunks
from ._radius import first_crossings
from ._spectrum import lanczos_extremes, probe_diagonal

__all__ = [
    "BasinVolume",
    "CurvaturePreconditioner",
    "VolumeSaturationWarning",
    "basin_log10_volume",
    "log10_ball_volume",
    "log10_unit_ball_volume",
    "volume_from_radii",
]

ESTIMATORS = ("preconditioned", "naive")
_LN10 = math.log(10.0)
# Scan below the quadratic prediction first (2^-3 of it), then double: the
# first crossing is bracketed at a factor-2 resolution before bisection.
_SCAN_START = -3
_MAX_DOUBLINGS = 60
# Bisection halves a factor-two bracket: 200 rounds reach any rtol.
_MAX_BISECTIONS = 200
# A Ritz pair counts as converged when its residual is this small relative
# to its own Ritz value (stage 1 deflates with it, so it must be good).
_RITZ_RTOL = 1e-3
# An estimate over at least _ESS_MIN_RAYS rays whose effective sample size
# is below _ESS_MIN_SHARE of them is set by a few rays: its interval falls
# back to distribution-free bounds, and it is warned about and flagged.
_ESS_MIN_RAYS = 20
_ESS_MIN_SHARE = 0.1
# Probe vectors drawn and multiplied at a time.
_PROBE_BLOCK = 256
# Memory the results may take (per-ray radii, flags and raw lengths for every
# cutoff, 17 bytes each); more rays than fit are refused up front.
_MAX_RESULT_BYTES = 2 * 1024**3


def rests_on_few_rays(effective_sample_size, n_rays):
    """Whether a volume estimate is set by a few of its rays.

    Parameters
    ----------
    effective_sample_size : float or array-like
        Effective sample size of the estimate(s).
    n_rays : int
        Number of rays behind them.

    Returns
    -------
    few : bool or ndarray of bool
        True where there are at least 20 rays and the effective sample size
        is below 10 % of them: the estimate is then usually below the true
        volume and its Monte-Carlo interval is not trustworthy.
    """
    ess = np.asarray(effective_sample_size, dtype=float)
    return (n_rays >= _ESS_MIN_RAYS) & (ess < _ESS_MIN_SHARE * n_rays)


class VolumeSaturationWarning(UserWarning):
    """Too many rays reached the search cap: the volume is only a lower bound."""


def log10_unit_ball_volume(n_dims):
    """``log10`` of the volume of the unit ball in ``n_dims`` dimensions.

    Parameters
    ----------
    n_dims : int
        Dimension.

    Returns
    -------
    log10_volume : float
        ``log10(pi^(n/2) / Gamma(n/2 + 1))``.

    Examples
    --------
    >>> from flatgen.landscape import log10_unit_ball_volume
    >>> round(10 ** log10_unit_ball_volume(3), 6)  # 4/3 pi
    4.18879
    """
    n = float(n_dims)
    return float((0.5 * n * math.log(math.pi) - gammaln(0.5 * n + 1)) / _LN10)


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
    >>> from flatgen.landscape import log10_ball_volume
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
    return log10_unit_ball_volume(n_dims) + log_mean_power / np.log(10)


def _stream(seed, *key):
    """Return a seeded CPU generator for the named stream of ``seed``."""
    return torch.Generator(device="cpu").manual_seed(_direction_seed(seed, *key))


class CurvaturePreconditioner:
    """Linear map ``z = P u`` with ``P = diag(s) A_1 A_2 ...``, a whitening.

    ``s`` whitens a diagonal curvature estimate; each ``A_j = I + W_j
    diag(f_j) W_j^T`` (``W_j`` with orthonormal columns) corrects it along a
    few directions, so that ``P^T H P`` is close to the identity.

    Parameters
    ----------
    scale : torch.Tensor of shape (n,)
        Positive diagonal ``s``.
    stages : list of (basis, curvatures), default=()
        Each ``basis`` of shape (n, k) has orthonormal columns ``W_j``; the
        positive ``curvatures`` ``mu`` (shape (k,)) are the curvatures along
        them after the previous factors, and ``f_j = mu^-1/2 - 1``.

    Attributes
    ----------
    n_dims : int
        Dimension ``n``.
    rank : int
        Total number of low-rank directions.
    log_det : float
        Natural log of ``|det P| = prod(s) prod(mu)^-1/2``.
    n_products : int
        Hessian-vector products used to build it (0 unless built by
        :meth:`from_curvature`).
    """

    def __init__(self, scale, stages=()):
        self.scale = torch.as_tensor(scale, dtype=torch.float64)
        self.n_dims = len(self.scale)
        self.stages = []
        log_det = float(torch.log(self.scale).sum())
        for basis, curvatures in stages:
            basis = torch.as_tensor(basis, dtype=torch.float64)
            curvatures = torch.as_tensor(curvatures, dtype=torch.float64)
            if basis.shape[1]:
                self.stages.append((basis, curvatures.rsqrt() - 1.0))
                log_det -= 0.5 * float(torch.log(curvatures).sum())
        self.rank = int(sum(b.shape[1] for b, _ in self.stages))
        self.log_det = log_det
        self.n_products = 0

    @classmethod
    def identity(cls, n_dims):
        """Return the identity map (uniform directions).

        Parameters
        ----------
        n_dims : int
            Dimension.

        Returns
        -------
        preconditioner : CurvaturePreconditioner
            ``P = I``.
        """
        return cls(torch.ones(n_dims, dtype=torch.float64))

    @staticmethod
    def _correct(vectors, stages):
        for basis, factor in stages:
            vectors = vectors + ((vectors @ basis) * factor) @ basis.T
        return vectors

    def apply(self, vectors):
        """Map rows ``u`` to ``P u``.

        Parameters
        ----------
        vectors : torch.Tensor of shape (B, n)
            Rows in the whitened space.

        Returns
        -------
        mapped : torch.Tensor of shape (B, n)
            Rows in the original space (float64).
        """
        vectors = torch.as_tensor(vectors, dtype=torch.float64)
        return self._correct(vectors, reversed(self.stages)) * self.scale

    def transpose_apply(self, vectors):
        """Map rows ``z`` to ``P^T z``.

        Parameters
        ----------
        vectors : torch.Tensor of shape (B, n)
            Rows in the original space.

        Returns
        -------
        mapped : torch.Tensor of shape (B, n)
            Rows ``P^T z`` (float64).
        """
        vectors = torch.as_tensor(vectors, dtype=torch.float64) * self.scale
        return self._correct(vectors, self.stages)

    @classmethod
    def from_curvature(cls, hvp, n_dims, *, rank, n_probes, floor, seed):
        """Build the preconditioner from Hessian-vector products.

        1. Lanczos on ``H`` (``rank`` products): its converged extreme
           positive eigenpairs ``(theta, U)`` are split off,
           ``R = H - U theta U^T``, and the curvature model is
           ``M = diag(R) + U theta U^T``, with ``diag(R)`` from
           ``n_probes`` Rademacher probes. Splitting first keeps a few large
           rotated eigenvalues from swamping the diagonal estimate.
        2. Lanczos on the operator whitened by ``M^-1/2`` (``rank``
           products): its converged Ritz pairs away from 1 add a low-rank
           correction for what the first model missed.

        Curvatures are floored at ``floor`` (in the original space), so no
        direction is modelled flatter than the search can resolve.

        Parameters
        ----------
        hvp : callable
            Maps a (B, n) tensor to its (B, n) Hessian products.
        n_dims : int
            Dimension ``n``.
        rank : int
            Lanczos steps per stage (0 for a diagonal-only model).
        n_probes : int
            Probe vectors for the diagonal.
        floor : float
            Smallest curvature modelled (e.g. the curvature whose quadratic
            radius reaches the search cap).
        seed : int
            Seed of the start vectors and probes.

        Returns
        -------
        preconditioner : CurvaturePreconditioner
            With ``n_products`` set.
        """
        n_products = 0

        def counted(vectors):
            nonlocal n_products
            n_products += len(vectors)
            return hvp(vectors).to(torch.float64)

        # Stage 1: converged extreme eigenpairs of H, split off.
        split_vals = torch.zeros(0, dtype=torch.float64)
        split_vecs = torch.zeros((n_dims, 0), dtype=torch.float64)
        if rank > 0:
            values, vectors, residuals = lanczos_extremes(
                counted, n_dims, rank, _stream(seed, 1, 0)
            )
            # Each pair to its own scale: deflating a half-converged pair
            # would smear its error over the diagonal estimate.
            keep = (residuals <= _RITZ_RTOL * values.abs()) & (values > floor)
            split_vals, split_vecs = values[keep], vectors[:, keep]

        def residual_hvp(vectors):
            out = counted(vectors)
            if len(split_vals):
                out = out - ((vectors @ split_vecs) * split_vals) @ split_vecs.T
            return out

        diagonal = probe_diagonal(
            residual_hvp, n_dims, max(n_probes, 1), _stream(seed, 1, 1)
        )
        positive = diagonal[diagonal > 0]
        # Entries the split-off part covers have ~0 residual diagonal; a
        # relative floor keeps the map well conditioned there.
        relative = 1e-6 * float(positive.median()) if len(positive) else 0.0
        diagonal = torch.clamp(diagonal, min=max(floor, relative, 1e-300))
        scale = diagonal.rsqrt()
        stages = []
        if len(split_vals):
            # M = D^1/2 (I + G G^T) D^1/2 with G = D^-1/2 U theta^1/2.
            g = split_vecs * scale[:, None] * split_vals.sqrt()
            q, singular, _ = torch.linalg.svd(g, full_matrices=False)
            stages.append((q, 1.0 + singular.square()))
        first = cls(scale, stages)

        # Stage 2: low-rank correction of the whitened operator.
        if rank > 0:

            def whitened(vectors):
                return first.transpose_apply(counted(first.apply(vectors)))

            values, vectors, residuals = lanczos_extremes(
                whitened, n_dims, rank, _stream(seed, 1, 2)
            )
            # Directions the first model already gets right (mu ~ 1) add
            # nothing; half-converged ones would leave their coupling behind.
            keep = (residuals <= 0.1 * values.abs().clamp(min=1.0)) & (
                (values - 1.0).abs() > 0.05
            )
            vectors = vectors[:, keep]
            stretch = first.apply(vectors.T).square().sum(1)
            curvatures = torch.maximum(values[keep], floor * stretch)
            curvatures = torch.clamp(curvatures, min=1e-300)
            stages.append((vectors, curvatures))
        preconditioner = cls(scale, stages)
        preconditioner.n_products = n_products
        return preconditioner


def full_hessian(*hvps, n_dims):
    """Return the whole Hessian from products with blocks of unit vectors.

    With several product functions, the sum of their Hessians. The products
    are written into one ``n x n`` float64 matrix and symmetrized in place,
    block by block: the assembly holds one matrix (3.2 GB at ``n = 20,000``)
    where stacking the blocks and averaging with the transpose held four to
    five.
    """
    hessian = torch.zeros((n_dims, n_dims), dtype=torch.float64)
    for hvp in hvps:
        for start in range(0, n_dims, _PROBE_BLOCK):
            stop = min(start + _PROBE_BLOCK, n_dims)
            units = torch.zeros((stop - start, n_dims), dtype=torch.float64)
            units[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            hessian[start:stop] += hvp(units).to("cpu", torch.float64)
    # (H + H^T) / 2 a pair of blocks at a time: each entry the same sum as
    # the whole matrix's, without a transposed copy.
    for i in range(0, n_dims, _PROBE_BLOCK):
        rows = slice(i, i + _PROBE_BLOCK)
        for j in range(i, n_dims, _PROBE_BLOCK):
            cols = slice(j, j + _PROBE_BLOCK)
            mean = 0.5 * (hessian[rows, cols] + hessian[cols, rows].T)
            hessian[rows, cols] = mean
            hessian[cols, rows] = mean.T
    return hessian


def _full_hessian_preconditioner(hvp, n_dims, floor):
    """Build the exact quadratic model: the whole Hessian, eigendecomposed.

    ``H`` is assembled from ``n`` products (blocks of unit vectors),
    symmetrized, and ``P = V diag(lambda)^-1/2 V^T`` with every eigenvalue
    floored at ``floor`` (and at 1e-12 of the largest, so the map stays well
    conditioned where ``H`` is singular or indefinite). On a quadratic basin
    this whitens the body into a ball: every ray has the same radius, and the
    estimate is exact whatever the rotation or the spread of the spectrum.
    """
    hessian = full_hessian(hvp, n_dims=n_dims)
    values, vectors = torch.linalg.eigh(hessian)
    del hessian
    top = float(values.max())
    curvatures = torch.clamp(values, min=max(floor, 1e-12 * max(top, 0.0), 1e-300))
    preconditioner = CurvaturePreconditioner(
        torch.ones(n_dims, dtype=torch.float64), [(vectors, curvatures)]
    )
    preconditioner.n_products = n_dims
    return preconditioner


# The exact quadratic model keeps the n x n Hessian and its eigenvectors.
_MAX_FULL_DIMS = 20_000


# First scan step where the loss has no curvature to predict one: the scan
# doubles from 1/8 of it, and crossings before that are bisected from 0.
_FLAT_START = 1.0
_FLAT_NOTE = (
    "The loss is flat to second order at the minimum (zero curvature in every "
    "probed direction), so no quadratic model shapes the rays: the volume is "
    "measured with uniform rays (as estimator='naive'), its interval from their "
    "spread alone."
)


def _check_curvature(mean_curvature, what):
    """Return whether the loss is flat to second order; refuse a non-minimum.

    ``mean_curvature`` is a Hutchinson estimate of ``trace(H) / n``, which
    is non-negative for any positive semi-definite ``H``: a negative value
    means the origin is not a minimum, where no basin is defined.
    """
    if not np.isfinite(mean_curvature):
        raise ValueError(
            f"The curvature of loss_fn at the minimum is not finite ({what} per "
            f"dimension: {mean_curvature}); check the loss."
        )
    if mean_curvature < 0:
        raise ValueError(
            "loss_fn has negative curvature at the origin (" + what + " per "
            f"dimension: {mean_curvature:.4g}): the origin is not a minimum, and "
            "the basin volume is defined around one."
        )
    return mean_curvature == 0


def _whitened_trace(preconditioner, hvp, n_dims, n_probes, seed):
    """Hutchinson estimate of ``trace(P^T H P)`` (same probes for every ``P``).

    Not floored: a zero or negative value says the loss is flat to second
    order or not at a minimum. Probes are drawn and multiplied in blocks, so
    memory does not grow with ``n_probes``.
    """
    generator = _stream(seed, 2, 0)
    forms = []
    for start in range(0, n_probes, _PROBE_BLOCK):
        size = min(_PROBE_BLOCK, n_probes - start)
        signs = torch.randint(0, 2, (size, n_dims), generator=generator)
        mapped = preconditioner.apply(2.0 * signs.double() - 1.0)
        products = hvp(mapped).to(torch.float64)
        forms.append((mapped * products).sum(1))
    return float(torch.cat(forms).mean())


def _jensen_gap(preconditioner, trace, n_dims):
    """How far uniform rays in the whitened space would miss the volume.

    For a quadratic basin with whitened curvatures ``kappa`` the naive
    estimate there is low by about ``n/2 (log mean kappa - mean log kappa)``
    (Jensen). ``mean log kappa`` is ``(log det H)/n + 2 log|det P|/n``, and
    ``log det H`` is the same for every ``P``: comparing
    ``log(trace(P^T H P)/n) - 2 log|det P|/n`` ranks preconditioners by that
    bias, from a few products.
    """
    return math.log(trace / n_dims) - 2.0 * preconditioner.log_det / n_dims


_NO_AUTOGRAD = (
    "loss_fn must be differentiable by torch autograd for "
    "estimator='preconditioned' (pass hvp= or use estimator='naive')."
)


def _differentiable_losses(loss_fn, origin):
    """``loss_fn(origin)`` with its graph; TypeError where autograd cannot follow.

    A loss that leaves torch (``.numpy()`` on its input, say) fails inside
    torch with a RuntimeError, or returns values without a graph: both mean
    the same thing here, and callers that can do without curvature catch the
    TypeError.
    """
    with torch.enable_grad():
        try:
            losses = loss_fn(origin)
        except RuntimeError as error:
            if "grad" not in str(error):
                raise
            raise TypeError(_NO_AUTOGRAD) from error
    if not isinstance(losses, torch.Tensor) or not losses.requires_grad:
        raise TypeError(_NO_AUTOGRAD)
    return losses


def _refuse_descent(loss_fn, n_dims, step, dtype, device):
    """Refuse an origin the loss falls away from, where no curvature holds it.

    Called where the loss is flat to second order: then only a zero
    gradient makes the origin a minimum (a pure quartic), while a linear
    loss falls without end along minus its gradient and its "basin" is a
    half-space cut off by the search cap. A loss without autograd is let
    through (its rays are searched as they are).
    """
    origin = torch.zeros((1, n_dims), dtype=dtype, device=device, requires_grad=True)
    try:
        losses = _differentiable_losses(loss_fn, origin)
    except TypeError:
        return
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(losses.sum(), origin)
    norm = float(grad.norm())
    if not norm > 0 or not math.isfinite(norm):
        return
    probe = (-step / norm) * grad.detach()
    with torch.no_grad():
        lower = float(_as_losses(loss_fn(probe), 1)[0])
    if lower < float(losses.detach()[0]):
        raise ValueError(
            "loss_fn falls from the origin along minus its gradient (gradient "
            f"norm {norm:.4g}; loss {lower:.6g} at distance {step:.4g}, "
            f"{float(losses.detach()[0]):.6g} at the origin) and has no curvature "
            "there: the origin is not a minimum, and the basin volume is defined "
            "around one."
        )


def _autograd_hvp(loss_fn, dtype, device, at=None):
    """Hessian-vector products at 0 (or ``at``) by double backprop of ``loss_fn``."""

    def hvp(vectors):
        vectors = vectors.to(device, dtype)
        if at is None:
            origin = torch.zeros_like(vectors, requires_grad=True)
        else:
            origin = at.to(device, dtype).expand_as(vectors).clone().requires_grad_()
        losses = _differentiable_losses(loss_fn, origin)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(losses.sum(), origin, create_graph=True)
            if not grad.requires_grad:
                # The gradient does not depend on the displacement (a linear
                # or constant loss): the Hessian is zero.
                return torch.zeros_like(vectors)
            (product,) = torch.autograd.grad(grad, origin, grad_outputs=vectors)
        return product.detach()

    return hvp


def _as_losses(values, n_expected):
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.shape != (n_expected,):
        raise ValueError(
            f"loss_fn returned {values.shape[0]} values for {n_expected} "
            "displacements; it must map (B, n_dims) to (B,)."
        )
    if np.any(np.isnan(values)):
        raise ValueError(
            "loss_fn returned NaN at some displacements; lower max_radius or "
            "check the loss."
        )
    return values


def _chunk_task(loss_fn, preconditioner, seed, settings, start, stop):
    """Radii along rays ``start .. stop-1`` (whitened units and raw norms)."""
    with torch_threads(settings["n_threads"]):
        n = preconditioner.n_dims
        rays = torch.empty((stop - start, n), dtype=torch.float64)
        generator = torch.Generator(device="cpu")
        for row in range(stop - start):
            generator.manual_seed(_direction_seed(seed, start + row))
            rays[row] = torch.randn(n, generator=generator, dtype=torch.float64)
        rays = rays / rays.norm(dim=1, keepdim=True)
        directions = preconditioner.apply(rays)
        lengths = directions.norm(dim=1).numpy()
        cap = settings["max_radius"] / lengths
        dtype, device = settings["dtype"], settings["device"]
        directions = directions.to(device, dtype)
        n_evaluations = 0

        def losses_at(rows, steps):
            nonlocal n_evaluations
            n_evaluations += len(rows)
            out = []
            for first in range(0, len(rows), settings["batch_size"]):
                part = slice(first, first + settings["batch_size"])
                index = torch.as_tensor(rows[part], device=device)
                step = torch.as_tensor(steps[part], dtype=dtype, device=device)
                out.append(
                    _as_losses(loss_fn(step[:, None] * directions[index]), len(index))
                )
            return np.concatenate(out)

        start_step = np.full(stop - start, settings["start_step"])
        rho, capped = first_crossings(
            losses_at,
            lambda j, rows: np.minimum(
                start_step[rows] * 2.0 ** (j + _SCAN_START), cap[rows]
            ),
            _MAX_DOUBLINGS - _SCAN_START,
            cap,
            settings["cutoffs"],
            rtol=settings["rtol"],
            max_iter=_MAX_BISECTIONS,
            refine="bisect",
        )
    return rho, capped, rho * lengths, n_evaluations


def _interval(log_weights, z):
    """Log mean of ``exp(log_weights)`` with a delta-method interval half-width.

    The standard error of the mean weight, relative to the mean, is
    ``sd(w) / (mean(w) sqrt(M))``; on the log scale that is the half-width
    (per unit ``z``). Also returns the effective sample size
    ``(sum w)^2 / sum w^2``.
    """
    m = log_weights.shape[-1]
    top = np.max(log_weights, axis=-1, keepdims=True)
    w = np.exp(log_weights - top)
    mean = w.mean(axis=-1)
    sd = w.std(axis=-1, ddof=1) if m > 1 else np.full(mean.shape, np.inf)
    half = z * sd / (mean * math.sqrt(m))
    ess = w.sum(axis=-1) ** 2 / np.square(w).sum(axis=-1)
    return np.log(mean) + top[..., 0], half, ess


def _bounded_interval(log10_est, half, ess, m, alpha, tolerance, upper_bound):
    """Delta-method interval where many rays carry the estimate, else sure bounds.

    The mean of non-negative weights is unbiased, so by Markov's inequality
    it exceeds ``t`` times the truth with probability at most ``1/t``: the
    truth is above ``estimate - log10(2/alpha)`` with probability
    ``1 - alpha/2`` whatever the tails. No finite number of rays bounds it
    from above, except the ball of the search cap.
    """
    log10_est = np.asarray(log10_est, dtype=float)
    trusted = (m >= _ESS_MIN_RAYS) & ~rests_on_few_rays(ess, m)
    delta = np.stack(
        [log10_est - half / _LN10 - tolerance, log10_est + half / _LN10], axis=-1
    )
    sure = np.stack(
        [
            log10_est - math.log10(2.0 / alpha) - tolerance,
            np.maximum(np.full_like(log10_est, upper_bound), log10_est),
        ],
        axis=-1,
    )
    return np.where(trusted[..., None], delta, sure), ~trusted


def _convergence_sizes(n_directions):
    sizes = np.unique(np.geomspace(min(10, n_directions), n_directions, 25).astype(int))
    return sizes[sizes >= 2] if n_directions >= 2 else np.array([n_directions])


@dataclass(frozen=True)
class BasinVolume:
    """Result of :func:`basin_log10_volume`.

    Arrays have a leading ``n_cutoffs`` axis when several cutoffs were
    given; scalars and 1-D arrays otherwise.

    Attributes
    ----------
    log10_volume : float or ndarray of shape (n_cutoffs,)
        Estimated ``log10`` of the basin's volume.
    log10_volume_ci : ndarray of shape (2,) or (n_cutoffs, 2)
        Confidence interval. Where at least 10 % of 20 or more rays carry the
        estimate (effective sample size): the Monte-Carlo standard error
        (delta method on the log scale) widened below by the bisection
        tolerance. Otherwise distribution-free bounds: below, Markov's
        inequality for the unbiased, non-negative estimate (``log10(2 /
        (1 - confidence_level))`` orders under it); above, the ball of the
        search cap (inf without one).
    conservative_ci : bool or ndarray of bool of shape (n_cutoffs,)
        Whether the interval is the distribution-free one.
    radii : ndarray of shape (n_directions,) or (n_cutoffs, n_directions)
        Euclidean radius of the basin along each sampled ray, in the
        coordinates of the displacement.
    capped : ndarray of bool, same shape as ``radii``
        Rays on which the loss stayed below the cutoff up to the cap.
    capped_fraction : float or ndarray of shape (n_cutoffs,)
        Share of capped rays.
    capped_volume_share : float or ndarray of shape (n_cutoffs,)
        Share of the volume estimate carried by the capped rays (their
        weights over all weights): near 1, the estimate is mostly the search
        cap's ball, whatever the basin beyond it.
    log10_weights : ndarray, same shape as ``radii``
        Each ray's volume estimate: ``log10_volume`` is ``log10`` of the
        mean of ``10 ** log10_weights``.
    effective_sample_size : float or ndarray of shape (n_cutoffs,)
        ``(sum w)^2 / sum w^2`` of the weights: how many rays really
        contribute. Near ``n_directions`` the estimate is stable; near 1 one
        ray sets it and the interval is not to be trusted.
    convergence_n_directions : ndarray of shape (n_checkpoints,)
        Numbers of rays at which the running estimate was recorded.
    convergence_log10_volume : ndarray of shape (n_checkpoints,) or (n_cutoffs, ...)
        Estimate from the first ``convergence_n_directions[j]`` rays.
    convergence_log10_volume_ci : ndarray of shape (..., n_checkpoints, 2)
        Its interval.
    estimator : str
        ``'preconditioned'`` or ``'naive'``.
    n_dims : int
        Dimension of the space.
    cutoff : float or ndarray of shape (n_cutoffs,)
        Loss cutoff(s).
    loss0 : float
        Loss at the minimum.
    log10_det_preconditioner : float
        ``log10 |det P|`` of the change of variables (0 for ``'naive'``).
    preconditioner_rank : int
        Low-rank directions of the curvature model.
    log10_volume_tolerance : float
        Largest downward error of ``log10_volume`` from the bisection
        tolerance (radii are upper ends of their final brackets).
    n_evaluations : int
        Loss evaluations (rows passed to ``loss_fn``).
    n_hvp : int
        Hessian-vector products.
    warnings : tuple of str
        The warnings raised, in words, for reports.
    """

    log10_volume: object
    log10_volume_ci: np.ndarray
    conservative_ci: object
    radii: np.ndarray
    capped: np.ndarray
    capped_fraction: object
    capped_volume_share: object
    log10_weights: np.ndarray
    effective_sample_size: object
    convergence_n_directions: np.ndarray
    convergence_log10_volume: np.ndarray
    convergence_log10_volume_ci: np.ndarray
    estimator: str
    n_dims: int
    cutoff: object
    loss0: float
    log10_det_preconditioner: float
    preconditioner_rank: int
    log10_volume_tolerance: float
    n_evaluations: int
    n_hvp: int
    warnings: tuple = field(default=())


def _check_int(name, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}. Got {value!r} instead.")
    if high is not None and value > high:
        raise ValueError(
            f"{name}={value} is more than the {high:,} allowed (each costs "
            "loss evaluations; the cost grows without a bound otherwise)."
        )


def _check_options(
    n_dims,
    n_directions,
    estimator,
    rank,
    n_probes,
    rtol,
    confidence_level,
    max_radius,
    max_capped_fraction,
):
    _check_int("n_dims", n_dims, 1)
    _check_int("n_directions", n_directions, 1)
    if rank != "full":
        _check_int("rank", rank, 0)
    elif n_dims > _MAX_FULL_DIMS:
        raise ValueError(
            f"rank='full' keeps the whole {n_dims} x {n_dims} Hessian and its "
            f"eigenvectors ({2 * 8 * n_dims**2 / 1024**3:.1f} GiB); it is offered "
            f"up to n_dims={_MAX_FULL_DIMS:,}. Use an integer rank (the low-rank "
            "plus diagonal model)."
        )
    _check_int("n_probes", n_probes, 1)
    if estimator not in ESTIMATORS:
        raise ValueError(
            f"estimator must be one of {ESTIMATORS}. Got {estimator!r} instead."
        )
    if not isinstance(rtol, Real) or not 0 < rtol < 1:
        raise ValueError(f"rtol must be in (0, 1). Got {rtol!r} instead.")
    if not isinstance(confidence_level, Real) or not 0 < confidence_level < 1:
        raise ValueError(
            f"confidence_level must be in (0, 1). Got {confidence_level!r} instead."
        )
    if max_radius is not None and (
        not isinstance(max_radius, Real) or not 0 < max_radius < math.inf
    ):
        raise ValueError(
            f"max_radius must be a positive finite number or None. Got "
            f"{max_radius!r} instead."
        )
    if not isinstance(max_capped_fraction, Real) or not 0 <= max_capped_fraction <= 1:
        raise ValueError(
            "max_capped_fraction must be in [0, 1]. Got "
            f"{max_capped_fraction!r} instead."
        )


def _ray_model(
    loss_fn,
    hvp,
    n_dims,
    delta,
    estimator,
    rank,
    n_probes,
    max_radius,
    seed,
    dtype,
    device,
):
    """Choose the rays' map and first step: the curvature model of the basin.

    Returns the preconditioner (rays ``M^-1/2 u``), the first scan step (the
    quadratic model's radius), the Hessian-vector products spent and the
    notes to warn with (a basin flat to second order gets uniform rays).
    """
    floor = 2 * delta / max_radius**2 if max_radius is not None else 0.0
    user_hvp = hvp is not None
    if hvp is None:
        hvp = _autograd_hvp(loss_fn, dtype, device)
    notes = []
    if estimator == "preconditioned":
        identity = CurvaturePreconditioner.identity(n_dims)
        # The ranking needs traces only roughly: a quarter of the probes.
        n_trace = max(8, n_probes // 4)
        identity_trace = _whitened_trace(identity, hvp, n_dims, n_trace, seed)
        flat = _check_curvature(identity_trace / n_dims, "the Hessian's trace")
    if estimator == "preconditioned" and flat:
        # No quadratic model to shape the rays: uniform rays, a scan from
        # the cap (or unit steps) to the first crossing.
        preconditioner, n_hvp = identity, n_trace
        start_step = _FLAT_START if max_radius is None else float(max_radius)
        _refuse_descent(loss_fn, n_dims, start_step, dtype, device)
        notes.append(_FLAT_NOTE)
    elif estimator == "preconditioned" and rank == "full":
        preconditioner = _full_hessian_preconditioner(hvp, n_dims, max(floor, 1e-300))
        n_hvp = n_trace + n_dims
        whitened_trace = _whitened_trace(preconditioner, hvp, n_dims, n_trace, seed)
        start_step = math.sqrt(2 * delta * n_dims / max(whitened_trace, 1e-300))
        n_hvp += n_trace
    elif estimator == "preconditioned":
        candidates = [
            CurvaturePreconditioner.from_curvature(
                hvp,
                n_dims,
                rank=min(rank, n_dims),
                n_probes=n_probes,
                floor=max(floor, 1e-300),
                seed=seed,
            ),
            CurvaturePreconditioner.from_curvature(
                hvp,
                n_dims,
                rank=0,
                n_probes=n_probes,
                floor=max(floor, 1e-300),
                seed=seed,
            ),
            identity,
        ]
        traces = [
            max(_whitened_trace(c, hvp, n_dims, n_trace, seed), 1e-300)
            for c in candidates[:-1]
        ] + [max(identity_trace, 1e-300)]
        n_hvp = sum(c.n_products for c in candidates) + n_trace * len(candidates)
        gaps = [_jensen_gap(c, trace, n_dims) for c, trace in zip(candidates, traces)]
        best = int(np.argmin(gaps))
        preconditioner = candidates[best]
        # Whitened curvature ~ trace / n: quadratic radius sqrt(2 delta n / tr).
        start_step = math.sqrt(2 * delta * n_dims / traces[best])
    else:
        preconditioner = CurvaturePreconditioner.identity(n_dims)
        try:
            diagonal = probe_diagonal(
                lambda v: hvp(v).to(torch.float64),
                n_dims,
                n_probes,
                _stream(seed, 1, 1),
            )
        except TypeError:
            if user_hvp:
                raise
            # Uniform rays need no curvature, only a first step: a loss
            # without autograd is scanned from the cap (or unit steps).
            diagonal = None
        n_hvp = 0 if diagonal is None else n_probes
        flat = diagonal is None or _check_curvature(
            float(diagonal.mean()), "the Hessian's diagonal"
        )
        if flat:
            start_step = _FLAT_START if max_radius is None else float(max_radius)
            _refuse_descent(loss_fn, n_dims, start_step, dtype, device)
            if diagonal is not None:
                notes.append(_FLAT_NOTE)
        else:
            mean_curvature = max(float(diagonal.mean()), floor, 1e-300)
            start_step = math.sqrt(2 * delta / mean_curvature)
    return preconditioner, start_step, n_hvp, notes


def basin_log10_volume(
    loss_fn,
    n_dims,
    cutoff,
    *,
    n_directions=1000,
    estimator="preconditioned",
    rank=40,
    n_probes=64,
    max_radius=None,
    rtol=1e-6,
    confidence_level=0.95,
    max_capped_fraction=0.05,
    random_state=None,
    hvp=None,
    loss0=None,
    dtype=torch.float64,
    device=None,
    batch_size=1024,
    n_jobs=None,
    n_threads=None,
    verbose=0,
):
    """Estimate the log-volume of the basin ``{z : loss_fn(z) < cutoff}``.

    The minimum sits at displacement ``z = 0``; the basin is taken to be
    star-shaped around it (each ray leaves it once; the first crossing of
    the cutoff along a ray is its radius). The volume is the Lebesgue volume
    in the coordinates of ``z``, estimated by Monte Carlo over rays; see the
    module notes for the two estimators. Memory is bounded in
    ``n_directions``: rays are drawn, searched and dropped in chunks of 128;
    only their radii are kept.

    Parameters
    ----------
    loss_fn : callable
        Maps a (B, n_dims) float tensor of displacements to B losses (a
        tensor or array). For ``estimator='preconditioned'`` it must be
        differentiable by torch autograd unless ``hvp`` is given.
    n_dims : int
        Dimension ``n`` of the displacements.
    cutoff : float or array-like of float
        Loss level(s) that end the basin; each above ``loss_fn(0)``. Several
        cutoffs share the rays and the preconditioner.
    n_directions : int, default=1000
        Number of rays ``M``.
    estimator : {'preconditioned', 'naive'}, default='preconditioned'
        ``'naive'`` draws rays uniformly (the paper's estimator);
        ``'preconditioned'`` draws them from a curvature model measured with
        Hessian-vector products and reweights exactly (importance sampling).
        Where the loss is flat to second order at the minimum (zero Hessian,
        e.g. a pure quartic) there is no model to build and both draw
        uniform rays, with a warning. ``'naive'`` also takes a ``loss_fn``
        without autograd (its searches then start from unit steps, or from
        ``max_radius``).
    rank : int or 'full', default=40
        Lanczos steps in each of the preconditioner's two stages (a low-rank
        plus diagonal curvature model, ``4 rank + n_probes`` products), or
        ``'full'``: the exact quadratic model, the whole Hessian from
        ``n_dims`` products, eigendecomposed (``O(n^3)`` time; memory
        peaks at about 3.5 ``n x n`` float64 matrices during the
        eigendecomposition, 11 GB at the limit ``n_dims=20000``). It makes
        every quadratic basin exact, rotated or not; a basin shaped by
        higher-order terms still leaves a spread of radii.
    n_probes : int, default=64
        Probe vectors for the preconditioner's diagonal (a quarter of them,
        at least 8, to rank the candidate preconditioners; for ``'naive'``,
        all of them for the curvature scale that starts each search).
    max_radius : float, default=None
        Largest Euclidean radius searched along a ray; rays still inside the
        basin there are capped (their radius is a lower bound). None caps
        only after 60 doublings of the search.
    rtol : float, default=1e-6
        Relative tolerance of every radius. A relative error ``eps`` in the
        radii moves ``log10 V`` by up to ``n * eps / ln 10``.
    confidence_level : float, default=0.95
        Nominal coverage of ``log10_volume_ci``.
    max_capped_fraction : float, default=0.05
        Warn (:class:`VolumeSaturationWarning`) when a larger share of rays
        is capped.
    random_state : int, RandomState instance or None, default=None
        Seeds the rays and the preconditioner's probes. Ray ``k`` is drawn
        from its own stream, so results do not depend on ``n_jobs``.
    hvp : callable, default=None
        Maps a (B, n_dims) tensor ``V`` to the (B, n_dims) products with the
        Hessian of ``loss_fn`` at 0. Default: double backprop through
        ``loss_fn``.
    loss0 : float, default=None
        ``loss_fn(0)`` if known.
    dtype : torch.dtype, default=torch.float64
        Dtype of the displacements passed to ``loss_fn``.
    device : torch.device, default=None
        Device of the displacements (CPU when None).
    batch_size : int, default=1024
        Most displacements per call of ``loss_fn``.
    n_jobs : int, default=None
        joblib workers over chunks of rays (``loss_fn`` must then pickle).
    n_threads : int, default=None
        torch threads per worker; None leaves torch's setting.
    verbose : int, default=0
        Progress bar over chunks of rays when positive.

    Returns
    -------
    result : BasinVolume
        Estimate, interval, radii, weights and diagnostics.

    Raises
    ------
    ValueError
        Before any ray: for bad options, for a loss at the origin not below
        every cutoff, for negative curvature at the origin (not a minimum),
        and for ``n_directions`` whose per-ray results would exceed 2 GiB.
    TypeError
        If ``loss_fn`` is not callable, or is not differentiable by autograd
        for ``'preconditioned'`` without ``hvp``.

    Warns
    -----
    VolumeSaturationWarning
        When more than ``max_capped_fraction`` of the rays are capped.
    sklearn.exceptions.ConvergenceWarning
        When fewer than 10 % of the rays carry the estimate (effective
        sample size), so that the interval may be too narrow; and when the
        loss is flat to second order at the minimum (uniform rays).

    References
    ----------
    .. [1] A. Scherlis and N. Belrose, "Estimating the probability of
       sampling a trained neural network at random", arXiv:2501.18812, 2025.
    .. [2] C. Bekas, E. Kokiopoulou and Y. Saad, "An estimator for the
       diagonal of a matrix", Applied Numerical Mathematics, 2007.

    Examples
    --------
    An ellipsoid ``{z : z^T diag(lam) z / 2 < 1}`` of known volume:

    >>> import numpy as np, torch
    >>> from flatgen.landscape import basin_log10_volume, log10_unit_ball_volume
    >>> lam = torch.logspace(-2, 2, 50, dtype=torch.float64)
    >>> result = basin_log10_volume(
    ...     lambda z: 0.5 * (z**2 * lam).sum(1), 50, 1.0, n_directions=200,
    ...     random_state=0)
    >>> exact = log10_unit_ball_volume(50) + 0.5 * np.log10(2 / lam.numpy()).sum()
    >>> bool(abs(result.log10_volume - exact) < 1e-3)
    True
    """
    _check_options(
        n_dims,
        n_directions,
        estimator,
        rank,
        n_probes,
        rtol,
        confidence_level,
        max_radius,
        max_capped_fraction,
    )
    _check_int("batch_size", batch_size, 1)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable. Got {type(loss_fn).__name__}.")
    scalar = np.ndim(cutoff) == 0
    try:
        cutoffs = np.atleast_1d(np.asarray(cutoff, dtype=float))
    except (TypeError, ValueError):
        cutoffs = np.array([np.nan])
    if cutoffs.ndim != 1 or len(cutoffs) == 0 or not np.all(np.isfinite(cutoffs)):
        raise ValueError(
            f"cutoff must be a finite number or a list of them. Got {cutoff!r} instead."
        )
    result_bytes = 17 * n_directions * len(cutoffs)
    if result_bytes > _MAX_RESULT_BYTES:
        raise ValueError(
            f"n_directions={n_directions} would keep {result_bytes / 1024**3:.1f} GiB "
            f"of per-ray results for {len(cutoffs)} cutoff(s) (17 bytes per ray "
            f"and cutoff); at most {_MAX_RESULT_BYTES // (17 * len(cutoffs)):,} "
            "rays fit in the 2 GiB allowed. Measure in several calls with "
            "different random_state and pool them."
        )
    device = torch.device("cpu") if device is None else torch.device(device)
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    with torch_threads(n_threads):
        if loss0 is None:
            origin = torch.zeros((1, n_dims), dtype=dtype, device=device)
            with torch.no_grad():
                loss0 = float(_as_losses(loss_fn(origin), 1)[0])
        if not np.isfinite(loss0) or not loss0 < cutoffs.min():
            raise ValueError(
                f"The loss at the minimum ({loss0:.6g}) must be finite and below every "
                f"cutoff (smallest {cutoffs.min():.6g}); choose a larger cutoff."
            )
        delta = float(cutoffs.min() - loss0)
        preconditioner, start_step, n_hvp, notes = _ray_model(
            loss_fn,
            hvp,
            n_dims,
            delta,
            estimator,
            rank,
            n_probes,
            max_radius,
            seed,
            dtype,
            device,
        )
    for note in notes:
        warnings.warn(note, ConvergenceWarning, stacklevel=2)
    settings = {
        "cutoffs": cutoffs,
        "rtol": float(rtol),
        "max_radius": math.inf if max_radius is None else float(max_radius),
        "start_step": start_step,
        "dtype": dtype,
        "device": device,
        "batch_size": int(batch_size),
        "n_threads": n_threads,
    }
    if max_radius is None:
        # Without a cap, stop the scan after _MAX_DOUBLINGS doublings.
        settings["max_radius"] = start_step * 2.0**_MAX_DOUBLINGS * 1e3
    results = map_chunks(
        _chunk_task,
        n_directions,
        (loss_fn, preconditioner, seed, settings),
        n_jobs=n_jobs,
        verbose=verbose,
        desc="volume rays",
    )
    rho = np.concatenate([r[0] for r in results], axis=1)
    capped = np.concatenate([r[1] for r in results], axis=1)
    radii = np.concatenate([r[2] for r in results], axis=1)
    n_evaluations = int(sum(r[3] for r in results)) + 1
    return volume_from_radii(
        rho,
        capped,
        n_dims,
        cutoffs if not scalar else float(cutoffs[0]),
        notes=notes,
        euclidean_radii=radii,
        log10_det=preconditioner.log_det / _LN10,
        rtol=rtol,
        confidence_level=confidence_level,
        max_capped_fraction=max_capped_fraction,
        estimator=estimator,
        loss0=loss0,
        preconditioner_rank=preconditioner.rank,
        n_evaluations=n_evaluations,
        n_hvp=n_hvp,
        log10_volume_bound=(
            log10_unit_ball_volume(n_dims) + n_dims * math.log10(max_radius)
            if max_radius is not None
            else math.inf
        ),
    )


def volume_from_radii(
    radii,
    capped,
    n_dims,
    cutoff,
    *,
    euclidean_radii=None,
    log10_det=0.0,
    rtol=0.0,
    confidence_level=0.95,
    max_capped_fraction=0.05,
    estimator="naive",
    loss0=float("nan"),
    preconditioner_rank=0,
    n_evaluations=0,
    n_hvp=0,
    log10_volume_bound=math.inf,
    notes=(),
):
    """Summarize radii along rays into a log-volume with interval and diagnostics.

    ``log10 V = log10 omega_n + log10_det + log10 mean(radii^n)``, the
    interval from the Monte-Carlo standard error of that mean (delta method
    on the log scale) widened below by the bisection tolerance; running
    estimates for a convergence plot; warnings for capped rays and for a low
    effective sample size. Memory is linear in the number of rays.

    Parameters
    ----------
    radii : array-like of shape (n_rays,) or (n_cutoffs, n_rays)
        Radii along rays drawn uniformly in the whitened space (``P = I``:
        the displacement space itself).
    capped : array-like of bool, same shape as ``radii``
        Rays that reached the search cap.
    n_dims : int
        Dimension ``n``.
    cutoff : float or array-like of shape (n_cutoffs,)
        Cutoff of each row (a float for 1-D ``radii``).
    euclidean_radii : array-like, default=None
        Radii in the displacement space (``radii`` when None).
    log10_det : float, default=0.0
        ``log10 |det P|`` of the change of variables.
    rtol : float, default=0.0
        Relative tolerance of the radii (upper ends of their brackets).
    confidence_level : float, default=0.95
        Nominal coverage of the interval.
    max_capped_fraction : float, default=0.05
        Warn when a larger share of rays is capped.
    estimator : str, default='naive'
        Name recorded in the result.
    loss0 : float, default=nan
        Loss at the minimum, recorded.
    preconditioner_rank : int, default=0
        Recorded.
    n_evaluations, n_hvp : int, default=0
        Recorded.
    log10_volume_bound : float, default=inf
        A sure upper bound of ``log10 V`` (the ball of the search cap), the
        upper end of the interval when the rays cannot give one.
    notes : sequence of str, default=()
        Warnings the caller already raised, recorded first in ``warnings``.

    Returns
    -------
    result : BasinVolume
        See :func:`basin_log10_volume`.
    """
    scalar = np.ndim(cutoff) == 0
    cutoffs = np.atleast_1d(np.asarray(cutoff, dtype=float))
    rho = np.asarray(radii, dtype=float).reshape(len(cutoffs), -1)
    capped = np.asarray(capped, dtype=bool).reshape(rho.shape)
    radii = (
        rho
        if euclidean_radii is None
        else np.asarray(euclidean_radii, dtype=float).reshape(rho.shape)
    )
    z = float(norm.ppf(0.5 + confidence_level / 2))
    constant = log10_unit_ball_volume(n_dims) + log10_det
    n = float(n_dims)
    with np.errstate(divide="ignore"):
        log_weights = n * np.log(rho)  # natural log of rho^n
    log_mean, half, ess = _interval(log_weights, z)
    log10_volume = constant + log_mean / _LN10
    tolerance = float(-n * math.log1p(-rtol) / _LN10)
    alpha = 1.0 - confidence_level
    ci, conservative = _bounded_interval(
        log10_volume, half, ess, rho.shape[1], alpha, tolerance, log10_volume_bound
    )
    sizes = _convergence_sizes(rho.shape[1])
    running = [_interval(log_weights[:, :m], z) for m in sizes]
    conv = np.stack([constant + r[0] / _LN10 for r in running], axis=-1)
    conv_ci = np.stack(
        [
            _bounded_interval(
                conv[:, j], r[1], r[2], m, alpha, tolerance, log10_volume_bound
            )[0]
            for j, (m, r) in enumerate(zip(sizes, running))
        ],
        axis=1,
    )
    capped_fraction = capped.mean(axis=1)
    # Weights relative to each cutoff's largest, so that none overflows.
    with np.errstate(invalid="ignore"):
        relative = np.exp(log_weights - log_weights.max(axis=1, keepdims=True))
        capped_share = (relative * capped).sum(axis=1) / relative.sum(axis=1)
    messages = list(notes)
    for k, level in enumerate(cutoffs):
        if capped_fraction[k] > max_capped_fraction:
            messages.append(
                f"cutoff {level:.4g}: {capped_fraction[k]:.0%} of the rays stayed "
                "inside the basin up to the search cap, so the volume is only a "
                "lower bound (the basin is wider than max_radius in those "
                "directions). Raise max_radius or the cutoff's loss."
            )
            warnings.warn(messages[-1], VolumeSaturationWarning, stacklevel=3)
        if rests_on_few_rays(ess[k], rho.shape[1]):
            messages.append(
                f"cutoff {level:.4g}: the estimate rests on {ess[k]:.1f} of "
                f"{rho.shape[1]} rays (effective sample size), so it is set by a "
                "few rays and the true volume is usually above it; the interval "
                "falls back to distribution-free bounds. "
                + (
                    "Use estimator='preconditioned'."
                    if estimator != "preconditioned"
                    else "The basin is far from the measured quadratic model (usual "
                    "for trained networks); more rays or a larger rank help only "
                    "slowly."
                )
            )
            warnings.warn(messages[-1], ConvergenceWarning, stacklevel=3)

    def pick(values):
        return values[0] if scalar else values

    def pick_float(values):
        return float(values[0]) if scalar else np.asarray(values, dtype=float)

    return BasinVolume(
        log10_volume=pick_float(log10_volume),
        log10_volume_ci=pick(ci),
        conservative_ci=pick(conservative),
        radii=pick(radii),
        capped=pick(capped),
        capped_fraction=pick_float(capped_fraction),
        capped_volume_share=pick_float(capped_share),
        log10_weights=pick(constant + log_weights / _LN10),
        effective_sample_size=pick_float(ess),
        convergence_n_directions=sizes,
        convergence_log10_volume=pick(conv),
        convergence_log10_volume_ci=pick(conv_ci),
        estimator=estimator,
        n_dims=int(n_dims),
        cutoff=pick_float(cutoffs),
        loss0=float(loss0),
        log10_det_preconditioner=float(log10_det),
        preconditioner_rank=int(preconditioner_rank),
        log10_volume_tolerance=tolerance,
        n_evaluations=n_evaluations,
        n_hvp=n_hvp,
        warnings=tuple(messages),
    )
