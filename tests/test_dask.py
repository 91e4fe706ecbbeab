"""Grid searches and analyzers on a real dask.distributed cluster, faults included.

The cluster has two worker *processes* (each behind a nanny, which restarts
its worker when the process dies), one thread each. Killing a worker with
SIGKILL while it runs tasks makes the scheduler reschedule the tasks it had
(on the surviving worker or on the restarted one); since every task is
seeded, the results equal an undisturbed run's.
"""

import os
import signal
import threading
import time

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


class WorkerKiller(threading.Thread):
    """SIGKILL one worker process once it is running tasks, ``delay`` s in.

    Records the killed worker's address and pid, the tasks the scheduler had
    assigned to it at that moment, and when it was killed.
    """

    def __init__(self, client, delay):
        super().__init__(daemon=True)
        self.client, self.delay = client, delay
        self.pids = client.run(os.getpid)
        self.killed = None
        self.error = None

    def _busy_worker(self):
        for address, keys in self.client.processing().items():
            if keys and address in self.pids:
                return address, keys
        return None

    def run(self):
        try:
            deadline = time.monotonic() + 120
            while self._busy_worker() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError("no worker received a task")
                time.sleep(0.05)
            time.sleep(self.delay)
            busy = None
            while busy is None:
                busy = self._busy_worker()
                time.sleep(0.05)
            address, keys = busy
            os.kill(self.pids[address], signal.SIGKILL)
            self.killed = (address, self.pids[address], list(keys), time.monotonic())
        except Exception as exc:  # reported by check()
            self.error = exc

    def check(self, finished_at):
        """Assert a worker was killed with tasks, before the run finished."""
        self.join(timeout=30)
        assert self.error is None, self.error
        assert self.killed is not None
        address, pid, keys, killed_at = self.killed
        assert keys and killed_at < finished_at
        # The nanny replaces the dead process: two workers again, new pids.
        self.client.wait_for_workers(2, timeout=120)
        new_pids = self.client.run(os.getpid)
        assert pid not in new_pids.values() and len(new_pids) == 2


def test_grid_search_on_dask_matches_n_jobs_1(client, spiral_data, serial_search):
    with parallel_config(backend="dask"):
        search = _search(n_jobs=-1).fit(*spiral_data)
    assert_same_scores(serial_search, search)
    assert len(client.scheduler_info()["workers"]) == 2
    # The search really trained models: better than chance on two classes.
    assert np.all(search.cv_results_["mean_test_score"] > 0.55)


def test_grid_search_survives_a_killed_worker(client, spiral_data, serial_search):
    X, y = spiral_data
    # joblib scatters arguments over 1 kB (the data, the folds' indices) to
    # one worker only, and data that dies with its worker cannot be
    # recomputed. scatter= puts them on every worker, so the tasks of the
    # killed worker can rerun elsewhere (see docs/scaling.md).
    folds = list(StratifiedKFold(2).split(X, y))
    arrays = [X, y] + [index for fold in folds for index in fold]
    assert all(index.nbytes > 1000 for index in arrays[2:])
    killer = WorkerKiller(client, delay=0.5)
    killer.start()
    with parallel_config(backend="dask", scatter=arrays):
        search = _search(n_jobs=-1, cv=folds).fit(X, y)
    killer.check(finished_at=time.monotonic())
    assert_same_scores(serial_search, search)


@pytest.fixture(scope="module")
def analysis_case():
    X, y = make_spirals(120, random_state=1)
    clf = PoisonedMLPClassifier((8, 8), max_iter=200, random_state=0).fit(X, y)
    # Copies of the data make each chunk of directions slow enough (about
    # half a second) for a worker to die in the middle of one.
    X_big, y_big = np.tile(X, (20, 1)), np.tile(y, 20)
    params = {
        "n_directions": 640,
        "cutoff": 2,
        "cutoff_type": "relative",
        "n_profiles": 0,
        "random_state": 0,
    }
    serial = BasinAnalyzer(**params).fit(clf, X_big, y_big)
    return clf, X_big, y_big, params, serial


def test_analysis_survives_a_killed_worker(client, analysis_case):
    clf, X, y, params, serial = analysis_case
    killer = WorkerKiller(client, delay=0.3)
    killer.start()
    with parallel_config(backend="dask"):
        basin = BasinAnalyzer(**params, n_jobs=-1).fit(clf, X, y)
    killer.check(finished_at=time.monotonic())
    assert_array_equal(basin.radii_, serial.radii_)
    assert basin.n_evaluations_ == serial.n_evaluations_


def test_dask_backend_gives_the_same_radii(client):
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
