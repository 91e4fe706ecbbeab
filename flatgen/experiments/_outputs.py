"""The figures an experiment can draw from its run, each declared once.

Each entry takes the finished :class:`~flatgen.experiments._experiment.ExperimentRun`
(its models, step records and result rows), draws with
:mod:`~flatgen.experiments._figures` and returns the files it wrote by
figure key. Nothing here computes a measurement.
"""

import numpy as np

from . import _figures as figures


def _decision_boundaries(run):
    models = run.compared()
    titles = []
    for model in models:
        row = run.result.model(model.name)
        titles.append(
            f"{model.title}\ntrain {row.train_accuracy:.0%}, "
            f"test {row.test_accuracy:.0%}"
        )
    plotters = [run.record("margins", model) for model in models]
    return {"decision_boundaries": figures.decision_regions(run.out, plotters, titles)}


def _poison_sweep(run):
    nets = [run.result.model(m.name) for m in run.networks()]
    baselines = run.baselines()
    baseline = None
    if baselines:
        first = baselines[0]
        baseline = (first.label, run.result.model(first.name).test_accuracy)
    name = figures.poison_sweep(
        run.out,
        [m.poison_factor for m in nets],
        [m.train_accuracy for m in nets],
        [m.test_accuracy for m in nets],
        baseline=baseline,
        title=run.title(run.spec.sweep_title),
    )
    return {"poison_sweep": name}


def _basin_cross_sections(run):
    models = list(run.extremes().values())
    name = figures.basin_sections(
        run.out,
        [run.record("basin", model) for model in models],
        [model.label for model in models],
    )
    return {} if name is None else {"basin_cross_sections": name}


def _volume_vs_gap(run):
    nets = run.networks()
    records = [run.record("flatness", model) for model in nets]
    cutoffs = run.settings["cutoffs"]
    annealed = []
    for m in nets:
        record = run.result.annealed_volumes.get(m.name)
        for i, cutoff in enumerate(record["cutoffs"] if record else []):
            if record["log10_volume"][i] is not None:
                annealed.append(
                    (
                        run.result.model(m.name).generalization_gap,
                        cutoff,
                        record["log10_volume"][i],
                        record["log10_volume_ci"][i],
                        # Unknown (a step cached without it): drawn as warned.
                        bool(record.get("reliable", [False] * (i + 1))[i]),
                        f"beta={m.poison_factor:g}",
                    )
                )
    display, name = figures.volume_gap(
        run.out,
        [run.result.model(m.name).generalization_gap for m in nets],
        np.array([r["log10_volume"] for r in records]),
        cutoffs,
        np.array([r["log10_volume_ci"] for r in records]),
        [f"beta={m.poison_factor:g}" for m in nets],
        title=run.title(run.spec.volume_title),
        annealed=annealed,
    )
    run.result.spearman = {
        f"{c:g}": (None if not np.isfinite(r) else float(r))
        for c, r in zip(cutoffs, display.spearman_)
    }
    return {"volume_vs_gap": name}


def _margins(run):
    models = run.compared()
    name = figures.margin_distributions(
        run.out,
        [run.record("margins", model).margins_ for model in models],
        [model.label for model in models],
    )
    return {"margins": name}


def _perturbation(run):
    files = {}
    for role, model in run.extremes().items():
        files[f"perturbation_{role}"] = figures.perturbation_gif(
            run.out,
            run.record("perturbation", model),
            run.data.X_train,
            run.data.y_train,
            f"perturbation_{role}.gif",
            dpi=run.settings["animation_dpi"],
        )
    return files


def _measure_ranking(run):
    ranking = run.result.study.get("ranking") or []
    if not ranking:
        return {}
    n_models = ranking[0]["n_models"]
    families = run.result.study.get("families", [])
    if families:
        title = f"All families, {n_models} models"
    else:
        title = run.title(run.spec.sweep_title) + f", {n_models} models"
    panels = [(f"{f['label']}, {f['n_models']} models", f["ranking"]) for f in families]
    return {
        "measure_ranking": figures.measure_ranking(
            run.out, ranking, title, panels=panels
        )
    }


# Figure name -> (the measures it draws from, the function drawing it).
FIGURES = {
    "decision_boundaries": (("margins",), _decision_boundaries),
    "poison_sweep": ((), _poison_sweep),
    "basin_cross_sections": (("basin",), _basin_cross_sections),
    "volume_vs_gap": (("flatness",), _volume_vs_gap),
    "margins": (("margins",), _margins),
    "perturbation": (("perturbation",), _perturbation),
    "measure_ranking": (("zoo",), _measure_ranking),
}
