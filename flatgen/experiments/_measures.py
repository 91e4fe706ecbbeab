"""The measures an experiment can take of its fitted models, each declared once.

A measure says which models it applies to, which settings and seeds of the
run it takes (they are also its cache key), the step function that computes
it (:mod:`~flatgen.experiments._steps`) and the summary rows it writes. The
generic runner turns a spec's list of measure names into steps and rows.
"""

from dataclasses import dataclass

import numpy as np

from ..landscape._annealed import CAP_SHARE_WARN
from ._ranking import family_disagreements, rank_measures
from ._results import Flatness, Margins
from ._steps import (
    measure_annealed_volume,
    measure_basin,
    measure_flatness,
    measure_learning_coefficient,
    measure_margins,
    measure_zoo,
    perturbation_path,
)

# Which models a measure applies to: every network of the sweep, the two
# ends of the sweep (clean and most poisoned), or those two and the baselines.
NETWORKS, EXTREMES, COMPARED = "networks", "extremes", "compared"


@dataclass
class Measure:
    """One measurement of fitted models.

    Parameters
    ----------
    name : str
        Stage name of its steps (``StepKey(name, model)``).
    func : callable
        Step function ``func(estimator, X, y, [X_test, y_test,] **settings)``.
    applies_to : {'networks', 'extremes', 'compared'}
        Which models it measures.
    settings : callable
        ``settings(run_settings, seeds) -> dict``: the keyword arguments of
        ``func`` beyond the data, and the step's cache key; None when the
        preset asks nothing of this measure (no step is taken).
    report : callable
        ``report(result, model, record)``: writes its rows to the result.
    needs_test : bool, default=False
        Whether ``func`` also takes the test set.
    summarize : callable, default=None
        ``summarize(run)``, called once after every measure's ``report``: a
        statistic over all models (the study's ranking).
    per_family : bool, default=False
        Whether ``settings`` also takes ``family=`` (the model's family):
        its settings, and so its cache key, then differ between families.
    parallel_inside : bool, default=False
        Whether ``func`` takes ``n_jobs`` and spreads its work over the
        workers itself (see :class:`Step`).
    """

    name: str
    func: object
    applies_to: str
    settings: object
    report: object
    needs_test: bool = False
    summarize: object = None
    per_family: bool = False
    parallel_inside: bool = False


def _optional(settings, *names):
    """Return the preset entries among ``names`` that this experiment sets."""
    return {name: settings[name] for name in names if name in settings}


def _flatness_settings(s, seeds):
    return {
        "cutoffs": s["cutoffs"],
        "volume": {
            "n_directions": s["n_directions"],
            "method": s["volume_estimator"],
            "rank": s["volume_rank"],
            "n_probes": s["volume_probes"],
            **_optional(s, "rtol"),
            "random_state": seeds["directions"],
        },
        "curvature": {
            "n_iter": s["curvature_iter"],
            "n_probes": s["trace_samples"],
            "random_state": seeds["directions"],
        },
    }


def _finite(values):
    """Nested lists of ``values`` with NaN as None, as JSON stores them."""
    return [
        _finite(v) if np.ndim(v) else (None if not np.isfinite(v) else float(v))
        for v in values
    ]


def _flatness_report(result, model, record):
    result.flatness.append(
        Flatness(
            name=model.name,
            poison_factor=float(model.poison_factor),
            base_loss=record["base_loss"],
            cutoffs=record["cutoffs"].tolist(),
            log10_volume=_finite(record["log10_volume"]),
            log10_volume_ci=_finite(record["log10_volume_ci"]),
            mean_log_radius=_finite(record["mean_log_radius"]),
            median_radius=_finite(record["median_radius"]),
            top_eigenvalue=record["top_eigenvalue"],
            hessian_trace=record["hessian_trace"],
            n_dims=record["n_dims"],
            effective_sample_size=_finite(record["effective_sample_size"]),
            capped_fraction=_finite(record["capped_fraction"]),
            # Steps cached before this field existed have none.
            capped_volume_share=(
                _finite(record["capped_volume_share"])
                if "capped_volume_share" in record
                else None
            ),
        )
    )


def _annealed_settings(s, seeds):
    # Presets without annealed cutoffs take no step at all.
    if not s.get("annealed_cutoffs"):
        return None
    return {
        "cutoffs": s.get("annealed_cutoffs", []),
        "annealed": {
            **s.get("annealed", {}),
            "random_state": seeds["directions"],
        },
    }


def _annealed_report(result, model, record):
    if record is not None:
        result.annealed_volumes[model.name] = _plain_record(record)


def _study_volume_settings(s, seeds, family=None):
    # Without annealed cutoffs no step; per family, only the families the
    # preset names (a digits CNN takes over an hour per network).
    if not s.get("annealed_cutoffs"):
        return None
    if family is not None and family not in s.get("volume_families", []):
        return None
    return {
        "cutoffs": s["annealed_cutoffs"],
        # One worker per network: the study spreads its networks instead.
        "annealed": {
            **s.get("annealed", {}),
            "n_jobs": 1,
            "random_state": seeds["directions"],
        },
    }


def volume_measure_names(cutoff):
    """Names of the study's two volume measures at ``cutoff``."""
    return (
        f"neg_log10_basin_volume_ce{cutoff:g}",
        f"neg_log10_volume_radius_ce{cutoff:g}",
    )


def _study_volume_report(result, model, record):
    """Add the annealed basin volume to the model's study row, flagged where unsure.

    Two measures per cutoff, oriented as the others (larger: sharper):
    minus the log-volume (the paper's measure; it scales with the number
    of weights, so across widths it mostly counts weights), and minus
    ``log10`` of the radius of the ball with the basin's volume in units
    of the cap's radius, ``(log10 V_cap - log10 V) / n`` (per weight).
    Either this or the zoo may report first: the second joins them.
    """
    if record is None:
        return
    details = _plain_record(record)
    result.study.setdefault("basin_volumes", {})[model.name] = details
    for row in result.study.get("models", []):
        if row["name"] == model.name:
            _add_basin_volume(row, details)


def _add_basin_volume(row, details):
    n_dims = details.get("n_dims")
    for i, cutoff in enumerate(details["cutoffs"]):
        volume, radius = volume_measure_names(cutoff)
        value = details["log10_volume"][i]
        value = float("nan") if value is None else float(value)
        row["measures"][volume] = -value
        row["measures"][radius] = (
            (details["log10_cap_volume"] - value) / n_dims if n_dims else float("nan")
        )
        reasons = _volume_flags(details, i)
        if reasons:
            row["flags"][volume] = row["flags"][radius] = reasons


def _volume_flags(details, i):
    """Say in a few words why an annealed volume is not trusted, or ''."""
    reasons = []
    if not details["reliable"][i]:
        rhat = details["rhat"][i]
        lag = np.nanmax(np.abs(np.asarray(details["hysteresis"][i], dtype=float)))
        reasons.append(
            f"annealing diagnostics warned (split R-hat {rhat:.2f}, "
            f"forward/backward lag {lag:.1f} orders)"
        )
    share = details["cap_share"][i]
    if share is not None and share >= CAP_SHARE_WARN:
        reasons.append("the cap bounds the basin")
    return "; ".join(reasons)


_FLOAT_LISTS = (
    "log10_volume",
    "log10_volume_ci",
    "run_log10_volumes",
    "hysteresis",
    "rhat",
    "run_rhats",
    "star_shaped_share",
    "cap_share",
    "log10_model_volume",
)


def _plain_record(record):
    """Return the record with NaN as None (as JSON stores it)."""
    return {
        key: _finite(value) if key in _FLOAT_LISTS else value
        for key, value in record.items()
    }


def _basin_settings(s, seeds):
    return {
        "cutoff": s["basin_cutoff"],
        "basin": {
            "n_directions": s["basin_directions"],
            **_optional(s, "rtol"),
            "random_state": seeds["directions"],
        },
    }


def _basin_report(result, model, record):
    radius = record.get("mean_radius")
    result.basin_radii[model.name] = None if radius is None else float(radius)


def _path_settings(s, seeds):
    return {
        "path": {
            "span": s["animation_span"],
            "n_frames": s["animation_frames"],
            "grid_resolution": s["animation_grid"],
            "random_state": seeds["directions"],
        }
    }


def _path_report(result, model, path):
    middle = int(np.argmin(np.abs(path.coefficients_)))
    result.perturbation[model.name] = {
        "max_coefficient": float(np.max(np.abs(path.coefficients_))),
        "loss_at_minimum": float(path.losses_[middle]),
        "max_loss": float(np.max(path.losses_)),
        "accuracy_at_minimum": float(path.accuracies_[middle]),
        "min_accuracy": float(np.min(path.accuracies_)),
        "curvature_at_minimum": float(path.curvatures_[middle]),
        "max_curvature": float(np.max(path.curvatures_)),
    }


def _margin_settings(s, seeds):
    return {
        "margins": {
            "n_directions": s["margin_directions"],
            "n_refine": s["margin_refine"],
            "grid_resolution": s["grid_resolution"],
            "random_state": seeds["margins"],
        }
    }


def _margin_report(result, model, plotter):
    result.margins.append(
        Margins(
            name=model.name,
            median_margin=float(plotter.median_margin_),
            median_test_margin=float(np.median(plotter.test_margins_)),
            capped_fraction=float(np.mean(plotter.capped_)),
        )
    )


def _zoo_settings(s, seeds, family=None):
    return {
        "curvature": {
            "n_iter": s["curvature_iter"],
            "n_probes": s["trace_samples"],
        },
        "sharpness": {
            "radius": s["sharpness_radius"],
            "adaptive_radius": s["adaptive_radius"],
            "sigma": s["average_sigma"],
            "n_steps": s["sharpness_steps"],
            "n_draws": s["sharpness_samples"],
        },
        "pac_bayes": {
            "bound": s["pac_bayes_bound"],
            "n_draws": s["pac_bayes_samples"],
        },
        "flatness": {
            "bound": s["flatness_bound"],
            "n_steps": s["sharpness_steps"],
            "rtol": s["flatness_rtol"],
        },
        "margins": {
            "n_directions": s["margin_directions"],
            "n_refine": s["margin_refine"],
        },
        "basin": {
            "n_directions": s["basin_directions"],
            "cutoff": s["basin_cutoff"],
            "max_radius": s["basin_max_radius"],
        },
        "scale_factors": list(s.get("scale_factors", [])),
        "flatness_swept": family in s.get("flatness_sweep_families", []),
        "seed": seeds["directions"],
    }


def _zoo_report(result, model, record):
    row = result.model(model.name)
    result.study.setdefault("models", []).append(
        {
            "name": model.name,
            "family": model.family,
            "params": model.params,
            "train_accuracy": row.train_accuracy,
            "test_accuracy": row.test_accuracy,
            "generalization_gap": row.generalization_gap,
            "base_loss": record["base_loss"],
            "measures": record["values"],
            "flags": record["flags"],
            "scale_sweep": record.get("scale_sweep", {}),
        }
    )
    found = result.study.get("learning_coefficients", {})
    if model.name in found:
        _add_learning_coefficient(result.study["models"][-1], found[model.name])
    volumes = result.study.get("basin_volumes", {})
    if model.name in volumes:
        _add_basin_volume(result.study["models"][-1], volumes[model.name])


def _llc_settings(s, seeds, family=None):
    # Presets without learning-coefficient chains take no step.
    if "llc_steps" not in s:
        return None
    steps = s["cnn_llc_steps"] if family == "cnn" else s["llc_steps"]
    return {
        "llc": {
            "n_chains": s["llc_chains"],
            "n_steps": steps,
            "localization": s["llc_localization"],
        },
        "seed": seeds["directions"],
    }


def _llc_report(result, model, record):
    """Add the coefficient to the model's study row, flagged where unmixed.

    The study ranks it twice: over every model, and over the models whose
    chains mixed only (NaN elsewhere, so left out): poisoned minima mix
    worse, so neither ranking alone tells the whole story. Either measure
    may report first: the one that comes second joins them.
    """
    details = {k: record[k] for k in ("value", "std_error", "rhat", "converged")}
    details["warnings"] = list(record.get("warnings", []))
    # Older cached records predate the step's back-off: None, not 0, there.
    details["step_halvings"] = record.get("step_halvings")
    result.study.setdefault("learning_coefficients", {})[model.name] = details
    for row in result.study.get("models", []):
        if row["name"] == model.name:
            _add_learning_coefficient(row, details)


def _add_learning_coefficient(row, details):
    row["measures"]["local_learning_coefficient"] = details["value"]
    row["measures"]["local_learning_coefficient_mixed"] = (
        details["value"] if details["converged"] else float("nan")
    )
    if not details["converged"]:
        row["flags"]["local_learning_coefficient"] = _unconverged_reason(details)


def _unconverged_reason(details):
    """Say in a few words why the chains' estimate is not trusted.

    The analyzer's warnings name the reason (chains that disagree, a loss
    that stopped being finite, losses below the minimum's); a record without
    them (an older cached step) falls back on the split R-hat alone.
    """
    reasons = []
    for message in details.get("warnings") or ():
        if message.startswith("A chain's loss stopped being finite"):
            reasons.append("a chain diverged")
        elif message.startswith("The estimate is negative"):
            reasons.append("chains went below the minimum's loss")
        elif message.startswith("The chains disagree"):
            reasons.append(f"chains did not mix, split R-hat {details['rhat']:.2f}")
        else:
            reasons.append("the analyzer warned")
    if not reasons:
        reasons.append(f"chains did not mix, split R-hat {details['rhat']:.2f}")
    return "; ".join(dict.fromkeys(reasons))


def _zoo_ranking(run):
    """Rank the measures over the models that fit their training set.

    With several model families: per family and pooled (``ranking``), and
    the measures whose families disagree.
    """
    study = run.result.study
    threshold = run.settings["min_train_accuracy"]
    kept = [r for r in study["models"] if r["train_accuracy"] >= threshold]
    study["min_train_accuracy"] = threshold
    # Jiang et al. compare only models that fit their training set: a model
    # that does not sits at no minimum, and its flatness means nothing.
    study["excluded"] = [
        r["name"] for r in study["models"] if r["train_accuracy"] < threshold
    ]
    options = {
        "n_bootstrap": run.settings["n_bootstrap"],
        "seed": run.seeds["bootstrap"],
    }
    families = run.settings.get("families", [])
    if len(families) > 1:
        study["families"] = []
        for family in families:
            members = [r for r in kept if r["family"] == family]
            ranking, sweep = _rank(members, options)
            study["families"].append(
                {
                    "family": family,
                    "label": run.settings.get("family_labels", {}).get(family, family),
                    "n_models": len(members),
                    "ranking": ranking,
                    "scale_sweep": sweep,
                }
            )
        ranked = {f["family"]: f["ranking"] for f in study["families"] if f["ranking"]}
        study["disagreements"] = family_disagreements(ranked) if len(ranked) > 1 else []
    study["ranking"], study["scale_sweep"] = _rank(kept, options)


def _rank(kept, options):
    """Return the ranking and the scale sweep over the records ``kept``."""
    if len(kept) < 3:
        return [], []
    # A measure some models lack (the volume, taken of one family only) is
    # NaN for them, which the ranking leaves out.
    names = list(dict.fromkeys(m for r in kept for m in r["measures"]))
    gaps = np.array([r["generalization_gap"] for r in kept])
    # Pooled over families, the family separates the granulated groups.
    pooled = len({r.get("family") for r in kept}) > 1
    params = [
        {**r["params"], "family": r["family"]} if pooled else r["params"] for r in kept
    ]
    ranking = rank_measures(
        {
            m: np.array([r["measures"].get(m, np.nan) for r in kept], dtype=float)
            for m in names
        },
        gaps,
        params,
        **options,
    )
    return ranking, _scale_sweep(kept, ranking, gaps, params, options)


def _scale_sweep(kept, ranking, gaps, params, options):
    """Tau of each perturbation-based measure at every multiple of its scale.

    Only the measures and multiples every model was taken at (pooled over
    families, a sweep one family alone has is left out).
    """
    swept = {
        measure: [
            f
            for f in factors
            if all(f in r["scale_sweep"].get(measure, {}) for r in kept)
        ]
        for measure, factors in (kept[0].get("scale_sweep") or {}).items()
    }
    swept = {measure: factors for measure, factors in swept.items() if factors}
    if not swept:
        return []
    values = {
        f"{measure}@{factor}": np.array(
            [r["scale_sweep"][measure][factor] for r in kept]
        )
        for measure, factors in swept.items()
        for factor in factors
    }
    rows = {r["measure"]: r for r in rank_measures(values, gaps, params, **options)}
    by_measure = {r["measure"]: r for r in ranking}
    sweep = []
    for measure, factors in swept.items():
        taus = {"1": _tau_entry(by_measure[measure])}
        taus.update({f: _tau_entry(rows[f"{measure}@{f}"]) for f in factors})
        order = sorted(taus, key=float)
        sweep.append({"measure": measure, "taus": {f: taus[f] for f in order}})
    return sweep


def _tau_entry(row):
    return {"tau": row["tau"], "tau_ci": row["tau_ci"]}


MEASURES = {
    measure.name: measure
    for measure in (
        # Basin log-volume at every cutoff, top eigenvalue and trace.
        Measure(
            "flatness",
            measure_flatness,
            NETWORKS,
            _flatness_settings,
            _flatness_report,
        ),
        # Basin log-volume by annealing, for the clean and most poisoned nets.
        Measure(
            "annealed_volume",
            measure_annealed_volume,
            EXTREMES,
            _annealed_settings,
            _annealed_report,
            parallel_inside=True,
        ),
        # Loss along random directions at one cutoff (cross-section figure).
        Measure("basin", measure_basin, EXTREMES, _basin_settings, _basin_report),
        # The paper's animation: weights walked along one direction.
        Measure(
            "perturbation", perturbation_path, EXTREMES, _path_settings, _path_report
        ),
        # Input-space margins and decision regions, networks and baselines alike.
        Measure(
            "margins",
            measure_margins,
            COMPARED,
            _margin_settings,
            _margin_report,
            needs_test=True,
        ),
        # The study's zoo: curvature, sharpness, PAC-Bayes, norms and margin
        # of every network, ranked by Kendall's tau with the gap.
        Measure(
            "zoo",
            measure_zoo,
            NETWORKS,
            _zoo_settings,
            _zoo_report,
            summarize=_zoo_ranking,
            per_family=True,
        ),
        # The study's local learning coefficient (SGLD chains), added to the
        # zoo's rows.
        Measure(
            "llc",
            measure_learning_coefficient,
            NETWORKS,
            _llc_settings,
            _llc_report,
            per_family=True,
        ),
        # The study's basin log-volume by annealing (opt-in: minutes per
        # network), added to the zoo's rows.
        Measure(
            "study_volume",
            measure_annealed_volume,
            NETWORKS,
            _study_volume_settings,
            _study_volume_report,
            per_family=True,
        ),
    )
}
