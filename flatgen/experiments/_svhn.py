"""The paper's SVHN setting, scaled to a CPU by a subset of each split."""

from ..datasets import load_svhn
from ._assemble import make_settings
from ._images import run_image_sweep
from ._runner import check_common, check_positive, derive_seeds, prepare_out

FULL = {
    "subset": 1000,
    "poison_source": "extra",
    "poison_factors": [0.0, 0.1, 0.3, 1.0],
    "conv_channels": [16, 32],
    "hidden_layer_sizes": [64],
    "max_iter": 300,
    "batch_size": 128,
    "max_polish_iter": 1000,
    "cutoffs": [0.5, 1.0, 2.0],
    "n_directions": 100,
    # Rays drawn from a measured curvature model (see VolumeEstimator).
    "volume_estimator": "preconditioned",
    "volume_rank": 40,
    "volume_probes": 64,
    "rtol": 1e-4,
    "curvature_iter": 100,
    "trace_samples": 10,
    "basin_cutoff": 1.0,
    "basin_directions": 50,
    "svc_grid": {"C": [1, 10, 100], "gamma": [0.00025, 0.001, 0.004]},
}
QUICK = {
    **FULL,
    "subset": 100,
    "poison_factors": [0.0, 1.0],
    "conv_channels": [4, 8],
    "hidden_layer_sizes": [16],
    "max_iter": 100,
    "max_polish_iter": 20,
    "batch_size": None,
    "n_directions": 8,
    # Curvature model of the volume estimator on toy sizes.
    "volume_rank": 8,
    "volume_probes": 8,
    "curvature_iter": 20,
    "trace_samples": 2,
    "basin_cutoff": 2.0,
    "basin_directions": 4,
    "svc_grid": {"C": [10], "gamma": [0.001]},
}


def run_svhn(
    out,
    data_dir,
    *,
    subset=None,
    poison_source="extra",
    quick=False,
    random_state=0,
    n_jobs=1,
    device="cpu",
    poison_factors=None,
    max_iter=None,
    n_directions=None,
    verbose=1,
):
    """Run the paper's SVHN poison sweep from the standard ``.mat`` files.

    Reads ``train_32x32.mat``, ``test_32x32.mat`` and, for the poison set,
    ``extra_32x32.mat`` from ``data_dir`` (nothing is downloaded), draws
    ``subset`` images from the training and the test split and ``2 *
    subset`` from ``extra``, and runs the poison sweep of
    :func:`run_digits` on them: CNNs at several poison factors with the
    poison set drawn from the ``extra`` images (as in the paper), an RBF
    ``SVC``, basin volumes and curvature. The paper trains a ResNet-18 on
    all 73,257 training images; a CPU run is a scaled-down version
    (``device='cuda'`` and a larger ``subset`` get closer).

    Parameters
    ----------
    out : str or path-like
        Output folder (created if missing).
    data_dir : str or path-like
        Folder holding the SVHN ``.mat`` files.
    subset : int, default=None
        Training (and test) images drawn from the files; 1,000 (100 with
        ``quick``) when None.
    poison_source : {'extra', 'jitter'}, default='extra'
        ``'extra'``: the poison set is drawn from ``extra_32x32.mat`` (the
        paper); ``'jitter'``: from a kernel density around the training
        images, for when the 1.3 GB ``extra`` file is not at hand.
    quick : bool, default=False
        Toy network and schedule: every step and file in seconds.
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

    Raises
    ------
    FileNotFoundError
        If a needed ``.mat`` file is missing; the message names the path.
    ValueError
        If a file is malformed or holds fewer images than requested.
    """
    random_state = check_common(random_state, n_jobs, device)
    if poison_source not in ("extra", "jitter"):
        raise ValueError(
            "`poison_source` must be 'extra' or 'jitter'. "
            f"Got {poison_source!r} instead."
        )
    settings = make_settings(FULL, QUICK, quick, poison_factors, max_iter, n_directions)
    if subset is not None:
        settings["subset"] = check_positive("subset", subset)
    settings.update(device=str(device), poison_source=poison_source)
    seeds = derive_seeds(
        random_state, ["train", "test", "extra", "network", "directions", "svc"]
    )
    seeds = {"random_state": random_state, **seeds}
    n = settings["subset"]
    # Read the data before creating anything in out: a missing file fails fast.
    X_train, y_train = load_svhn(
        data_dir, "train", subset=n, random_state=seeds["train"]
    )
    X_test, y_test = load_svhn(data_dir, "test", subset=n, random_state=seeds["test"])
    pool = None
    if poison_source == "extra":
        try:
            pool = load_svhn(
                data_dir, "extra", subset=2 * n, random_state=seeds["extra"]
            )
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"{exc} The paper draws the poison set from the extra split; "
                "without it, use poison_source='jitter' (--poison-source jitter)."
            ) from exc
    out = prepare_out(out)
    data = {"X_train": X_train, "y_train": y_train, "X_test": X_test, "y_test": y_test}
    return run_image_sweep(
        "svhn",
        "SVHN",
        out,
        data,
        pool,
        settings,
        seeds,
        n_jobs=n_jobs,
        device=device,
        verbose=verbose,
    )
