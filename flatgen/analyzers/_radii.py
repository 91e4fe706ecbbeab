"""Basin radii along many seeded directions, in chunks that joblib can spread."""

import numpy as np
import torch
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from ..landscape import basin_radii
from ._model_landscape import ModelLandscape

# Directions per task. Fixed, so that neither n_jobs nor the joblib backend
# changes which directions a task draws or how its work is batched.
CHUNK_SIZE = 128


def _chunk_task(data, seed, start, stop, settings):
    module, X, y = data
    landscape = ModelLandscape(
        module,
        X,
        y,
        include_bias=settings["include_bias"],
        n_threads=settings["n_threads"],
    )
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
    module, X, y, *, n_directions, seed, n_jobs, verbose, **settings
):
    """Radii for every cutoff along ``n_directions`` filter-normalized directions.

    Parameters
    ----------
    module : torch.nn.Module
        The trained network (a copy; not modified).
    X, y : ndarray
        Training inputs shaped for the network and encoded labels.
    n_directions : int
        Number of directions; direction ``k`` is drawn from ``(seed, k)``.
    seed : int
        Seed of the directions.
    n_jobs : int or None
        joblib workers over chunks of :data:`CHUNK_SIZE` directions.
    verbose : int
        Progress bar over chunks when positive.
    **settings
        ``cutoffs`` (absolute), ``loss0``, ``max_radius``, ``rtol``,
        ``include_bias``, ``n_threads``.

    Returns
    -------
    radii : ndarray of shape (n_cutoffs, n_directions)
    capped : ndarray of bool of shape (n_cutoffs, n_directions)
    n_evaluations : int
    """
    bounds = [
        (start, min(start + CHUNK_SIZE, n_directions))
        for start in range(0, n_directions, CHUNK_SIZE)
    ]
    # One tuple, not three arguments: joblib's dask backend scatters every
    # large argument to a single worker, and a task whose scattered data died
    # with that worker is cancelled, not rerun. A tuple travels inside each
    # task, so the scheduler can rerun it anywhere; a chunk's bisection costs
    # thousands of passes over X, far more than shipping X once.
    data = (module, X, y)
    tasks = (
        delayed(_chunk_task)(data, seed, start, stop, settings)
        for start, stop in bounds
    )
    results = Parallel(n_jobs=n_jobs, return_as="generator")(tasks)
    results = list(
        tqdm(
            results,
            total=len(bounds),
            disable=not verbose,
            desc="directions",
            unit="chunk",
            leave=False,
        )
    )
    radii = np.concatenate([r[0] for r in results], axis=1)
    capped = np.concatenate([r[1] for r in results], axis=1)
    return radii, capped, int(sum(r[2] for r in results))


def loss_profiles(landscape, *, seed, n_profiles, distances):
    """Training loss at ``distances`` along the first ``n_profiles`` directions.

    The directions are redrawn from ``(seed, k)``, identical to those of
    :func:`radii_along_directions`; all points go through one batched call.

    Returns
    -------
    losses : ndarray of shape (n_profiles, len(distances))
    """
    if n_profiles == 0:
        return np.empty((0, len(distances)))
    with landscape.threads():
        theta0 = landscape.theta0
        directions = landscape.directions(n_profiles, seed)
        steps = torch.as_tensor(distances, dtype=theta0.dtype, device=theta0.device)
        thetas = theta0 + steps[None, :, None] * directions[:, None]
        losses = landscape.evaluator.loss(thetas.reshape(-1, len(theta0)))
    return np.asarray(losses).reshape(n_profiles, len(distances))
