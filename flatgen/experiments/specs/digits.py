"""The poison sweep on a real image set that ships with scikit-learn: 8x8 digits."""

from .._spec import ExperimentSpec
from ._images import (
    FIGURES,
    MEASURED_FULL,
    MEASURED_QUICK,
    MEASURES,
    cnn_network,
    digits_split,
    svc_on_pixels,
)

# 1,797 images: a training set, a test set, and the rest as the poison pool
# (fresh images of the training distribution, as SVHN's extra split is in
# the paper). A small CNN keeps the full run to minutes on a 2-core CPU.
FULL = {
    **MEASURED_FULL,
    "n_train": 400,
    "n_test": 500,
    "conv_channels": [8, 16],
    "hidden_layer_sizes": [32],
    "max_iter": 1000,
    "batch_size": None,
    "svc_grid": {"C": [1, 10, 100], "gamma": [0.004, 0.016, 0.064]},
}
QUICK = {
    **FULL,
    **MEASURED_QUICK,
    "n_train": 100,
    "n_test": 100,
    "conv_channels": [4, 8],
    "hidden_layer_sizes": [16],
    "max_iter": 200,
    "max_polish_iter": 50,
    "svc_grid": {"C": [10], "gamma": [0.016]},
}


def load(settings, seeds):
    """Split the digits into training, test and poison-pool images."""
    data = digits_split(settings["n_train"], settings["n_test"], seeds["split"])
    settings["n_poison_pool"] = len(data.pool[1])
    return data


SPEC = ExperimentSpec(
    name="digits",
    help="the poison sweep on scikit-learn's 8x8 digits with a CNN and an SVC",
    description="Poison sweep, log-volume vs generalization gap and an SVC "
    "baseline on scikit-learn's 8x8 digits.",
    full=FULL,
    quick=QUICK,
    seeds=("split", "network", "directions", "svc"),
    load=load,
    network=cnn_network,
    baselines=svc_on_pixels,
    measures=MEASURES,
    figures=FIGURES,
    model_label="CNN",
    sweep_title="8x8 digits, {n_train} training images: CNN vs poison factor",
    volume_title="8x8 digits: basin volume vs generalization gap",
    paper=(
        "Paper (SVHN, CIFAR-10): the generalization gap grows and the log-volume of "
        "the basin shrinks as the poison factor rises; every model fits its "
        "training set."
    ),
)


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
    annealed_cutoffs=None,
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
    annealed_cutoffs : list of float, default=None
        Training cross-entropies (e.g. ``[0.5]``) at which the clean and the
        most poisoned CNN's basin volume is also measured by annealing
        (:class:`~flatgen.AnnealedVolumeEstimator`, four runs of 8 chains
        each), reported with its interval and diagnostics beside the rays'
        estimates and drawn in ``volume_vs_gap.png``. None (the default)
        measures none: on the full preset's CNN (about 3,700 weights, 400
        images) one run took over 41 minutes of one core (its forward leg
        and the start of its backward one), so the four runs of a network
        take one and a half to two hours per cutoff on 2 CPU cores (see the
        volume page of the user guide).
    verbose : int, default=1
        Progress bars when positive.

    Returns
    -------
    result : ExperimentResult
        The numbers, as saved in ``summary.json``.
    """
    arguments = dict(locals())  # exactly the parameters, before any other name
    from .._experiment import run_shipped

    return run_shipped(SPEC, arguments)
