"""Many networks at once: BatchedPoisonFitter vs one-by-one fits, side by side.

The MLP grid of the measure study (``flatgen study``) at one width: 200
training and 200 test swiss-roll points, 4 x 32 hidden units, poison
factors 0, 0.03, 0.1 and 0.3, learning rates 0.003 and 0.01 (Adam, cosine),
three seeds, 400 jitter poison points per step, the polish of every fit,
one torch thread. Each repeat fits the grid one model at a time, then as
one batch with every model drawing its own poison (as before models of one
seed shared their draws), then as the batched fitter does it (models of one
seed draw their identical poison once), interleaved; it prints models per
second of each way and the ratios (target: >= 3x one by one), and checks
that both batched ways give the same weights bit for bit. Then the test
accuracy of every model, one by one vs batched, per poison factor, with a
two-sided Mann-Whitney test (same objective, schedule and seeds: the
distributions should agree; they are not bit-identical).

    python benchmarks/batched_training.py [--steps 3000] [--seeds 3] [--repeats 2]
        [--hidden 32 32 32 32] [--factors 0 0.03 0.1 0.3]
        [--learning-rates 0.003 0.01]

``--hidden 17 18 32 32 31 9 --factors 0 0.1 0.3 1 --learning-rates 0.01
--seeds 4`` is the paper's MLP.
"""

import argparse
import time
import warnings

import numpy as np
import torch
from scipy.stats import mannwhitneyu
from sklearn.base import clone
from sklearn.model_selection import train_test_split

import flatgen.estimators._batched as batched_module
from flatgen import BatchedPoisonFitter, PoisonedMLPClassifier, make_spirals
from flatgen.poison import JitterSource


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=[32, 32, 32, 32],
        help="hidden layer sizes (default: the study's narrower MLP)",
    )
    parser.add_argument(
        "--factors", type=float, nargs="+", default=[0.0, 0.03, 0.1, 0.3]
    )
    parser.add_argument(
        "--learning-rates", type=float, nargs="+", default=[0.003, 0.01]
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    X, y = make_spirals(400, noise=0.5, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, train_size=200, random_state=0, stratify=y
    )
    template = PoisonedMLPClassifier(
        tuple(args.hidden), solver="adam", max_iter=args.steps, n_threads=1
    )
    grid = [
        clone(template).set_params(
            poison_factor=f, learning_rate_init=lr, random_state=s
        )
        for f in args.factors
        for lr in args.learning_rates
        for s in range(args.seeds)
    ]
    draws = []
    own_draw = JitterSource._draw

    def counted(source, n_steps):
        draws.append(n_steps)
        return own_draw(source, n_steps)

    JitterSource._draw = counted
    shared = batched_module.share_identical_draws

    def fit_batched(share):
        batched_module.share_identical_draws = shared if share else (lambda s: [])
        draws.clear()
        start = time.perf_counter()
        models = BatchedPoisonFitter(grid, n_threads=1).fit(X_train, y_train)
        seconds = time.perf_counter() - start
        return models.estimators_, seconds, len(draws)

    times = {"one by one": [], "batched, own draws": [], "batched": []}
    fitted, n_draws = {}, {}
    for _ in range(args.repeats):
        start = time.perf_counter()
        fitted["one by one"] = [clone(m).fit(X_train, y_train) for m in grid]
        times["one by one"].append(time.perf_counter() - start)
        for way, share in (("batched, own draws", False), ("batched", True)):
            fitted[way], seconds, n_draws[way] = fit_batched(share)
            times[way].append(seconds)
    same = all(
        all(
            torch.equal(p, q)
            for p, q in zip(a.module_.parameters(), b.module_.parameters())
        )
        for a, b in zip(fitted["batched"], fitted["batched, own draws"])
    )
    n = len(grid)
    best = {way: min(t) for way, t in times.items()}
    print(
        f"{n} models (MLP 2-{'-'.join(map(str, args.hidden))}-2, {args.steps} Adam "
        f"steps + polish, 1 thread), best of {args.repeats}:"
    )
    for way, seconds in best.items():
        extra = f", {n_draws[way]} poison draws" if way in n_draws else ""
        print(
            f"  {way:<20} {n / seconds:.3f} models/s ({seconds:.1f} s{extra}): "
            f"{best['one by one'] / seconds:.2f}x one by one"
        )
    gain = best["batched, own draws"] / best["batched"]
    print(
        f"  shared draws vs own draws: {gain:.2f}x, weights bit for bit equal: {same}"
    )
    fitted.pop("batched, own draws")
    print("\ntest accuracy per poison factor (mean, and each seed):")
    for f in args.factors:
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
