"""Pieces shared by the image experiments: the CNN of the sweep and its baseline."""


def cnn_network(settings, seeds, data, device):
    """Return a small CNN; poison drawn from ``data.pool`` when there is one."""
    from ...estimators import PoisonedCNNClassifier
    from ...poison import ArraySampler

    return PoisonedCNNClassifier(
        conv_channels=tuple(settings["conv_channels"]),
        hidden_layer_sizes=tuple(settings["hidden_layer_sizes"]),
        max_iter=settings["max_iter"],
        max_polish_iter=settings["max_polish_iter"],
        batch_size=settings["batch_size"],
        poison_source="jitter" if data.pool is None else ArraySampler(*data.pool),
        device=device,
        random_state=seeds["network"],
    )


def digits_split(n_train, n_test, seed):
    """Split scikit-learn's 8x8 digits into training, test and poison-pool images.

    Stratified: ``n_train`` training and ``n_test`` test images, the rest the
    pool the poison set is drawn from (fresh images of the training
    distribution, as SVHN's extra split is in the paper).
    """
    from sklearn.model_selection import train_test_split

    from ...datasets import load_digit_images
    from .._spec import ExperimentData

    X, y = load_digit_images()
    X_train, X_rest, y_train, y_rest = train_test_split(
        X, y, train_size=n_train, random_state=seed, stratify=y
    )
    X_test, X_pool, y_test, y_pool = train_test_split(
        X_rest, y_rest, train_size=n_test, random_state=seed, stratify=y_rest
    )
    return ExperimentData(X_train, y_train, X_test, y_test, pool=(X_pool, y_pool))


def svc_on_pixels(settings, seeds, data):
    """Return a tuned RBF SVC that sees each image as one row of pixels."""
    from .._baselines import svc_baseline

    return [svc_baseline(settings, seeds, data, flat_inputs=True)]


# The measurements of every image experiment, full and --quick; ten
# classes: chance-level cross-entropy is ln 10 = 2.3.
MEASURED_FULL = {
    "poison_factors": [0.0, 0.1, 0.3, 1.0],
    "max_polish_iter": 1000,
    "cutoffs": [0.5, 1.0, 2.0],
    "n_directions": 100,
    # Rays drawn from a measured curvature model (see VolumeEstimator).
    "volume_estimator": "preconditioned",
    "volume_rank": 40,
    "volume_probes": 64,
    # Radii to 1e-4 relative: the log-volume is then exact to n * 1e-4 / ln 10
    # (under 1 of thousands of orders of magnitude), at half the bisections.
    "rtol": 1e-4,
    "curvature_iter": 100,
    "trace_samples": 10,
    "basin_cutoff": 1.0,
    "basin_directions": 50,
    # Cutoffs at which the clean and the most poisoned CNN's volume is also
    # measured by annealing (AnnealedVolumeEstimator): none unless asked for
    # (--annealed-cutoffs), with the swiss-roll experiment's options. On the
    # digits CNN a run's forward leg alone took over half an hour of one
    # core: one and a half to two hours per network on two.
    "annealed_cutoffs": [],
    "annealed": {"n_runs": 4, "n_chains": 8, "n_steps": 40},
}
MEASURED_QUICK = {
    **MEASURED_FULL,
    "poison_factors": [0.0, 1.0],
    "n_directions": 8,
    # Curvature model of the volume estimator on toy sizes.
    "volume_rank": 8,
    "volume_probes": 8,
    "curvature_iter": 20,
    "trace_samples": 2,
    "basin_cutoff": 2.0,
    "basin_directions": 4,
}
# What every image experiment measures and draws.
MEASURES = ("flatness", "annealed_volume", "basin")
FIGURES = ("poison_sweep", "basin_cross_sections", "volume_vs_gap")
