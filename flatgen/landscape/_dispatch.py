"""One dispatcher for work over seeded directions: chunks, joblib, progress bar.

Radii and volume rays are computed in chunks of :data:`CHUNK_SIZE`
directions. The size is fixed, so neither ``n_jobs`` nor the joblib backend
changes which directions a task draws or how its work is batched: results
are identical for every ``n_jobs`` and backend.
"""

from joblib import Parallel, delayed
from tqdm.auto import tqdm

__all__ = ["CHUNK_SIZE", "map_chunks"]

CHUNK_SIZE = 128


def _run(task, args, start, stop):
    return task(*args, start, stop)


def map_chunks(task, n_items, args, *, n_jobs=None, verbose=0, desc="directions"):
    """Return ``[task(*args, start, stop) for each chunk]``, in order.

    Parameters
    ----------
    task : callable
        Called as ``task(*args, start, stop)`` for the items
        ``start .. stop - 1`` of each chunk of :data:`CHUNK_SIZE`.
    n_items : int
        Number of items (directions, rays).
    args : tuple
        Leading arguments of every call. They travel inside each task as
        one tuple: joblib's dask backend scatters every large argument that
        can be weakly referenced to a single worker, and a task whose
        scattered data died with that worker is cancelled, not rerun; a
        tuple goes with the task, so the scheduler can rerun it anywhere (a
        chunk's root search costs thousands of passes over the data, far
        more than shipping it once).
    n_jobs : int or None, default=None
        joblib workers over the chunks (the active backend's).
    verbose : int, default=0
        Progress bar over chunks when positive.
    desc : str, default='directions'
        Label of the progress bar.

    Returns
    -------
    results : list
        One result per chunk, in the order of the items.
    """
    bounds = [
        (start, min(start + CHUNK_SIZE, n_items))
        for start in range(0, n_items, CHUNK_SIZE)
    ]
    tasks = (delayed(_run)(task, tuple(args), start, stop) for start, stop in bounds)
    results = Parallel(n_jobs=n_jobs, return_as="generator")(tasks)
    return list(
        tqdm(
            results,
            total=len(bounds),
            disable=not verbose,
            desc=desc,
            unit="chunk",
            leave=False,
        )
    )
