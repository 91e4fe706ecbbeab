"""The paper's SVHN setting, scaled to a CPU by a subset of each split."""

from .._spec import ExperimentData, ExperimentSpec, Option
from ._images import (
    FIGURES,
    MEASURED_FULL,
    MEASURED_QUICK,
    MEASURES,
    cnn_network,
    svc_on_pixels,
)

FULL = {
    **MEASURED_FULL,
    "subset": 1000,
    "poison_source": "extra",
    "conv_channels": [16, 32],
    "hidden_layer_sizes": [64],
    "max_iter": 300,
    "batch_size": 128,
    "svc_grid": {"C": [1, 10, 100], "gamma": [0.00025, 0.001, 0.004]},
}
QUICK = {
    **FULL,
    **MEASURED_QUICK,
    "subset": 100,
    "conv_channels": [4, 8],
    "hidden_layer_sizes": [16],
    "max_iter": 100,
    "max_polish_iter": 20,
    "batch_size": None,
    "svc_grid": {"C": [10], "gamma": [0.001]},
}


def load(settings, seeds, *, data_dir, subset=None, poison_source="extra"):
    """Read a seeded subset of each split; the poison pool from ``extra``."""
    from ...datasets import load_svhn
    from .._runner import check_positive

    if poison_source not in ("extra", "jitter"):
        raise ValueError(
            "`poison_source` must be 'extra' or 'jitter'. "
            f"Got {poison_source!r} instead."
        )
    if subset is not None:
        settings["subset"] = check_positive("subset", subset)
    settings["poison_source"] = poison_source
    n = settings["subset"]
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
    return ExperimentData(X_train, y_train, X_test, y_test, pool=pool)


SPEC = ExperimentSpec(
    name="svhn",
    help="the paper's SVHN setting from the standard .mat files",
    description="The SVHN poison sweep from train_32x32.mat, test_32x32.mat and "
    "extra_32x32.mat (the poison set). Nothing is downloaded.",
    full=FULL,
    quick=QUICK,
    seeds=("train", "test", "extra", "network", "directions", "svc"),
    load=load,
    network=cnn_network,
    baselines=svc_on_pixels,
    measures=MEASURES,
    figures=FIGURES,
    model_label="CNN",
    sweep_title="SVHN, {n_train} training images: CNN vs poison factor",
    volume_title="SVHN: basin volume vs generalization gap",
    paper=(
        "Paper (SVHN, ResNet-18, full data, extra split as poison): 100 % training "
        "accuracy for all, test accuracy about 97 % clean vs 29 % poisoned."
    ),
    options=(
        Option(
            "data_dir",
            "folder holding train_32x32.mat, test_32x32.mat and extra_32x32.mat",
            required=True,
        ),
        Option(
            "subset",
            "training and test images drawn from the files (default: 1000, "
            "100 with --quick)",
            positive_int=True,
        ),
        Option(
            "poison_source",
            "draw the poison set from the extra split (the paper) or around the "
            "training images",
            default="extra",
            choices=("extra", "jitter"),
        ),
    ),
)


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
    annealed_cutoffs=None,
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
    annealed_cutoffs : list of float, default=None
        Training cross-entropies (e.g. ``[0.5]``) at which the clean and the
        most poisoned CNN's basin volume is also measured by annealing
        (:class:`~flatgen.AnnealedVolumeEstimator`, four runs of 8 chains
        each), reported with its interval and diagnostics beside the rays'
        estimates and drawn in ``volume_vs_gap.png``. None (the default)
        measures none: on the digits experiment's smaller CNN one run took
        over 41 minutes of one core, so expect hours per network and cutoff
        on a CPU (see the volume page of the user guide).
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
    arguments = dict(locals())  # exactly the parameters, before any other name
    from .._experiment import run_shipped

    return run_shipped(SPEC, arguments)
