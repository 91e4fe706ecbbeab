"""Peak memory of BasinAnalyzer on the digits CNN vs the number of directions.

Each measurement runs in a fresh process (peak resident memory cannot be reset
inside one): it trains the same small CNN on 500 of sklearn's 8x8 digits, then
runs BasinAnalyzer with n_directions in {100, 1000, 3000}, and reports the peak
resident set size before and after the analysis. Memory must not grow with
n_directions beyond the radii themselves (8 bytes each).

    python benchmarks/basin_memory.py [--directions 100 1000 3000]
"""

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(n_directions):
    import torch
    from sklearn.datasets import load_digits

    from flatgen import BasinAnalyzer, PoisonedCNNClassifier

    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X, y = X[:500] / 16, y[:500]
    clf = PoisonedCNNClassifier(image_shape=(1, 8, 8), max_iter=200, random_state=0)
    clf.fit(X, y)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    basin = BasinAnalyzer(
        n_directions=n_directions, cutoff=2, cutoff_type="relative", random_state=0
    ).fit(clf, X, y)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n_params = sum(p.numel() for p in clf.net_.module_.parameters())
    return {
        "n_directions": n_directions,
        "n_params": n_params,
        "peak_before_mib": before / 1024,
        "peak_after_mib": after / 1024,
        "seconds": seconds,
        "mean_radius": basin.mean_radius_,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directions", type=int, nargs="+", default=[100, 1000, 3000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child)))
        return
    print(
        f"{'directions':>10} {'params':>7} {'peak before':>12} {'peak after':>11} "
        f"{'analysis s':>10}"
    )
    for n in args.directions:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(n)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{r['n_directions']:>10} {r['n_params']:>7} "
            f"{r['peak_before_mib']:>9.0f} MiB {r['peak_after_mib']:>8.0f} MiB "
            f"{r['seconds']:>10.1f}"
        )


if __name__ == "__main__":
    main()
