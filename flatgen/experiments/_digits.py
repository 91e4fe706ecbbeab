"""The poison sweep on a real image set that ships with scikit-learn: 8x8 digits."""

from sklearn.model_selection import train_test_split

from ..datasets import load_digit_images
from ._assemble import make_settings
from ._images import run_image_sweep
from ._runner import check_common, derive_seeds, prepare_out

# 1,797 images: a training set, a test set, and the rest as the poison pool
# (fresh images of the training distribution, as SVHN's extra split is in
# the paper). A small CNN keeps the full run to minutes on a 2-core CPU.
FULL = {
    "n_train": 400,
    "n_test": 500,
    "poison_factors": [0.0, 0.1, 0.3, 1.0],
    "conv_channels": [8, 16],
    "hidden_layer_sizes": [32],
    "max_iter": 1000,
    "batch_size": None,
    "max_polish_iter": 1000,
    # Ten classes: chance-level cross-entropy is ln 10 = 2.3.
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
    "svc_grid": {"C": [1, 10, 100], "gamma": [0.004, 0.016, 0.064]},
}
QUICK = {
    **FULL,
    "n_train": 100,
    "n_test": 100,
    "poison_factors": [0.0, 1.0],
    "conv_channels": [4, 8],
    "hidden_layer_sizes": [16],
    "max_iter": 200,
    "max_polish_iter": 50,
    "n_directions": 8,
    # Curvature model of the volume estimator on toy sizes.
    "volume_rank": 8,
    "volume_probes": 8,
    "curvature_iter": 20,
    "trace_samples": 2,
    "basin_cutoff": 2.0,
    "basin_directions": 4,
    "svc_grid": {"C": [10], "gamma": [0.016]},
}


def run_digits(
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
    """Run the poison sweep on scikit-learn's 8x8 digits with a CNN and an SVC.

    The paper's story on real images: small CNNs
    (:class:`~flatgen.PoisonedCNNClassifier`) trained on 400 digits with
    increasing poison factors (same initial weights), the poison set drawn
    from held-out digits of the same distribution (as the paper draws it
    from SVHN's ``extra`` split), next to an RBF ``SVC`` tuned by
    cross-validation. Measures train and test accuracy, the log-volume of
    each network's basin at several cutoffs and its top Hessian eigenvalue.
    Writes ``summary.json``, ``report.md``, ``poison_sweep.png``,
    ``volume_vs_gap.png``, ``basin_cross_sections.png`` and the finished
    steps (``steps/``, for resuming an interrupted run) to ``out``.

    Parameters
    ----------
    out : str or path-like
        Output folder (created if missing).
    quick : bool, default=False
        Toy sizes (100 + 100 images, 200 steps): every step and file in
        seconds. The numbers are not meaningful.
    random_state : int or None, default=0
        Seed of everything; None draws one, recorded in the summary.
    n_jobs : int, default=1
        joblib workers over the fits and the measurements.
    device : str, default='cpu'
        torch device of the networks.
    poison_factors : list of float, default=None
        Poison factors (at least two); the preset's when None.
    max_iter : int, default=None
        Training epochs per network; the preset's when None.
    n_directions : int, default=None
        Random directions of the volume estimates; the preset's when None.
    verbose : int, default=1
        Progress bars when positive.

    Returns
    -------
    result : ExperimentResult
        The numbers, as saved in ``summary.json``.
    """
    random_state = check_common(random_state, n_jobs, device)
    settings = make_settings(FULL, QUICK, quick, poison_factors, max_iter, n_directions)
    settings["device"] = str(device)
    out = prepare_out(out)
    seeds = derive_seeds(random_state, ["split", "network", "directions", "svc"])
    seeds = {"random_state": random_state, **seeds}
    X, y = load_digit_images()
    X_train, X_rest, y_train, y_rest = train_test_split(
        X, y, train_size=settings["n_train"], random_state=seeds["split"], stratify=y
    )
    X_test, X_pool, y_test, y_pool = train_test_split(
        X_rest,
        y_rest,
        train_size=settings["n_test"],
        random_state=seeds["split"],
        stratify=y_rest,
    )
    settings["n_poison_pool"] = len(y_pool)
    data = {"X_train": X_train, "y_train": y_train, "X_test": X_test, "y_test": y_test}
    return run_image_sweep(
        "digits",
        "8x8 digits",
        out,
        data,
        (X_pool, y_pool),
        settings,
        seeds,
        n_jobs=n_jobs,
        device=device,
        verbose=verbose,
    )
