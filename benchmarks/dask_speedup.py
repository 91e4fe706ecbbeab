"""Wall time of one grid search: n_jobs=1 vs a 2-worker dask.distributed cluster.

The search fits ``PoisonedMLPClassifier`` (the paper's swiss-roll network)
for every poison factor and CV fold, once with ``n_jobs=1`` in this process
and once under ``joblib.parallel_config(backend="dask")`` on a
``LocalCluster`` of two worker processes with one thread each. It prints
both wall times, their ratio, the cluster's start-up time (paid once per
session, reported separately) and checks that the scores are identical.

What limits the speed-up on a 2-core machine:

- Two workers can at best halve the time, and only when the fits divide
  evenly: 3 poison factors x 3 folds = 9 equal fits take 5 rounds on 2
  workers, a ceiling of 9/5 = 1.8x.
- A fit is a sequence of tiny optimizer steps (about half a millisecond at
  the paper's widths): it cannot be split further, and one torch thread per
  worker is all a step can use (more threads per fit do not speed up these
  tiny matmuls, they only oversubscribe the cores).
- Each worker process imports torch and flatgen and warms up its first fit;
  each task ships a pickled estimator and the data. These fixed costs are
  seconds, noticeable next to fits of a few seconds.
- Both workers compete with everything else on the machine (this process's
  scheduler and client threads included). The 1-minute load average is
  printed before each timing: above 2 the machine is shared and the ratio is
  unreliable either way. Other processes take time from the workers, but
  the operating system also gives two worker processes twice the share of a
  contended CPU that the single n_jobs=1 process gets, which flatters dask.

Run: ``python benchmarks/dask_speedup.py [--max-iter 4000] [--cv 3]``.
"""

import argparse
import os
import time

import numpy as np
from joblib import parallel_config
from sklearn.model_selection import GridSearchCV

from flatgen import PoisonedMLPClassifier, make_spirals


def search(max_iter, cv, n_jobs):
    clf = PoisonedMLPClassifier(max_iter=max_iter, random_state=0)
    grid = {"poison_factor": [0.0, 0.3, 1.0]}
    return GridSearchCV(clf, grid, cv=cv, n_jobs=n_jobs, refit=False)


def timed(fn):
    load = os.getloadavg()[0]
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start, load


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-iter", type=int, default=4000)
    parser.add_argument("--cv", type=int, default=3)
    args = parser.parse_args()

    import distributed

    X, y = make_spirals(200, noise=0.5, random_state=0)
    n_fits = 3 * args.cv
    print(
        f"{n_fits} fits of {args.max_iter} steps, {os.cpu_count()} CPUs "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    serial, serial_s, serial_load = timed(
        lambda: search(args.max_iter, args.cv, n_jobs=1).fit(X, y)
    )

    start = time.perf_counter()
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster)
    client.run(lambda: __import__("flatgen"))  # import before timing
    startup_s = time.perf_counter() - start
    try:

        def on_dask():
            with parallel_config(backend="dask"):
                return search(args.max_iter, args.cv, n_jobs=-1).fit(X, y)

        remote, dask_s, dask_load = timed(on_dask)
    finally:
        client.close()
        cluster.close()

    same = all(
        np.array_equal(serial.cv_results_[key], remote.cv_results_[key])
        for key in serial.cv_results_
        if key.endswith("test_score")
    )
    print(f"{'setting':<32}{'wall s':>9}{'load avg':>10}")
    print(f"{'n_jobs=1':<32}{serial_s:>9.1f}{serial_load:>10.1f}")
    print(f"{'dask, 2 workers x 1 thread':<32}{dask_s:>9.1f}{dask_load:>10.1f}")
    print(f"cluster start-up (once): {startup_s:.1f} s")
    ceiling = n_fits / -(-n_fits // 2)  # equal fits in rounds of two
    print(
        f"speed-up n_jobs=1 / dask: {serial_s / dask_s:.2f}x "
        f"(ceiling for {n_fits} equal fits on 2 workers: {ceiling:.2f}x)"
    )
    print(f"identical scores: {same}")


if __name__ == "__main__":
    main()
