"""Coverage of the annealed volume's interval on one test-bed shape, seed by seed.

Each seed is one call of :func:`flatgen.landscape.annealed_log10_volume`
(the defaults, ``metric='model'``; the cap radius where the shape has one)
on ``make_basin(KIND, N_DIMS, random_state=0)``, whose exact log-volume is
known. Every seed's result is appended to a JSON-lines record as soon as it
is done, and seeds already in the record are skipped, so a coverage study
of several hours (minutes per seed at n = 1,000) can be stopped and resumed,
on one machine or over several; each line says which commit and CPU produced
it. At the end (or with ``--summary``) the record is summarized: coverage of
the 95 % intervals with its Wilson interval, errors, widths, diagnostics.

    python benchmarks/volume_coverage.py log_cosh --seeds 0-19
    python benchmarks/volume_coverage.py degenerate --seeds 0-19 --summary

Records of runs so far lie in ``benchmarks/records/`` (the default ``--out``).
"""

import argparse
import json
import math
import platform
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import norm

from flatgen.landscape import annealed_log10_volume, make_basin
from flatgen.landscape._known_basins import BASIN_KINDS

RECORDS = Path(__file__).parent / "records"
# Each seed takes minutes: far more than this is a typing error.
MAX_SEEDS = 10_000


def seed_list(text):
    """``'0-19'`` or ``'0,3,5'`` (or both, ``'0-4,9'``) to a list of seeds."""
    seeds = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        try:
            low, high = int(low), int(high or low)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"seeds are numbers or ranges like 0-19; got {part!r}"
            ) from None
        if low < 0 or high < low or high - low >= MAX_SEEDS:
            raise argparse.ArgumentTypeError(
                f"a seed range runs from a non-negative seed up to at most "
                f"{MAX_SEEDS - 1} more; got {part!r}"
            )
        seeds.extend(range(low, high + 1))
    return sorted(set(seeds))


def machine():
    """The commit and CPU a record line was measured on."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "commit": commit,
        "cpu": cpu,
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
    }


def measure(basin, seed):
    """One seed's annealed estimate against the exact log-volume."""
    cap = basin.max_radius if math.isfinite(basin.max_radius) else None
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = annealed_log10_volume(
            basin.loss_fn,
            basin.n_dims,
            basin.cutoff,
            max_radius=cap,
            metric="model",
            random_state=seed,
        )
    low, high = (float(v) for v in r.log10_volume_ci)
    exact = float(basin.log10_volume)
    return {
        "seed": seed,
        "exact": exact,
        "estimate": float(r.log10_volume),
        "error": float(r.log10_volume) - exact,
        "low": low,
        "high": high,
        "covers": bool(low <= exact <= high),
        "rhat": float(r.rhat),
        "hysteresis": [float(h) for h in r.hysteresis],
        "run_log10_volumes": [float(v) for v in r.run_log10_volumes],
        "run_standard_errors": [float(v) for v in r.run_standard_errors],
        "cap_share": float(r.cap_share),
        "start": r.start,
        "reliable": bool(r.reliable),
        "warnings": sorted({type(w.message).__name__ for w in caught}),
        "n_gradients": int(r.n_gradients),
        "seconds": time.perf_counter() - start,
    }


def read_record(path):
    """The lines of a record (JSON only: nothing read here executes code)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wilson(hits, total, level=0.95):
    """Wilson score interval of a proportion."""
    z = norm.ppf(0.5 + level / 2)
    share = hits / total
    centre = (share + z**2 / (2 * total)) / (1 + z**2 / total)
    half = z * math.sqrt(share * (1 - share) / total + z**2 / (4 * total**2))
    return centre - half / (1 + z**2 / total), centre + half / (1 + z**2 / total)


def summarize(lines, label):
    if not lines:
        print(f"{label}: no seeds measured yet")
        return
    errors = np.array([line["error"] for line in lines])
    widths = np.array([line["high"] - line["low"] for line in lines])
    hits = sum(line["covers"] for line in lines)
    low, high = wilson(hits, len(lines))
    rhats = [line["rhat"] for line in lines]
    warned = [line["seed"] for line in lines if not line["reliable"]]
    seconds = [line["seconds"] for line in lines]
    cpus = ", ".join(sorted({line["cpu"] for line in lines}))
    print(f"{label}: {len(lines)} seeds ({cpus})")
    print(
        f"  coverage {hits}/{len(lines)} = {hits / len(lines):.0%} "
        f"(Wilson 95 %: {low:.0%}-{high:.0%}; nominal 95 %)"
    )
    print(
        f"  error (orders of magnitude): mean {errors.mean():+.3f}, root mean square "
        f"{math.sqrt(np.mean(errors**2)):.3f}, "
        f"from {errors.min():+.3f} to {errors.max():+.3f}"
    )
    print(
        f"  95 % interval width: median {np.median(widths):.2f}, "
        f"from {widths.min():.2f} to {widths.max():.2f}"
    )
    print(
        f"  split R-hat {min(rhats):.3f}-{max(rhats):.3f}; "
        f"warned at seeds {warned or 'none'}"
    )
    print(
        f"  seconds per seed: median {np.median(seconds):.0f}, "
        f"from {min(seconds):.0f} to {max(seconds):.0f}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=list(BASIN_KINDS))
    parser.add_argument("--n-dims", type=int, default=1000)
    parser.add_argument("--seeds", type=seed_list, default=seed_list("0-19"))
    parser.add_argument("--out", type=Path, default=None, help="JSON-lines record")
    parser.add_argument(
        "--summary", action="store_true", help="summarize the record, measure nothing"
    )
    args = parser.parse_args()
    out = args.out or RECORDS / f"annealed_coverage_{args.kind}_{args.n_dims}.jsonl"
    label = f"{args.kind} n={args.n_dims}"
    # A record of another shape would make this one skip its seeds and mix
    # two shapes in one summary: refuse it.
    other = {
        (line["kind"], line["n_dims"])
        for line in read_record(out)
        if (line["kind"], line["n_dims"]) != (args.kind, args.n_dims)
    }
    if other:
        parser.error(
            f"--out {out} holds seeds of {sorted(other)}, not of "
            f"{(args.kind, args.n_dims)}: name another record"
        )
    if not args.summary:
        torch.set_num_threads(1)
        basin = make_basin(args.kind, args.n_dims, random_state=0)
        done = {line["seed"] for line in read_record(out)}
        stamp = machine()
        out.parent.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            if seed in done:
                continue
            line = {
                "kind": args.kind,
                "n_dims": args.n_dims,
                **stamp,
                **measure(basin, seed),
            }
            with out.open("a") as f:
                f.write(json.dumps(line) + "\n")
            print(
                f"{label} seed {seed}: error {line['error']:+.3f}, interval "
                f"{line['high'] - line['low']:.2f} wide, covers {line['covers']}, "
                f"R-hat {line['rhat']:.3f}, {line['seconds']:.0f} s",
                flush=True,
            )
    summarize(
        [line for line in read_record(out) if line["seed"] in set(args.seeds)], label
    )


if __name__ == "__main__":
    main()
