"""Pieces shared by the experiments: fit steps, result rows, the final write-up."""

import os
import time

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from . import _figures as figures
from ._cache import jsonable
from ._report import write_report
from ._results import ExperimentResult, Flatness, ModelScore
from ._runner import Step, check_positive
from ._steps import fit_model, measure_flatness

# Estimator parameters that do not change the fitted model.
_NOT_IN_KEY = {"verbose", "callbacks"}


def make_settings(full, quick_preset, quick, poison_factors, max_iter, n_directions):
    """Return the preset's settings with the user's overrides, validated."""
    settings = dict(quick_preset if quick else full)
    settings["quick"] = bool(quick)
    if poison_factors is not None:
        try:
            factors = np.unique(np.asarray(poison_factors, dtype=float).ravel())
        except (TypeError, ValueError):
            factors = np.array([np.nan])
        if factors.size < 2 or not np.all(np.isfinite(factors)) or np.any(factors < 0):
            raise ValueError(
                "`poison_factors` must hold at least two distinct, finite, "
                f"non-negative values. Got {poison_factors!r} instead."
            )
        settings["poison_factors"] = factors.tolist()
    if max_iter is not None:
        settings["max_iter"] = check_positive("max_iter", max_iter)
    if n_directions is not None:
        settings["n_directions"] = check_positive("n_directions", n_directions)
    return settings


def net_name(factor):
    """Name of the network trained with poison factor ``factor``."""
    return f"net beta={factor:g}"


def estimator_settings(estimator):
    """JSON description of an estimator's hyperparameters, for cache keys."""
    params = estimator.get_params(deep=False)
    return {k: jsonable(v) for k, v in sorted(params.items()) if k not in _NOT_IN_KEY}


def svc_baseline(grid, seed, y):
    """RBF SVC on standardized inputs, ``C`` and ``gamma`` tuned by stratified CV.

    A tuned baseline is a fair opponent: the networks get no tuning either
    way, but an untuned SVC would understate what a kernel method does. Five
    folds, or fewer when the smallest class has fewer members (tiny subsets);
    the first grid values without tuning when it has only one.

    Returns
    -------
    estimator : Pipeline
        Unfitted.
    settings : dict
        What determines the fitted baseline, for the cache key.
    """
    n_folds = min(5, int(np.bincount(np.unique(y, return_inverse=True)[1]).min()))
    settings = {"svc_grid": grid, "seed": seed, "n_folds": n_folds}
    if n_folds < 2:
        first = {name: values[0] for name, values in grid.items()}
        return make_pipeline(StandardScaler(), SVC(kernel="rbf", **first)), settings
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    search = GridSearchCV(SVC(kernel="rbf"), grid, cv=folds)
    return make_pipeline(StandardScaler(), search), settings


def fit_steps(network, factors, svc, data):
    """Return steps fitting ``network`` at every poison factor, and the SVC.

    Parameters
    ----------
    network : flatgen classifier
        Unfitted template; clones differ only in ``poison_factor`` (same
        initial weights, same poison draws).
    factors : list of float
        Poison factors.
    svc : tuple of (estimator, dict)
        Unfitted baseline and its settings.
    data : dict
        ``X_train``, ``y_train``, ``X_test``, ``y_test``.
    """
    steps = []
    for factor in factors:
        estimator = clone(network).set_params(poison_factor=factor)
        steps.append(
            Step(
                f"fit {net_name(factor)}",
                fit_model,
                {"estimator": estimator, **data},
                estimator_settings(estimator),
            )
        )
    estimator, settings = svc
    steps.append(Step("fit SVC", fit_model, {"estimator": estimator, **data}, settings))
    return steps


def flatness_steps(fits, factors, X, y, settings):
    """Return steps measuring basin volumes and curvature of every network."""
    return [
        Step(
            f"flatness {net_name(factor)}",
            measure_flatness,
            {
                "estimator": fits[f"fit {net_name(factor)}"]["estimator"],
                "X": X,
                "y": y,
                **settings,
            },
            settings,
            depends=(f"fit {net_name(factor)}",),
        )
        for factor in factors
    ]


def model_rows(fits, factors):
    """One :class:`ModelScore` per network (in factor order), then the SVC."""
    rows = []
    names = [(f"fit {net_name(f)}", net_name(f), f) for f in factors]
    names.append(("fit SVC", "SVC (rbf)", None))
    for step, name, factor in names:
        record = fits[step]
        estimator = record["estimator"]
        estimator_name = type(estimator).__name__
        if estimator_name == "Pipeline":
            last = estimator.steps[-1][1]
            estimator_name = type(getattr(last, "estimator", last)).__name__
        rows.append(
            ModelScore(
                name=name,
                estimator=estimator_name,
                poison_factor=None if factor is None else float(factor),
                train_accuracy=record["train_accuracy"],
                test_accuracy=record["test_accuracy"],
                generalization_gap=record["train_accuracy"] - record["test_accuracy"],
            )
        )
    return rows


def _finite(values):
    """Nested lists of ``values`` with NaN as None, as JSON stores them."""
    return [
        _finite(v) if np.ndim(v) else (None if not np.isfinite(v) else float(v))
        for v in values
    ]


def flatness_rows(measures, factors):
    """One :class:`Flatness` per network, in factor order."""
    rows = []
    for factor in factors:
        record = measures[f"flatness {net_name(factor)}"]
        rows.append(
            Flatness(
                name=net_name(factor),
                poison_factor=float(factor),
                base_loss=record["base_loss"],
                cutoffs=record["cutoffs"].tolist(),
                log10_volume=_finite(record["log10_volume"]),
                log10_volume_ci=_finite(record["log10_volume_ci"]),
                mean_log_radius=_finite(record["mean_log_radius"]),
                median_radius=_finite(record["median_radius"]),
                top_eigenvalue=record["top_eigenvalue"],
                hessian_trace=record["hessian_trace"],
                n_dims=record["n_dims"],
                effective_sample_size=_finite(
                    record.get(
                        "effective_sample_size", np.full(len(record["cutoffs"]), np.nan)
                    )
                ),
                capped_fraction=_finite(record["capped_fraction"]),
            )
        )
    return rows


def volume_arrays(measures, factors):
    """log10 volumes ``(n_models, n_cutoffs)`` and intervals ``(..., 2)``."""
    records = [measures[f"flatness {net_name(f)}"] for f in factors]
    volumes = np.array([r["log10_volume"] for r in records])
    ci = np.array([r["log10_volume_ci"] for r in records])
    return volumes, ci


def spearman_by_cutoff(display, cutoffs):
    """Spearman correlations of a drawn VolumeGapDisplay, keyed by cutoff."""
    return {
        f"{c:g}": (None if not np.isfinite(r) else float(r))
        for c, r in zip(cutoffs, display.spearman_)
    }


def sweep_figures(out, result, measures, factors, drawn, cutoffs, *, titles, model):
    """Draw the sweep, basin and volume-vs-gap figures; record Spearman's rho.

    Parameters
    ----------
    out : str
        Output folder.
    result : ExperimentResult
        Its ``models`` are the networks (one per factor) then the SVC; its
        ``figures`` and ``spearman`` are filled in.
    measures : dict
        Step results, with ``'basin <label>'`` and flatness records.
    factors : list of float
        Poison factors of the networks.
    drawn : iterable of str
        Labels of the measured basins to draw (e.g. clean, poisoned).
    cutoffs : list of float
        Cutoffs of the volume estimates.
    titles : tuple of str
        Titles of the sweep and the volume-vs-gap figures.
    model : str
        What the networks are called in legends ('net', 'CNN').
    """
    nets, svc_row = result.models[:-1], result.models[-1]
    result.figures["poison_sweep"] = figures.poison_sweep(
        out,
        [m.poison_factor for m in nets],
        [m.train_accuracy for m in nets],
        [m.test_accuracy for m in nets],
        baseline=("SVC (rbf)", svc_row.test_accuracy),
        title=titles[0],
    )
    basin_file = figures.basin_sections(
        out,
        [measures[f"basin {label}"] for label in drawn],
        [f"{label} {model}" for label in drawn],
    )
    if basin_file is not None:
        result.figures["basin_cross_sections"] = basin_file
    volumes, ci = volume_arrays(measures, factors)
    display, result.figures["volume_vs_gap"] = figures.volume_gap(
        out,
        [m.generalization_gap for m in nets],
        volumes,
        cutoffs,
        ci,
        [f"beta={f:g}" for f in factors],
        title=titles[1],
    )
    result.spearman = spearman_by_cutoff(display, cutoffs)


def step_summary(runner):
    """Names of computed and reused steps, and their seconds."""
    steps = {"computed": list(runner.computed), "reused": list(runner.reused)}
    timings = {name: round(s, 3) for name, s in sorted(runner.seconds.items())}
    return steps, timings


def finish(out, result, started):
    """Record the wall time, write ``report.md`` and then ``summary.json``.

    ``summary.json`` comes last: its presence means the run finished.
    """
    result.timings["total_seconds"] = round(time.perf_counter() - started, 3)
    write_report(out, result)
    result.to_json(os.path.join(out, "summary.json"))
    return result


def new_result(experiment, settings, seeds, versions):
    """Return an empty :class:`ExperimentResult` with its settings recorded."""
    return ExperimentResult(
        experiment=experiment,
        settings=jsonable(settings),
        seeds=seeds,
        versions=versions,
    )
