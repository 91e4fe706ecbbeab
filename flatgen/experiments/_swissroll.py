"""The paper's swiss-roll experiment, end to end."""

import time

import numpy as np
from sklearn.model_selection import train_test_split

from ..datasets import make_spirals
from ..estimators import PoisonedMLPClassifier
from . import _figures as figures
from ._assemble import (
    finish,
    fit_steps,
    flatness_rows,
    flatness_steps,
    make_settings,
    model_rows,
    net_name,
    new_result,
    step_summary,
    svc_baseline,
    sweep_figures,
)
from ._cache import fingerprint
from ._results import Margins
from ._runner import (
    Step,
    StepRunner,
    check_common,
    derive_seeds,
    prepare_out,
    versions,
)
from ._steps import measure_basin, measure_margins, perturbation_path

# Full run: the paper's setting (200 + 200 points, its network, 40k steps),
# sized to finish in minutes on a 2-core CPU.
FULL = {
    "n_train": 200,
    "n_test": 200,
    "noise": 0.5,
    "poison_factors": [0.0, 0.03, 0.1, 0.3, 1.0],
    "solver": "sgd",
    "learning_rate_init": 0.01,
    "max_iter": 40000,
    "max_polish_iter": 1000,
    # A poisoned minimum keeps a training cross-entropy of 0.1-0.15 (the
    # poison term pulls against it): the paper's cutoff 0.1 delimits no basin
    # there, so the cutoffs start above it.
    "cutoffs": [0.2, 0.5, 1.0],
    "n_directions": 1000,
    # Rays drawn from a measured curvature model (see VolumeEstimator).
    "volume_estimator": "preconditioned",
    "volume_rank": 40,
    "volume_probes": 64,
    "curvature_iter": 200,
    "trace_samples": 50,
    "basin_cutoff": 0.5,
    "basin_directions": 200,
    "margin_directions": 64,
    "margin_refine": 40,
    "grid_resolution": 200,
    "animation_frames": 60,
    "animation_grid": 100,
    "animation_span": 0.5,
    "animation_dpi": 100,
    "svc_grid": {"C": [1, 10, 100, 1000], "gamma": [0.5, 2, 8, 32]},
}
# Quick run: every step and file of the full run, on toy sizes (seconds).
QUICK = {
    **FULL,
    "n_train": 100,
    "n_test": 100,
    # Adam reaches 100 % training accuracy in a few hundred steps where the
    # paper's SGD schedule needs thousands, and it poisons hard at small
    # factors: at 0.3 the net fits its training set within 2,000 steps (at 1
    # it does not, on 100 points).
    "poison_factors": [0.0, 0.3],
    "solver": "adam",
    "learning_rate_init": 0.01,
    "max_iter": 2000,
    "max_polish_iter": 1000,
    "cutoffs": [0.5, 1.0, 2.0],
    "n_directions": 16,
    # Curvature model of the volume estimator on toy sizes.
    "volume_rank": 8,
    "volume_probes": 8,
    "curvature_iter": 50,
    "trace_samples": 2,
    "basin_cutoff": 1.0,
    "basin_directions": 8,
    "margin_directions": 8,
    "margin_refine": 2,
    "grid_resolution": 40,
    "animation_frames": 4,
    "animation_grid": 30,
    "animation_dpi": 50,
    "svc_grid": {"C": [1, 100], "gamma": [2, 8]},
}


def run_swissroll(
    out,
    *,
    quick=False,
    random_state=0,
    n_jobs=1,
    device="cpu",
    poison_factors=None,
    max_iter=None,
    n_directions=None,
    verbose=1,
):
    """Run clean vs poisoned networks on the swiss roll, with an SVC baseline.

    The paper's toy experiment (Huang et al., 2019): networks of the paper's
    architecture are trained on 200 swiss-roll points with increasing poison
    factors (same initial weights and poison draws), next to an RBF ``SVC``
    tuned by cross-validation. For every network it measures train and test
    accuracy, the log-volume of the training-loss basin at several cutoffs
    and the Hessian's top eigenvalue; for the clean (smallest factor) and the
    poisoned (largest factor) network and the SVC, the decision regions and
    input-space margins; and for both networks, basin cross-sections and the
    perturbation animation. Writes to ``out``:

    - ``summary.json``: every number, the settings, seeds and versions;
    - ``report.md``: every figure with its numbers;
    - ``decision_boundaries.png``, ``poison_sweep.png``,
      ``basin_cross_sections.png``, ``volume_vs_gap.png``, ``margins.png``,
      ``perturbation_clean.gif``, ``perturbation_poisoned.gif``;
    - ``steps/``: each finished step. A run interrupted midway (Ctrl-C, a
      killed process) continues from the finished steps when run again with
      the same ``out``; steps whose settings changed are computed afresh.

    Parameters
    ----------
    out : str or path-like
        Output folder (created if missing).
    quick : bool, default=False
        Toy sizes (100 + 100 points, 600 Adam steps, few directions): every step
        and file of the full run in seconds, for checks and CI. The numbers
        are not the paper's.
    random_state : int or None, default=0
        Seed of everything (data, networks, directions, margins); None draws
        one, recorded in the summary. The same seed gives the same numbers.
    n_jobs : int, default=1
        joblib workers over the fits and the measurements.
    device : str, default='cpu'
        torch device of the networks, e.g. ``'cuda'``.
    poison_factors : list of float, default=None
        Poison factors of the sweep (at least two); the preset's when None.
    max_iter : int, default=None
        Optimizer steps per network; the preset's when None.
    n_directions : int, default=None
        Random directions of the volume estimates; the preset's when None.
    verbose : int, default=1
        Progress bars when positive.

    Returns
    -------
    result : ExperimentResult
        The numbers, as saved in ``summary.json``.

    Examples
    --------
    >>> import tempfile
    >>> from flatgen.experiments import run_swissroll
    >>> out = tempfile.mkdtemp()
    >>> result = run_swissroll(out, quick=True, verbose=0)  # doctest: +SKIP
    >>> [m.name for m in result.models]  # doctest: +SKIP
    ['net beta=0', 'net beta=1', 'SVC (rbf)']
    """
    started = time.perf_counter()
    random_state = check_common(random_state, n_jobs, device)
    settings = make_settings(FULL, QUICK, quick, poison_factors, max_iter, n_directions)
    settings["device"] = str(device)
    out = prepare_out(out)
    seeds = derive_seeds(
        random_state, ["data", "split", "network", "directions", "margins", "svc"]
    )
    seeds = {"random_state": random_state, **seeds}
    factors = settings["poison_factors"]
    clean, poisoned = factors[0], factors[-1]

    X, y = make_spirals(
        settings["n_train"] + settings["n_test"],
        noise=settings["noise"],
        random_state=seeds["data"],
    )
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, train_size=settings["n_train"], random_state=seeds["split"], stratify=y
    )
    data = {"X_train": X_train, "y_train": y_train, "X_test": X_test, "y_test": y_test}
    runner = StepRunner(
        out,
        data_key=fingerprint(X_train, y_train, X_test, y_test),
        n_jobs=n_jobs,
        verbose=verbose,
    )

    # -- fits ----------------------------------------------------------------
    network = PoisonedMLPClassifier(
        solver=settings["solver"],
        learning_rate_init=settings["learning_rate_init"],
        max_iter=settings["max_iter"],
        max_polish_iter=settings["max_polish_iter"],
        device=device,
        random_state=seeds["network"],
    )
    svc = svc_baseline(settings["svc_grid"], seeds["svc"], y_train)
    fits = runner.run(fit_steps(network, factors, svc, data), "fitting")

    # -- measurements --------------------------------------------------------
    flatness = {
        "cutoffs": settings["cutoffs"],
        "volume": {
            "n_directions": settings["n_directions"],
            "estimator": settings["volume_estimator"],
            "rank": settings["volume_rank"],
            "n_probes": settings["volume_probes"],
            "random_state": seeds["directions"],
        },
        "curvature": {
            "n_iter": settings["curvature_iter"],
            "n_trace_samples": settings["trace_samples"],
            "random_state": seeds["directions"],
        },
    }
    steps = flatness_steps(fits, factors, X_train, y_train, flatness)
    drawn = {"clean": clean, "poisoned": poisoned}
    basin = {
        "cutoff": settings["basin_cutoff"],
        "basin": {
            "n_directions": settings["basin_directions"],
            "random_state": seeds["directions"],
        },
    }
    path = {
        "path": {
            "span": settings["animation_span"],
            "n_frames": settings["animation_frames"],
            "grid_resolution": settings["animation_grid"],
            "random_state": seeds["directions"],
        }
    }
    margins = {
        "margins": {
            "n_directions": settings["margin_directions"],
            "n_refine": settings["margin_refine"],
            "grid_resolution": settings["grid_resolution"],
            "random_state": seeds["margins"],
        }
    }
    for label, factor in drawn.items():
        fit = f"fit {net_name(factor)}"
        estimator = {"estimator": fits[fit]["estimator"], "X": X_train, "y": y_train}
        steps += [
            Step(
                f"basin {label}", measure_basin, {**estimator, **basin}, basin, (fit,)
            ),
            Step(
                f"perturbation {label}",
                perturbation_path,
                {**estimator, **path},
                path,
                (fit,),
            ),
        ]
    margin_models = {
        "clean": f"fit {net_name(clean)}",
        "poisoned": f"fit {net_name(poisoned)}",
        "SVC": "fit SVC",
    }
    for label, fit in margin_models.items():
        kwargs = {
            "estimator": fits[fit]["estimator"],
            "X": X_train,
            "y": y_train,
            "X_test": X_test,
            "y_test": y_test,
            **margins,
        }
        steps.append(Step(f"margins {label}", measure_margins, kwargs, margins, (fit,)))
    measures = runner.run(steps, "measuring")

    # -- numbers -------------------------------------------------------------
    result = new_result("swissroll", settings, seeds, versions())
    result.models = model_rows(fits, factors)
    result.flatness = flatness_rows(measures, factors)
    names = {
        "clean": net_name(clean),
        "poisoned": net_name(poisoned),
        "SVC": "SVC (rbf)",
    }
    for label in margin_models:
        plotter = measures[f"margins {label}"]
        result.margins.append(
            Margins(
                name=names[label],
                median_margin=float(plotter.median_margin_),
                median_test_margin=float(np.median(plotter.test_margins_)),
                capped_fraction=float(np.mean(plotter.capped_)),
            )
        )
    for label in drawn:
        section = measures[f"basin {label}"]
        radius = section.get("mean_radius")
        result.basin_radii[names[label]] = None if radius is None else float(radius)
        animated = measures[f"perturbation {label}"]
        result.perturbation[names[label]] = _path_numbers(animated)

    # -- figures -------------------------------------------------------------
    by_name = {row.name: row for row in result.models}
    titles = [
        f"{title}\ntrain {by_name[names[key]].train_accuracy:.0%}, "
        f"test {by_name[names[key]].test_accuracy:.0%}"
        for key, title in (
            ("clean", f"clean net (poison factor {clean:g})"),
            ("poisoned", f"poisoned net (poison factor {poisoned:g})"),
            ("SVC", "SVC (rbf, tuned)"),
        )
    ]
    plotters = [measures[f"margins {label}"] for label in margin_models]
    result.figures["decision_boundaries"] = figures.decision_regions(
        out, plotters, titles
    )
    sweep_figures(
        out,
        result,
        measures,
        factors,
        drawn,
        settings["cutoffs"],
        titles=(
            f"Swiss roll, {settings['n_train']} training points: MLPs",
            "Swiss roll: basin volume vs generalization gap",
        ),
        model="net",
    )
    result.figures["margins"] = figures.margin_distributions(
        out,
        [p.margins_ for p in plotters],
        ["clean net", "poisoned net", "SVC (rbf)"],
    )
    for label in drawn:
        result.figures[f"perturbation_{label}"] = figures.perturbation_gif(
            out,
            measures[f"perturbation {label}"],
            X_train,
            y_train,
            f"perturbation_{label}.gif",
            dpi=settings["animation_dpi"],
        )
    result.steps, result.timings = step_summary(runner)
    return finish(out, result, started)


def _path_numbers(path):
    middle = int(np.argmin(np.abs(path.coefficients_)))
    return {
        "max_coefficient": float(np.max(np.abs(path.coefficients_))),
        "loss_at_minimum": float(path.losses_[middle]),
        "max_loss": float(np.max(path.losses_)),
        "accuracy_at_minimum": float(path.accuracies_[middle]),
        "min_accuracy": float(np.min(path.accuracies_)),
        "curvature_at_minimum": float(path.curvatures_[middle]),
        "max_curvature": float(np.max(path.curvatures_)),
    }
