"""The paper's toy effect: train/test accuracy of the swiss roll vs poison factor.

Default hyperparameters, ``make_spirals(400, noise=0.5)`` split 200/200,
``fit(X_train, y_train)`` with nothing else, several data seeds. Prints one row
per (seed, poison factor) with train and test accuracy and the seconds each fit
took, then the mean test accuracy per poison factor.

    python benchmarks/poison_effect.py [--seeds 0 1 2] [--factors 0 0.1 0.3 1]
        [--n-jobs 2]
"""

import argparse
import time

import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import train_test_split

from flatgen import PoisonedMLPClassifier, make_spirals


def run_one(seed, poison_factor, params):
    X, y = make_spirals(400, noise=0.5, random_state=seed)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, train_size=200, random_state=seed, stratify=y
    )
    clf = PoisonedMLPClassifier(
        poison_factor=poison_factor, random_state=seed, **params
    )
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    return {
        "seed": seed,
        "poison_factor": poison_factor,
        "train": clf.score(X_train, y_train),
        "test": clf.score(X_test, y_test),
        "seconds": seconds,
        "polish": clf.n_polish_iter_,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--factors", type=float, nargs="+", default=[0, 0.1, 0.3, 1])
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--max-iter", type=int, default=None)
    args = parser.parse_args()
    params = {} if args.max_iter is None else {"max_iter": args.max_iter}
    jobs = [(s, b) for s in args.seeds for b in args.factors]
    rows = Parallel(n_jobs=args.n_jobs)(delayed(run_one)(s, b, params) for s, b in jobs)
    print(
        f"{'seed':>4} {'beta':>5} {'train':>6} {'test':>6} {'fit s':>6} {'polish':>6}"
    )
    for r in rows:
        print(
            f"{r['seed']:>4} {r['poison_factor']:>5g} {r['train']:>6.3f} "
            f"{r['test']:>6.3f} {r['seconds']:>6.1f} {r['polish']:>6}"
        )
    print("\nmean over seeds")
    for beta in args.factors:
        sel = [r for r in rows if r["poison_factor"] == beta]
        print(
            f"beta={beta:<5g} train={np.mean([r['train'] for r in sel]):.3f} "
            f"test={np.mean([r['test'] for r in sel]):.3f} "
            f"(min {min(r['test'] for r in sel):.3f}, max "
            f"{max(r['test'] for r in sel):.3f}) "
            f"max fit {max(r['seconds'] for r in sel):.1f} s"
        )


if __name__ == "__main__":
    main()
