"""Distance from points to a classifier's decision boundary, using only ``predict``.

The margin of a point ``x`` is ``inf {||z - x|| : label(z) != label(x)}``.
Every point ``z`` found with another label is an upper bound; the search
shrinks that bound in three stages, all batched into large ``predict`` calls:

1. *Scan*: along many rays (evenly spaced angles in 2-D, random directions
   plus directions towards the nearest differently-labelled reference points
   in any dimension), evaluate labels at geometrically spaced distances and
   keep the first change along each ray. Geometric spacing resolves thin
   islands and fingers close to the point, where the nearest boundary of a
   sharp model lies.
2. *Bisect* the few closest brackets to the requested precision.
3. *Refine the direction*: the nearest boundary point is where the ray meets
   the boundary at a right angle, so nearby directions are tried (rotations in
   2-D, random tangent perturbations otherwise) with an adaptive step; a
   candidate whose label already differs at the current best distance is
   bisected and accepted.
"""

import numpy as np


class LabelOracle:
    """Batched, counted ``predict`` calls of a fitted classifier.

    Parameters
    ----------
    predict : callable
        Maps an array of shape ``(n, *sample_shape)`` to labels.
    sample_shape : tuple of int
        Shape of one sample as the classifier expects it; the search works
        on flattened vectors.
    batch_size : int
        Rows per ``predict`` call.
    dtype : numpy dtype or None, default=None
        dtype of the points passed to ``predict`` (the search itself runs in
        float64); None passes them as they are. Some classifiers (skorch
        nets) do not cast their inputs and take only the dtype they were
        fitted on.
    """

    def __init__(self, predict, sample_shape, batch_size, dtype=None):
        self.predict = predict
        self.sample_shape = tuple(sample_shape)
        self.batch_size = int(batch_size)
        self.dtype = dtype
        self.n_calls = 0

    def __call__(self, points):
        """Return labels of ``points`` of shape ``(n, n_features_flat)``."""
        points = np.asarray(points)
        parts = []
        for start in range(0, len(points), self.batch_size):
            chunk = points[start : start + self.batch_size]
            if self.dtype is not None:
                chunk = chunk.astype(self.dtype, copy=False)
            parts.append(
                np.asarray(self.predict(chunk.reshape(-1, *self.sample_shape)))
            )
        self.n_calls += len(points)
        if not parts:
            return np.empty(0)
        return np.concatenate(parts)


def _unit(vectors):
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _scan_directions(X, labels, reference, reference_labels, n_directions, rng):
    """Rays to scan from every point: shape (n_points, n_rays, n_features)."""
    n, d = X.shape
    if d == 1:
        base = np.array([[1.0], [-1.0]])
        directions = np.broadcast_to(base, (n, 2, 1)).copy()
    elif d == 2:
        # Evenly spaced angles leave no gap wider than 2*pi/n_directions; a
        # random rotation per point avoids aligning every ray with the axes.
        angles = np.arange(n_directions) * (2 * np.pi / n_directions)
        angles = angles[None, :] + rng.uniform(0, 2 * np.pi / n_directions, (n, 1))
        directions = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    else:
        directions = _unit(rng.standard_normal((n, n_directions, d)))
    # Towards the nearest reference points with another label: such a ray
    # crosses the boundary before reaching that point, whatever the dimension.
    n_towards = min(8, len(reference))
    towards = np.zeros((n, n_towards, d))
    has_target = np.zeros((n, n_towards), dtype=bool)
    for i in range(n):
        other = reference_labels != labels[i]
        if not np.any(other):
            continue
        candidates = reference[other]
        distances = np.linalg.norm(candidates - X[i], axis=1)
        nearest = np.argsort(distances, kind="stable")[:n_towards]
        towards[i, : len(nearest)] = candidates[nearest] - X[i]
        has_target[i, : len(nearest)] = distances[nearest] > 0
    towards = np.where(has_target[..., None], _unit(towards), directions[:, :1])
    return np.concatenate([directions, towards], axis=1)


def _diverse_starts(distances, rays, n_starts, min_angle=0.3):
    """Per point, indices of up to ``n_starts`` closest rays ``min_angle`` apart.

    Rows with fewer such rays repeat their closest one, so every row has
    ``n_starts`` entries.
    """
    n, k = distances.shape
    order = np.argsort(distances, axis=1, kind="stable")
    starts = np.repeat(order[:, :1], n_starts, axis=1)
    cos_limit = np.cos(min_angle)
    for i in range(n):
        chosen = [order[i, 0]]
        for j in order[i, 1:]:
            if len(chosen) == n_starts or not np.isfinite(distances[i, j]):
                break
            if np.all(rays[i, chosen] @ rays[i, j] < cos_limit):
                chosen.append(j)
        starts[i, : len(chosen)] = chosen
    return starts


def _bisect(oracle, X, labels, directions, low, high, n_steps):
    """Shrink brackets [low, high] (same label at low, other at high) along rays."""
    for _ in range(n_steps):
        middle = 0.5 * (low + high)
        points = X + middle[:, None] * directions
        changed = oracle(points) != labels
        high = np.where(changed, middle, high)
        low = np.where(changed, low, middle)
    return high


def boundary_distances(
    oracle,
    X,
    labels,
    *,
    reference,
    reference_labels,
    max_distance,
    n_directions,
    rtol,
    n_scan,
    n_refine,
    n_starts,
    rng,
):
    """Distance of each row of ``X`` to the nearest point with another label.

    Parameters
    ----------
    oracle : LabelOracle
        Labels of flattened points.
    X : ndarray of shape (n_points, n_features)
        Flattened points.
    labels : ndarray of shape (n_points,)
        ``oracle(X)``.
    reference, reference_labels : ndarray
        Points (flattened) and labels that seed rays towards other classes.
    max_distance : float
        Search radius; points with no other label within it get this value.
    n_directions : int
        Scanned rays per point (in 2-D: evenly spaced angles).
    rtol : float
        Relative precision of each distance.
    n_scan : int
        Geometrically spaced distances per ray, from ``1e-4 * max_distance``.
    n_refine : int
        Rounds of direction refinement.
    n_starts : int
        Closest crossings per point from which the refinement starts.
    rng : numpy.random.RandomState
        Source of ray directions.

    Returns
    -------
    distances : ndarray of shape (n_points,)
    capped : ndarray of bool, shape (n_points,)
        True where no other label was found within ``max_distance``.
    """
    n, d = X.shape
    rays = _scan_directions(X, labels, reference, reference_labels, n_directions, rng)
    n_rays = rays.shape[1]
    steps = np.geomspace(1e-4 * max_distance, max_distance, n_scan)
    # Stage 1: labels along every ray at every scan distance.
    points = X[:, None, None, :] + steps[None, None, :, None] * rays[:, :, None, :]
    changed = oracle(points.reshape(-1, d)).reshape(n, n_rays, n_scan)
    changed = changed != labels[:, None, None]
    crossed = changed.any(axis=2)
    first = np.argmax(changed, axis=2)
    high = np.where(crossed, steps[first], np.inf)
    low = np.where(first > 0, steps[np.maximum(first - 1, 0)], 0.0)
    capped = ~crossed.any(axis=1)

    # Stage 2: bisect the closest brackets of every point (a nearer crossing
    # can hide in a farther bracket only by less than one scan step).
    n_keep = min(16, n_rays)
    order = np.argsort(high, axis=1, kind="stable")[:, :n_keep]
    rows = np.repeat(np.arange(n), n_keep)
    keep_rays = rays[rows, order.ravel()]
    keep_low = low[rows, order.ravel()]
    keep_high = high[rows, order.ravel()]
    finite = np.isfinite(keep_high)
    precise = np.full(len(rows), np.inf)
    if np.any(finite):
        n_steps = int(np.ceil(np.log2(1.0 / rtol))) + 2
        precise[finite] = _bisect(
            oracle,
            X[rows[finite]],
            labels[rows[finite]],
            keep_rays[finite],
            keep_low[finite],
            keep_high[finite],
            n_steps,
        )
    precise = precise.reshape(n, n_keep)
    # Stage 3 starts from several close crossings in clearly different
    # directions: the nearest boundary point may lie beside a ray whose scan
    # stepped over it, so neighbours of the closest ray add little.
    start = _diverse_starts(precise, keep_rays.reshape(n, n_keep, d), n_starts)
    point_of = np.repeat(np.arange(n), n_starts)
    best = precise[point_of, start.ravel()]
    best_ray = keep_rays.reshape(n, n_keep, d)[point_of, start.ravel()]
    X, labels = X[point_of], labels[point_of]

    # Stage 3: rotate the rays towards the boundary normal.
    active = np.isfinite(best)
    step = np.full(len(best), 0.5 if d != 2 else min(0.5, 2 * np.pi / n_directions))
    n_candidates = 2 if d == 2 else 2 * min(d, 8)
    n_steps = int(np.ceil(np.log2(1.0 / rtol))) + 2
    for _ in range(n_refine):
        idx = np.flatnonzero(active & (step > rtol))
        if len(idx) == 0:
            break
        ray = best_ray[idx]
        if d == 2:
            normal = np.stack([-ray[:, 1], ray[:, 0]], axis=1)
            candidates = np.stack(
                [
                    ray * np.cos(step[idx, None]) + normal * np.sin(step[idx, None]),
                    ray * np.cos(step[idx, None]) - normal * np.sin(step[idx, None]),
                ],
                axis=1,
            )
        else:
            half = n_candidates // 2
            tangent = rng.standard_normal((len(idx), half, d))
            tangent -= (
                np.sum(tangent * ray[:, None, :], axis=2, keepdims=True)
                * (ray[:, None, :])
            )
            tangent = _unit(tangent) * np.tan(step[idx, None, None])
            candidates = _unit(
                np.concatenate([ray[:, None] + tangent, ray[:, None] - tangent], axis=1)
            )
        k = candidates.shape[1]
        # A candidate improves the bound only if its label already differs
        # just inside the current best distance.
        probe = best[idx] * (1 - rtol)
        probe_points = X[idx, None, :] + probe[:, None, None] * candidates
        differs = oracle(probe_points.reshape(-1, d)).reshape(len(idx), k)
        differs = differs != labels[idx, None]
        improved = differs.any(axis=1)
        if np.any(improved):
            which = np.argmax(differs, axis=1)[improved]
            rows = idx[improved]
            ray_new = candidates[improved, which]
            found = _bisect(
                oracle,
                X[rows],
                labels[rows],
                ray_new,
                np.zeros(len(rows)),
                probe[improved],
                n_steps,
            )
            better = found < best[rows]
            best[rows[better]] = found[better]
            best_ray[rows[better]] = ray_new[better]
        # Grow the step after a success, shrink it after a failure.
        step[idx] = np.where(
            improved, np.minimum(step[idx] * 1.5, 0.5), step[idx] * 0.5
        )
    best = best.reshape(n, n_starts).min(axis=1)
    best = np.where(capped, max_distance, np.minimum(best, max_distance))
    return best, capped
