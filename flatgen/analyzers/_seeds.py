"""Where an analysis's seeds come from: its ``random_state``."""

import numpy as np
from sklearn.utils import check_random_state


def analysis_seeds(random_state, n_seeds=1):
    """Return the integer seeds of one analysis, drawn from ``random_state``.

    Seed 0 seeds the directions, and direction ``k`` depends only on that
    seed and ``k``: analyzers given the same ``random_state`` perturb along
    the same directions (a LossSlice plane is spanned by the first two
    directions of a BasinAnalyzer). Analyses that need more randomness take
    seeds 1, 2, ... (the curvature's trace probes). A ``RandomState``
    instance advances by ``n_seeds`` draws.

    Parameters
    ----------
    random_state : int, RandomState instance or None
        The analyzer's ``random_state``.
    n_seeds : int, default=1
        How many seeds.

    Returns
    -------
    seeds : list of int
    """
    rng = check_random_state(random_state)
    return [int(s) for s in rng.randint(np.iinfo(np.int32).max, size=n_seeds)]
