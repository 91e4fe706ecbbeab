"""The training set as a weighted set: canonical rows and their weights.

A fit depends on its training data only as a weighted set of distinct
``(x, y)`` pairs. Rows with zero weight are dropped, identical rows are merged
into one row carrying their summed weight, and the rows are put in one
canonical (lexicographic) order. So ``fit(X, y, sample_weight=k)`` trains
exactly as ``fit`` on ``X`` with each row repeated ``k`` times, and shuffling
the rows changes nothing, bit for bit: the float sums of a full-batch loss see
the same rows in the same order either way.
"""

import numpy as np


def canonical_training_set(X, y, sample_weight):
    """Drop zero weights, merge duplicate rows, sort rows canonically.

    Parameters
    ----------
    X : ndarray of shape (n_samples, ...)
        Training inputs (any trailing shape).
    y : ndarray of shape (n_samples,)
        Encoded integer labels.
    sample_weight : ndarray of shape (n_samples,)
        Non-negative weights with a positive sum.

    Returns
    -------
    X, y, weight : ndarrays
        The distinct weighted rows in canonical order; ``weight`` is float64.
    """
    keep = sample_weight > 0
    X, y, w = X[keep], y[keep], np.asarray(sample_weight, dtype=np.float64)[keep]
    flat = X.reshape(len(X), -1)
    # Sort by label, then by every feature (np.lexsort's last key is primary).
    keys = [flat[:, j] for j in range(flat.shape[1] - 1, -1, -1)] + [y]
    order = np.lexsort(keys)
    flat, y, w = flat[order], y[order], w[order]
    same_as_previous = np.zeros(len(y), dtype=bool)
    if len(y) > 1:
        same_as_previous[1:] = (y[1:] == y[:-1]) & np.all(flat[1:] == flat[:-1], axis=1)
    first = ~same_as_previous
    group = np.cumsum(first) - 1
    merged = np.zeros(int(first.sum()))
    # np.add.at sums in row order, so merging is independent of the input order.
    np.add.at(merged, group, w)
    X_out = flat[first].reshape((int(first.sum()),) + X.shape[1:])
    return np.ascontiguousarray(X_out), y[first], merged


__all__ = ["canonical_training_set"]
