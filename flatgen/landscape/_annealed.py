"""Annealed basin volume: thermodynamic integration of the Gibbs measure.

Importance sampling along rays cannot measure the volume of a basin shaped
by more than its quadratic model in high dimension: a 1 % spread of the log
radius across rays is a spread of ``n`` % in the weights. This estimator
anneals instead, each step easy, with chains that move by Hamiltonian Monte
Carlo (gradients guide them, so they mix in thousands of dimensions).

With ``l(z) = loss(z) - loss(0)`` and the cap ball ``|z| <= R``, the
partition function ``Z(t) = int_ball exp(-t l(z)) dz`` is the Laplace
transform of the volume ``V(d)`` of the sublevel set ``{l < d}`` in the ball:
``Z(t) = t int_0^inf exp(-t d) V(d) dd``. So

1. **Model.** The exact quadratic model ``H = W diag(lam) W^T`` (the whole
   Hessian, eigendecomposed), recalibrated by the basin's measured radius
   along each of its eigenvectors (``kappa_i = 2 d / (r_i+ r_i-)``), which
   accounts for higher-order terms along them and for flat directions. In
   the whitened coordinates ``z = P u``, ``P = W diag(kappa)^-1/2``, the
   model is ``q(u) = |u|^2 / 2`` with ``Z_q(t) = (2 pi / t)^(n/2) |det P|``.
2. **Model to loss** at ``t0 = (n/2 + 1) / d`` (the model's saddle point):
   ``log Z(t0) - log Z_q(t0) = -t0 int_0^1 E_lambda[l - q] dlambda`` along
   ``l_lambda = (1 - lambda) q + lambda l`` (zero for a quadratic basin).
3. **Temperature** from ``t0`` to the saddle point ``t*`` of the loss
   (``E_t[l] + 1/t = d``): ``d log Z / d log t = -t E_t[l]``.
4. **Inversion** from the loss's first two moments at ``t*``: the loss is
   taken Gamma distributed there (``V'(l) ~ l^(k-1) exp(-b l)``, shape
   ``k = E^2 / Var``, rate ``t + b = E / Var``), which is exact where the
   volume is a power of the cutoff and follows an exponent that changes
   with it (see :func:`_gamma_inversion`).

Where the model reaches the cap ball (flat directions), the path starts
from the ball itself instead (uniform, ``t = 0``, its volume known) and goes
in ``t`` alone; its volume needs no model, and with ``metric='adaptive'`` its whitening
adapts between steps to the chains' own mean square gradients (Jacobi
preconditioning, :func:`_adapt_metric`): where the chains live, at the cap,
the Hessian at the minimum is a poor guide to a network's loss.

The chains are a sequential Monte Carlo population: each carries the
log-weight of its path since it was last resampled, the stepping stones
average by those weights, and the chains are resampled when their
effective number falls below half, so chains that lag behind the path are
replaced instead of biasing the stones that follow.

Each run goes the path forward, then back: the two integrals differ by the
chains' lag behind the path (hysteresis), which widens the interval and is
warned about. Several runs with independent seeds give the spread, floored
by each run's own jackknife error of its inversion (a few runs can agree by
chance far more closely than runs do); their split R-hat on the loss says
whether their chains agree.

The set measured is by default the star-shaped basin, the points whose
whole segment from the minimum stays below the cutoff: the set the ray
estimators measure (the first crossing along each ray). The chains then
sample the segment's maximum of the loss, ``max_s l(s z)``, whose sublevel
sets are exactly these (``basin='star'``); on trained networks the sublevel
set of the loss itself is dominated by low-loss regions behind ridges that
no ray from the weights reaches (``basin='sublevel'`` measures it, as far
as the chains reach it). Where the loss rises along every ray from the
minimum (quadratic basins, the bodies of :func:`make_basin`) the two are
the same set. The share of final samples whose segment, checked at 1,024
evenly spaced points, stays below the cutoff is reported
(``star_shaped_share``): chains that sample a grid's maximum can find the
gaps between its points.
"""

import copy
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from joblib import Parallel, delayed
from scipy.integrate import quad
from scipy.special import gammaln
from scipy.stats import t as student_t
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from tqdm.auto import tqdm

from .._torch_utils import torch_threads
from ._llc import split_rhat
from ._radius import first_crossings
from ._volume import (
    _MAX_FULL_DIMS,
    VolumeSaturationWarning,
    _as_losses,
    _autograd_hvp,
    _check_int,
    _differentiable_losses,
    _stream,
    full_hessian,
    log10_unit_ball_volume,
)

__all__ = ["AnnealedVolume", "annealed_log10_volume"]

_LN10 = math.log(10.0)
# Warn when the forward and backward paths differ by more than this (log10),
# when runs disagree by split R-hat above _RHAT_MAX, or accept too rarely.
_HYSTERESIS_MAX = 1.0
_RHAT_MAX = 1.1
_ACCEPTANCE_MIN = 0.3
# The smallest local exponent k = t E_t[l] taken as a basin's.
_MIN_EXPONENT = 0.5
# Below this acceptance a block's chains are taken as stuck.
_ACCEPTANCE_STUCK = 0.05
# HMC step sizes adapt between temperatures towards this acceptance band.
_ACCEPT_LOW, _ACCEPT_HIGH = 0.6, 0.85
# Radius searches: the scan doubles (by sqrt 2) from an eighth of the guess.
_SCAN_STEPS = 140
# Rays along random directions that rescale the calibrated model.
_RESCALE_RAYS, _RESCALE_SEED = 64, 20261205
# Eigenvalues below this share of the largest are flat; where half are, the
# model's axes also take the Hessians at this many points of the cutoff.
_FLAT_SHARE = 1e-6
_LEVEL_POINTS, _LEVEL_SEED = 8, 20261207
# The model's Gibbs measure at t0 keeps at least this share in the cap ball.
_MODEL_INSIDE = 0.9
# Reflections off the cap within one leapfrog drift before a proposal is refused.
_MAX_BOUNCES = 100
# Uniform draws of the cap ball for the first stone of a path from the ball.
_BALL_DRAWS = 256
# Paths start from the cap ball when the model's median draw at t0 reaches
# this share of the cap radius.
_BALL_REACH = 0.9
_INSIDE_DRAWS = 1024
_RTOL = 1e-9
# Groups of chains left out in turn by the jackknife of each run's inversion.
_JACKKNIFE_GROUPS = 32
# Points of each final sample's segment checked against the cutoff.
_CHECK_POINTS = 1024
# Below this share of final samples inside the star-shaped basin, warn.
_STAR_SHARE_MIN = 0.9
# Weight the chains along the path and resample them when their effective
# number falls below this share (sequential Monte Carlo, see _path).
_RESAMPLE = True
_RESAMPLE_BELOW = 0.5
# From this share of the trajectories at the saddle point reflecting off the
# cap ball, the cap bounds the basin where its volume is: warn (the value
# then depends on max_radius).
CAP_SHARE_WARN = 0.5


@dataclass
class AnnealedVolume:
    """Result of :func:`annealed_log10_volume`.

    Attributes
    ----------
    log10_volume : float
        The mean of the runs' estimates.
    log10_volume_ci : ndarray of shape (2,)
        Interval: Student's t over the runs at ``confidence_level`` (the
        runs' standard deviation, floored by the root mean square of
        ``run_standard_errors``), widened on each side by half the mean
        hysteresis.
    run_log10_volumes : ndarray of shape (n_runs,)
        Each run's estimate (the mean of its forward and backward paths).
    hysteresis : ndarray of shape (n_runs,)
        Forward minus backward estimate of each run (log10): the chains'
        lag behind the path.
    run_standard_errors : ndarray of shape (n_runs,)
        Each run's jackknife standard error (log10, over groups of its
        chains) of its saddle-point inversion: a floor under the runs'
        standard deviation in the interval (NaN, with a warning, where it
        could not be measured).
    rhat : float
        Split R-hat of the loss over each run's chains at its own last
        temperature, the largest over runs (the runs' disagreement with
        each other shows in their spread, which sets the interval).
    run_rhats : ndarray of shape (n_runs,)
        Each run's split R-hat (``rhat`` is their largest): whether one run
        or every run failed to mix.
    acceptance : float
        Mean HMC acceptance rate.
    log10_model_volume : float
        ``log10`` volume of the calibrated quadratic model's basin (NaN on
        paths from the cap ball with ``metric='adaptive'``, which use no
        model and do not build one).
    saddle_temperature : float
        The inverse temperature ``t*`` the volume was inverted at.
    n_temperatures : ndarray of shape (n_runs,)
        Points on each run's path (both legs).
    star_shaped_share : float
        Share of the final samples below the cutoff whose segment from the
        minimum, checked at 1,024 evenly spaced points, stays inside the
        star-shaped basin (below 1 with ``basin='star'``: the segment's
        points missed a bump of the loss).
    cap_share : float
        Share of the HMC trajectories at the saddle point ``t*`` that
        reflected off the cap ball: near 0 the basin's measure lies inside
        the cap, near 1 the cap bounds it (the volume then depends on
        ``max_radius``).
    reliable : bool
        False when a diagnostic warned (the interval may then be too
        narrow).
    n_gradients : int
        Loss-and-gradient evaluations of the chains.
    n_evaluations : int
        Loss evaluations of the radius searches (model calibration and
        star-shape check).
    n_hvp : int
        Hessian-vector products of the quadratic model (0 where none is
        built).
    seconds : float
        Wall time.
    n_dims, cutoff, loss0, max_radius, confidence_level : scalars
        The settings measured with.
    warnings : list of str
        What was warned about.
    basin : {'star', 'sublevel'}
        The set measured (see :func:`annealed_log10_volume`).
    metric : {'model', 'adaptive'}
        The whitening HMC used (``'adaptive'`` only on paths from the cap
        ball; see :func:`annealed_log10_volume`).
    start : {'model', 'cap ball'}
        Where each path started: the calibrated quadratic model (then from
        the model to the loss, and in ``t`` to the saddle point), or, where
        the model had to be floored to fit the cap ball (the cap bounds
        the basin), the cap ball itself (uniform, ``t = 0``, its volume
        known), and in ``t`` alone to the saddle point.
    """

    log10_volume: float
    log10_volume_ci: np.ndarray
    run_log10_volumes: np.ndarray
    hysteresis: np.ndarray
    run_standard_errors: np.ndarray
    rhat: float
    run_rhats: np.ndarray
    acceptance: float
    log10_model_volume: float
    saddle_temperature: float
    n_temperatures: np.ndarray
    star_shaped_share: float
    cap_share: float
    reliable: bool
    n_gradients: int
    n_evaluations: int
    n_hvp: int
    seconds: float
    n_dims: int
    cutoff: float
    loss0: float
    max_radius: float
    confidence_level: float
    warnings: list = field(default_factory=list)
    start: str = "model"
    basin: str = "star"
    metric: str = "model"


def _mm(x, matrix):
    """``x @ matrix`` in the matrix's precision, returned in float64.

    The basis is kept in the loss's precision: for a float32 network the
    product is what the network sees anyway, and reading the n x n basis
    (memory-bound: a few chains per product) costs half the time.
    """
    return (x.to(matrix.dtype) @ matrix).to(torch.float64)


class _Landscape:
    """The loss in whitened coordinates ``u`` (``z = P u``), batched, counted.

    ``P = basis diag(scale)`` (``basis`` orthonormal, None for the identity),
    or, with ``floor_scale``, the symmetric ``P = f I + V diag(scale - f) V^T``
    (``V = basis``, ``n x r`` orthonormal columns): the same Gaussian model
    when every curvature outside ``V`` equals the floor, at ``O(n r)`` per
    chain instead of ``O(n^2)``.
    """

    def __init__(
        self,
        loss_fn,
        grad_fn,
        basis,
        scale,
        loss0,
        max_radius,
        dtype,
        device,
        batch,
        floor_scale=None,
        segment_points=None,
    ):
        self.loss_fn, self.loss0, self.max_radius = loss_fn, loss0, max_radius
        self.segment_points = segment_points
        self.grad_fn = grad_fn
        self.basis, self.scale, self.floor_scale = basis, scale, floor_scale
        self.dtype, self.device, self.batch = dtype, device, batch
        self.n_gradients = 0
        self.n_evaluations = 0

    def _low_rank(self, x, power):
        """``f^p x + V diag(scale^p - f^p) V^T x`` for rows ``x``."""
        f = self.floor_scale**power
        return f * x + _mm(_mm(x, self.basis) * (self.scale**power - f), self.basis.T)

    def inner(self, x, y):
        """Rowwise ``<P x, P y>``."""
        if self.floor_scale is None:
            s2 = self.scale * self.scale
            return (x * s2 * y).sum(1)
        f2 = self.floor_scale**2
        cx, cy = _mm(x, self.basis), _mm(y, self.basis)
        return f2 * (x * y).sum(1) + (cx * (self.scale**2 - f2) * cy).sum(1)

    def gram(self, x):
        """``P^T P x`` for rows ``x`` (the cap's normal direction at ``x``)."""
        if self.floor_scale is None:
            return self.scale * self.scale * x
        return self._low_rank(x, 2)

    def norms(self, u):
        """``|P u|``."""
        return self.inner(u, u).clamp(min=0.0).sqrt()

    def to_z(self, u):
        if self.floor_scale is not None:
            return self._low_rank(u, 1)
        if self.basis is None:  # the identity, without an n x n matrix
            return u * self.scale
        return _mm(u * self.scale, self.basis.T)

    def from_z(self, z):
        """``P^-1 z``: a displacement in whitened coordinates."""
        if self.floor_scale is not None:
            return self._low_rank(z, -1)
        if self.basis is None:
            return z / self.scale
        return _mm(z, self.basis) / self.scale

    def pull_back(self, grad):
        """``P^T g``: a gradient in ``z`` as one in ``u``."""
        if self.floor_scale is not None:
            return self._low_rank(grad, 1)
        if self.basis is not None:
            grad = _mm(grad, self.basis)
        return grad * self.scale

    def drift(self, u, p, length):
        """Move every chain by ``length * p``, reflecting off the cap.

        The cap ``|P u| <= R`` is an ellipsoid in ``u``; a chain that would
        cross it goes to the crossing point, its momentum is mirrored in the
        surface's normal (``scale^2 u`` there) and it drifts on for the rest
        of the length: a billiard, which keeps the leapfrog step reversible
        and volume-preserving. Chains whose Gibbs measure fills the cap ball
        (flat directions reaching the cap) mix along its surface this way,
        where refusing such proposals shrank the step to nothing.

        Returns the new positions and momenta and which chains bounced;
        a chain still bouncing after ``_MAX_BOUNCES`` gets NaN positions
        (its proposal is refused).
        """
        if not math.isfinite(self.max_radius):
            return u + length * p, p, torch.zeros(len(u), dtype=torch.bool)
        radius2 = self.max_radius**2
        left = torch.ones(len(u), dtype=torch.float64)
        bounced = torch.zeros(len(u), dtype=torch.bool)
        for _ in range(_MAX_BOUNCES):
            step = (left * length)[:, None] * p
            end = u + step
            outside = self.inner(end, end) > radius2
            if not bool(outside.any()):
                return end, p, bounced
            a, b = self.inner(step, step), self.inner(u, step)
            c = self.inner(u, u) - radius2
            root = torch.sqrt(torch.clamp(b * b - a * c, min=0.0))
            share = torch.clamp((root - b) / torch.where(a > 0, a, 1.0), 0.0, 1.0)
            cross = u + share[:, None] * step
            normal = self.gram(cross)
            normal = normal / normal.norm(dim=1, keepdim=True)
            mirrored = p - 2.0 * (p * normal).sum(1, keepdim=True) * normal
            u = torch.where(outside[:, None], cross, end)
            p = torch.where(outside[:, None], mirrored, p)
            left = torch.where(outside, left * (1.0 - share), torch.zeros_like(left))
            bounced |= outside
        stuck = left > 0
        return torch.where(stuck[:, None], math.nan, u), p, bounced

    def _z_value_and_grad(self, z):
        """Losses (minus the minimum's) and their gradients at rows ``z``."""
        values, grads = [], []
        for start in range(0, len(z), self.batch):
            part = z[start : start + self.batch].to(self.device, self.dtype)
            if self.grad_fn is not None:
                losses, grad = self.grad_fn(part)
            else:
                part.requires_grad_(True)
                with torch.enable_grad():
                    losses = self.loss_fn(part)
                    (grad,) = torch.autograd.grad(losses.sum(), part)
            # A chain's proposal may reach where the loss overflows: such
            # points get an infinite loss and are refused, not raised on.
            losses = torch.as_tensor(losses).detach().to("cpu", torch.float64)
            losses = torch.nan_to_num(losses.reshape(-1), nan=math.inf)
            values.append(losses - self.loss0)
            grad = torch.as_tensor(grad).detach().to("cpu", torch.float64)
            grads.append(torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0))
        self.n_gradients += len(z)
        return torch.cat(values), torch.cat(grads)

    def _z_losses(self, z):
        """Losses (minus the minimum's) at rows ``z``, without gradients."""
        self.n_evaluations += len(z)
        out = []
        for start in range(0, len(z), self.batch):
            part = z[start : start + self.batch].to(self.device, self.dtype)
            with torch.no_grad():
                values = torch.as_tensor(self.loss_fn(part)).to("cpu", torch.float64)
            # Where the loss overflows to NaN the point is outside the basin.
            out.append(torch.nan_to_num(values.reshape(-1), nan=math.inf))
        return torch.cat(out) - self.loss0

    def _z_losses_along(self, z, shares):
        """Losses (minus the minimum's) at ``s z``, shape ``(len(shares), len(z))``.

        Through the loss's own ``losses_along`` (a network's basin loss
        writes the segments' weights without building the rows ``s z``).
        """
        self.n_evaluations += len(z) * len(shares)
        rows = z.to(self.device, self.dtype)
        with torch.no_grad():
            values = self.loss_fn.losses_along(rows, shares)
        values = torch.as_tensor(values).to("cpu", torch.float64)
        values = torch.nan_to_num(values.reshape(len(shares), len(z)), nan=math.inf)
        return values - self.loss0

    def _segment_max(self, z, n_points=None, with_end=False):
        """Return the loss's maximum over the segment's points, and where.

        The segment from the minimum to ``z`` is resolved at ``n_points``
        (default ``segment_points``) evenly spaced points (``s = k / K``),
        its inner ones and, ``with_end``, ``z`` itself (``s = 1``); the
        minimum (``s = 0``) counts as loss 0.
        """
        n_points = self.segment_points if n_points is None else n_points
        last = n_points + 1 if with_end else n_points
        shares = torch.arange(1, last, dtype=torch.float64) / n_points
        # Points in groups of at most ``batch`` rows: memory stays that of
        # one batch whatever ``segment_points`` and the number of rows.
        group = max(1, self.batch // len(z))
        values = []
        along = getattr(self.loss_fn, "losses_along", None)
        for start in range(0, len(shares), group):
            part = shares[start : start + group]
            if along is not None:
                values.append(self._z_losses_along(z, part))
            else:
                inner = (part[:, None, None] * z[None]).reshape(-1, z.shape[1])
                values.append(self._z_losses(inner).reshape(len(part), len(z)))
        top, where = torch.cat(values).max(0)
        return top, shares[where]

    def _star_value_and_grad(self, z):
        """``max_s l(s z)`` over the segment and its gradient.

        Its sublevel sets are the star-shaped basins: a point lies below
        the cutoff exactly when the whole segment from the minimum does.
        The gradient is the loss's at the maximum, ``s grad l(s z)`` (where
        the maximum is at ``s = 0``, the minimum, it is zero). HMC only
        needs a deterministic force; the energy is this maximum itself.
        The maximum is found from losses alone, the end point among them,
        and one gradient is taken there: on the swiss-roll network at
        beta = 1 the maximum lies inside the segment at most steps, where a
        gradient at the end point first would be a second one.
        """
        _, share = self._segment_max(z, with_end=True)
        # ``1.0 * z`` is ``z`` exactly: an end-point maximum is z's own.
        values, grads = self._z_value_and_grad(share[:, None] * z)
        grads = share[:, None] * grads
        floor = values < 0  # the whole segment below the minimum's loss
        values = torch.where(floor, 0.0, values)
        grads = torch.where(floor[:, None], 0.0, grads)
        return values, grads

    def value_and_grad(self, u):
        """Return the energy ``l(Pu)`` and its gradient in ``u`` (float64, CPU).

        With ``segment_points`` the energy is the segment's maximum
        (:meth:`_star_value_and_grad`), else the loss itself.
        """
        z = self.to_z(u)
        if self.segment_points:
            values, grads = self._star_value_and_grad(z)
        else:
            values, grads = self._z_value_and_grad(z)
        return values, self.pull_back(grads)

    def energies(self, z):
        """Return the energy at rows ``z`` (as :meth:`value_and_grad`), no gradient."""
        if self.segment_points:
            top, _ = self._segment_max(z, with_end=True)
            return torch.clamp(top, min=0.0).numpy()
        return self._z_losses(z).numpy()

    def losses(self, z):
        """Return the loss itself at rows ``z`` (radius searches)."""
        return self._z_losses(z).numpy()

    def radii(self, directions, delta, guess):
        """First crossing of ``delta`` along rows of ``directions`` (z-space)."""
        lengths = directions.norm(dim=1).numpy()
        cap = self.max_radius / lengths

        def losses_at(rows, steps):
            steps = torch.as_tensor(steps, dtype=torch.float64)
            return self.losses(steps[:, None] * directions[torch.as_tensor(rows)])

        radii, capped = first_crossings(
            losses_at,
            lambda j, rows: np.minimum(guess[rows] * 2.0 ** (0.5 * j - 3), cap[rows]),
            _SCAN_STEPS,
            cap,
            np.array([delta]),
            rtol=_RTOL,
            max_iter=200,
            loss0=0.0,
        )
        return radii[0], capped[0]


def _level_set_hessian(landscape, hvp_at, n_dims, delta):
    """Mean Hessian at ``_LEVEL_POINTS`` points where seeded rays meet the cutoff.

    Where the loss is flat to second order at the minimum, its Hessian there
    says nothing of the body's axes; at the cutoff the higher-order terms
    that confine it have curvature, and their Hessians share its axes (a
    rotated separable body's are diagonal in its rotation).
    """
    generator = torch.Generator().manual_seed(_LEVEL_SEED)
    rays = torch.randn(
        (_LEVEL_POINTS, n_dims), generator=generator, dtype=torch.float64
    )
    rays = rays / rays.norm(dim=1, keepdim=True)
    radii, _ = landscape.radii(
        rays, delta, np.full(_LEVEL_POINTS, math.sqrt(2 * delta))
    )
    products = [hvp_at(ray * float(radius)) for ray, radius in zip(rays, radii)]
    return full_hessian(*products, n_dims=n_dims).div_(_LEVEL_POINTS)


def _calibrated_model(landscape, hvp, n_dims, delta, hvp_at=None):
    """Eigenvectors of the Hessian and curvatures from the radii along them.

    Where at least half of the Hessian's eigenvalues at the minimum are flat
    (below ``_FLAT_SHARE`` of the largest) and ``hvp_at`` gives products at
    other points, the eigenvectors are those of the Hessian at the minimum
    plus the mean Hessian where rays meet the cutoff
    (:func:`_level_set_hessian`): on the L4 ball and the degenerate body at
    n = 200 this halved the path's stepping stones (52 -> 23 and 49 -> 25
    per run) and gradients. Returns the eigenvectors, the curvatures and the
    number of Hessian-vector products taken.
    """
    hessian = full_hessian(hvp, n_dims=n_dims)
    n_products = n_dims
    values, vectors = torch.linalg.eigh(hessian)
    top = float(values.abs().max())
    n_flat = int((values <= _FLAT_SHARE * top).sum()) if top > 0 else n_dims
    if hvp_at is not None and 2 * n_flat >= n_dims:
        del vectors  # at most two n x n matrices held at a time
        hessian += _level_set_hessian(landscape, hvp_at, n_dims, delta)
        n_products += _LEVEL_POINTS * n_dims
        values, vectors = torch.linalg.eigh(hessian)
    del hessian
    guess = np.sqrt(2 * delta / np.maximum(values.numpy(), 1e-300))
    guess = np.minimum(guess, landscape.max_radius)
    both = torch.cat([vectors.T, -vectors.T])
    radii, _ = landscape.radii(both, delta, np.concatenate([guess, guess]))
    curvatures = torch.as_tensor(2 * delta / (radii[:n_dims] * radii[n_dims:]))
    # Radii along eigenvectors can misjudge the body's size in the typical
    # direction (rotated higher-order terms, flat subspaces): one common
    # factor, from rays along random directions of the whitened model, makes
    # its radius there right on average (the log-mean), so the path from
    # the model to the loss starts at the right size.
    generator = torch.Generator().manual_seed(_RESCALE_SEED)
    unit = torch.randn(
        (_RESCALE_RAYS, n_dims), generator=generator, dtype=torch.float64
    )
    unit = unit / unit.norm(dim=1, keepdim=True)
    directions = (unit * curvatures.rsqrt()) @ vectors.T
    lengths = directions.norm(dim=1)
    guess = np.full(_RESCALE_RAYS, math.sqrt(2 * delta))
    rho, _ = landscape.radii(
        directions / lengths[:, None], delta, guess * lengths.numpy()
    )
    ratio = rho / (lengths.numpy() * math.sqrt(2 * delta))
    curvatures = curvatures * math.exp(-2 * float(np.mean(np.log(ratio))))
    return vectors, curvatures, n_products


def _model_in_ball(curvatures, t0, max_radius, seed):
    """Floor the curvatures so that the model at ``t0`` lies in the cap ball.

    The path starts from the model's Gibbs measure, a Gaussian of precision
    ``t0 kappa``; the loss's measure lives in the cap ball, so the model's
    must too, or the chains' first moves are refused (directions the
    calibration found flat up to the cap give it a width beyond the ball).
    The smallest curvatures are raised to the floor that keeps at least
    ``_MODEL_INSIDE`` of the model's mass inside, and the share inside (by
    exact sampling of the Gaussian, 1,024 draws) enters the reference.

    Returns the floored curvatures, ``log P(|z| <= R)`` under the model and
    the median radius of its draws as a share of ``R``.
    """
    if not math.isfinite(max_radius):
        return curvatures, 0.0, 0.0
    n = len(curvatures)
    generator = torch.Generator().manual_seed(seed)
    squares = torch.randn((_INSIDE_DRAWS, n), generator=generator, dtype=torch.float64)
    squares = squares.square()

    def share_inside(floor):
        variances = 1.0 / (t0 * torch.clamp(curvatures, min=floor))
        return float(((squares @ variances) <= max_radius**2).double().mean())

    floor = 0.0
    if share_inside(0.0) < _MODEL_INSIDE:
        # At high the model's mean square radius is a quarter of the cap's.
        low, high = (
            math.log(float(curvatures.min()) + 1e-300),
            math.log(4 * n / (t0 * max_radius**2)),
        )
        for _ in range(60):
            middle = 0.5 * (low + high)
            if share_inside(math.exp(middle)) >= _MODEL_INSIDE:
                high = middle
            else:
                low = middle
        floor = math.exp(high)
    floored = torch.clamp(curvatures, min=floor)
    radii = (squares @ (1.0 / (t0 * floored))).sqrt()
    reach = float(radii.median()) / max_radius
    return floored, math.log(share_inside(floor)), reach


def _scale_moves(landscape, state, lam, t, generator, n_moves=2):
    """Metropolis moves of every chain's scale, ``u -> a u``.

    HMC changes the energy only through fresh momenta, by about one nat per
    transition, while the energy of a Gibbs measure in ``n`` dimensions
    spreads over ``sqrt(n)`` nats: the loss level mixes slowly and the path
    lags. Rescaling a chain moves straight along that level: with
    ``log a ~ N(0, 2 / n)`` a proposal shifts the energy by about its
    spread (exactly so on a homogeneous basin), at one gradient evaluation.
    The density of ``a`` carries the Jacobian ``a^n``.
    """
    u, loss, grad = state
    n = u.shape[1]
    for _ in range(n_moves):
        log_a = torch.randn(len(u), generator=generator, dtype=torch.float64)
        log_a = log_a * math.sqrt(2.0 / n)
        u_new = u * log_a.exp()[:, None]
        loss_new, grad_new = landscape.value_and_grad(u_new)
        q, q_new = 0.5 * (u * u).sum(1), 0.5 * (u_new * u_new).sum(1)
        energy = t * ((1 - lam) * q + lam * loss)
        energy_new = t * ((1 - lam) * q_new + lam * loss_new)
        log_accept = n * log_a - (energy_new - energy)
        inside = landscape.norms(u_new) <= landscape.max_radius
        log_accept = torch.where(
            inside & torch.isfinite(log_accept), log_accept, -math.inf
        )
        uniform = torch.rand(len(u), generator=generator, dtype=torch.float64)
        take = uniform.log() < log_accept
        u = torch.where(take[:, None], u_new, u)
        loss = torch.where(take, loss_new, loss)
        grad = torch.where(take[:, None], grad_new, grad)
    return u, loss, grad


def _hmc(landscape, state, lam, t, n_steps, step, n_leapfrog, generator, mass=None):
    """``n_steps`` HMC transitions of every chain on ``exp(-t l_lambda)``.

    The mass is ``t I``, the model's precision in whitened units, so a step
    size near 1 suits every temperature. Trajectories reflect off the cap
    (:meth:`_Landscape.drift`); proposals reaching a non-finite loss are
    refused.
    """
    u, loss, grad = state
    # The mass: t (the model's precision at t), or as given (below t0 a
    # path from the cap ball is held by the ball, whose extent in whitened
    # units is the model's at t0).
    root = math.sqrt(t if mass is None else mass)

    def energy(u_, loss_, grad_):
        q = 0.5 * (u_ * u_).sum(1)
        return t * ((1 - lam) * q + lam * loss_), t * ((1 - lam) * u_ + lam * grad_)

    losses, quads, accepted, touched_cap = [], [], [], 0
    grad_squares = []
    proposals = n_steps * len(u)
    for _ in range(n_steps):
        size = step * (0.8 + 0.4 * float(torch.rand((), generator=generator)))
        momentum = torch.randn(u.shape, generator=generator, dtype=torch.float64)
        potential, force = energy(u, loss, grad)
        start = potential + 0.5 * (momentum * momentum).sum(1)
        u_new, touched = u.clone(), torch.zeros(len(u), dtype=torch.bool)
        p = momentum - 0.5 * size * force / root
        for leap in range(n_leapfrog):
            u_new, p, bounced = landscape.drift(u_new, p, size / root)
            touched |= bounced
            loss_new, grad_new = landscape.value_and_grad(u_new)
            potential_new, force_new = energy(u_new, loss_new, grad_new)
            if leap < n_leapfrog - 1:
                p = p - size * force_new / root
        p = p - 0.5 * size * force_new / root
        end = potential_new + 0.5 * (p * p).sum(1)
        log_accept = torch.clamp(start - end, max=0.0)
        log_accept = torch.where(torch.isfinite(log_accept), log_accept, -math.inf)
        accept_prob = log_accept.exp()
        take = (
            torch.rand(len(u), generator=generator, dtype=torch.float64) < accept_prob
        )
        u = torch.where(take[:, None], u_new, u)
        loss = torch.where(take, loss_new, loss)
        grad = torch.where(take[:, None], grad_new, grad)
        touched_cap += int(touched.sum())
        u, loss, grad = _scale_moves(landscape, (u, loss, grad), lam, t, generator)
        losses.append(loss.clone())
        quads.append(0.5 * (u * u).sum(1))
        grad_squares.append((grad * grad).mean(0))
        accepted.append(float(accept_prob.mean()))
    acceptance = float(np.mean(accepted))
    if acceptance > _ACCEPT_HIGH:
        step *= 1.2
    elif acceptance < _ACCEPT_LOW:
        step /= 1.3
    kept = slice(n_steps // 2, None)  # the first half follows the path's move
    record = (torch.stack(losses)[kept].numpy(), torch.stack(quads)[kept].numpy())
    landscape.grad_square = torch.stack(grad_squares[kept]).mean(0)
    return (u, loss, grad), step, acceptance, (touched_cap, proposals), record


def _log_mean_exp(values):
    values = np.asarray(values, dtype=float).ravel()
    top = values.max()
    return float(top + np.log(np.mean(np.exp(values - top))))


def _log_weighted_mean_exp(log_w, values):
    """``log sum_i w_i mean_s exp(values[s, i])`` with ``w = softmax(log_w)``."""
    values = np.asarray(values, dtype=float).reshape(-1, len(log_w))
    top = values.max()
    per_chain = np.log(np.mean(np.exp(values - top), axis=0)) + top
    return _log_mean_exp_weighted(log_w, per_chain)


def _log_mean_exp_weighted(log_w, values):
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    top = values.max()
    return float(top + np.log(np.sum(w * np.exp(values - top))))


def _effective_size(log_w):
    w = np.exp(log_w - log_w.max())
    return float(w.sum() ** 2 / (w * w).sum())


def _resample(state, log_w, generator):
    """Systematic resampling of the chains by their weights ``exp(log_w)``."""
    w = np.exp(log_w - log_w.max())
    cumulative = np.cumsum(w / w.sum())
    cumulative[-1] = 1.0
    n = len(log_w)
    offset = float(torch.rand((), generator=generator, dtype=torch.float64))
    index = np.searchsorted(cumulative, (np.arange(n) + offset) / n)
    index = torch.from_numpy(np.minimum(index, n - 1))
    return tuple(x[index] for x in state)


def _adapt_metric(landscape, state, t, mass):
    """Rescale the whitening to the chains' measured curvature at ``t``.

    Jacobi preconditioning from the chains: under ``exp(-t l)`` the mean
    square gradient of ``l`` along ``z_i`` is ``H_ii / t`` for a quadratic
    ``l``, so the Gibbs measure's width along ``z_i`` is about
    ``1 / (t rms_i)``, and at most the cap ball's, ``R / sqrt(n)``. The
    scale is set so that HMC's mass (``mass`` in whitened units) moves
    every coordinate by its width; the chains' positions are carried over.
    """
    u, loss, grad = state
    old = landscape.scale
    rms = landscape.grad_square.sqrt() / old
    n = u.shape[1]
    width = torch.clamp(1.0 / (t * rms), max=landscape.max_radius / math.sqrt(n))
    new = math.sqrt(mass) * width
    landscape.scale = new
    return u * (old / new), loss, grad * (new / old)


def _path(landscape, state, delta, t0, settings, generator, step, ball=None):
    """One run's path forward (model to loss, then to ``t*``) and back.

    With ``ball`` (the losses of exact uniform draws of the cap ball, whose
    first ``n_chains`` are the chains' start) the path starts at ``t = 0``,
    the cap ball itself, and goes in ``t`` alone.

    Each step of the path is a stepping stone: ``log Z_next / Z_here =
    log E_here[exp(-(energy_next - energy_here))]`` from the chains' samples
    at the current point, exact in expectation whatever the spacing (no
    quadrature error, where the trapezoid rule on ``E[l - q]`` was biased by
    a few tenths of an order at 40 points). The backward path's estimate is
    biased the other way by its finite samples, so the mean of the two
    cancels that bias to first order and their difference shows the lag.

    Returns the forward and backward ``log Z(t*) - log Z_q(t0)``, the saddle
    point and the loss there, the acceptance, refusals and the final state
    of the forward path.
    """
    S, L = settings["n_steps"], settings["n_leapfrog"]
    spread, budget = settings["stone_spread"], settings["max_temperatures"]
    acceptances = []
    grids, forced = {}, [False]
    # Sequential Monte Carlo: each chain carries the log-weight of its
    # path since the last resampling, so chains that lag behind the path
    # count less and are replaced (Del Moral et al., 2006) instead of
    # biasing the next stepping stones.
    resample = settings.get("resample", _RESAMPLE)
    n_chains = len(state[0])
    log_w = np.zeros(n_chains)

    def next_point(here, end, exponent, acceptance, used):
        # The step whose stepping stone has log-weights of the target spread.
        # Chains that did not move say nothing about the spread: then a
        # short step (a budget's share of the leg), never a jump to the end.
        sd = float(np.std(exponent))
        if acceptance < _ACCEPTANCE_STUCK or not math.isfinite(sd):
            return here + (end - here) / max(budget - used, 2)
        if sd * abs(end - here) <= spread:
            return end
        return here + math.copysign(spread / sd, end - here)

    def saddle(t, losses):
        # E_t[l] ~ k / t locally: the saddle point t* = (k + 1) / d. A local
        # exponent below 1/2 is no basin's (chains below the minimum's loss
        # make it negative); it is floored there and warned about later.
        return (max(t * float(np.mean(losses)), _MIN_EXPONENT) + 1.0) / delta

    def leg(state, key, start, end, step, forward):
        """Walk from ``start`` to ``end`` (forward: choosing the points).

        ``end=None`` walks in ``t`` up to the saddle point, re-estimated
        after every block.
        """
        nonlocal log_w
        lam_leg = key == "lambda"
        grid = [start] if forward else grids[key][::-1]
        total, losses, i = 0.0, None, 0
        while True:
            here = grid[i]
            lam, t = (here, t0) if lam_leg else (1.0, here)
            mass = max(t, t0) if ball is not None else None
            state, step, acc, out, (losses, quads) = _hmc(
                landscape, state, lam, t, S, step, L, generator, mass
            )
            acceptances.append(acc)
            energy = t0 * (losses - quads) if lam_leg else losses
            goal = end if end is not None else max(saddle(here, losses), here)
            if forward and here != goal:
                nxt = next_point(here, goal, energy, acc, len(grid))
                if len(grid) >= budget and nxt != goal:
                    nxt, forced[0] = goal, True
                grid.append(nxt)
            if i + 1 == len(grid):
                break
            nxt = grid[i + 1]
            if resample:
                # The ratio from every kept sample, each chain by its
                # weight; the weight update from the chain's last state,
                # the one that goes on.
                total += _log_weighted_mean_exp(log_w, -(nxt - here) * energy)
                log_w = log_w - (nxt - here) * np.asarray(energy)[-1]
                if _effective_size(log_w) < _RESAMPLE_BELOW * n_chains:
                    state = _resample(state, log_w, generator)
                    log_w = np.zeros(n_chains)
            else:
                total += _log_mean_exp(-(nxt - here) * energy)
            if settings["adaptive"]:
                state = _adapt_metric(landscape, state, nxt, max(nxt, t0))
            if not lam_leg and ball is None:
                # Scale the chains to the next temperature (exact where the
                # volume is a power of the cutoff) unless that leaves the
                # ball: a cap-bound basin is not a power law (nor, from the
                # ball, one whose chains sit at the cap).
                u = state[0] * math.sqrt(here / nxt)
                if bool((landscape.norms(u) <= landscape.max_radius).all()):
                    state = (u, *landscape.value_and_grad(u))
            i += 1
        if forward:
            grids[key] = grid
        return state, step, total, losses

    if ball is not None:
        # From the cap ball (t = 0, exact uniform draws): the first stone
        # from those draws, then in t up to the saddle point.
        draws = ball
        sd = float(np.std(draws))
        t_first = spread / sd if sd > 0 else 1.0 / delta
        forward = _log_mean_exp(-t_first * draws)
        if resample:
            # The chains start as the first exact draws, weighted to t_first.
            log_w = -t_first * np.asarray(draws[:n_chains], dtype=float)
        state, step, integral, losses = leg(state, "t", t_first, None, step, True)
        forward += integral
        t1 = grids["t"][-1]
    else:
        state, step, forward, _ = leg(state, "lambda", 0.0, 1.0, step, True)
        state, step, _, losses = leg(state, "probe", t0, t0, step, True)
        t1 = saddle(t0, losses)
        state, step, integral, losses = leg(state, "t", t0, t1, step, True)
        forward += integral
    # A longer block at t*: the loss level there and the chains' agreement,
    # from equally weighted chains.
    if resample and np.ptp(log_w) > 0:
        state = _resample(state, log_w, generator)
    log_w = np.zeros(n_chains)
    state, step, acc, out, (losses, _) = _hmc(
        landscape,
        state,
        1.0,
        t1,
        4 * S,
        step,
        L,
        generator,
        max(t1, t0) if ball is not None else None,
    )
    acceptances.append(acc)
    # The cap's share where the volume's measure lives: at t*, not on the
    # way (near t = 0 every trajectory reaches the cap).
    touched_cap = np.asarray(out)
    # The final samples in z (the whitening may adapt on the way back).
    moments = (t1, float(np.mean(losses)), losses, (landscape.to_z(state[0]), state[1]))
    # Back: the same temperatures and lambdas in reverse.
    state, step, integral, losses = leg(state, "t", t1, grids["t"][0], step, False)
    backward = -integral
    if ball is not None:
        # The last stone, back to the ball: log Z(0) / Z(t) = log E_t[e^(t l)].
        backward -= _log_weighted_mean_exp(log_w, t_first * losses)
        n_points = len(grids["t"]) + 1
    else:
        state, step, integral, _ = leg(state, "lambda", 1.0, 0.0, step, False)
        backward -= integral
        n_points = len(grids["lambda"]) + len(grids["t"])
    return (
        forward,
        backward,
        moments,
        float(np.mean(acceptances)),
        touched_cap,
        (
            n_points,
            forced[0],
        ),
    )


def _star_share_note(star_share, basin, segment_points):
    """Return the warning on the final samples' star-shaped share, or None.

    With ``basin='star'`` a share ``s`` of the sampled set outside the
    star-shaped basin (bumps between the segment's points) makes the
    estimate too large by about ``-log10(s)``: 0.05 orders at 0.9, below
    which it warns. With ``basin='sublevel'`` the share says how much the
    measured set exceeds the star-shaped basin.
    """
    if not star_share < 1:  # also NaN: no final sample below the cutoff
        return None
    if basin == "star":
        if star_share >= _STAR_SHARE_MIN:
            return None
        return (
            f"Only {star_share:.0%} of the final samples are reached from the "
            "minimum by a straight segment inside the basin: the loss rises "
            f"above the cutoff between the segment's {segment_points} points "
            "(the estimate is too large by about "
            f"{-math.log10(max(star_share, 1e-300)):.2g} orders of magnitude); "
            "raise segment_points."
        )
    if star_share >= 0.99:
        return None
    return (
        f"Only {star_share:.0%} of the final samples are reached from the "
        "minimum by a straight segment inside the basin: the sublevel set "
        "measured here is larger than the star-shaped basin the ray "
        "estimators measure (basin='star' measures that one)."
    )


def _cap_share_note(cap_share, max_radius):
    """Say that the cap ball bounds the basin, or return None where it does not."""
    if not cap_share >= CAP_SHARE_WARN:
        return None
    return (
        f"{cap_share:.0%} of the chains' trajectories at the saddle point "
        f"reflected off the cap ball (radius {max_radius:.4g}): the cap, not "
        "the loss, bounds the basin in the directions that hold its volume, so "
        "the value is the volume inside the cap and grows with max_radius; "
        "compare basins at one cap only, or raise max_radius."
    )


def _gamma_inversion(losses, t, delta):
    """Return ``log V(delta) - log Z(t)`` from the loss's moments at ``t``.

    Under the Gibbs measure at ``t`` the loss has density ``exp(-t l) V'(l)
    / Z(t)``. With ``V'(l) = C l^(k-1) exp(-b l)`` the loss is Gamma
    distributed with shape ``k = E^2 / Var`` and rate ``t + b = E / Var``,
    so ``Z(t) = C Gamma(k) / (t + b)^k`` and
    ``V(delta) = C delta^k int_0^1 s^(k-1) exp(-b delta s) ds``. Where the
    volume is a power of the cutoff (``b = 0``) this is exact at any
    ``t``; where its exponent changes with the cutoff (a basin bounded by
    the cap), ``b`` follows the change: on the 1,000-D cap-bound basin,
    with exact moments, the error is 0.013 orders of magnitude where the
    power law alone (``k = t E``) is off by 0.52.
    """
    values = np.asarray(losses, dtype=float).ravel()
    mean, var = float(np.mean(values)), float(np.var(values, ddof=1))
    if not (mean > 0 and var > 0 and math.isfinite(var)):
        # Chains that did not move (or sit below the minimum's loss): the
        # power law with a floored exponent; warned about by the caller.
        k = max(t * max(mean, 0.0), _MIN_EXPONENT)
        return k * math.log(t * delta) - gammaln(k + 1)
    k = max(mean * mean / var, _MIN_EXPONENT)
    rate = mean / var
    b = rate - t
    return k * math.log(rate * delta) - gammaln(k) + _log_unit_integral(k, b * delta)


def _inversion_standard_error(losses, t, delta, max_groups=_JACKKNIFE_GROUPS):
    """Jackknife standard error (log10) of :func:`_gamma_inversion` at ``t``.

    ``losses`` holds the chains' samples at ``t`` (one column per chain).
    The chains are cut into at most ``max_groups`` groups and each left out
    in turn: the inversion's sampling error as the run's own chains see it,
    autocorrelation included (a chain's samples stay together). A run's
    error has this part and the path's, so its square is a floor under the
    runs' variance that does not depend on how few runs there are. NaN
    when it cannot be measured (fewer than two chains, or a left-out
    inversion that is not finite).
    """
    values = np.asarray(losses, dtype=float)
    if values.ndim != 2 or values.shape[1] < 2:
        return math.nan
    n_chains = values.shape[1]
    groups = np.array_split(np.arange(n_chains), min(n_chains, max_groups))
    g = len(groups)
    left_out = np.array(
        [
            _gamma_inversion(np.delete(values, group, axis=1), t, delta)
            for group in groups
        ]
    )
    spread = float(np.sum((left_out - left_out.mean()) ** 2))
    return (
        math.sqrt((g - 1) / g * spread) / _LN10 if math.isfinite(spread) else math.nan
    )


def _log_unit_integral(k, x):
    """``log int_0^1 s^(k-1) exp(-x s) ds`` (``1 / k`` at ``x = 0``), stably."""
    if abs(x) < 1e-12 * max(k, 1.0):
        return -math.log(k)

    def log_f(s):
        return (k - 1) * math.log(s) - x * s if s > 0 else -math.inf

    peak = min(max((k - 1) / x, 0.0), 1.0) if x > 0 else 1.0
    top = log_f(peak) if peak > 0 else log_f(1.0)
    value, _ = quad(
        lambda s: math.exp(log_f(s) - top),
        0.0,
        1.0,
        points=[peak] if 0 < peak < 1 else None,
        limit=200,
        epsabs=0.0,
        epsrel=1e-10,
    )
    return top + math.log(value)


def _run_task(landscape, settings, run):
    """One independent run: its own seed, chains drawn exactly from the model."""
    with torch_threads(settings["n_threads"]):
        generator = _stream(settings["seed"], 3, run)
        # Each run adapts its own metric (runs share the landscape when
        # they run in one process).
        landscape = copy.copy(landscape)
        # Counts as differences: one landscape serves every run in a process.
        gradients, evaluations = landscape.n_gradients, landscape.n_evaluations
        n, delta = settings["n_dims"], settings["delta"]
        t0 = (n / 2 + 1) / delta
        ball = None
        if settings["from_ball"]:
            # Exact uniform draws of the cap ball: a Gaussian direction and
            # the radius R U^(1/n); more than the chains for the first stone.
            g = torch.randn(
                (max(settings["n_chains"], _BALL_DRAWS), n),
                generator=generator,
                dtype=torch.float64,
            )
            radius = landscape.max_radius * torch.rand(
                len(g), generator=generator, dtype=torch.float64
            ) ** (1.0 / n)
            z = g * (radius / g.norm(dim=1))[:, None]
            ball = landscape.energies(z)
            u = landscape.from_z(z[: settings["n_chains"]])
            log_model = log10_unit_ball_volume(n) * _LN10 + n * math.log(
                landscape.max_radius
            )
        else:
            # Exact draws of the model restricted to the cap ball (most land in).
            u = torch.empty((0, n), dtype=torch.float64)
            while len(u) < settings["n_chains"]:
                draws = torch.randn(
                    (settings["n_chains"], n), generator=generator, dtype=torch.float64
                ) / math.sqrt(t0)
                inside = landscape.norms(draws) <= landscape.max_radius
                u = torch.cat([u, draws[inside]])
            u = u[: settings["n_chains"]]
            log_model = (
                0.5 * n * math.log(2 * math.pi / t0)
                + settings["log_det"]
                + settings["log_inside"]
            )
        state = (u, *landscape.value_and_grad(u))
        forward, backward, moments, acceptance, touched_cap, (n_points, forced) = _path(
            landscape, state, delta, t0, settings, generator, n**-0.25, ball
        )
        t1, mean_loss, losses, end = moments
        log_volume = _gamma_inversion(losses, t1, delta)
        inversion_se = _inversion_standard_error(losses, t1, delta)
        estimates = [
            (log_z + log_volume) / _LN10
            for log_z in (log_model + forward, log_model + backward)
        ]
        # The final samples inside the basin: does the segment from 0 stay
        # below the cutoff, resolved far finer than the chains' energy?
        z = end[0]
        inside = end[1].numpy() < delta
        reached = 0
        if inside.any():
            z_in = z[torch.as_tensor(inside)]
            top, _ = landscape._segment_max(z_in, _CHECK_POINTS)
            ends = torch.as_tensor(landscape.losses(z_in))
            reached = int((torch.maximum(top, ends) < delta).sum())
        return {
            "forward": estimates[0],
            "inversion_se": inversion_se,
            "backward": estimates[1],
            "t1": t1,
            "losses": losses,
            "acceptance": acceptance,
            "touched_cap": touched_cap,
            "inside": int(inside.sum()),
            "exponent": t1 * mean_loss,
            "n_points": n_points,
            "forced": forced,
            "reached": reached,
            "n_gradients": landscape.n_gradients - gradients,
            "n_evaluations": landscape.n_evaluations - evaluations,
        }


def annealed_log10_volume(
    loss_fn,
    n_dims,
    cutoff,
    *,
    basin="star",
    segment_points=16,
    start="auto",
    metric="model",
    n_runs=4,
    n_chains=16,
    stone_spread=0.5,
    max_temperatures=2000,
    n_steps=20,
    n_leapfrog=10,
    max_radius=None,
    confidence_level=0.95,
    random_state=None,
    hvp=None,
    value_and_grad=None,
    loss0=None,
    dtype=torch.float64,
    device=None,
    batch_size=1024,
    n_jobs=None,
    n_threads=None,
    verbose=0,
):
    """Measure the log-volume of a basin by annealing, with an interval.

    Thermodynamic integration of the Gibbs measure ``exp(-t l)`` from the
    basin's calibrated quadratic model to the loss, chains moved by
    Hamiltonian Monte Carlo, and the saddle-point inversion of the Laplace
    transform; see the module notes. Exact on quadratic basins (the path's
    integrand is zero); on others its error comes from the chains, and the
    interval from independent runs and each run's hysteresis.

    Parameters
    ----------
    loss_fn : callable
        Maps a (B, n_dims) float tensor of displacements to B losses,
        differentiable by torch autograd. The minimum is at ``z = 0``.
    n_dims : int
        Dimension ``n`` (at most 20,000: the model is the whole Hessian,
        about 3.5 ``n x n`` float64 matrices at the peak, 11 GB there).
    cutoff : float
        Loss level that ends the basin, above ``loss_fn(0)``.
    basin : {'star', 'sublevel'}, default='star'
        Which set is measured. ``'star'``: the star-shaped basin, the points
        whose whole segment from the minimum stays below the cutoff (the
        set the ray estimators measure); the chains sample the segment's
        maximum of the loss, whose sublevel sets are exactly these.
        ``'sublevel'``: the sublevel set of the loss inside the cap ball,
        as far as the chains reach it (low-loss regions behind a ridge
        included); one loss evaluation per point instead of
        ``segment_points``.
    segment_points : int, default=16
        Points along each segment at which ``basin='star'`` evaluates the
        loss (evenly spaced, the point itself the last): a bump of the loss
        narrower than a sixteenth of the segment may be missed, which the
        final check of the samples at 1,024 points of their segment reports
        (``star_shaped_share``; below 90 % it warns).
    start : {'auto', 'model', 'cap ball'}, default='auto'
        Where each path starts: the calibrated quadratic model, or the cap
        ball (uniform, its volume known; needs ``max_radius``). ``'auto'``
        takes the cap ball where the model reaches the cap (floored to fit
        it, or its median draw at ``t0`` beyond 90 % of the radius), and
        with ``metric='adaptive'`` wherever ``max_radius`` is given.
    metric : {'model', 'adaptive'}, default='model'
        HMC's whitening on a path from the cap ball. ``'model'``: the
        calibrated quadratic model's (rotations included). ``'adaptive'``:
        per coordinate, adapted between steps to the chains' mean square
        gradients (Jacobi preconditioning) and bounded by the ball's width:
        no ``n x n`` products, and it follows the loss where the chains are,
        far from the minimum. On the clean swiss-roll network (n = 3,229) it
        measured the basin in 7.5 minutes on two cores where the model's
        whitening shrank HMC's step to 0.013 and had not finished one run
        in 17; on the test bed's rotated cap-bound body it is as accurate
        but its chains agree less (split R-hat 1.45-1.54 against
        1.06-1.10). A path from the model always uses the model's.
    n_runs : int, default=4
        Independent runs (at least 2: their spread, floored by each run's
        own jackknife error, is the interval).
    n_chains : int, default=16
        HMC chains per run.
    stone_spread : float, default=0.5
        Spacing of the path: each step is chosen so that its stepping
        stone's log-weights have this standard deviation (in nats) over the
        chains' samples. Smaller means more, easier steps: less bias and
        hysteresis, more cost. A quadratic basin needs one step.
    max_temperatures : int, default=2000
        Most points on each leg of the path; a leg that would need more
        takes one long last step and is warned about.
    n_steps : int, default=20
        HMC transitions per point (the second half is averaged).
    n_leapfrog : int, default=10
        Leapfrog steps per transition.
    max_radius : float, default=None
        Radius of the ball the basin is measured in; None: no cap beyond the
        radius searches' own (2^60 times the model's radius).
    confidence_level : float, default=0.95
        Nominal coverage of the interval.
    random_state : int, RandomState instance or None, default=None
        Seeds every run (run ``k`` has its own stream: results do not
        depend on ``n_jobs``).
    hvp : callable, default=None
        Hessian-vector products of ``loss_fn`` at 0 (rows to rows); default
        double backprop.
    value_and_grad : callable, default=None
        Maps a (B, n_dims) tensor to the losses and their (B, n_dims)
        gradients; default autograd through ``loss_fn`` (then it must be
        differentiable).
    loss0 : float, default=None
        ``loss_fn(0)`` if known.
    dtype : torch.dtype, default=torch.float64
        Dtype of the displacements passed to ``loss_fn``.
    device : torch.device, default=None
        Device of the displacements (CPU when None).
    batch_size : int, default=1024
        Most displacements per call of ``loss_fn``.
    n_jobs : int, default=None
        joblib workers over runs.
    n_threads : int, default=None
        torch threads per run; None leaves torch's setting.
    verbose : int, default=0
        Progress bar over runs when positive.

    Returns
    -------
    result : AnnealedVolume
        Estimate, interval, diagnostics and cost.

    Raises
    ------
    ValueError
        Before any work: bad options, a loss at the minimum not below the
        cutoff, ``n_dims`` above 20,000.
    TypeError
        If ``loss_fn`` is not callable or not differentiable by autograd.

    Warns
    -----
    sklearn.exceptions.ConvergenceWarning
        When the runs' paths lag (hysteresis above one order of magnitude),
        their chains disagree (split R-hat above 1.1), HMC accepts under
        30 % of proposals, or the sampled basin is not star-shaped.
    flatgen.landscape.VolumeSaturationWarning
        When at least half of the trajectories at the saddle point reflect
        off the cap ball (``cap_share``): the cap bounds the basin where its
        volume is, so the value is the volume inside the cap and depends on
        ``max_radius``. The chains' result stands (``reliable`` is not
        changed); the warning is also in ``warnings``.

    Examples
    --------
    >>> from flatgen.landscape import annealed_log10_volume, make_basin
    >>> basin = make_basin("degenerate", 100, random_state=0)
    >>> result = annealed_log10_volume(
    ...     basin.loss_fn, 100, basin.cutoff, n_runs=2, n_steps=10,
    ...     random_state=0)
    >>> low, high = result.log10_volume_ci
    >>> bool(low - 1 < basin.log10_volume < high + 1)
    True
    """
    start_time = time.perf_counter()
    _check_int("n_dims", n_dims, 1, _MAX_FULL_DIMS)
    _check_int("n_runs", n_runs, 2, 1000)
    _check_int("n_chains", n_chains, 2, 100_000)
    _check_int("max_temperatures", max_temperatures, 2, 100_000)
    if not (isinstance(stone_spread, (int, float)) and 0 < stone_spread < math.inf):
        raise ValueError(
            f"stone_spread must be a positive number. Got {stone_spread!r} instead."
        )
    _check_int("n_steps", n_steps, 2, 100_000)
    _check_int("n_leapfrog", n_leapfrog, 1, 10_000)
    _check_int("batch_size", batch_size, 1)
    if basin not in ("star", "sublevel"):
        raise ValueError(f"basin must be 'star' or 'sublevel'. Got {basin!r} instead.")
    _check_int("segment_points", segment_points, 2, 1000)
    if start not in ("auto", "model", "cap ball"):
        raise ValueError(
            f"start must be 'auto', 'model' or 'cap ball'. Got {start!r} instead."
        )
    if metric not in ("model", "adaptive"):
        raise ValueError(
            f"metric must be 'model' or 'adaptive'. Got {metric!r} instead."
        )
    if start == "cap ball" and max_radius is None:
        raise ValueError("start='cap ball' needs a max_radius (the ball's radius).")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable. Got {type(loss_fn).__name__}.")
    try:
        delta_cutoff = float(cutoff)
    except (TypeError, ValueError):
        delta_cutoff = math.nan
    if not math.isfinite(delta_cutoff):
        raise ValueError(f"cutoff must be a finite number. Got {cutoff!r} instead.")
    if max_radius is not None and not (
        isinstance(max_radius, (int, float)) and 0 < max_radius < math.inf
    ):
        raise ValueError(
            f"max_radius must be a positive finite number or None. Got {max_radius!r}."
        )
    if not 0 < confidence_level < 1:
        raise ValueError(
            f"confidence_level must be in (0, 1). Got {confidence_level!r} instead."
        )
    device = torch.device("cpu") if device is None else torch.device(device)
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    notes = []
    with torch_threads(n_threads):
        if loss0 is None:
            with torch.no_grad():
                origin = torch.zeros((1, n_dims), dtype=dtype, device=device)
                loss0 = float(_as_losses(loss_fn(origin), 1)[0])
        if not math.isfinite(loss0) or not loss0 < delta_cutoff:
            raise ValueError(
                f"The loss at the minimum ({loss0:.6g}) must be finite and below the "
                f"cutoff ({delta_cutoff:.6g}); choose a larger cutoff."
            )
        delta = delta_cutoff - loss0
        origin = torch.zeros((1, n_dims), dtype=dtype, device=device)
        origin.requires_grad_(True)
        if value_and_grad is None:
            _differentiable_losses(loss_fn, origin)  # TypeError before any work
        if hvp is None:
            hvp = _autograd_hvp(loss_fn, dtype, device)
        identity = (None, torch.ones(n_dims, dtype=torch.float64))
        # Searches need a finite cap: 2^60 model radii when none is given.
        cap = math.inf if max_radius is None else float(max_radius)
        landscape = _Landscape(
            loss_fn, value_and_grad, *identity, loss0, cap, dtype, device, batch_size
        )
        if max_radius is None:
            landscape.max_radius = math.sqrt(2 * delta) * 2.0**60
        # From the cap ball with the adaptive whitening the path uses no
        # quadratic model: its n Hessian-vector products, eigendecomposition
        # and 2n radius searches are skipped (most of the time of a
        # 12,544-weight 4 x 64 MLP's run: 833 s -> 294 s).
        needs_model = metric != "adaptive" or start == "model" or max_radius is None
        if needs_model:
            # Hessians away from the minimum by autograd through the loss
            # itself, where it has a graph and the caller gave no gradient
            # of its own (networks come with theirs and take the cap ball).
            hvp_at = None
            if value_and_grad is None:

                def hvp_at(point):
                    return _autograd_hvp(loss_fn, dtype, device, at=point)

            basis, curvatures, n_hvp = _calibrated_model(
                landscape, hvp, n_dims, delta, hvp_at
            )
        n_calibration = landscape.n_evaluations
    t0 = (n_dims / 2 + 1) / delta
    if needs_model:
        calibrated = curvatures
        curvatures, log_inside, reach = _model_in_ball(
            curvatures, t0, landscape.max_radius, _stream(seed, 4, 0).initial_seed()
        )
        scale = curvatures.rsqrt()
        log_det = float(torch.log(scale).sum())
        raised = curvatures > calibrated
    else:
        log_det, log_inside = math.nan, math.nan
    # A model floored to fit the cap ball, or whose draws reach near the
    # cap: the cap bounds the basin in some directions (the Gibbs measure
    # lives at the cap's surface), and the path starts from the cap ball
    # itself, whose volume is known (on the clean swiss-roll network the
    # model's path needed thousands of stepping stones, this one about 40).
    # The adaptive whitening exists on paths from the ball only, so asking
    # for it with a cap starts there too (the beta = 1 swiss-roll network,
    # whose model fits the ball: 15 min from the ball, against a path from
    # the model unfinished after 37 min).
    if not needs_model:
        from_ball = True
    elif start == "auto":
        from_ball = max_radius is not None and (
            bool(raised.any()) or reach >= _BALL_REACH
        )
    else:
        from_ball = start == "cap ball"
    segment = segment_points if basin == "star" else None
    adaptive = from_ball and metric == "adaptive"
    if adaptive:
        # From the cap ball the whitening adapts to the chains (Jacobi
        # preconditioning, :func:`_adapt_metric`): where they live, at the
        # cap, the Hessian at the minimum is no guide (on the clean
        # swiss-roll network HMC's step shrank to 0.013 under it, and each
        # step paid two n x n products). It starts as the ball's width.
        basis, floor_scale = None, None
        scale = torch.full(
            (n_dims,),
            math.sqrt(t0) * landscape.max_radius / math.sqrt(n_dims),
            dtype=torch.float64,
        )
    else:
        floor_scale = None
        if int(raised.sum()) >= n_dims // 2:
            # Most directions at the floor (flat up to the cap): the same
            # model as the floor plus a low-rank update, at O(n r) per chain.
            floor_scale = float(scale[raised][0])
            basis, scale = basis[:, ~raised].contiguous(), scale[~raised]
        if dtype in (torch.float32, torch.float16, torch.bfloat16):
            basis = basis.to(torch.float32)
    landscape = _Landscape(
        loss_fn,
        value_and_grad,
        basis,
        scale,
        loss0,
        landscape.max_radius,
        dtype,
        device,
        batch_size,
        floor_scale=floor_scale,
        segment_points=segment,
    )
    settings = {
        "seed": seed,
        "n_dims": n_dims,
        "delta": delta,
        "log_det": log_det,
        "log_inside": log_inside,
        "from_ball": from_ball,
        "adaptive": adaptive,
        "n_chains": n_chains,
        "stone_spread": float(stone_spread),
        "max_temperatures": max_temperatures,
        "n_steps": n_steps,
        "n_leapfrog": n_leapfrog,
        "n_threads": n_threads,
    }
    tasks = (delayed(_run_task)(landscape, settings, run) for run in range(n_runs))
    runs = list(
        tqdm(
            Parallel(n_jobs=n_jobs, return_as="generator")(tasks),
            total=n_runs,
            desc="annealing runs",
            disable=not verbose,
        )
    )
    forward = np.array([r["forward"] for r in runs])
    backward = np.array([r["backward"] for r in runs])
    estimates = 0.5 * (forward + backward)
    hysteresis = forward - backward
    mean = float(estimates.mean())
    # The runs' spread, but never below what each run's own chains say its
    # inversion alone scatters by (the jackknife): without the floor four
    # runs that happened to agree gave intervals that covered the rotated
    # ellipsoid's exact volume in 16 of 20 seeds (see the volume page).
    run_se = np.array([r["inversion_se"] for r in runs])
    measured = run_se[np.isfinite(run_se)]
    floor = float(np.mean(measured**2)) if len(measured) else 0.0
    variance = max(float(estimates.var(ddof=1)), floor)
    spread = math.sqrt(variance / n_runs)
    quantile = float(student_t.ppf(0.5 + confidence_level / 2, n_runs - 1))
    half = quantile * spread + 0.5 * float(np.mean(np.abs(hysteresis)))
    # Each run's chains at its own t* (runs end at their own estimate of it,
    # so their loss levels differ where the volume is no power of the
    # cutoff): the largest split R-hat over runs. Disagreement between
    # runs shows in their spread, which sets the interval.
    run_rhats = np.array([float(split_rhat(r["losses"].T)) for r in runs])
    rhat = max(float(v) for v in run_rhats)
    acceptance = float(np.mean([r["acceptance"] for r in runs]))
    inside = sum(r["inside"] for r in runs)
    star_share = sum(r["reached"] for r in runs) / inside if inside else float("nan")
    touched = np.sum([r["touched_cap"] for r in runs], axis=0)
    cap_share = touched[0] / touched[1]
    log10_model = (
        log10_unit_ball_volume(n_dims)
        + (0.5 * n_dims * math.log(2 * delta) + log_det) / _LN10
        if needs_model
        else math.nan
    )
    if np.max(np.abs(hysteresis)) > _HYSTERESIS_MAX:
        notes.append(
            f"The annealing paths lag: forward and backward differ by up to "
            f"{np.max(np.abs(hysteresis)):.2f} orders of magnitude; raise n_steps or "
            "lower stone_spread (the interval is widened by half of it)."
        )
    if not rhat <= _RHAT_MAX:
        notes.append(
            f"A run's chains disagree at its last temperature (split R-hat "
            f"{rhat:.3f} > {_RHAT_MAX}, the largest over runs); raise n_steps "
            "or lower stone_spread."
        )
    if len(measured) < n_runs:
        notes.append(
            f"The saddle-point inversion's own error could not be measured in "
            f"{n_runs - len(measured)} of {n_runs} runs (a group of chains left out "
            "gave no finite inversion): the interval's floor rests on the other "
            "runs' errors, or on the runs' spread alone."
        )
    if min(r["exponent"] for r in runs) < _MIN_EXPONENT:
        notes.append(
            "The chains sit at losses at or below the minimum's (local exponent "
            f"{min(r['exponent'] for r in runs):.3g}): the origin is not a minimum "
            "at this resolution, or the cutoff is too close to its loss."
        )
    if any(r["forced"] for r in runs):
        notes.append(
            f"A leg of the path needed more than max_temperatures={max_temperatures} "
            "points and took a long last step; raise max_temperatures."
        )
    if acceptance < _ACCEPTANCE_MIN:
        notes.append(
            f"HMC accepted {acceptance:.0%} of its proposals; the chains barely "
            "move (raise n_leapfrog or check that the loss is smooth)."
        )
    star_note = _star_share_note(star_share, basin, segment_points)
    if star_note is not None:
        notes.append(star_note)
    for note in notes:
        warnings.warn(note, ConvergenceWarning, stacklevel=2)
    # Not a convergence failure (the chains measured the capped set), so it
    # leaves `reliable` alone; but the value is the cap's as much as the loss's.
    saturation = _cap_share_note(cap_share, landscape.max_radius)
    if saturation is not None:
        warnings.warn(saturation, VolumeSaturationWarning, stacklevel=2)
    return AnnealedVolume(
        log10_volume=mean,
        log10_volume_ci=np.array([mean - half, mean + half]),
        run_log10_volumes=estimates,
        hysteresis=hysteresis,
        run_standard_errors=run_se,
        rhat=rhat,
        run_rhats=run_rhats,
        acceptance=acceptance,
        log10_model_volume=float(log10_model),
        saddle_temperature=float(np.mean([r["t1"] for r in runs])),
        n_temperatures=np.array([r["n_points"] for r in runs]),
        star_shaped_share=float(star_share),
        cap_share=float(cap_share),
        reliable=not notes,
        n_gradients=int(sum(r["n_gradients"] for r in runs)),
        n_evaluations=int(n_calibration + sum(r["n_evaluations"] for r in runs)),
        n_hvp=int(n_hvp) if needs_model else 0,
        seconds=time.perf_counter() - start_time,
        n_dims=int(n_dims),
        cutoff=delta_cutoff,
        loss0=float(loss0),
        max_radius=float(landscape.max_radius),
        confidence_level=float(confidence_level),
        warnings=notes + ([] if saturation is None else [saturation]),
        start="cap ball" if from_ball else "model",
        basin=basin,
        metric="adaptive" if adaptive else "model",
    )
