import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest
import torch
from sklearn.model_selection import train_test_split

from flatgen import PoisonedMLPClassifier, SpiralSampler, make_spirals

# One step-signing key for the whole run, outside the user's cache: set before
# any joblib worker starts, so workers (which sign) and the main process
# (which verifies) use the same key.
# The folder goes when the run ends: one per run would otherwise pile up.
# Processes the run starts (dask workers unpickling a test's function import
# this file too) inherit the environment: they keep the run's folder rather
# than make one of their own, which nothing would remove (they end without
# running atexit hooks) and whose fresh key the main process would not know.
_KEY_FOLDER = os.environ.get("FLATGEN_TEST_KEY_FOLDER")
if _KEY_FOLDER is None:
    _KEY_FOLDER = tempfile.mkdtemp(prefix="flatgen-test-key-")
    atexit.register(shutil.rmtree, _KEY_FOLDER, ignore_errors=True)
    os.environ["FLATGEN_TEST_KEY_FOLDER"] = _KEY_FOLDER
os.environ["FLATGEN_STEP_KEY_FILE"] = os.path.join(_KEY_FOLDER, "step-signing.key")


# What `pytest -m "not slow"` leaves out (marked here or with @pytest.mark.slow):
# tests that take a second or more on a 2-core CPU, tests sharing a fixture
# that does (a long fit, a dask cluster, a whole experiment run), and the
# docstring examples that fit a model. Measured with --durations=0; .ci/run
# runs everything.
SLOW_FIXTURES = {"clean_and_poisoned", "client", "reference"}
SLOW_DOCTESTS = {
    "flatgen.analyzers._basin.BasinAnalyzer",
    "flatgen.analyzers._curvature.CurvatureAnalyzer",
    "flatgen.analyzers._norms.NormAnalyzer",
    "flatgen.analyzers._path.PerturbationPath",
    "flatgen.analyzers._sharpness.PACBayesAnalyzer",
    "flatgen.analyzers._sharpness.SharpnessAnalyzer",
    "flatgen.analyzers._slices.LossSlice",
    "flatgen.analyzers._volume.VolumeEstimator",
    "flatgen.analyzers._sharpness.WorstCaseFlatnessAnalyzer",
    "flatgen.estimators._batched.BatchedPoisonFitter",
    "flatgen.estimators._mlp.PoisonedMLPClassifier",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        slow_fixture = SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
        # sklearn's training checks fit a network several times each.
        slow_check = "check_classifiers_train" in item.name
        if slow_fixture or slow_check or item.name in SLOW_DOCTESTS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def spirals():
    X, y = make_spirals(200, noise=0.5, random_state=0)
    return train_test_split(X, y, train_size=100, random_state=0, stratify=y)


@pytest.fixture(scope="session")
def clean_and_poisoned(spirals):
    """The paper's pair on the swiss roll: poison factor 0 and 1, fitted once.

    Shared by the tests of the paper's effects (test accuracy, margins): the
    two 4,000-step fits are among the suite's slowest work. Read only.
    """
    X_train, _, y_train, _ = spirals
    return {
        beta: PoisonedMLPClassifier(
            max_iter=4000,
            poison_factor=beta,
            poison_source=SpiralSampler(noise=0.5),
            random_state=0,
        ).fit(X_train, y_train)
        for beta in (0.0, 1.0)
    }


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def blobs(n_samples=120, n_classes=3, seed=0):
    rng = np.random.RandomState(seed)
    centers = rng.uniform(-5, 5, size=(n_classes, 2))
    y = np.arange(n_samples) % n_classes
    return centers[y] + 0.5 * rng.standard_normal((n_samples, 2)), y
