"""Grid searches and analyzers on a real dask.distributed cluster, faults included.

The cluster has two worker *processes* (each behind a nanny, which restarts
its worker when the process dies), one thread each. Killing a worker with
SIGKILL while it runs tasks makes the scheduler reschedule the tasks it had
(on the surviving worker or on the restarted one); since every task is
seeded, the results equal an undisturbed run's.
"""

import os
import signal
from contextlib import contextmanager

import numpy as np
import pytest
from joblib import parallel_config
from numpy.testing import assert_array_equal
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from flatgen import BasinAnalyzer, PoisonedMLPClassifier, make_spirals

from .conftest import blobs

distributed = pytest.importorskip("distributed")

GRID = {"poison_factor": [0.0, 1.0]}


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with distributed.Client(cluster) as client:
        yield client
    cluster.close()


def _search(n_jobs, cv=2):
    clf = PoisonedMLPClassifier((8, 8), max_iter=150, random_state=0)
    return GridSearchCV(clf, GRID, cv=cv, n_jobs=n_jobs, refit=False)


@pytest.fixture(scope="module")
def spiral_data():
    # 130 samples per fold: the folds' index arrays exceed joblib's 1 kB
    # threshold for scattering, as in real use.
    return make_spirals(260, random_state=0)


@pytest.fixture(scope="module")
def serial_search(spiral_data):
    return _search(n_jobs=1).fit(*spiral_data)


def _scores(search):
    return {
        key: value
        for key, value in search.cv_results_.items()
        if key.endswith("test_score") or key == "params"
    }


def assert_same_scores(a, b):
    scores_a, scores_b = _scores(a), _scores(b)
    assert scores_a.keys() == scores_b.keys()
    for key in scores_a:
        assert_array_equal(scores_a[key], scores_b[key], err_msg=key)


class KillOnSecondTask(distributed.WorkerPlugin):
    """The first worker to start its second joblib task SIGKILLs its process.

    The kill thus lands in the middle of the run, at a known point: the
    worker is executing a task, and the result of its first task may not
    have been fetched yet. A file created with ``O_EXCL`` lets exactly one
    worker process do it; the replacement its nanny starts finds the file
    and carries on.
    """

    name = "kill-on-second-task"

    def __init__(self, flag):
        self.flag = str(flag)
        self.started = 0

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing" or "batch_of_" not in str(key):
            return
        self.started += 1
        if self.started < 2:
            return
        try:
            fd = os.open(self.flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, f"{os.getpid()} {key}".encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def one_worker_killed_mid_run(client, folder):
    """Run the block while one worker process is killed mid-run; check it was."""
    client.wait_for_workers(2, timeout=120)
    pids = client.run(os.getpid)
    flag = folder / "killed"
    client.register_plugin(KillOnSecondTask(flag))
    try:
        yield
    finally:
        client.unregister_worker_plugin(KillOnSecondTask.name)
    assert flag.exists(), "no worker was killed"
    killed_pid, key = flag.read_text().split(maxsplit=1)
    assert int(killed_pid) in pids.values() and key.startswith("batch_of_")
    # The nanny replaced the dead process: two workers again, one new pid.
    client.wait_for_workers(2, timeout=120)
    new_pids = client.run(os.getpid)
    assert int(killed_pid) not in new_pids.values()


# Rarely, a joblib batch of a killed worker is cancelled as "already
# forgotten" although every argument was scattered to both workers (seen
# once, in one pass of a CI run, after many clean passes; the race lies in
# joblib's dask backend and distributed, not in flatgen, and
# docs/scaling.md says so). The kill is then tried afresh, a bounded number
# of times: every attempt kills a worker, and the run that completes must
# give exactly the undisturbed results.
_KILL_ATTEMPTS = 3


def run_with_a_worker_killed(client, folder, run):
    """Return ``run()`` completed while a worker was killed mid-run."""
    for attempt in range(_KILL_ATTEMPTS):
        attempt_folder = folder / f"attempt{attempt}"
        attempt_folder.mkdir()
        try:
            with one_worker_killed_mid_run(client, attempt_folder):
                return run()
        except distributed.client.FutureCancelledError as error:
            if "already forgotten" not in str(error):
                raise
            if attempt == _KILL_ATTEMPTS - 1:
                raise
            client.wait_for_workers(2, timeout=120)


def test_grid_search_on_dask_matches_n_jobs_1(client, spiral_data, serial_search):
    client.wait_for_workers(2, timeout=120)
    with distributed.get_task_stream(client) as stream, parallel_config(backend="dask"):
        search = _search(n_jobs=-1).fit(*spiral_data)
    assert_same_scores(serial_search, search)
    # The fits ran as tasks of the cluster (read from its task stream, not
    # from the worker list afterwards, which a nanny restart can empty).
    assert len(stream.data) >= 4
    # The search really trained models: better than chance on two classes.
    assert np.all(search.cv_results_["mean_test_score"] > 0.55)


def test_grid_search_survives_a_killed_worker(
    client, spiral_data, serial_search, tmp_path
):
    X, y = spiral_data
    # joblib scatters arguments over 1 kB (the data, the folds' indices) to
    # one worker only, and data that dies with its worker cannot be
    # recomputed. scatter= puts them on every worker, so the tasks of the
    # killed worker can rerun elsewhere (see docs/scaling.md).
    folds = list(StratifiedKFold(2).split(X, y))
    arrays = [X, y] + [index for fold in folds for index in fold]
    assert all(index.nbytes > 1000 for index in arrays[2:])

    def search():
        with parallel_config(backend="dask", scatter=arrays):
            return _search(n_jobs=-1, cv=folds).fit(X, y)

    assert_same_scores(
        serial_search, run_with_a_worker_killed(client, tmp_path, search)
    )


@pytest.fixture(scope="module")
def analysis_case():
    X, y = make_spirals(120, random_state=1)
    clf = PoisonedMLPClassifier((8, 8), max_iter=200, random_state=0).fit(X, y)
    # Copies of the data make each chunk of directions take a moment, so the
    # surviving worker is still busy when the other one dies.
    X_big, y_big = np.tile(X, (5, 1)), np.tile(y, 5)
    params = {
        "n_directions": 640,
        "cutoff": 2,
        "cutoff_type": "relative",
        "n_profiles": 0,
        "random_state": 0,
    }
    serial = BasinAnalyzer(**params).fit(clf, X_big, y_big)
    return clf, X_big, y_big, params, serial


def test_analysis_survives_a_killed_worker(client, analysis_case, tmp_path):
    clf, X, y, params, serial = analysis_case

    def analyze():
        with parallel_config(backend="dask"):
            return BasinAnalyzer(**params, n_jobs=-1).fit(clf, X, y)

    basin = run_with_a_worker_killed(client, tmp_path, analyze)
    assert_array_equal(basin.radii_, serial.radii_)
    assert basin.n_evaluations_ == serial.n_evaluations_


def test_dask_backend_gives_the_same_radii(client):
    client.wait_for_workers(2, timeout=120)
    X, y = blobs(n_samples=60, n_classes=2)
    clf = PoisonedMLPClassifier(hidden_layer_sizes=(8, 8), max_iter=200, random_state=0)
    clf.fit(X, y)
    params = {"n_directions": 300, "cutoff": 2, "cutoff_type": "relative"}
    local = BasinAnalyzer(**params, random_state=0).fit(clf, X, y)
    with parallel_config(backend="dask"):
        remote = BasinAnalyzer(**params, random_state=0, n_jobs=-1).fit(clf, X, y)
    assert_array_equal(local.radii_, remote.radii_)
    assert len(client.scheduler_info()["workers"]) == 2
    assert np.all(remote.radii_ > 0)


def test_study_on_a_dask_cluster_equals_the_local_run(client, tmp_path):
    from flatgen.experiments import run_experiment

    from .test_experiments import TINY_CNNS, numbers, read, tiny_study

    # Both families: the CNNs carry their own data (the digits) to the workers.
    spec = tiny_study(n_bootstrap=20, **TINY_CNNS)
    run_experiment(spec, tmp_path / "local", quick=True, verbose=0)
    with distributed.get_task_stream(client) as stream, parallel_config(backend="dask"):
        remote = run_experiment(spec, tmp_path / "dask", quick=True, verbose=0)
    # The MLPs' batched fit, the 4 CNN fits and every measurement (the zoo
    # and the learning coefficient of 8 models) ran as tasks of the cluster.
    assert len(remote.steps["computed"]) == 21 and len(stream.data) >= 21
    assert len(remote.study["families"]) == 2
    assert numbers(read(tmp_path / "dask")) == numbers(read(tmp_path / "local"))


def test_annealed_volume_on_a_dask_cluster_equals_n_jobs_1(client):
    import warnings

    from flatgen import AnnealedVolumeEstimator

    client.wait_for_workers(2, timeout=120)
    X, y = make_spirals(60, random_state=0)
    clf = PoisonedMLPClassifier(hidden_layer_sizes=(6,), max_iter=300, random_state=0)
    clf.fit(X, y)
    params = {
        "cutoff": 2.0,
        "cutoff_type": "relative",
        "n_runs": 2,
        "n_chains": 4,
        "n_steps": 4,
        "n_leapfrog": 4,
        "stone_spread": 2.0,
        "random_state": 0,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = AnnealedVolumeEstimator(**params, n_jobs=1).fit(clf, X, y)
        with (
            distributed.get_task_stream(client) as stream,
            parallel_config(backend="dask"),
        ):
            remote = AnnealedVolumeEstimator(**params, n_jobs=-1).fit(clf, X, y)
    # Each run (its own seed stream) was a task of the cluster.
    assert len(stream.data) >= 2
    assert_array_equal(remote.log10_volume_, local.log10_volume_)
    assert_array_equal(remote.log10_volume_ci_, local.log10_volume_ci_)
