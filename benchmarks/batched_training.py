"""Many networks at once: BatchedPoisonFitter vs one-by-one fits, side by side.

The grid of the measure study on the swiss roll (200 training and 200 test
points): the paper's MLP (2-17-18-32-32-31-9-2) at poison factors 0, 0.1,
0.3 and 1 with several seeds, Adam at 0.01 (cosine), 400 jitter poison
points per step, the polish of every fit, one torch thread. Each repeat fits
the grid one model at a time and then as one batch (interleaved), and prints
models per second of both and their ratio (target: >= 3x); then the test
accuracy of every model of both ways, per poison factor, with a two-sided
Mann-Whitney test (same objective, schedule and seeds: the distributions
should agree; they are not bit-identical).

    python benchmarks/batched_training.py [--steps 3000] [--seeds 4] [--repeats 2]
        [--hidden 32 32 32 32]
"""

import argparse
import time
import warnings

import numpy as np
import torch
from scipy.stats import mannwhitneyu
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from flatgen import BatchedPoisonFitter, PoisonedMLPClassifier, make_spirals

FACTORS = (0.0, 0.1, 0.3, 1.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=[17, 18, 32, 32, 31, 9],
        help="hidden layer sizes (default: the paper's MLP)",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    X, y = make_spirals(400, noise=0.5, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, train_size=200, random_state=0, stratify=y
    )
    template = PoisonedMLPClassifier(
        tuple(args.hidden),
        solver="adam",
        learning_rate_init=0.01,
        max_iter=args.steps,
        n_threads=1,
    )
    grid = [
        clone(template).set_params(poison_factor=f, random_state=s)
        for f in FACTORS
        for s in range(args.seeds)
    ]
    one_by_one, batched, fitted = [], [], {}
    for _ in range(args.repeats):
        start = time.perf_counter()
        fitted["one by one"] = [clone(m).fit(X_train, y_train) for m in grid]
        one_by_one.append(time.perf_counter() - start)
        start = time.perf_counter()
        fitter = BatchedPoisonFitter(grid, n_threads=1).fit(X_train, y_train)
        fitted["batched"] = fitter.estimators_
        batched.append(time.perf_counter() - start)
    n = len(grid)
    a, b = min(one_by_one), min(batched)
    print(
        f"{n} models (MLP 2-{'-'.join(map(str, args.hidden))}-2, {args.steps} Adam "
        "steps + polish, 1 thread), best "
        f"of {args.repeats}: one by one {n / a:.3f} models/s ({a:.1f} s), batched "
        f"{n / b:.3f} models/s ({b:.1f} s): {a / b:.2f}x"
    )
    print("\ntest accuracy per poison factor (mean, and each seed):")
    for f in FACTORS:
        rows = {}
        for way, models in fitted.items():
            rows[way] = [
                m.score(X_test, y_test) for m in models if m.poison_factor == f
            ]
        train = {
            way: [m.train_accuracy_ for m in models if m.poison_factor == f]
            for way, models in fitted.items()
        }
        p = mannwhitneyu(rows["one by one"], rows["batched"]).pvalue
        for way in rows:
            print(
                f"  beta={f:g} {way:>10}: {np.mean(rows[way]):.3f} "
                f"{np.round(rows[way], 3).tolist()} train "
                f"{np.round(train[way], 3).tolist()}"
            )
        print(f"  beta={f:g} Mann-Whitney p = {p:.2f}")


if __name__ == "__main__":
    main()
