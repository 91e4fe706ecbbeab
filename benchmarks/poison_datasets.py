"""Poisoned training across data sets: does it fit, does it poison, does it warn?

Default ``PoisonedMLPClassifier`` settings (``fit(X, y)`` alone, the paper's
network, 40,000 full-batch SGD steps) on eight data sets, each split in half
(stratified, seed 0):

- ``swiss roll``: ``make_spirals(400, noise=0.5)``, raw coordinates;
- ``moons``: ``make_moons(400, noise=0.3)``, classes overlap;
- ``two blobs``: ``make_classification(400, 2 features, class_sep=0.6,
  flip_y=0.05)``, heavily overlapping with label noise;
- ``iris``: raw, 3 classes;
- ``wine raw`` / ``wine std``: 3 classes, 13 features, raw (features from 0.1
  to 1,680) and standardized;
- ``breast cancer std``: 30 standardized features, overlapping classes;
- ``digits``: the 8x8 digits as 64 features scaled to [0, 1], 10 classes
  (10,000 steps instead of 40,000: 899 training rows and twice as many
  poison points per step make each step ~10x the others').

For each: poison factor 0, then 1 with the default ``poison_labels='vote'``
and 1 with ``'source'`` (flatgen 0.1's rule). Prints train/test accuracy,
fit seconds and the warnings raised (``collapsed``, ``unfitted``), then
checks that no model is constant without a warning.

    python benchmarks/poison_datasets.py [--n-jobs 2] [--max-iter N]
        [--datasets moons iris]
"""

import argparse
import time
import warnings

from joblib import Parallel, delayed
from sklearn.datasets import (
    load_breast_cancer,
    load_digits,
    load_iris,
    load_wine,
    make_classification,
    make_moons,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from flatgen import PoisonedMLPClassifier, make_spirals


def _standardized(X):
    return StandardScaler().fit_transform(X)


DATASETS = {
    "swiss roll": lambda: make_spirals(400, noise=0.5, random_state=0),
    "moons": lambda: make_moons(400, noise=0.3, random_state=0),
    "two blobs": lambda: make_classification(
        400,
        n_features=2,
        n_redundant=0,
        n_informative=2,
        n_clusters_per_class=1,
        class_sep=0.6,
        flip_y=0.05,
        random_state=0,
    ),
    "iris": lambda: load_iris(return_X_y=True),
    "wine raw": lambda: load_wine(return_X_y=True),
    "wine std": lambda: (_standardized(load_wine().data), load_wine().target),
    "breast cancer std": lambda: (
        _standardized(load_breast_cancer().data),
        load_breast_cancer().target,
    ),
    "digits": lambda: (load_digits().data / 16.0, load_digits().target),
}
RUNS = [
    ("beta=0", 0.0, "vote"),
    ("beta=1 vote", 1.0, "vote"),
    ("beta=1 source", 1.0, "source"),
]


def run_one(name, label, poison_factor, poison_labels, max_iter):
    X, y = DATASETS[name]()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, train_size=0.5, random_state=0, stratify=y
    )
    params = {} if max_iter is None else {"max_iter": max_iter}
    if name == "digits" and max_iter is None:
        params["max_iter"] = 10000
    clf = PoisonedMLPClassifier(
        poison_factor=poison_factor,
        poison_labels=poison_labels,
        random_state=0,
        **params,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        clf.fit(X_train, y_train)
        seconds = time.perf_counter() - start
    proba = clf.predict_proba(X_train)
    spread = float((proba.max(axis=0) - proba.min(axis=0)).max())
    messages = [str(w.message) for w in caught if w.category is ConvergenceWarning]
    flags = []
    if any("collapsed" in m for m in messages):
        flags.append("collapsed")
    elif messages:
        flags.append("unfitted")
    return {
        "data": name,
        "run": label,
        "train": clf.score(X_train, y_train),
        "test": clf.score(X_test, y_test),
        "seconds": seconds,
        "spread": spread,
        "warned": ",".join(flags) or "-",
        "constant": spread < 0.01,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--max-iter", type=int, default=None)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    args = parser.parse_args()
    jobs = [(d, *run) for d in args.datasets for run in RUNS]
    rows = Parallel(n_jobs=args.n_jobs)(
        delayed(run_one)(d, label, beta, labels, args.max_iter)
        for d, label, beta, labels in jobs
    )
    print(
        f"{'data set':<18} {'run':<14} {'train':>6} {'test':>6} {'fit s':>6} "
        f"{'spread':>7}  warnings"
    )
    for r in rows:
        print(
            f"{r['data']:<18} {r['run']:<14} {r['train']:>6.3f} {r['test']:>6.3f} "
            f"{r['seconds']:>6.1f} {r['spread']:>7.3f}  {r['warned']}"
        )
    silent_constant = [r for r in rows if r["constant"] and r["warned"] == "-"]
    print(
        f"\nconstant models without a warning: {len(silent_constant)}"
        + "".join(f"\n  {r['data']} {r['run']}" for r in silent_constant)
    )


if __name__ == "__main__":
    main()
