"""Analyzers and grid searches on a real dask.distributed cluster."""

import numpy as np
import pytest
from joblib import parallel_config
from numpy.testing import assert_array_equal

from flatgen import BasinAnalyzer, PoisonedMLPClassifier

from .conftest import blobs

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with distributed.Client(cluster) as client:
        yield client
    cluster.close()


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
