"""Basin radii along many seeded directions, in chunks that joblib can spread."""

import numpy as np

from ..landscape import basin_radii
from ..landscape._dispatch import map_chunks


def _chunk_task(objective, seed, settings, start, stop):
    # Each task works on its own evaluator (threads would share one).
    landscape = objective.fresh()
    with landscape.threads():
        evaluator = landscape.evaluator
        directions = landscape.directions(stop - start, seed, start=start)
        # All cutoffs in one search: they share the scan's loss evaluations.
        result = basin_radii(
            evaluator.loss,
            landscape.theta0,
            directions,
            np.asarray(settings["cutoffs"], dtype=float),
            max_radius=settings["max_radius"],
            rtol=settings["rtol"],
            loss0=settings["loss0"],
            evaluate_along=evaluator.loss_along,
        )
    return result.radii, result.capped, result.n_evaluations


def radii_along_directions(
    objective, *, n_directions, seed, n_jobs, verbose, **settings
):
    """Radii for every cutoff along ``n_directions`` filter-normalized directions.

    Parameters
    ----------
    objective : TrainingObjective
        The trained network's training loss (its ``include_bias`` and
        ``n_threads`` apply).
    n_directions : int
        Number of directions; direction ``k`` is drawn from ``(seed, k)``.
    seed : int
        Seed of the directions.
    n_jobs : int or None
        joblib workers over chunks of directions (see
        :func:`~flatgen.landscape._dispatch.map_chunks`).
    verbose : int
        Progress bar over chunks when positive.
    **settings
        ``cutoffs`` (absolute), ``loss0``, ``max_radius``, ``rtol``.

    Returns
    -------
    radii : ndarray of shape (n_cutoffs, n_directions)
    capped : ndarray of bool of shape (n_cutoffs, n_directions)
    n_evaluations : int
    """
    results = map_chunks(
        _chunk_task,
        n_directions,
        (objective, seed, settings),
        n_jobs=n_jobs,
        verbose=verbose,
    )
    radii = np.concatenate([r[0] for r in results], axis=1)
    capped = np.concatenate([r[1] for r in results], axis=1)
    return radii, capped, int(sum(r[2] for r in results))


def loss_profiles(landscape, *, seed, n_profiles, distances):
    """Training loss at ``distances`` along the first ``n_profiles`` directions.

    The directions are redrawn from ``(seed, k)``, identical to those of
    :func:`radii_along_directions`; all points go through one batched call
    that forms each chunk of weight vectors as it goes (memory bounded by a
    chunk, not by ``n_profiles * len(distances)`` vectors).

    Returns
    -------
    losses : ndarray of shape (n_profiles, len(distances))
    """
    if n_profiles == 0:
        return np.empty((0, len(distances)))
    with landscape.threads():
        theta0 = landscape.theta0
        directions = landscape.directions(n_profiles, seed)
        rows = np.repeat(np.arange(n_profiles), len(distances))
        steps = np.tile(np.asarray(distances, dtype=float), n_profiles)
        losses = landscape.evaluator.loss_along(theta0, directions, rows, steps)
    return np.asarray(losses).reshape(n_profiles, len(distances))
