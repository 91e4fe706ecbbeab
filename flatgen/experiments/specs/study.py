"""Which flatness measure predicts generalization: a grid of models, ranked measures."""

import itertools

from .._spec import ExperimentSpec, Model, Option
from .swissroll import load as load_swissroll

# The model families of the study and the runs' choice of them: a ranking
# that holds in one family only may say more about that toy than about
# flatness, so the default run takes both and ranks per family and pooled.
FAMILIES = {"all": ["mlp", "cnn"], "mlp": ["mlp"], "cnn": ["cnn"]}
FAMILY_LABELS = {"mlp": "MLPs on the swiss roll", "cnn": "CNNs on the 8x8 digits"}

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
    # Scales set per model by a stated loss increase instead of by hand:
    # the largest worst-case ball (raw and adaptive weights) and the largest
    # adaptive Gaussian noise whose mean loss rises by at most this bound.
    # The radius to 1 %, far below its spread across models; each radius
    # tried costs sharpness_steps + 1 gradients.
    "flatness_bound": 0.1,
    "flatness_rtol": 0.01,
    # The families whose bound is swept too (the scale factors below times
    # 0.1): on an MLP the three searches take a few seconds, on a digits CNN
    # 3-5 s per bound (benchmarks/tolerated_scale_search.py).
    "flatness_sweep_families": ["mlp", "cnn"],
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
    # The local learning coefficient: SGLD chains at the analyzer's default
    # localization (gamma 100) and step-size rule. A CNN's step costs about
    # 8x an MLP's (400 images through two conv blocks); at 1,000 steps a
    # clean and a poisoned 16-32 CNN gave 4.55 and 14.02 (split R-hat 1.01,
    # 1.03), as at 2,000 steps (4.55, 13.99), against 4.48 and 15.4 at 500.
    "llc_chains": 4,
    "llc_steps": 2000,
    "cnn_llc_steps": 1000,
    "llc_localization": 100.0,
    # The basin log-volume by annealing at these cross-entropies (the
    # paper's measure, with intervals): empty unless asked for
    # (--annealed-cutoffs), as it takes minutes per MLP and over an hour
    # per CNN, so only the families named here. Two runs of 8 chains with
    # 10 HMC transitions per temperature: a fifth of the swiss-roll
    # experiment's preset (4 runs, 40 transitions), enough to order
    # minima tens of orders of magnitude apart, with wider intervals.
    "annealed_cutoffs": [],
    "annealed": {"n_runs": 2, "n_chains": 8, "n_steps": 10},
    "volume_families": ["mlp"],
    "n_bootstrap": 1000,
    # The second family: small CNNs on scikit-learn's 8x8 digits (training,
    # test, and the rest as the poison pool), poison factor x channels x
    # learning rate x seed, trained by the CNN's SGD schedule. At a learning
    # rate of 0.02 the poison barely moves the gap in 1,000 steps (test
    # accuracy 0.93 -> 0.91 from factor 0 to 1); at 0.05 and 0.1 it spans
    # 0.94 -> 0.32.
    "cnn_n_train": 400,
    "cnn_n_test": 500,
    "cnn_poison_factors": [0.0, 0.1, 0.3, 1.0],
    "cnn_channels": [[8, 16], [16, 32]],
    "cnn_hidden": 32,
    "cnn_learning_rates": [0.05, 0.1],
    "cnn_n_seeds": 2,
    "cnn_max_iter": 1000,
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
    "llc_steps": 200,
    "cnn_llc_steps": 100,
    "scale_factors": [0.5],
    "cnn_n_train": 100,
    "cnn_n_test": 100,
    "cnn_poison_factors": [0.0, 1.0],
    # Fewer channels do not fit 100 images in 200 steps.
    "cnn_channels": [[8, 16]],
    "cnn_hidden": 16,
    "cnn_learning_rates": [0.05],
    "cnn_n_seeds": 2,
    "cnn_max_iter": 200,
}


def load(settings, seeds, family="all"):
    """Return the data of the run's first family; record the families run."""
    if family not in FAMILIES:
        raise ValueError(
            f"`family` must be one of {sorted(FAMILIES)}. Got {family!r} instead."
        )
    settings["families"] = list(FAMILIES[family])
    settings["family_labels"] = {f: FAMILY_LABELS[f] for f in settings["families"]}
    return family_data(settings["families"][0], settings, seeds)


def family_data(family, settings, seeds):
    """Return the training, test (and poison-pool) data of one family."""
    if family == "mlp":
        return load_swissroll(settings, seeds)
    from ._images import digits_split

    n_train, n_test = settings["cnn_n_train"], settings["cnn_n_test"]
    return digits_split(n_train, n_test, seeds["digits"])


def _overridden(settings, name):
    """Whether the user replaced the MLP grid's preset value of ``name``."""
    preset = QUICK if settings["quick"] else FULL
    return settings[name] != preset[name]


def grid(settings, seeds, data, device):
    """Return one model per point of every family's grid, named by its values."""
    models = []
    for family in settings["families"]:
        # The first family's data is the run's; the others carry their own.
        own = (
            None
            if family == settings["families"][0]
            else family_data(family, settings, seeds)
        )
        build = {"mlp": _mlp_grid, "cnn": _cnn_grid}[family]
        models += build(settings, seeds, own or data, device)
        for model in models:
            if model.family is None:
                model.family, model.data = family, own
    return models


def _mlp_grid(settings, seeds, data, device):
    """Return one MLP per point of the swiss-roll grid."""
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


def _cnn_grid(settings, seeds, data, device):
    """Return one CNN per point of the digits grid.

    ``poison_factors`` and ``max_iter`` given by the user (other than the
    MLP preset's) replace the CNN family's own too.
    """
    from sklearn.base import clone

    from ...estimators import PoisonedCNNClassifier
    from ...poison import ArraySampler
    from .._experiment import estimator_settings

    factors = settings[
        "poison_factors"
        if _overridden(settings, "poison_factors")
        else "cnn_poison_factors"
    ]
    max_iter = settings[
        "max_iter" if _overridden(settings, "max_iter") else "cnn_max_iter"
    ]
    template = PoisonedCNNClassifier(
        hidden_layer_sizes=(settings["cnn_hidden"],),
        max_iter=max_iter,
        max_polish_iter=settings["max_polish_iter"],
        poison_source=ArraySampler(*data.pool),
        device=device,
    )
    models = []
    for factor, channels, rate, seed in itertools.product(
        factors,
        settings["cnn_channels"],
        settings["cnn_learning_rates"],
        range(settings["cnn_n_seeds"]),
    ):
        estimator = clone(template).set_params(
            poison_factor=factor,
            conv_channels=tuple(channels),
            learning_rate_init=rate,
            random_state=seeds["network"] + seed,
        )
        # The axes are named as the MLP family's: width is the first
        # block's channels, depth the number of convolutional blocks.
        params = {
            "poison_factor": float(factor),
            "width": int(channels[0]),
            "depth": len(channels),
            "learning_rate": float(rate),
            "seed": int(seed),
        }
        models.append(
            Model(
                name=f"cnn beta={factor:g} {'-'.join(map(str, channels))} "
                f"lr={rate:g} seed={seed}",
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
    description="Train two grids of models, MLPs on the swiss roll (poison "
    "factor x width x depth x learning rate x seed) and small CNNs on the 8x8 "
    "digits (poison factor x channels x learning rate x seed), measure each "
    "minimum (curvature, worst-case and average sharpness, PAC-Bayes flatness, "
    "relative flatness, Fisher-Rao and path norms, norm products, input "
    "margin, basin radius, local learning coefficient; the MLPs' basin "
    "log-volume by annealing when asked) and rank the measures "
    "by Kendall's tau with the "
    "generalization gap, per family and pooled, overall and per grid axis, "
    "with bootstrap intervals.",
    full=FULL,
    quick=QUICK,
    # New parts append their seed: the earlier parts keep theirs.
    seeds=("data", "split", "network", "directions", "bootstrap", "digits"),
    load=load,
    models=grid,
    measures=("zoo", "llc", "study_volume"),
    figures=("measure_ranking",),
    sweep_title="Swiss roll, {n_train} training points",
    paper=(
        "Jiang et al. (2020), over 10,000 CIFAR-10/SVHN networks: sharpness-based "
        "measures (PAC-Bayes flatness, sharpness magnitude) correlated best with "
        "the gap, norm products worst; Andriushchenko et al. (2023) found even "
        "adaptive sharpness unreliable across settings."
    ),
    options=(
        Option(
            "family",
            "the model families to train and rank: both (all, the default), "
            "the swiss-roll MLPs or the digits CNNs",
            default="all",
            choices=tuple(FAMILIES),
        ),
    ),
)


def run_study(
    out,
    *,
    family="all",
    quick=False,
    random_state=0,
    n_jobs=1,
    device="cpu",
    poison_factors=None,
    max_iter=None,
    annealed_cutoffs=None,
    verbose=1,
):
    """Rank flatness measures by how well they predict the generalization gap.

    Trains two families of models: MLPs on the swiss roll (poison factors x
    widths x depths x learning rates x seeds; 48 models by default: 4 x 2 x
    1 x 2 x 3) and small CNNs on scikit-learn's 8x8 digits (poison factors x
    channels x learning rates x seeds; 32 models: 4 x 2 x 2 x 2). Measures
    every minimum (top Hessian eigenvalue and trace, worst-case
    sharpness in raw and adaptive coordinates, adaptive average sharpness,
    PAC-Bayes flatness, relative flatness of the last layer, Fisher-Rao norm,
    path norm, products of spectral and Frobenius norms, median input margin,
    mean basin radius, local learning coefficient: over every model and over
    those whose chains mixed; with ``annealed_cutoffs``, the MLPs' basin
    log-volume) and ranks the measures by Kendall's
    tau with the gap, over the models that fit their training set: per
    family and pooled, each overall with a bootstrap interval and granulated
    along each axis (Jiang et al., 2020); the report names the measures
    whose families disagree. Writes ``summary.json`` (every model's values,
    the rankings), ``report.md``, ``measure_ranking.png`` and the finished
    steps to ``out``.

    Parameters
    ----------
    out : str or path-like
        Output folder (created if missing).
    family : {'all', 'mlp', 'cnn'}, default='all'
        Both families, or the swiss-roll MLPs or the digits CNNs alone.
    quick : bool, default=False
        Toy grids (8 MLPs, 1,000 steps; 4 CNNs, 200 steps): every step and
        file in about a minute; the intervals are too wide to mean much.
    random_state : int or None, default=0
        Seed of everything; None draws one, recorded in the summary.
    n_jobs : int, default=1
        joblib workers over the fits and the measurements.
    device : str, default='cpu'
        torch device of the networks.
    poison_factors : list of float, default=None
        Poison factors of both grids (at least two); each family's preset
        when None or equal to the MLP preset's.
    max_iter : int, default=None
        Optimizer steps per network of both grids; each family's preset when
        None or equal to the MLP preset's.
    annealed_cutoffs : list of float, default=None
        Training cross-entropies at which every MLP's basin log-volume is
        also measured by annealing (:class:`~flatgen.AnnealedVolumeEstimator`,
        two runs of 8 chains) and ranked, as minus the log-volume and per
        weight (minus log10 of the radius of the ball of equal volume, in
        units of the cap's); none by default: 1.5-2.5 min of one core per
        4 x 32 MLP and about 5 min per 4 x 64 one, over an hour per digits
        CNN (not measured; the preset's ``volume_families``).
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
