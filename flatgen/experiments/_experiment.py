"""The one runner of every experiment: a spec in, a folder of results out."""

import os
import time
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone

from ..estimators import batch_key
from ._cache import fingerprint, jsonable
from ._measures import COMPARED, EXTREMES, MEASURES, NETWORKS
from ._outputs import FIGURES
from ._report import write_report
from ._results import ExperimentResult, ModelScore
from ._runner import (
    Step,
    StepRunner,
    check_common,
    check_positive,
    derive_seeds,
    prepare_out,
    versions,
)
from ._spec import ANNEALED_MEASURES, ExperimentSpec, Model, StepKey
from ._steps import fit_model, fit_models_together

# Most networks trained in one batch (one batch holds ~35 MB per network of
# the study's grid, mostly poison sources and their neighbour tables).
MAX_BATCH = 32
# Estimator parameters that do not change the fitted model.
_NOT_IN_KEY = {"verbose", "callbacks"}


def make_settings(
    spec, quick, poison_factors, max_iter, n_directions, annealed_cutoffs=None
):
    """Return the spec's preset with the user's overrides, validated."""
    settings = dict(spec.quick if quick else spec.full)
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
    if annealed_cutoffs is not None:
        settings["annealed_cutoffs"] = _check_annealed_cutoffs(spec, annealed_cutoffs)
    return settings


def _check_annealed_cutoffs(spec, cutoffs):
    if not any(name in ANNEALED_MEASURES for name in spec.measures):
        raise ValueError(
            f"Experiment {spec.name!r} measures no annealed basin volume, so it "
            "takes no `annealed_cutoffs`."
        )
    try:
        values = np.unique(np.asarray(cutoffs, dtype=float).ravel())
    except (TypeError, ValueError):
        values = np.array([np.nan])
    # An empty list asks for none (the way to leave out a preset's).
    if values.size == 0:
        return []
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(
            "`annealed_cutoffs` must be finite, positive cross-entropies, or "
            f"an empty list for none. Got {cutoffs!r} instead."
        )
    return values.tolist()


def net_name(factor):
    """Name of the network trained with poison factor ``factor``."""
    return f"net beta={factor:g}"


def estimator_settings(estimator):
    """JSON description of an estimator's hyperparameters, for cache keys."""
    params = estimator.get_params(deep=False)
    return {k: jsonable(v) for k, v in sorted(params.items()) if k not in _NOT_IN_KEY}


@dataclass
class ExperimentRun:
    """Everything one run has: its spec, settings, data, models and results.

    Measures and figures read what they need from here; ``records`` holds
    every step's result by :class:`StepKey`.
    """

    spec: ExperimentSpec
    settings: dict
    seeds: dict
    out: str
    data: object
    models: list
    records: dict
    result: ExperimentResult

    def networks(self):
        """Return the networks of the sweep, in poison-factor order."""
        return [m for m in self.models if m.is_network]

    def baselines(self):
        """Return the baseline models, in the spec's order."""
        return [m for m in self.models if not m.is_network]

    def extremes(self):
        """Return the clean (smallest factor) and the most poisoned network."""
        nets = self.networks()
        return {"clean": nets[0], "poisoned": nets[-1]}

    def compared(self):
        """Return the two extremes and the baselines (drawn side by side)."""
        return list(self.extremes().values()) + self.baselines()

    def select(self, applies_to):
        """Return the models a measure with ``applies_to`` measures."""
        return {
            NETWORKS: self.networks,
            EXTREMES: lambda: list(self.extremes().values()),
            COMPARED: self.compared,
        }[applies_to]()

    def record(self, stage, model):
        """Return the result of step ``stage`` for ``model``.

        None where the stage took no step of this model (a measure taken of
        some families only).
        """
        return self.records.get(StepKey(stage, model.name))

    def title(self, template):
        """Return a title template with the training-set size filled in."""
        return template.format(n_train=len(self.data.y_train))


def _models(spec, settings, seeds, data, device):
    """Return the spec's grid of models, or its sweep and baselines."""
    if spec.models is not None:
        models = list(spec.models(settings, seeds, data, device))
        for model in models:
            if model.data is not None:
                # The run's key covers the run's data only: a model's own
                # data enters its cache key through its settings.
                model.settings = {
                    **model.settings,
                    "data": fingerprint(*model.data.arrays()),
                }
        return models
    template = spec.network(settings, seeds, data, device)
    factors = settings["poison_factors"]
    roles = {factors[0]: "clean", factors[-1]: "poisoned"}
    models = []
    for factor in factors:
        estimator = clone(template).set_params(poison_factor=factor)
        role = roles.get(factor)
        models.append(
            Model(
                name=net_name(factor),
                estimator=estimator,
                settings=estimator_settings(estimator),
                poison_factor=float(factor),
                params={"poison_factor": float(factor)},
                label=f"{role} {spec.model_label}" if role else None,
                title=f"{role} {spec.model_label} (poison factor {factor:g})"
                if role
                else None,
            )
        )
    for baseline in spec.baselines(settings, seeds, data) if spec.baselines else ():
        baseline.label = baseline.label or baseline.name
        models.append(baseline)
    return models


def _fit_kwargs(model, data):
    data = model.data or data
    return {
        "X_train": model.inputs(data.X_train),
        "y_train": data.y_train,
        "X_test": model.inputs(data.X_test),
        "y_test": data.y_test,
    }


def _fit_steps(models, data, batched):
    """Return steps fitting every model; with ``batched``, one step per batch.

    Returns the steps and the batches as ``(step name, models)``.
    """
    groups = {}
    for model in models:
        key = batch_key(model.estimator) if batched else None
        # A batch trains on one data set: models with their own data apart.
        key = key and (key, id(model.data))
        groups.setdefault(key or id(model), []).append(model)
    # A batch holds every member's data and poison source at once: batches
    # are capped so memory does not grow with the size of a grid.
    chunks = [
        members[start : start + MAX_BATCH]
        for members in groups.values()
        for start in range(0, len(members), MAX_BATCH)
    ]
    steps, batches = [], []
    for members in chunks:
        if len(members) == 1:
            (model,) = members
            steps.append(
                Step(
                    StepKey("fit", model.name),
                    fit_model,
                    {"estimator": model.estimator, **_fit_kwargs(model, data)},
                    model.settings,
                )
            )
            continue
        name = StepKey("fit together", f"{len(members)} from {members[0].name}")
        steps.append(
            Step(
                name,
                fit_models_together,
                {
                    "estimators": [m.estimator for m in members],
                    **_fit_kwargs(members[0], data),
                },
                {m.name: m.settings for m in members},
            )
        )
        batches.append((name, members))
    return steps, batches


def _run_fits(runner, models, data, batched):
    """Fit every model; return each one's record by its fit StepKey."""
    steps, batches = _fit_steps(models, data, batched)
    results = runner.run(steps, "fitting")
    for name, members in batches:
        for model, record in zip(members, results.pop(name)):
            key = StepKey("fit", model.name)
            results[key] = record
            runner.alias(key, name)
    return results


def _measure_steps(run, fits):
    steps = []
    for name in run.spec.measures:
        measure = MEASURES[name]
        kwargs = measure.settings(run.settings, run.seeds)
        if kwargs is None:  # the preset asks nothing of this measure
            continue
        for model in run.select(measure.applies_to):
            if measure.per_family:
                kwargs = measure.settings(run.settings, run.seeds, family=model.family)
                if kwargs is None:  # nothing asked of this model's family
                    continue
            fit = StepKey("fit", model.name)
            arrays = model.data or run.data
            data = {
                "estimator": fits[fit]["estimator"],
                "X": model.inputs(arrays.X_train),
                "y": arrays.y_train,
            }
            if measure.needs_test:
                data["X_test"] = model.inputs(arrays.X_test)
                data["y_test"] = arrays.y_test
            steps.append(
                Step(
                    StepKey(measure.name, model.name),
                    measure.func,
                    {**data, **kwargs},
                    kwargs,
                    depends=(fit,),
                    parallel_inside=measure.parallel_inside,
                )
            )
    return steps


def _estimator_name(estimator):
    name = type(estimator).__name__
    if name == "Pipeline":
        last = estimator.steps[-1][1]
        name = type(getattr(last, "estimator", last)).__name__
    return name


def _model_row(model, fit):
    return ModelScore(
        name=model.name,
        estimator=_estimator_name(fit["estimator"]),
        poison_factor=model.poison_factor,
        train_accuracy=fit["train_accuracy"],
        test_accuracy=fit["test_accuracy"],
        generalization_gap=fit["train_accuracy"] - fit["test_accuracy"],
    )


def _check_options(spec, options):
    known = {option.name: option for option in spec.options}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(
            f"The {spec.name!r} experiment takes no argument {unknown[0]!r}; "
            f"its own arguments are {sorted(known) or 'none'}."
        )
    values = {name: options.get(name, known[name].default) for name in known}
    missing = [n for n in known if known[n].required and values[n] is None]
    if missing:
        raise TypeError(
            f"The {spec.name!r} experiment needs the argument {missing[0]!r}."
        )
    return values


def _check_spec(spec):
    if not isinstance(spec, ExperimentSpec):
        raise TypeError(
            f"`spec` must be an ExperimentSpec or an experiment's name. Got {spec!r}."
        )
    if (spec.models is None) == (spec.network is None):
        raise ValueError(
            f"Experiment {spec.name!r} must define either `network` (a poison "
            "sweep) or `models` (a grid), not both or neither."
        )
    unknown = [name for name in spec.measures if name not in MEASURES]
    unknown += [name for name in spec.figures if name not in FIGURES]
    if unknown:
        raise ValueError(
            f"Experiment {spec.name!r} names unknown measures or figures {unknown}; "
            f"measures are {sorted(MEASURES)}, figures {sorted(FIGURES)}."
        )
    for name in spec.figures:
        missing = [m for m in FIGURES[name][0] if m not in spec.measures]
        if missing:
            raise ValueError(
                f"Experiment {spec.name!r} draws {name!r}, which needs the "
                f"measures {missing}; add them to its measures."
            )


def run_shipped(spec, arguments):
    """Run ``spec`` with the arguments of a ``run_*`` function (its ``locals()``)."""
    arguments = dict(arguments)
    return run_experiment(spec, arguments.pop("out"), **arguments)


def run_experiment(
    spec,
    out,
    *,
    quick=False,
    random_state=0,
    n_jobs=1,
    device="cpu",
    poison_factors=None,
    max_iter=None,
    n_directions=None,
    annealed_cutoffs=None,
    verbose=1,
    **options,
):
    """Run the experiment ``spec``: fit, measure, draw, write.

    Fits the spec's network at every poison factor and its baselines, takes
    its measures of the fitted models and draws its figures; writes
    ``summary.json``, ``report.md``, the figures and the finished steps
    (``steps/``: rerun with the same ``out`` to resume) to ``out``.

    Parameters
    ----------
    spec : ExperimentSpec or str
        The experiment, or the name of one that ships with flatgen
        (``'swissroll'``, ``'digits'``, ``'svhn'``).
    out : str or path-like
        Output folder (created if missing).
    quick : bool, default=False
        The spec's toy sizes: every step and file in seconds.
    random_state : int or None, default=0
        Seed of everything; None draws one, recorded in the summary.
    n_jobs : int, default=1
        joblib workers over the fits and the measurements (at most the
        usable cores).
    device : str, default='cpu'
        torch device of the networks, e.g. ``'cuda'``.
    poison_factors : list of float, default=None
        Poison factors (at least two); the preset's when None.
    max_iter : int, default=None
        Training steps (or epochs) per network; the preset's when None.
    n_directions : int, default=None
        Random directions of the volume estimates; the preset's when None.
    annealed_cutoffs : list of float, default=None
        Training cross-entropies at which the clean and the most poisoned
        network's basin volume is also measured by annealing
        (:class:`~flatgen.AnnealedVolumeEstimator`); the preset's when None
        (``[0.5]`` for the swiss roll's full run, none elsewhere: minutes
        per network and cutoff), none for ``[]``. Only for experiments that
        take the ``'annealed_volume'`` measure.
    verbose : int, default=1
        Progress bars when positive.
    **options
        The spec's own arguments (e.g. ``data_dir`` of SVHN).

    Returns
    -------
    result : ExperimentResult
        The numbers, as saved in ``summary.json``.
    """
    started = time.perf_counter()
    if isinstance(spec, str):
        from .specs import get_spec

        spec = get_spec(spec)
    _check_spec(spec)
    random_state = check_common(random_state, n_jobs, device)
    options = _check_options(spec, options)
    settings = make_settings(
        spec, quick, poison_factors, max_iter, n_directions, annealed_cutoffs
    )
    seeds = {"random_state": random_state, **derive_seeds(random_state, spec.seeds)}
    # Data before anything is created in out: a missing file fails fast.
    data = spec.load(settings, seeds, **options)
    settings["device"] = str(device)
    out = prepare_out(out)
    runner = StepRunner(
        out, data_key=fingerprint(*data.arrays()), n_jobs=n_jobs, verbose=verbose
    )
    models = _models(spec, settings, seeds, data, device)
    fits = _run_fits(runner, models, data, settings.get("batched_fits", False))

    result = ExperimentResult(
        experiment=spec.name,
        settings=jsonable(settings),
        seeds=seeds,
        versions=versions(),
    )
    result.models = [_model_row(m, fits[StepKey("fit", m.name)]) for m in models]
    run = ExperimentRun(spec, settings, seeds, out, data, models, {}, result)
    run.records = runner.run(_measure_steps(run, fits), "measuring")
    taken = [
        MEASURES[name]
        for name in spec.measures
        if MEASURES[name].settings(settings, seeds) is not None
    ]
    for measure in taken:
        for model in run.select(measure.applies_to):
            measure.report(result, model, run.record(measure.name, model))
    # Statistics over all models after every measure's rows (a later
    # measure may add to an earlier one's rows).
    for measure in taken:
        if measure.summarize is not None:
            measure.summarize(run)
    for name in spec.figures:
        result.figures.update(FIGURES[name][1](run))

    result.steps = {"computed": list(runner.computed), "reused": list(runner.reused)}
    result.timings = {name: round(s, 3) for name, s in sorted(runner.seconds.items())}
    result.timings["total_seconds"] = round(time.perf_counter() - started, 3)
    write_report(out, result, paper=spec.paper)
    # summary.json comes last: its presence means the run finished.
    result.to_json(os.path.join(out, "summary.json"))
    return result
