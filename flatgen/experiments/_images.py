"""The poison sweep on images: CNNs at several poison factors and an SVC."""

import time

from ..estimators import PoisonedCNNClassifier
from ..poison import ArraySampler
from ._assemble import (
    finish,
    fit_steps,
    flatness_rows,
    flatness_steps,
    model_rows,
    net_name,
    new_result,
    step_summary,
    svc_baseline,
    sweep_figures,
)
from ._cache import fingerprint
from ._runner import Step, StepRunner, versions
from ._steps import measure_basin


def _flat(X):
    return X.reshape(len(X), -1)


def run_image_sweep(
    name, title, out, data, pool, settings, seeds, *, n_jobs, device, verbose
):
    """Train CNNs at every poison factor and an SVC; measure, draw, write.

    Parameters
    ----------
    name : str
        Experiment name (``'digits'``, ``'svhn'``).
    title : str
        Name of the data set in figure titles.
    out : str
        Output folder (checked already).
    data : dict
        ``X_train``, ``y_train``, ``X_test``, ``y_test``; images of shape
        ``(n, channels, height, width)``.
    pool : tuple of (X, y) or None
        Extra images of the training distribution, drawn from as the poison
        set (the paper's use of SVHN's ``extra`` split); None uses the
        estimator's jitter source around the training images.
    settings : dict
        The preset with the user's overrides.
    seeds : dict
        Seeds by purpose, ``random_state`` included.
    n_jobs, device, verbose
        As in :func:`~flatgen.experiments.run_digits`.

    Returns
    -------
    result : ExperimentResult
        The numbers, also written to ``out/summary.json``.
    """
    started = time.perf_counter()
    factors = settings["poison_factors"]
    arrays = [data["X_train"], data["y_train"], data["X_test"], data["y_test"]]
    if pool is not None:
        arrays += list(pool)
    runner = StepRunner(
        out, data_key=fingerprint(*arrays), n_jobs=n_jobs, verbose=verbose
    )
    network = PoisonedCNNClassifier(
        conv_channels=tuple(settings["conv_channels"]),
        hidden_layer_sizes=tuple(settings["hidden_layer_sizes"]),
        max_iter=settings["max_iter"],
        max_polish_iter=settings["max_polish_iter"],
        batch_size=settings["batch_size"],
        poison_source="jitter" if pool is None else ArraySampler(*pool),
        device=device,
        random_state=seeds["network"],
    )
    svc = svc_baseline(settings["svc_grid"], seeds["svc"], data["y_train"])
    steps = fit_steps(network, factors, svc, data)
    # The SVC sees each image as one row of pixels.
    steps[-1].kwargs.update(
        X_train=_flat(data["X_train"]), X_test=_flat(data["X_test"])
    )
    fits = runner.run(steps, "fitting")

    X, y = data["X_train"], data["y_train"]
    flatness = {
        "cutoffs": settings["cutoffs"],
        "volume": {
            "n_directions": settings["n_directions"],
            "estimator": settings["volume_estimator"],
            "rank": settings["volume_rank"],
            "n_probes": settings["volume_probes"],
            "rtol": settings["rtol"],
            "random_state": seeds["directions"],
        },
        "curvature": {
            "n_iter": settings["curvature_iter"],
            "n_trace_samples": settings["trace_samples"],
            "random_state": seeds["directions"],
        },
    }
    steps = flatness_steps(fits, factors, X, y, flatness)
    drawn = {"clean": factors[0], "poisoned": factors[-1]}
    basin = {
        "cutoff": settings["basin_cutoff"],
        "basin": {
            "n_directions": settings["basin_directions"],
            "rtol": settings["rtol"],
            "random_state": seeds["directions"],
        },
    }
    for label, factor in drawn.items():
        fit = f"fit {net_name(factor)}"
        kwargs = {"estimator": fits[fit]["estimator"], "X": X, "y": y, **basin}
        steps.append(Step(f"basin {label}", measure_basin, kwargs, basin, (fit,)))
    measures = runner.run(steps, "measuring")

    result = new_result(name, settings, seeds, versions())
    result.models = model_rows(fits, factors)
    result.flatness = flatness_rows(measures, factors)
    for label, factor in drawn.items():
        radius = measures[f"basin {label}"].get("mean_radius")
        result.basin_radii[net_name(factor)] = None if radius is None else float(radius)

    sweep_figures(
        out,
        result,
        measures,
        factors,
        drawn,
        settings["cutoffs"],
        titles=(
            f"{title}, {len(y)} training images: CNN vs poison factor",
            f"{title}: basin volume vs generalization gap",
        ),
        model="CNN",
    )
    result.steps, result.timings = step_summary(runner)
    return finish(out, result, started)
