"""The learning coefficient's localization against closed forms, over n and gamma.

The estimate samples ``exp(-n beta L(w) - gamma/2 |w - w*|^2)``; on a
quadratic basin of curvatures ``h_i`` it is ``sum_i (1/2) n beta h_i /
(n beta h_i + gamma)``, so what ``gamma`` does depends on ``gamma / (n
beta)``, not on ``gamma`` alone. This script measures that on the two deep
linear networks whose coefficient is known in closed form (as in
``tests/test_llc.py``: reduced rank regression 3-3-3 with a rank-1 teacher,
4 by Aoyagi and Watanabe; 3-2-4-3, 3.5 by Aoyagi's theorem), at the true
parameter, over sample sizes ``n`` and ``gamma`` as a multiple of ``n beta``
or of ``sqrt(n beta)`` (``--scale``), several data sets each (each adds a
fluctuation of about ``sqrt(lambda beta / 2)``). Along a direction where the
loss grows as the fourth power (the singular directions of these networks)
the posterior's width scales as ``(n beta)^(-1/4)``, and the curvature the
localization competes with there as ``sqrt(n beta)``.

A bias-free linear network's squared error depends on the data only
through its second moments, so each data set of ``n`` samples is passed as
the few rows with the same moments (``_moment_rows`` of the tests) at the
``n`` samples' ``n beta``: the same posterior, at a cost that does not grow
with ``n``.

    python benchmarks/llc_closed_forms.py --scale sqrt --factors 0.05 0.1 0.2 0.4
    python benchmarks/llc_closed_forms.py --scale linear --factors 0.001 0.005 0.02
"""

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flatgen import LearningCoefficientAnalyzer  # noqa: E402
from flatgen.landscape import TrainingObjective  # noqa: E402
from tests.test_llc import (  # noqa: E402
    _deep_linear_lambda,
    _linear_teacher,
    _moment_rows,
)

NETWORKS = [(3, 3, 3), (3, 2, 4, 3)]


def estimate(widths, n, gamma, seed, n_steps):
    """One data set's estimate at localization ``gamma``."""
    net, X, Y = _linear_teacher(widths, 1, n, seed)
    X_rows, Y_rows = _moment_rows(X, Y)
    objective = TrainingObjective(net, X_rows, Y_rows, criterion=nn.MSELoss())
    n_beta = n / math.log(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analyzer = LearningCoefficientAnalyzer(
            n_chains=4,
            n_steps=n_steps,
            localization=gamma,
            inverse_temperature=n_beta / len(X_rows),
            random_state=seed,
        ).fit(objective, None, None)
    return analyzer.llc_, analyzer.converged_


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-sets", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[5_000, 20_000, 200_000, 2_000_000]
    )
    parser.add_argument(
        "--scale",
        choices=["linear", "sqrt"],
        default="sqrt",
        help="gamma = factor * n beta, or factor * sqrt(n beta)",
    )
    parser.add_argument(
        "--factors", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.4]
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"4 chains x {args.steps} steps, {args.data_sets} data sets per row, "
        "one thread; mean over the data sets whose estimate is finite (its "
        "standard error), their number, and how many of them mixed"
    )
    unit = "n beta" if args.scale == "linear" else "sqrt(n beta)"
    print(
        f"network  exact          n  gamma/{unit:12s}  gamma  mean (se)    error"
        "  finite  mixed  s"
    )
    for widths in NETWORKS:
        exact = _deep_linear_lambda(widths, 1)
        for n in args.sizes:
            n_beta = n / math.log(n)
            unit_value = n_beta if args.scale == "linear" else math.sqrt(n_beta)
            for factor in args.factors:
                gamma = factor * unit_value
                start = time.perf_counter()
                results = [
                    estimate(widths, n, gamma, seed, args.steps)
                    for seed in range(args.data_sets)
                ]
                values = np.array([v for v, _ in results])
                finite = values[np.isfinite(values)]
                mixed = sum(c for _, c in results)
                mean = finite.mean() if len(finite) else math.nan
                se = (
                    finite.std(ddof=1) / math.sqrt(len(finite))
                    if len(finite) > 1
                    else math.nan
                )
                name = "-".join(map(str, widths))
                print(
                    f"{name:8s} {exact:5.2f} {n:>10,d} {factor:>18g} {gamma:6.3g}"
                    f"  {mean:5.2f} ({se:.2f}) {100 * (mean - exact) / exact:+6.1f} %"
                    f"  {len(finite)}/{len(values)}    {mixed}/{len(values)}"
                    f"  {time.perf_counter() - start:3.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
