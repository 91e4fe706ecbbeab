"""Which measure predicts the generalization gap: Kendall's tau, overall and per axis.

Jiang et al. (2020) rank measures by Kendall's rank correlation with the gap
over all models, and by a "granulated" tau per hyperparameter axis: for each
setting of the other axes, the tau over the models that differ only along
that axis, averaged over the settings. A measure that tracks the gap only
because it tracks, say, the width scores high overall and low per axis.
"""

import numpy as np
from scipy.stats import kendalltau


def _tau(x, y):
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(kendalltau(x, y).statistic)


def granulated_taus(values, gaps, params, replicates=("seed",), strata=("family",)):
    """Kendall's tau along each grid axis, averaged over the other axes' settings.

    Parameters
    ----------
    values, gaps : ndarray of shape (n_models,)
        A measure and the generalization gaps.
    params : list of dict
        Each model's value of every axis.
    replicates : tuple of str, default=('seed',)
        Keys that mark repeats, not hyperparameters: no tau along them, and
        models that differ only in them fall in the same group.
    strata : tuple of str, default=('family',)
        Keys that mark separate grids (model families): no tau along them,
        and models of different strata never share a group.

    Returns
    -------
    taus : dict
        Axis name -> mean tau over the settings of the other axes (None when
        no setting has two models differing along the axis). Axes with a
        single value are left out.
    """
    axes = sorted({key for p in params for key in p} - set(replicates) - set(strata))
    axes = [a for a in axes if len({repr(p.get(a)) for p in params}) > 1]
    taus = {}
    for axis in axes:
        groups = {}
        for i, p in enumerate(params):
            rest = tuple((a, repr(p.get(a))) for a in [*strata, *axes] if a != axis)
            groups.setdefault(rest, []).append(i)
        # A group whose models share the axis's value (a family where the
        # axis does not vary, a grid point left with one value) holds
        # repeats only: no tau along the axis.
        found = [
            _tau(values[idx], gaps[idx])
            for idx in groups.values()
            if len({repr(params[i].get(axis)) for i in idx}) > 1
        ]
        found = [t for t in found if np.isfinite(t)]
        taus[axis] = float(np.mean(found)) if found else None
    return taus


def _checked_inputs(values, gaps, params, n_bootstrap, confidence):
    """Validate :func:`rank_measures`' inputs; return gaps and values as arrays."""
    try:
        gaps = np.asarray(gaps, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"gaps must be an array of numbers: {exc}") from exc
    if gaps.ndim != 1 or len(gaps) == 0:
        raise ValueError(
            f"gaps must be a 1-D array with one gap per model; got shape {gaps.shape}."
        )
    bad = np.flatnonzero(~np.isfinite(gaps))
    if len(bad):
        raise ValueError(
            f"gaps must be finite: models {bad[:5].tolist()} have gaps "
            f"{gaps[bad[:5]].tolist()} (a model without a measured gap cannot be "
            "ranked; leave it out)."
        )
    if not isinstance(values, dict) or not values:
        raise ValueError("values must be a non-empty dict of measure -> values.")
    columns = {}
    for name, column in values.items():
        try:
            column = np.asarray(column, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"values[{name!r}] must hold numbers: {exc}") from exc
        if column.shape != gaps.shape:
            raise ValueError(
                f"values[{name!r}] has shape {column.shape}; it needs one value per "
                f"model, like gaps {gaps.shape}."
            )
        columns[name] = column
    if not isinstance(params, (list, tuple)) or len(params) != len(gaps):
        length = len(params) if isinstance(params, (list, tuple)) else "no list"
        raise ValueError(
            f"params must be a list with one dict per model ({len(gaps)}); got "
            f"{length}."
        )
    if not all(isinstance(p, dict) for p in params):
        raise ValueError("params must hold one dict of grid values per model.")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)):
        raise ValueError(f"n_bootstrap must be an integer >= 1; got {n_bootstrap!r}.")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be an integer >= 1; got {n_bootstrap!r}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}.")
    return gaps, columns


def rank_measures(values, gaps, params, *, n_bootstrap=1000, confidence=0.95, seed=0):
    """Kendall's tau of every measure with the gap, with intervals; best first.

    Parameters
    ----------
    values : dict
        Measure name -> ndarray of shape (n_models,); larger is expected to
        mean a larger gap. Non-finite entries (NaN: not measured for that
        model; +-inf: overflowed) are left out of that measure's taus and
        intervals; ``n_models`` counts the models that remain.
    gaps : ndarray of shape (n_models,)
        Generalization gaps, all finite.
    params : list of dict
        Each model's grid values (see :func:`granulated_taus`), one dict per
        model.
    n_bootstrap : int, default=1000
        Bootstrap resamples of the models for the interval of tau.
    confidence : float, default=0.95
        Coverage of the percentile interval.
    seed : int, default=0
        Seed of the resamples (the same resamples for every measure).

    Returns
    -------
    rows : list of dict
        Per measure: ``measure``, ``tau``, ``tau_ci`` ([low, high]),
        ``granulated`` (axis -> tau), ``mean_granulated`` (the mean over
        axes, Jiang et al.'s psi) and ``n_models``; sorted by ``tau``, best
        first, NaN last.

    Raises
    ------
    ValueError
        If ``gaps`` is not 1-D and finite, or a measure's values or
        ``params`` do not have one entry per model, or the bootstrap
        settings are out of range.
    """
    gaps, values = _checked_inputs(values, gaps, params, n_bootstrap, confidence)
    resamples = np.random.default_rng(seed).integers(
        0, len(gaps), size=(n_bootstrap, len(gaps))
    )
    alpha = (1 - confidence) / 2
    rows = []
    for name, column in values.items():
        keep = np.isfinite(column)
        x, g = column[keep], gaps[keep]
        kept = [p for p, k in zip(params, keep) if k]
        boot = np.array([_tau(column[r][keep[r]], gaps[r][keep[r]]) for r in resamples])
        boot = boot[np.isfinite(boot)]
        interval = (
            [float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))]
            if len(boot)
            else [None, None]
        )
        granulated = granulated_taus(x, g, kept)
        finite = [t for t in granulated.values() if t is not None]
        tau = _tau(x, g)
        rows.append(
            {
                "measure": name,
                "tau": None if not np.isfinite(tau) else tau,
                "tau_ci": interval,
                "granulated": granulated,
                "mean_granulated": float(np.mean(finite)) if finite else None,
                "n_models": int(keep.sum()),
            }
        )
    rows.sort(key=lambda r: -np.inf if r["tau"] is None else r["tau"], reverse=True)
    return rows


def family_disagreements(rankings):
    """Measures whose tau differs between model families beyond the intervals.

    Parameters
    ----------
    rankings : dict
        Family name -> its rows of :func:`rank_measures`.

    Returns
    -------
    found : list of dict
        Per measure ranked in every family: ``measure``, ``taus`` (family ->
        ``{'tau', 'tau_ci', 'rank'}``, rank 1 the best) and ``disagree``:
        True when two families' 95 % intervals of tau do not overlap.
        Sorted by the spread of tau between families, largest first; those
        without a tau in some family (``spread`` None) last.
    """
    by_family = {}
    for family, rows in rankings.items():
        by_family[family] = {
            row["measure"]: {
                "tau": row["tau"],
                "tau_ci": row["tau_ci"],
                "rank": position + 1,
            }
            for position, row in enumerate(rows)
        }
    measures = set.intersection(*(set(m) for m in by_family.values()))
    found = []
    for measure in measures:
        taus = {family: by_family[family][measure] for family in rankings}
        intervals = [t["tau_ci"] for t in taus.values() if None not in t["tau_ci"]]
        disagree = len(intervals) == len(taus) and (
            max(low for low, _ in intervals) > min(high for _, high in intervals)
        )
        values = [t["tau"] for t in taus.values() if t["tau"] is not None]
        spread = max(values) - min(values) if len(values) == len(taus) else np.inf
        found.append(
            {
                "measure": measure,
                "taus": taus,
                "disagree": bool(disagree),
                "spread": spread,
            }
        )
    # A measure without a tau in some family (too few finite values) last.
    found.sort(key=lambda r: (np.isinf(r["spread"]), -r["spread"], r["measure"]))
    for row in found:
        row["spread"] = None if not np.isfinite(row["spread"]) else float(row["spread"])
    return found
