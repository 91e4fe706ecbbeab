"""The study's scale searches: Chandrupatla's method vs bisection, side by side.

The PAC-Bayes sigma and the worst-case flatness radius are the largest scale
whose loss increase stays within a bound. flatgen brackets the crossing by
decades and narrows the bracket on the log scale with Chandrupatla's method
(``scipy.optimize.elementwise.find_root``); before, it bisected. This script
runs the study's six searches (PAC-Bayes sigma of raw and adaptive noise to
``rtol = 1e-3``, 64 draws; worst-case radius in raw and adaptive weights to
``rtol = 0.01``, 20 ascent steps; bound 0.1) on study models, both ways,
repeats interleaved, one thread, and prints per search the evaluations, the
median seconds, their ratio and the relative difference of the scales found
(each is a bracket end within its ``rtol`` of a crossing, so they may differ
by up to that).

Models (the study's own grid, fitted as the study fits them one by one):
a 4 x 32 swiss-roll MLP (clean and poison factor 0.3, learning rate 0.01)
and a 16-32 digits CNN (clean and poison factor 1, learning rate 0.1).

    python benchmarks/tolerated_scale_search.py [--repeats 3]
"""

import argparse
import time
import warnings

import numpy as np
import torch

import flatgen.landscape._sharpness as sharpness_module
from flatgen import PACBayesAnalyzer, WorstCaseFlatnessAnalyzer
from flatgen.experiments import get_spec
from flatgen.experiments._experiment import derive_seeds
from flatgen.experiments.specs import study

MODELS = [
    "net beta=0 32x4 lr=0.01 seed=0",
    "net beta=0.3 32x4 lr=0.01 seed=0",
    "cnn beta=0 16-32 lr=0.1 seed=0",
    "cnn beta=1 16-32 lr=0.1 seed=0",
]
SEARCHES = [
    ("pac_bayes raw", PACBayesAnalyzer, {"scale": "raw", "n_draws": 64}),
    ("pac_bayes adaptive", PACBayesAnalyzer, {"scale": "adaptive", "n_draws": 64}),
    (
        "worst_case raw",
        WorstCaseFlatnessAnalyzer,
        {"scale": "raw", "n_steps": 20, "rtol": 0.01},
    ),
    (
        "worst_case adaptive",
        WorstCaseFlatnessAnalyzer,
        {"scale": "adaptive", "n_steps": 20, "rtol": 0.01},
    ),
]
CHANDRUPATLA = sharpness_module._largest_below


def bisection_below(excess, bound, upper, rtol):
    """The former search: decades down from ``upper``, then bisection of log x."""
    n_evaluations = 1
    if excess(upper) <= bound:
        return float(upper), True, n_evaluations
    low, high = upper, upper
    while True:
        low = low / 10.0
        n_evaluations += 1
        if excess(low) <= bound:
            break
        high = low
        if low < 1e-12:
            return 0.0, False, n_evaluations
    while high / low > 1 + rtol:
        middle = np.sqrt(low * high)
        n_evaluations += 1
        if excess(middle) <= bound:
            low = middle
        else:
            high = middle
    return float(low), False, n_evaluations


def fitted_models():
    spec = get_spec("study")
    settings = {**spec.full, "quick": False, "families": ["mlp", "cnn"]}
    seeds = {"random_state": 0, **derive_seeds(0, spec.seeds)}
    data = spec.load(settings, seeds)
    fitted = []
    for model in study.grid(settings, seeds, data, "cpu"):
        if model.name not in MODELS:
            continue
        own = model.data or data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.estimator.fit(own.X_train, own.y_train)
        fitted.append((model.name, model.estimator, own.X_train, own.y_train))
    return fitted


def run(search, estimator, X, y):
    name, kind, params = search
    analyzer = kind(bound=0.1, random_state=0, **params)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analyzer.fit(estimator, X, y)
    seconds = time.perf_counter() - start
    scale = analyzer.sigma_ if kind is PACBayesAnalyzer else analyzer.radius_
    return seconds, analyzer.n_evaluations_, scale


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    methods = {"bisection": bisection_below, "chandrupatla": CHANDRUPATLA}
    print(
        f"{'model':34s} {'search':20s} {'evals':>9s} {'seconds':>15s} "
        f"{'speed-up':>8s} {'scale diff':>10s}"
    )
    totals = dict.fromkeys(methods, 0.0)
    for model_name, estimator, X, y in fitted_models():
        for search in SEARCHES:
            times = {m: [] for m in methods}
            found = {}
            for _ in range(args.repeats):
                for method, function in methods.items():
                    sharpness_module._largest_below = function
                    try:
                        seconds, n, scale = run(search, estimator, X, y)
                    finally:
                        sharpness_module._largest_below = CHANDRUPATLA
                    times[method].append(seconds)
                    found[method] = (n, scale)
            median = {m: float(np.median(t)) for m, t in times.items()}
            for m in methods:
                totals[m] += median[m]
            (n_old, old), (n_new, new) = found["bisection"], found["chandrupatla"]
            print(
                f"{model_name:34s} {search[0]:20s} {n_old:>4d}->{n_new:<4d} "
                f"{median['bisection']:6.2f}->{median['chandrupatla']:<6.2f}s "
                f"{median['bisection'] / median['chandrupatla']:7.2f}x "
                f"{abs(new - old) / old:10.1e}"
            )
    print(
        f"all searches: {totals['bisection']:.1f} s -> {totals['chandrupatla']:.1f} s"
        f" ({totals['bisection'] / totals['chandrupatla']:.2f}x), medians of "
        f"{args.repeats}, interleaved, one thread"
    )


if __name__ == "__main__":
    main()
