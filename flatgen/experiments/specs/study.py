"""Which flatness measure predicts generalization: a grid of models, ranked measures."""

import itertools

from .._spec import ExperimentSpec, Model
from .swissroll import load as load_swissroll

# A grid of networks on the swiss roll: poison factor x width x learning rate
# x seed (and depth, one value by default). Poisoning moves the gap while
# every model keeps fitting its training set; Adam reaches 100 % training
# accuracy in a few thousand steps, so the grid fits on a laptop CPU.
FULL = {
    "n_train": 200,
    "n_test": 200,
    "noise": 0.5,
    "poison_factors": [0.0, 0.03, 0.1, 0.3],
    "widths": [32, 64],
    "depths": [4],
    "learning_rates": [0.003, 0.01],
    "n_seeds": 3,
    "solver": "adam",
    "max_iter": 3000,
    # Networks of one shape train together (BatchedPoisonFitter): several
    # times the models per second of one-by-one fits.
    "batched_fits": True,
    "max_polish_iter": 1000,
    # Models below this training accuracy sit at no minimum: left out.
    "min_train_accuracy": 1.0,
    "curvature_iter": 100,
    "trace_samples": 20,
    "sharpness_radius": 0.1,
    "adaptive_radius": 0.1,
    "average_sigma": 0.02,
    "sharpness_steps": 20,
    "sharpness_samples": 64,
    "pac_bayes_bound": 0.1,
    "pac_bayes_samples": 64,
    # The perturbation-based measures are also taken at these multiples of
    # their scale (sharpness radii, average sigma, PAC-Bayes bound): the
    # report shows how each one's tau depends on it.
    "scale_factors": [0.25, 4.0],
    "margin_directions": 32,
    "margin_refine": 20,
    # The paper's basin radius at an absolute cutoff (the same level for
    # every model, as the paper compares minima).
    "basin_directions": 500,
    "basin_cutoff": 0.5,
    "basin_max_radius": 1.0,
    "n_bootstrap": 1000,
}
QUICK = {
    **FULL,
    "n_train": 100,
    "n_test": 100,
    "poison_factors": [0.0, 0.3],
    "widths": [16, 32],
    "learning_rates": [0.01],
    "n_seeds": 2,
    "max_iter": 1000,
    "curvature_iter": 30,
    "trace_samples": 4,
    "sharpness_steps": 5,
    "sharpness_samples": 16,
    "pac_bayes_samples": 16,
    "margin_directions": 8,
    "margin_refine": 4,
    "basin_directions": 50,
    "n_bootstrap": 200,
    "scale_factors": [0.5],
}


def grid(settings, seeds, data, device):
    """Return one MLP per point of the grid, named by its values."""
    from sklearn.base import clone

    from ...estimators import PoisonedMLPClassifier
    from .._experiment import estimator_settings

    template = PoisonedMLPClassifier(
        solver=settings["solver"],
        max_iter=settings["max_iter"],
        max_polish_iter=settings["max_polish_iter"],
        device=device,
    )
    models = []
    for factor, width, depth, rate, seed in itertools.product(
        settings["poison_factors"],
        settings["widths"],
        settings["depths"],
        settings["learning_rates"],
        range(settings["n_seeds"]),
    ):
        # Seed k of the grid: the same initial weights and poison draws for
        # every poison factor, so the factor alone moves the gap.
        estimator = clone(template).set_params(
            poison_factor=factor,
            hidden_layer_sizes=(width,) * depth,
            learning_rate_init=rate,
            random_state=seeds["network"] + seed,
        )
        params = {
            "poison_factor": float(factor),
            "width": int(width),
            "depth": int(depth),
            "learning_rate": float(rate),
            "seed": int(seed),
        }
        models.append(
            Model(
                name=f"net beta={factor:g} {width}x{depth} lr={rate:g} seed={seed}",
                estimator=estimator,
                settings=estimator_settings(estimator),
                poison_factor=float(factor),
                params=params,
            )
        )
    return models


SPEC = ExperimentSpec(
    name="study",
    help="which flatness measure predicts the generalization gap, over a grid",
    description="Train a grid of networks on the swiss roll (poison factor x "
    "width x depth x learning rate x seed), measure each minimum (curvature, "
    "worst-case and average sharpness, PAC-Bayes flatness, relative flatness, "
    "Fisher-Rao and path norms, norm products, input margin, basin radius) and "
    "rank the measures by Kendall's tau "
    "with the generalization gap, overall and per grid axis, with bootstrap "
    "intervals.",
    full=FULL,
    quick=QUICK,
    seeds=("data", "split", "network", "directions", "bootstrap"),
    load=load_swissroll,
    models=grid,
    measures=("zoo",),
    figures=("measure_ranking",),
    sweep_title="Swiss roll, {n_train} training points",
    paper=(
        "Jiang et al. (2020), over 10,000 CIFAR-10/SVHN networks: sharpness-based "
        "measures (PAC-Bayes flatness, sharpness magnitude) correlated best with "
        "the gap, norm products worst; Andriushchenko et al. (2023) found even "
        "adaptive sharpness unreliable across settings."
    ),
)


def run_study(
    out,
    *,
    quick=False,
    random_state=0,
    n_jobs=1,
    device="cpu",
    poison_factors=None,
    max_iter=None,
    verbose=1,
):
    """Rank flatness measures by how well they predict the generalization gap.

    Trains a grid of MLPs on the swiss roll (poison factors x widths x
    depths x learning rates x seeds; 48 models by default: 4 x 2 x 1 x 2 x
    3), measures every minimum (top Hessian eigenvalue and trace, worst-case
    sharpness in raw and adaptive coordinates, adaptive average sharpness,
    PAC-Bayes flatness, relative flatness of the last layer, Fisher-Rao norm,
    path norm, products of spectral and Frobenius norms, median input margin,
    mean basin radius) and ranks the measures by Kendall's
    tau with the gap, over the models that fit their training set: overall
    with a bootstrap interval, and granulated along each axis (Jiang et al.,
    2020). Writes ``summary.json`` (every model's values, the ranking),
    ``report.md``, ``measure_ranking.png`` and the finished steps to ``out``.

    Parameters
    ----------
    out : str or path-like
        Output folder (created if missing).
    quick : bool, default=False
        A toy grid (8 models, 1,000 steps): every step and file in about
        half a minute; the intervals are too wide to mean much.
    random_state : int or None, default=0
        Seed of everything; None draws one, recorded in the summary.
    n_jobs : int, default=1
        joblib workers over the fits and the measurements.
    device : str, default='cpu'
        torch device of the networks.
    poison_factors : list of float, default=None
        Poison factors of the grid (at least two); the preset's when None.
    max_iter : int, default=None
        Optimizer steps per network; the preset's when None.
    verbose : int, default=1
        Progress bars when positive.

    Returns
    -------
    result : ExperimentResult
        The numbers, as saved in ``summary.json``; ``result.study`` holds the
        per-model measures and the ranking.
    """
    arguments = dict(locals())  # exactly the parameters, before any other name
    from .._experiment import run_shipped

    return run_shipped(SPEC, arguments)
