"""Basins of exactly known volume, shaped like the basins of real networks.

A volume estimator is only as good as the worst shape it has been checked
on. Network Hessians have spectra over many decades, in no particular
basis, most of their eigenvalues near zero (the basin then held by
higher-order terms), and a few outliers. Each basin here is a separable body
``{z : sum_i f_i(y_i) < c}`` in rotated coordinates ``y = z Q`` (``Q``
orthogonal), so its volume is that of the unrotated body, and that has an
exact value independent of any estimator:

- quadratic terms only (an ellipsoid): the closed form from the spectrum;
  a rank-``k`` update of a diagonal spectrum by the matrix determinant lemma;
- terms ``|y|^p`` of one degree ``p`` (quadratic and quartic mixed, any
  scales): the volume is a power of ``c`` whose constant follows from
  one-dimensional integrals in closed form;
- anything else (a quadratic plus a quartic in one coordinate, a
  sub-quadratic ``log cosh``): the Laplace transform of the volume is a
  product of one-dimensional integrals, ``Z(t) = prod_i int exp(-t f_i)``,
  and the volume is its inverse, the Bromwich integral
  ``V(c) = (1 / 2 pi i) int Z(t) exp(t c) / t dt`` along a vertical line
  through the saddle point, computed by quadrature (to about 1e-6 in
  ``log10 V`` here).

Every body is star-shaped about the origin (each ``f_i`` grows with
``|y_i|``), so the star-shaped basin the estimators measure is the sublevel
set itself, except one: ``'moat'`` is a ball in a rotated ellipsoidal norm
``rho`` with a ridge around it and a low-loss moat behind the ridge
(``h sin^2(pi rho)``), as trained networks have low-loss regions that no
ray from the weights reaches below the cutoff. Its star-shaped basin is
the inner ball ``rho < r1`` and its sublevel set adds the moat's shell
``|rho - 1| < r1``, both exact from the ellipsoid's volume.

One shape is bounded by the cap ball rather than by the loss
(``'cap_bound'``, as the flat directions of trained networks are): half of
the rotated coordinates are quadratic, the other half exactly flat, and the
basin is measured inside the ball ``|z| <= max_radius``. Its volume is a
one-dimensional integral over the radius ``rho`` of the quadratic half,
``m k w_m w_k int_0^r rho^(m-1) (R^2 - rho^2)^(k/2) d rho`` (``w_j`` the unit
``j``-ball's volume), by quadrature.
"""

import math
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
import torch
from scipy.integrate import quad
from scipy.optimize import minimize_scalar
from scipy.special import gammaln, loggamma
from sklearn.utils import check_random_state

__all__ = ["KnownBasin", "make_basin"]

_LN10 = math.log(10.0)
# The rotation is an n x n float64 matrix: 128 MB at this size.
_MAX_ROTATED_DIMS = 4000
BASIN_KINDS = (
    "ellipsoid",
    "rotated_ellipsoid",
    "power_law",
    "spiked",
    "quartic",
    "log_cosh",
    "degenerate",
    "lp_ball",
    "cap_bound",
    "moat",
)


class _RotatedLoss:
    """A loss ``profile(z Q)`` of displacements ``z`` (``Q`` None: ``z`` itself).

    The rotation is linear, so the losses along a segment from the minimum,
    ``profile(s z Q)``, need ``z Q`` once: :meth:`losses_along` spares the
    annealed estimator's segment maxima one ``n x n`` product per point (on
    the 1,000-D quartic body they were three fifths of its time).
    """

    def __init__(self, rotation, profile):
        self.rotation = rotation
        self.profile = profile

    def _rotated(self, z):
        if self.rotation is None:
            return z
        return z @ self.rotation.to(z.device, z.dtype)

    def __call__(self, z):
        return self.profile(self._rotated(z))

    def losses_along(self, displacements, shares):
        """Losses at ``s z``, shape ``(len(shares), len(displacements))``."""
        y = self._rotated(torch.as_tensor(displacements))
        shares = torch.as_tensor(shares, dtype=y.dtype, device=y.device)
        return torch.stack([self.profile(share * y) for share in shares])


@dataclass(frozen=True)
class KnownBasin:
    """A loss of displacements whose basin has an exactly known volume.

    Attributes
    ----------
    kind : str
        Which shape (see :func:`make_basin`).
    n_dims : int
        Dimension of the displacements.
    cutoff : float
        Loss level that ends the basin (the loss is 0 at the minimum ``z = 0``).
    log10_volume : float
        The exact ``log10`` of the basin's Lebesgue volume.
    description : str
        The shape in words.
    loss_fn : callable
        Maps a (B, n_dims) float64 tensor of displacements to B losses;
        differentiable by torch autograd. The rotated bodies' also has
        ``losses_along(z, shares)``, the losses at ``s z`` for every share
        ``s`` (shape ``(len(shares), B)``) from one rotation of ``z``.
    max_radius : float
        The cap ball the volume is measured in (``inf``: the basin is
        bounded without it); pass it to the estimators.
    sublevel_log10_volume : float
        The exact ``log10`` volume of the whole sublevel set below the
        cutoff; larger than ``log10_volume`` (the star-shaped basin) only
        where the loss falls again behind a ridge (``'moat'``).
    """

    kind: str
    n_dims: int
    cutoff: float
    log10_volume: float
    description: str
    loss_fn: object = field(repr=False)
    max_radius: float = math.inf
    sublevel_log10_volume: float = None

    def __post_init__(self):
        if self.sublevel_log10_volume is None:
            object.__setattr__(self, "sublevel_log10_volume", self.log10_volume)


def _rotation(n, rng):
    """Draw a Haar-random orthogonal matrix (QR of a Gaussian, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def _ellipsoid(log_eigenvalues, cutoff):
    """Return ln of the volume of ``{y : sum lam_i y_i^2 / 2 < c}``."""
    n = len(log_eigenvalues)
    log_ball = 0.5 * n * math.log(math.pi) - gammaln(0.5 * n + 1)
    return log_ball + 0.5 * n * math.log(2 * cutoff) - 0.5 * np.sum(log_eigenvalues)


def _power_body(log_constants, degrees, cutoff):
    """Return ln volume of ``{sum_i a_i |y_i|^p_i < c}``, ``prod(int e^-f_i) c^k / k!``.

    With ``Z(t) = prod_i 2 Gamma(1 + 1/p_i) (t a_i)^(-1/p_i) = C t^-k``, the
    volume below ``c`` is ``C c^k / Gamma(k + 1)``; ``log_constants`` are the
    ``ln a_i``.
    """
    inverse = 1.0 / np.asarray(degrees, dtype=float)
    k = inverse.sum()
    log_c = np.sum(math.log(2) + gammaln(1 + inverse) - inverse * log_constants)
    return log_c + k * math.log(cutoff) - gammaln(k + 1)


def _bromwich(log_laplace, cutoff, t_bounds=(1e-6, 1e8)):
    """Return ln V(c) from ``ln Z(t) = ln int exp(-t f)`` (complex t), by quadrature.

    ``V(c) = (1/pi) int_0^inf Re[Z(t0 + iw) exp((t0 + iw) c) / (t0 + iw)] dw``
    with ``t0`` the saddle point of ``ln Z(t) + t c - ln t`` on the real
    axis, where the integrand is a narrow Gaussian bump in ``w`` without
    oscillation: a fine trapezoid rule over twelve of its widths (and a
    second pass over twice the range) converges geometrically.
    """

    def phase(t):
        return log_laplace(t) + t * cutoff - np.log(t)

    result = minimize_scalar(
        lambda lt: float(np.real(phase(np.exp(lt)))),
        bounds=tuple(np.log(t_bounds)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    t0 = math.exp(result.x)
    h = 1e-4 * t0
    curvature = float(np.real(phase(t0 + h) - 2 * phase(t0) + phase(t0 - h)) / h**2)
    width = 1.0 / math.sqrt(max(curvature, 1e-300))
    base = float(np.real(phase(t0)))
    values = []
    for span in (12.0, 24.0):
        w = np.linspace(0.0, span * width, 801 * int(span // 12))
        terms = np.real(np.exp(phase(t0 + 1j * w) - base))
        integral = np.trapezoid(terms, w) / math.pi
        values.append(base + math.log(integral))
    if abs(values[1] - values[0]) > 1e-8:
        # In few dimensions the transform decays as a power of w, not as a
        # Gaussian bump, beyond the range this rule covers.
        raise RuntimeError(
            "The exact volume's Bromwich quadrature did not converge: in few "
            "dimensions this body's Laplace transform has heavy tails; use "
            "n_dims >= 40 (the quartic body fails below about 36)."
        )
    return values[1]


def _quartic_laplace(kappa, grid=4001):
    """``ln int exp(-t (u^2/2 + kappa u^4)) du`` for complex ``t``, per ``kappa``."""

    def log_integral(t):
        t = np.asarray(t, dtype=complex)
        # The integrand is below e^-40 once Re(t) (u^2/2 + kappa u^4) > 40.
        scale = float(np.min(np.real(t)))
        edge = math.sqrt(80.0 / scale)
        edge = min(edge, (40.0 / (scale * kappa)) ** 0.25) if kappa > 0 else edge
        u = np.linspace(0.0, edge, grid)
        f = 0.5 * u**2 + kappa * u**4
        flat = t.reshape(-1)
        out = np.empty(flat.shape, dtype=complex)
        for start in range(0, len(flat), 256):  # bounded memory
            block = np.exp(-flat[start : start + 256, None] * f)
            out[start : start + 256] = np.trapezoid(block, u, axis=-1)
        return np.log(2.0 * out).reshape(t.shape)

    return log_integral


def _cap_bound(m, k, reach, radius):
    """Return ln volume of ``{|y_A| < reach} & {|y| <= radius}``, ``y_A`` in R^m.

    ``int_{|y_A| < reach} w_k (R^2 - |y_A|^2)^(k/2) dy_A``, in the radius of
    ``y_A``; the integrand's log is increasing up to ``R sqrt((m-1)/(m+k-1))``,
    and is scaled by its largest value on the interval before quadrature.
    """

    def log_ball(j):
        return 0.5 * j * math.log(math.pi) - gammaln(0.5 * j + 1)

    def log_integrand(rho):
        return (m - 1) * math.log(rho) + 0.5 * k * math.log(radius**2 - rho**2)

    peak = min(reach, radius * math.sqrt((m - 1) / (m + k - 1)))
    top = log_integrand(peak) if peak > 0 else log_integrand(reach)
    value, _ = quad(
        lambda rho: math.exp(log_integrand(rho) - top) if rho > 0 else 0.0,
        0.0,
        reach,
        points=[peak] if 0 < peak < reach else None,
        limit=200,
        epsabs=0.0,
        epsrel=1e-11,
    )
    return math.log(m) + log_ball(m) + log_ball(k) + top + math.log(value)


def _check(n_dims, cutoff, random_state, kind):
    if kind not in BASIN_KINDS:
        raise ValueError(f"kind must be one of {BASIN_KINDS}. Got {kind!r} instead.")
    if not isinstance(n_dims, Integral) or isinstance(n_dims, bool) or n_dims < 2:
        raise ValueError(f"n_dims must be an integer >= 2. Got {n_dims!r} instead.")
    if kind != "ellipsoid" and n_dims > _MAX_ROTATED_DIMS:
        raise ValueError(
            f"n_dims={n_dims} is too large for a rotated basin (its rotation is an "
            f"n x n matrix; at most {_MAX_ROTATED_DIMS})."
        )
    if (
        not isinstance(cutoff, Real)
        or isinstance(cutoff, bool)
        or not math.isfinite(cutoff)
        or cutoff <= 0
    ):
        raise ValueError(f"cutoff must be a positive number. Got {cutoff!r} instead.")
    return check_random_state(random_state)


def make_basin(kind, n_dims=1000, *, cutoff=1.0, random_state=None):
    """Make a loss whose basin has an exactly known volume.

    Each basin is a separable body in coordinates rotated by a random
    orthogonal matrix (except ``'ellipsoid'``), shaped like what real
    networks show; see the module notes for how the exact volume is found.

    Parameters
    ----------
    kind : str
        - ``'ellipsoid'``: quadratic, eigenvalues log-uniform over four
          decades, axis-aligned.
        - ``'rotated_ellipsoid'``: the same spectrum, fully rotated.
        - ``'power_law'``: quadratic, eigenvalues ``i^-1.5`` (``i = 1..n``,
          times 100), fully rotated.
        - ``'spiked'``: a diagonal spread over four decades plus 10 rotated
          spikes of 1e2-1e4.
        - ``'quartic'``: ``a_i y_i^2 / 2 + b_i y_i^4`` in every rotated
          coordinate, ``a`` over two decades, the quartic's weight
          ``b / a^2`` over four.
        - ``'log_cosh'``: ``a_i log cosh(y_i / s_i)``, growing linearly (the
          basin is wider than its quadratic model), rotated.
        - ``'degenerate'``: a tenth of the rotated coordinates quadratic,
          the rest flat to second order and held by quartic terms over four
          decades (most Hessian eigenvalues zero).
        - ``'lp_ball'``: ``sum |y_i / s_i|^4``, rotated, flat to second
          order in every direction.
        - ``'cap_bound'``: half of the rotated coordinates quadratic (their
          basin reaching half of ``max_radius = 1``), the other half exactly
          flat: the cap ball bounds the basin in those directions.
        - ``'moat'``: ``h sin^2(pi rho)`` in the norm
          ``rho^2 = sum lam_i y_i^2`` (``lam`` over two decades, rotated),
          rising beyond ``rho = 1.5``; the ridge ``h`` is ten times the
          cutoff. The star-shaped basin (``log10_volume``) is the inner
          ball; the sublevel set (``sublevel_log10_volume``) adds the moat
          behind the ridge, by far the larger part in high dimension.
    n_dims : int, default=1000
        Dimension (at most 4,000 for the rotated kinds).
    cutoff : float, default=1.0
        Loss level that ends the basin.
    random_state : int, RandomState instance or None, default=None
        Seeds the rotation and the coefficients.

    Returns
    -------
    basin : KnownBasin
        The loss and its exact ``log10_volume``.

    Raises
    ------
    ValueError
        For an unknown ``kind``, ``n_dims`` below 2 or above the rotated
        kinds' limit, or a cutoff that is not a positive number.
    RuntimeError
        Where the exact volume's quadrature does not converge (the
        ``'quartic'`` body in fewer than about 36 dimensions).

    Examples
    --------
    >>> from flatgen.landscape import basin_log10_volume, make_basin
    >>> basin = make_basin("rotated_ellipsoid", 200, random_state=0)
    >>> result = basin_log10_volume(
    ...     basin.loss_fn, basin.n_dims, basin.cutoff, rank="full",
    ...     n_directions=100, random_state=0)
    >>> bool(abs(result.log10_volume - basin.log10_volume) < 1e-3)
    True
    """
    rng = _check(n_dims, cutoff, random_state, kind)
    n, c = int(n_dims), float(cutoff)
    rotation = None if kind == "ellipsoid" else torch.as_tensor(_rotation(n, rng))

    if kind in ("ellipsoid", "rotated_ellipsoid", "power_law"):
        if kind == "power_law":
            log_lam = math.log(100.0) - 1.5 * np.log(np.arange(1, n + 1))
            text = "quadratic, eigenvalues 100 i^-1.5, rotated"
        else:
            log_lam = rng.uniform(-2, 2, n) * _LN10
            text = "quadratic, eigenvalues log-uniform over 1e-2..1e2" + (
                ", rotated" if rotation is not None else ""
            )
        lam = torch.as_tensor(np.exp(log_lam))

        def profile(y):
            return 0.5 * (y.square() * lam.to(y)).sum(1)

        loss_fn = _RotatedLoss(rotation, profile)

        log_volume = _ellipsoid(log_lam, c)
    elif kind == "spiked":
        diagonal = 10 ** rng.uniform(-2, 2, n)
        k = 10
        spikes = 10 ** rng.uniform(2, 4, k)
        basis = rotation[:, :k].numpy()
        d, s, q = (torch.as_tensor(a) for a in (diagonal, spikes, basis))

        def loss_fn(z):
            return 0.5 * (
                (z.square() * d.to(z)).sum(1)
                + ((z @ q.to(z)).square() * s.to(z)).sum(1)
            )

        # det(D + Q S Q^T) = det(D) det(S) det(S^-1 + Q^T D^-1 Q).
        inner = np.diag(1.0 / spikes) + (basis.T / diagonal) @ basis
        log_det = np.log(diagonal).sum() + np.log(spikes).sum()
        log_det += np.linalg.slogdet(inner)[1]
        log_volume = _ellipsoid(np.array([log_det / n] * n), c)
        text = "diagonal spread over 1e-2..1e2 plus 10 rotated spikes of 1e2..1e4"
    elif kind == "quartic":
        a = 10 ** rng.uniform(-1, 1, n)
        kappas = np.logspace(-2, 2, 5)
        which = rng.randint(len(kappas), size=n)
        b = kappas[which] * a**2
        at, bt = torch.as_tensor(a), torch.as_tensor(b)

        def profile(y):
            return (0.5 * at.to(y) * y.square() + bt.to(y) * y.square().square()).sum(1)

        loss_fn = _RotatedLoss(rotation, profile)

        # y = u / sqrt(a): each term is (u^2/2 + kappa u^4) and |dy| = |du| / sqrt(a).
        parts = [
            (_quartic_laplace(kp), int(np.sum(which == j)))
            for j, kp in enumerate(kappas)
        ]
        shift = -0.5 * np.log(a).sum()

        def log_laplace(t):
            return shift + sum(count * f(t) for f, count in parts)

        log_volume = _bromwich(log_laplace, c)
        text = "a y^2/2 + b y^4 per rotated coordinate, b/a^2 over 1e-2..1e2"
    elif kind == "log_cosh":
        a = 10 ** rng.uniform(0, 1, n)
        s = 10 ** rng.uniform(-1, 1, n)
        at, st = torch.as_tensor(a), torch.as_tensor(s)

        def profile(y):
            y = y / st.to(y)
            # log cosh(y) = y + softplus(-2 y) - log 2: smooth and stable.
            soft = torch.nn.functional.softplus(-2 * y)
            return (at.to(y) * (y + soft - math.log(2))).sum(1)

        loss_fn = _RotatedLoss(rotation, profile)

        def log_laplace(t):
            # int cosh(y/s)^(-t a) dy = s B(1/2, t a / 2).
            x = 0.5 * np.asarray(t, dtype=complex)[..., None] * a
            terms = (
                np.log(s) + 0.5 * math.log(math.pi) + loggamma(x) - loggamma(x + 0.5)
            )
            return terms.sum(-1)

        log_volume = _bromwich(log_laplace, c)
        text = "a log cosh(y / s) per rotated coordinate (linear growth)"
    elif kind == "cap_bound":
        m, radius = n // 2, 1.0
        reach = 0.5 * radius
        weight, basis = c / reach**2, rotation[:, :m]

        def profile(y):
            return weight * y.square().sum(1)

        loss_fn = _RotatedLoss(basis, profile)

        log_volume = _cap_bound(m, n - m, reach, radius)
        text = f"{m} rotated coordinates quadratic (reaching 0.5), {n - m} flat"
        return KnownBasin(
            kind=kind,
            n_dims=n,
            cutoff=c,
            log10_volume=float(log_volume) / _LN10,
            description=text + ", inside the unit ball",
            loss_fn=loss_fn,
            max_radius=radius,
        )
    elif kind == "moat":
        log_lam = rng.uniform(-1, 1, n) * _LN10
        lam, ridge = torch.as_tensor(np.exp(log_lam)), 10.0 * c
        inner = math.asin(math.sqrt(c / ridge)) / math.pi

        def profile(y):
            u = (y.square() * lam.to(y)).sum(1)  # rho^2
            # Near the minimum the series of sin^2(pi rho) in x = pi^2 rho^2
            # (sqrt has no derivative at 0; the series is exact to 1e-17
            # there): zero and a Hessian 2 pi^2 h lam at the minimum.
            small = u < 1e-6
            x = math.pi**2 * u
            series = x - x * x / 3 + 2 * x**3 / 45
            rho = torch.sqrt(torch.where(small, 1.0, u))
            wave = torch.where(small, series, torch.sin(math.pi * rho).square())
            beyond = 1.0 + 4.0 * (rho - 1.5).square()
            return ridge * torch.where(rho <= 1.5, wave, beyond)

        loss_fn = _RotatedLoss(rotation, profile)

        # {rho < r}: an ellipsoid, ln volume ln w_n + n ln r - sum ln lam / 2.
        log_unit = _ellipsoid(log_lam, 0.5)
        log_volume = log_unit + n * math.log(inner)
        shells = np.array([n * math.log(1 + inner), n * math.log(1 - inner)])
        log_moat = log_unit + shells[0] + math.log(-math.expm1(shells[1] - shells[0]))
        return KnownBasin(
            kind=kind,
            n_dims=n,
            cutoff=c,
            log10_volume=float(log_volume) / _LN10,
            description=(
                f"a ball of radius {inner:.3f} in a rotated ellipsoidal norm, a ridge "
                "ten times the cutoff around it, a moat behind"
            ),
            loss_fn=loss_fn,
            sublevel_log10_volume=float(np.logaddexp(log_volume, log_moat)) / _LN10,
        )
    else:
        if kind == "degenerate":
            n_quad = max(1, n // 10)
            degrees = np.array([2.0] * n_quad + [4.0] * (n - n_quad))
            log_a = np.concatenate(
                [
                    rng.uniform(-1, 1, n_quad) * _LN10 - math.log(2),
                    rng.uniform(-2, 2, n - n_quad) * _LN10,
                ]
            )
            text = (
                f"{n_quad} rotated coordinates quadratic, {n - n_quad} held by "
                "quartic terms over 1e-2..1e2 (flat to second order)"
            )
        else:
            degrees = np.full(n, 4.0)
            log_a = -4.0 * rng.uniform(-0.5, 0.5, n) * _LN10
            text = "sum |y / s|^4, s over 10^-0.5..10^0.5, rotated"
        # Squares and fourth powers written out: |y|^2 through abs() would
        # hide the curvature at 0 from autograd (sign(0) = 0).
        a = torch.as_tensor(np.exp(log_a))
        square = torch.as_tensor(degrees == 2.0)

        def profile(y):
            y2 = y.square()
            terms = torch.where(square.to(y.device), y2, y2.square())
            return (a.to(y) * terms).sum(1)

        loss_fn = _RotatedLoss(rotation, profile)

        log_volume = _power_body(log_a, degrees, c)
    return KnownBasin(
        kind=kind,
        n_dims=n,
        cutoff=c,
        log10_volume=float(log_volume) / _LN10,
        description=text,
        loss_fn=loss_fn,
    )
