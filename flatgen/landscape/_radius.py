"""Basin radii: first crossing of a loss cutoff along many directions at once."""

import warnings
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

__all__ = ["BasinRadii", "basin_radii"]


class BasinRadii(NamedTuple):
    """Result of :func:`basin_radii`.

    Attributes
    ----------
    radii : ndarray of shape (n_directions,)
        Radius along each direction, in units of the direction vectors.
    capped : ndarray of bool of shape (n_directions,)
        True where the loss stayed below the cutoff up to ``max_radius``
        (the radius is then ``max_radius``).
    n_evaluations : int
        Number of parameter vectors whose loss was evaluated.
    loss0 : float
        Loss at the centre ``theta0``.
    """

    radii: np.ndarray
    capped: np.ndarray
    n_evaluations: int
    loss0: float


def _as_numpy(values, n_expected):
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.shape != (n_expected,):
        raise ValueError(
            f"evaluate_loss returned {values.shape[0]} values for {n_expected} "
            "parameter vectors."
        )
    if not np.all(np.isfinite(values)):
        raise ValueError(
            "The loss is not finite at some perturbed weights (NaN or inf); "
            "lower max_radius or check the network and the directions."
        )
    return values


def basin_radii(
    evaluate_loss,
    theta0,
    directions,
    cutoff,
    *,
    max_radius=1.0,
    rtol=1e-6,
    max_iter=100,
    n_scan=8,
    loss0=None,
    evaluate_along=None,
):
    """Smallest step along each direction where the loss reaches a cutoff.

    For every direction ``d`` this finds the smallest ``c`` in
    ``[0, max_radius]`` with ``loss(theta0 + c * d) >= cutoff``, for all
    directions at once: each round evaluates one batch of parameter vectors
    (one per unfinished direction) with a single call of ``evaluate_loss``.
    Several cutoffs share the scan's evaluations, and their bisections run
    in the same batched calls.

    1. Scan: ``c = max_radius * k / n_scan`` for ``k = 1, ..., n_scan``,
       evaluated only for directions that have not crossed yet. The first
       scan point at or above the cutoff brackets the *first* crossing at the
       scan's resolution, even if the loss profile is not monotone.
    2. Refinement of every bracket ``[lo, hi]`` (``loss(lo) < cutoff <=
       loss(hi)``) until ``hi - lo <= rtol * hi``, on ``sqrt(loss - loss0)``
       (linear in the step where the loss is quadratic): the secant through
       the last two points evaluated, or regula falsi on the bracket (with
       the Illinois modification) when the secant leaves it, each step
       half a tolerance past its estimate so that a converged estimate
       closes the bracket; safeguarded by bisection whenever a step is
       longer than half the step before last or three rounds did not halve
       the bracket (about 7 evaluations per radius on trained networks
       where bisection needs 20 at ``rtol=1e-6``; never more than about
       three times bisection's rounds).

    Parameters
    ----------
    evaluate_loss : callable
        Maps a tensor of shape (B, n_params) to B losses (array-like or
        tensor), e.g. :meth:`BatchedEvaluator.loss`.
    theta0 : torch.Tensor of shape (n_params,)
        Centre, usually the trained weights.
    directions : torch.Tensor of shape (n_directions, n_params)
        Directions, e.g. from :func:`filter_normalized_directions`; same
        device and dtype as ``theta0``. Memory: each round builds up to
        ``n_directions`` perturbed vectors, so pass directions in chunks to
        bound it.
    cutoff : float or array-like of shape (n_cutoffs,)
        Loss level(s) that end the basin (the paper uses a cross-entropy of
        0.1). For a relative cutoff, pass e.g. ``2 * loss0``.
    max_radius : float, default=1.0
        Largest radius searched.
    rtol : float, default=1e-6
        Relative tolerance of the radii. The perturbed weights are formed
        in the dtype of ``theta0``, so a tolerance below its precision
        (about 6e-8 for float32) is not meaningful.
    max_iter : int, default=100
        Maximum number of refinement rounds.
    n_scan : int, default=8
        Number of scan points; 1 searches ``[0, max_radius]`` directly.
    loss0 : float, default=None
        Loss at ``theta0`` if already known; evaluated when None.
    evaluate_along : callable, default=None
        ``evaluate_along(theta0, directions, rows, steps)`` returning the
        losses at ``theta0 + steps[i] * directions[rows[i]]``, e.g.
        :meth:`BatchedEvaluator.loss_along`. When given it replaces
        ``evaluate_loss`` for the search, so the perturbed vectors never have
        to be stacked in memory.

    Returns
    -------
    result : BasinRadii
        Named tuple ``(radii, capped, n_evaluations, loss0)``; ``radii`` and
        ``capped`` have shape (n_directions,) for a scalar cutoff and
        (n_cutoffs, n_directions) for several. For each direction that
        crosses, the radius is the upper end ``hi`` of the final bracket: the
        loss there is at or above the cutoff, and below it at
        ``hi * (1 - rtol)``.

    Raises
    ------
    ValueError
        If the loss at ``theta0`` is already at or above ``cutoff``, or if a
        loss is not finite.

    Examples
    --------
    >>> import torch
    >>> theta0 = torch.zeros(2)
    >>> directions = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> def loss(thetas):  # a bowl steeper along the second axis
    ...     return thetas[:, 0] ** 2 + 4 * thetas[:, 1] ** 2
    >>> result = basin_radii(loss, theta0, directions, cutoff=0.25)
    >>> result.radii.round(5)
    array([0.5 , 0.25])
    >>> result.capped
    array([False, False])
    """
    scalar_cutoff = np.ndim(cutoff) == 0
    cutoffs = np.atleast_1d(np.asarray(cutoff, dtype=float))
    if cutoffs.ndim != 1 or len(cutoffs) == 0 or not np.all(np.isfinite(cutoffs)):
        raise ValueError(f"cutoff must be finite number(s); got {cutoff!r}.")
    if not isinstance(max_radius, Real) or not max_radius > 0:
        raise ValueError(f"max_radius must be positive; got {max_radius!r}.")
    if not isinstance(rtol, Real) or not rtol > 0:
        raise ValueError(f"rtol must be positive; got {rtol!r}.")
    for name, value in [("max_iter", max_iter), ("n_scan", n_scan)]:
        if not isinstance(value, Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    theta0 = torch.as_tensor(theta0)
    directions = torch.as_tensor(directions)
    if directions.ndim != 2 or directions.shape[1:] != theta0.shape:
        raise ValueError(
            "directions must have shape (n_directions, n_params) with n_params = "
            f"len(theta0) = {theta0.numel()}; got {tuple(directions.shape)}."
        )
    n_evaluations = 0
    if loss0 is None:
        loss0 = float(_as_numpy(evaluate_loss(theta0[None]), 1)[0])
        n_evaluations += 1
    if not loss0 < cutoffs.min():
        raise ValueError(
            f"The loss at theta0 ({loss0:.6g}) is already at or above the cutoff "
            f"({cutoffs.min():.6g}); choose a larger cutoff."
        )

    def losses_at(rows, steps):
        nonlocal n_evaluations
        n_evaluations += len(rows)
        if evaluate_along is not None:
            return _as_numpy(evaluate_along(theta0, directions, rows, steps), len(rows))
        steps_t = torch.as_tensor(steps, dtype=theta0.dtype, device=theta0.device)
        rows_t = torch.as_tensor(rows, device=directions.device)
        thetas = torch.addcmul(theta0, steps_t[:, None], directions[rows_t])
        return _as_numpy(evaluate_loss(thetas), len(rows))

    grid = max_radius * np.arange(1, n_scan + 1) / n_scan
    cap = np.full(len(directions), float(max_radius))
    radii, capped = first_crossings(
        losses_at,
        lambda j, rows: np.full(len(rows), grid[j]),
        len(grid),
        cap,
        cutoffs,
        rtol=rtol,
        max_iter=max_iter,
        loss0=loss0,
        refine="secant",
    )
    if scalar_cutoff:
        radii, capped = radii[0], capped[0]
    return BasinRadii(
        radii=radii,
        capped=capped,
        n_evaluations=n_evaluations,
        loss0=loss0,
    )


def first_crossings(
    losses_at,
    steps_at,
    n_scan,
    cap,
    cutoffs,
    *,
    rtol,
    max_iter,
    loss0=0.0,
    refine="secant",
):
    """Smallest step ``s <= cap`` with ``loss(s) >= cutoff``, per ray and cutoff.

    The one ray search of flatgen: basin radii (:func:`basin_radii`) and the
    volume engine's rays (:func:`basin_log10_volume`) both use it.

    1. Scan: ``steps_at(j, rows)`` gives the ``j``-th scan step of the rays
       still open (``j = 0 .. n_scan - 1``, ascending, at most their cap):
       a linear grid for radii, doublings from a predicted radius for
       volume rays. The first scan point at or above a cutoff brackets the
       *first* crossing at the scan's resolution, even where the loss is
       not monotone; a ray stops scanning once it reaches its cap.
    2. Refinement of every bracket to ``hi - lo <= rtol * hi``: by
       ``'secant'`` steps on ``sqrt(loss - loss0)`` (linear in the step
       where the loss is quadratic), safeguarded as in Brent's method, or by
       bisection (``'bisect'``).

    Parameters
    ----------
    losses_at : callable
        ``losses_at(rows, steps)`` returns the losses at ``steps`` along the
        rays ``rows`` (int arrays of equal length).
    steps_at : callable
        ``steps_at(j, rows)`` returns the ``j``-th scan step of ``rows``.
    n_scan : int
        Number of scan steps.
    cap : ndarray of shape (n_rays,)
        Largest step of each ray.
    cutoffs : ndarray of shape (n_cutoffs,)
        Loss levels, each above the loss at step 0.
    rtol : float
        Relative width at which a bracket is done.
    max_iter : int
        Most refinement rounds; brackets still open then raise a
        ConvergenceWarning.
    loss0 : float, default=0.0
        Loss at step 0 (the secant's shaping).
    refine : {'secant', 'bisect'}, default='secant'
        Refinement.

    Returns
    -------
    radii : ndarray of shape (n_cutoffs, n_rays)
        The upper end of each bracket; ``cap`` where the ray never crossed.
    capped : ndarray of bool of shape (n_cutoffs, n_rays)
        Rays that stayed below the cutoff up to their cap.
    """

    def shaped(loss):
        # Interpolation runs on sqrt(loss - loss0), which is linear in the
        # step where the loss is quadratic around the minimum: the search
        # then lands near the crossing at once. Monotone in the loss, so the
        # brackets are unchanged.
        return np.sqrt(np.maximum(np.asarray(loss, dtype=float) - loss0, 0.0))

    # Brackets per (cutoff, ray): loss(lo) < cutoff <= loss(hi), with
    # g = shaped(loss) - shaped(cutoff) at both ends.
    n_rays = len(cap)
    shape = (len(cutoffs), n_rays)
    lo = np.zeros(shape)
    hi = np.broadcast_to(cap, shape).copy()
    g_lo = np.zeros(shape)
    g_hi = np.zeros(shape)
    crossed = np.zeros(shape, dtype=bool)
    previous = np.zeros(n_rays)  # the last scan step of each ray
    last = np.full(n_rays, float(loss0))  # and its loss
    done_scan = np.zeros(n_rays, dtype=bool)
    for j in range(n_scan):
        rows = np.flatnonzero(~crossed.all(axis=0) & ~done_scan)
        if len(rows) == 0:
            break
        step = steps_at(j, rows)
        losses = losses_at(rows, step)
        for k, level in enumerate(cutoffs):
            open_rows = ~crossed[k, rows]
            above = open_rows & (losses >= level)
            below = open_rows & ~above
            lo[k, rows[below]] = step[below]
            hi[k, rows[above]] = step[above]
            lo[k, rows[above]] = previous[rows[above]]
            g_hi[k, rows[above]] = shaped(losses[above]) - shaped(level)
            g_lo[k, rows[above]] = shaped(last[rows[above]]) - shaped(level)
            crossed[k, rows[above]] = True
        previous[rows] = step
        last[rows] = losses
        done_scan[rows[step >= cap[rows]]] = True

    if refine == "bisect":
        n_open = _bisect(losses_at, lo, hi, crossed, cutoffs, rtol, max_iter)
    else:
        n_open = _secant(
            losses_at, lo, hi, g_lo, g_hi, crossed, cutoffs, rtol, max_iter, shaped
        )
    if n_open:
        warnings.warn(
            f"Root search stopped after max_iter={max_iter} rounds with "
            f"{n_open} radii not yet within rtol={rtol:g}.",
            ConvergenceWarning,
            stacklevel=3,
        )
    radii = np.where(crossed, hi, cap[None, :])
    return radii, ~crossed


def _bisect(losses_at, lo, hi, crossed, cutoffs, rtol, max_iter):
    """Halve the open brackets at most ``max_iter`` times; return how many stay open."""
    for _ in range(max_iter):
        which, rows = np.nonzero(crossed & (hi - lo > rtol * hi))
        if len(rows) == 0:
            return 0
        mid = 0.5 * (lo[which, rows] + hi[which, rows])
        above = losses_at(rows, mid) >= cutoffs[which]
        hi[which[above], rows[above]] = mid[above]
        lo[which[~above], rows[~above]] = mid[~above]
    return int(np.sum(crossed & (hi - lo > rtol * hi)))


def _secant(losses_at, lo, hi, g_lo, g_hi, crossed, cutoffs, rtol, max_iter, shaped):
    """Safeguarded secant steps on every open bracket; return how many stay open."""
    shape = lo.shape
    # Refinement, in the manner of Brent's method: each step is the secant
    # through the last two points evaluated (superlinear even when they lie
    # on one side of the crossing, as on convex profiles, where the bracket's
    # far end stays put), or, when that leaves the bracket, regula falsi on
    # the bracket with the Illinois modification (the end kept twice in a
    # row has its g halved). Each step goes half a tolerance past its
    # estimate, towards the end that has not moved, so a converged estimate
    # closes the bracket at the next evaluation; and it stays at least half
    # a tolerance inside the bracket. Safeguards: a bisection whenever a
    # step is longer than half the step before last (Brent's rule), or
    # three rounds did not halve the bracket, so no profile needs more than
    # about three times bisection's rounds.
    replaced = np.zeros(shape, dtype=np.int8)  # +1: hi moved last, -1: lo
    widths = [np.full(shape, np.inf) for _ in range(3)]
    moves = [np.full(shape, np.inf) for _ in range(2)]  # the last two steps
    last_x, last_g = hi.copy(), g_hi.copy()  # the last two points
    prev_x, prev_g = lo.copy(), g_lo.copy()
    for _ in range(max_iter):
        pending = crossed & (hi - lo > rtol * hi)
        which, rows = np.nonzero(pending)
        if len(rows) == 0:
            return 0
        a, b = lo[which, rows], hi[which, rows]
        ga, gb = g_lo[which, rows], g_hi[which, rows]
        x1, g1 = last_x[which, rows], last_g[which, rows]
        x0, g0 = prev_x[which, rows], prev_g[which, rows]
        width = b - a
        # Both ends' shaped values can round onto the cutoff (0 / 0): those
        # rows bisect (below), without a floating-point warning.
        with np.errstate(divide="ignore", invalid="ignore"):
            falsi = (a * gb - b * ga) / (gb - ga)
            secant = x1 - g1 * (x1 - x0) / (g1 - g0)
        inside = np.isfinite(secant) & (secant > a) & (secant < b)
        step = np.where(inside, secant, falsi)
        side = replaced[which, rows]
        step = step + side * (-0.5 * rtol * b)
        margin = np.minimum(0.5 * rtol * b, 0.25 * width)
        step = np.clip(step, a + margin, b - margin)
        bisect = (
            ~np.isfinite(step)
            | (np.abs(step - x1) > 0.5 * moves[0][which, rows])
            | (width > 0.5 * widths[0][which, rows])
        )
        step = np.where(bisect, 0.5 * (a + b), step)
        widths = [widths[1], widths[2], widths[2].copy()]
        widths[2][which, rows] = width
        moves = [moves[1], moves[1].copy()]
        moves[1][which, rows] = np.abs(step - x1)
        losses = losses_at(rows, step)
        # The side is decided on the loss itself: the shaping may round a
        # loss just below the cutoff to the cutoff's own value.
        above = losses >= cutoffs[which]
        g = shaped(losses) - shaped(cutoffs[which])
        prev_x[which, rows], prev_g[which, rows] = x1, g1
        last_x[which, rows], last_g[which, rows] = step, g
        # Illinois: the end that stays for a second round keeps half its g.
        again_hi = ~above & (side == -1)
        again_lo = above & (side == 1)
        g_hi[which[again_hi], rows[again_hi]] *= 0.5
        g_lo[which[again_lo], rows[again_lo]] *= 0.5
        hi[which[above], rows[above]] = step[above]
        g_hi[which[above], rows[above]] = g[above]
        lo[which[~above], rows[~above]] = step[~above]
        g_lo[which[~above], rows[~above]] = g[~above]
        replaced[which, rows] = np.where(above, 1, -1)
    return int(np.sum(crossed & (hi - lo > rtol * hi)))
