"""Peak memory of VolumeEstimator on the swiss-roll network vs the number of rays.

Each measurement runs in a fresh process (peak resident memory cannot be reset
inside one): it trains the default PoisonedMLPClassifier (the paper's
2-17-18-32-32-31-9-2 network, 3,229 weights) on 200 swiss-roll points with
``max_iter=4000``, then runs ``VolumeEstimator(cutoff=0.5)`` with
``n_directions`` rays and reports the peak resident set size before and after
the estimate. Rays are searched in chunks of 128 and dropped; only their radii
(a few numbers each) are kept, so memory must not grow with the number of rays
beyond a few megabytes per 100,000.

    python benchmarks/volume_memory.py [--directions 1000 100000]
"""

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(n_directions):
    import warnings

    import torch

    from flatgen import PoisonedMLPClassifier, VolumeEstimator, make_spirals

    torch.set_num_threads(1)
    X, y = make_spirals(200, noise=0.5, random_state=0)
    clf = PoisonedMLPClassifier(max_iter=4000, random_state=0).fit(X, y)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        volume = VolumeEstimator(n_directions=n_directions, cutoff=0.5, random_state=0)
        volume.fit(clf, X, y)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "n_directions": n_directions,
        "peak_before_mb": round(before, 1),
        "peak_after_mb": round(after, 1),
        "seconds": round(seconds, 1),
        "log10_volume": float(volume.log10_volume_[0]),
        "effective_sample_size": float(volume.effective_sample_size_[0]),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directions", type=int, nargs="+", default=[1000, 100000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child)))
        return
    rows = []
    for n in args.directions:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(n)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    base = rows[0]["peak_after_mb"]
    for row in rows[1:]:
        print(
            f"{row['n_directions']} rays: peak {row['peak_after_mb']} MB, "
            f"{row['peak_after_mb'] - base:+.1f} MB vs {rows[0]['n_directions']} rays"
        )


if __name__ == "__main__":
    main()
