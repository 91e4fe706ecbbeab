"""Every volume estimator on every basin of exactly known volume, side by side.

Shapes: the test bed of :func:`flatgen.landscape.make_basin` (rotated
four-decade and power-law spectra, spikes, quadratic-plus-quartic,
log-cosh, degenerate, L4 balls, a basin bounded by the cap ball, a ball
behind a ridge with a low-loss moat, whose star-shaped basin is the ball)
and the 10-D pure quartic. Estimators:
uniform rays ('naive'), rays from the low-rank curvature model
('preconditioned'), rays from the exact quadratic model ('full'), and the
annealed estimator (thermodynamic integration with HMC) with the model's
whitening and, on paths from the cap ball, the adaptive one
(``metric='adaptive'``).

For each shape and estimator: the error of the estimate (log10 V_est -
log10 V_true, orders of magnitude), the width of its 95 % interval, whether
the interval covers the truth, whether the estimator warned, and its time; then
the coverage of the annealed interval over ``--seeds`` seeds (for a long
coverage study of one shape, stoppable and resumable seed by seed,
``benchmarks/volume_coverage.py``).

    python benchmarks/volume_annealed.py                 # n = 1000, 20 seeds
    python benchmarks/volume_annealed.py --n-dims 200 --seeds 5
"""

import argparse
import math
import time
import warnings

import numpy as np
import torch
from scipy.special import gammaln

from flatgen.landscape import annealed_log10_volume, basin_log10_volume, make_basin
from flatgen.landscape._known_basins import BASIN_KINDS


def quartic10():
    exact = (10 * math.log(2 * math.gamma(1.25)) - gammaln(1 + 10 / 4)) / math.log(10)
    return (lambda z: (z**4).sum(1)), 10, 1.0, exact, None


def run(estimator, loss, n, cutoff, seed, max_radius=None):
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if estimator.startswith("annealed"):
            # "annealed" (the model's whitening) or "annealed adaptive".
            metric = "adaptive" if estimator.endswith("adaptive") else "model"
            r = annealed_log10_volume(
                loss, n, cutoff, max_radius=max_radius, random_state=seed, metric=metric
            )
        else:
            options = {"naive": {"estimator": "naive"}, "full": {"rank": "full"}}
            r = basin_log10_volume(
                loss,
                n,
                cutoff,
                n_directions=1000,
                max_radius=max_radius,
                random_state=seed,
                **options.get(estimator, {}),
            )
    return r, time.perf_counter() - start, bool(caught)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-dims", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--kinds", nargs="*", default=list(BASIN_KINDS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    shapes = {}
    for kind in args.kinds:
        basin = make_basin(kind, args.n_dims, random_state=0)
        shapes[f"{kind} n={args.n_dims}"] = (
            basin.loss_fn,
            basin.n_dims,
            basin.cutoff,
            basin.log10_volume,
            basin.max_radius if math.isfinite(basin.max_radius) else None,
        )
    shapes["quartic z^4 n=10"] = quartic10()
    estimators = ["naive", "preconditioned", "full", "annealed", "annealed adaptive"]
    print("error = log10 V_est - log10 V_true (orders of magnitude)")
    print(
        f"{'shape':<26}{'estimator':<16}{'error':>10}{'CI width':>10}"
        f"{'covers':>8}{'warned':>8}{'time':>9}"
    )
    for name, (loss, n, cutoff, exact, cap) in shapes.items():
        for estimator in estimators:
            if estimator == "annealed adaptive" and cap is None:
                continue  # no path from the cap ball: the same as "annealed"
            r, seconds, warned = run(estimator, loss, n, cutoff, 0, cap)
            low, high = r.log10_volume_ci
            print(
                f"{name:<26}{estimator:<16}{r.log10_volume - exact:>+10.2f}"
                f"{high - low:>10.2f}{str(bool(low <= exact <= high)):>8}"
                f"{str(warned):>8}{seconds:>8.0f}s",
                flush=True,
            )
    print()
    print(f"annealed: coverage of the 95 % interval over {args.seeds} seeds")
    runs = [(name, shape, "annealed") for name, shape in shapes.items()]
    # The adaptive whitening differs only on paths from the cap ball.
    runs += [
        (name, shape, "annealed adaptive")
        for name, shape in shapes.items()
        if shape[4] is not None
    ]
    for name, (loss, n, cutoff, exact, cap), estimator in runs:
        hits, errors, widths, warned = 0, [], [], 0
        for seed in range(args.seeds):
            r, _, flagged = run(estimator, loss, n, cutoff, seed, cap)
            low, high = r.log10_volume_ci
            hits += low <= exact <= high
            errors.append(r.log10_volume - exact)
            widths.append(high - low)
            warned += flagged
        print(
            f"{name:<26}{estimator:<19} coverage {hits / args.seeds:6.0%}  mean error "
            f"{np.mean(errors):+.2f}  max |error| {np.max(np.abs(errors)):.2f}  "
            f"median width {np.median(widths):.2f}  warned {warned}/{args.seeds}",
            flush=True,
        )


if __name__ == "__main__":
    main()
