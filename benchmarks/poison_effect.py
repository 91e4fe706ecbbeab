"""The paper's toy effect: train/test accuracy of the swiss roll vs poison factor.

Default hyperparameters, ``make_spirals(400, noise=0.5)`` split 200/200,
``fit(X_train, y_train)`` with nothing else (``--source jitter``, the default
poison source) or with ``poison_source=SpiralSampler()`` (``--source spiral``),
several data seeds; the default seeds 10-14 were never used to choose
settings. Prints one row per (seed, poison factor) with train and test
accuracy and the seconds each fit took, then mean/min/max test accuracy per
poison factor.

    python benchmarks/poison_effect.py [--seeds 10 11 12 13 14]
        [--factors 0 0.1 0.3 1] [--source jitter spiral] [--n-jobs 2]
"""

import argparse
import time

import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import train_test_split

from flatgen import PoisonedMLPClassifier, SpiralSampler, make_spirals


def run_one(seed, poison_factor, source, params):
    X, y = make_spirals(400, noise=0.5, random_state=seed)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, train_size=200, random_state=seed, stratify=y
    )
    if source == "spiral":
        params = dict(params, poison_source=SpiralSampler(noise=0.5))
    clf = PoisonedMLPClassifier(
        poison_factor=poison_factor, random_state=seed, **params
    )
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    return {
        "seed": seed,
        "source": source,
        "poison_factor": poison_factor,
        "train": clf.score(X_train, y_train),
        "test": clf.score(X_test, y_test),
        "seconds": seconds,
        "polish": clf.n_polish_iter_,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12, 13, 14])
    parser.add_argument(
        "--source",
        nargs="+",
        choices=["jitter", "spiral"],
        default=["jitter", "spiral"],
    )
    parser.add_argument("--factors", type=float, nargs="+", default=[0, 0.1, 0.3, 1])
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--max-iter", type=int, default=None)
    args = parser.parse_args()
    params = {} if args.max_iter is None else {"max_iter": args.max_iter}
    # At poison factor 0 no poison is drawn: one run serves every source.
    jobs = [
        (s, b, src)
        for src in args.source
        for b in args.factors
        for s in args.seeds
        if b > 0 or src == args.source[0]
    ]
    rows = Parallel(n_jobs=args.n_jobs)(
        delayed(run_one)(s, b, src, params) for s, b, src in jobs
    )
    print(
        f"{'source':>6} {'seed':>4} {'beta':>5} {'train':>6} {'test':>6} "
        f"{'fit s':>6} {'polish':>6}"
    )
    for r in rows:
        print(
            f"{r['source']:>6} {r['seed']:>4} {r['poison_factor']:>5g} "
            f"{r['train']:>6.3f} {r['test']:>6.3f} {r['seconds']:>6.1f} "
            f"{r['polish']:>6}"
        )
    print("\nmean over seeds")
    for src, beta in [(src, b) for src in args.source for b in args.factors]:
        sel = [
            r
            for r in rows
            if r["poison_factor"] == beta and (r["source"] == src or beta == 0)
        ]
        print(
            f"{src:<6} beta={beta:<5g} "
            f"train={np.mean([r['train'] for r in sel]):.3f} "
            f"test={np.mean([r['test'] for r in sel]):.3f} "
            f"(min {min(r['test'] for r in sel):.3f}, max "
            f"{max(r['test'] for r in sel):.3f}) "
            f"max fit {max(r['seconds'] for r in sel):.1f} s"
        )


if __name__ == "__main__":
    main()
