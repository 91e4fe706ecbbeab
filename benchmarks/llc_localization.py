"""The learning coefficient of a study's MLPs at several localizations.

Reads the fitted swiss-roll MLPs and their gaps from a finished ``flatgen
study`` output folder (its own signed steps, nothing fitted again), measures
each network's local learning coefficient at every localization strength
``gamma`` (4 chains of 2,000 steps, the study's settings otherwise, one
thread), and prints per gamma how many chains diverged at the step rule's
step or did not mix, the clean and poisoned networks' values, and Kendall's
tau with the generalization gap (bootstrap 95 % interval) over the models
with a finite value and over those whose chains mixed.

    flatgen study --out results/study --family mlp --n-jobs 2
    python benchmarks/llc_localization.py results/study [--gammas 100 10 1 0.1]
"""

import argparse
import glob
import json
import os
import time
import warnings

import numpy as np
import torch

from flatgen import LearningCoefficientAnalyzer
from flatgen.experiments._cache import read_step_file
from flatgen.experiments._ranking import rank_measures
from flatgen.experiments._runner import derive_seeds
from flatgen.experiments.specs import study


def load_networks(folder, seeds):
    """Return ``{name: fitted MLP}`` from the study's batched fit steps."""
    nets = {}
    pattern = os.path.join(folder, "steps", "fit_together_*_from_net*.joblib")
    for path in sorted(glob.glob(pattern)):
        for item in read_step_file(path)["result"]:
            e = item["estimator"]
            shape = f"{e.hidden_layer_sizes[0]}x{len(e.hidden_layer_sizes)}"
            seed = e.random_state - seeds["network"]
            nets[
                f"net beta={e.poison_factor:g} {shape} "
                f"lr={e.learning_rate_init:g} seed={seed}"
            ] = e
    return nets


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir", help="output folder of `flatgen study`")
    parser.add_argument("--gammas", type=float, nargs="+", default=[100, 10, 1, 0.1])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    summary = json.load(open(os.path.join(args.study_dir, "summary.json")))
    random_state = summary["seeds"]["random_state"]
    seeds = {
        "random_state": random_state,
        **derive_seeds(random_state, study.SPEC.seeds),
    }
    settings = {**summary["settings"]}
    data = study.family_data("mlp", settings, seeds)
    threshold = summary["study"]["min_train_accuracy"]
    rows = {
        r["name"]: r
        for r in summary["study"]["models"]
        if r["family"] == "mlp" and r["train_accuracy"] >= threshold
    }
    nets = load_networks(args.study_dir, seeds)
    names = sorted(set(rows) & set(nets))
    gaps = np.array([rows[n]["generalization_gap"] for n in names])
    params = [rows[n]["params"] for n in names]
    clean = np.array([rows[n]["params"]["poison_factor"] == 0 for n in names])
    print(
        f"{len(names)} MLPs that fit their training set; {args.steps} steps, 4 chains"
    )
    values = {}
    for gamma in args.gammas:
        found, mixed, steps, start = [], [], [], time.perf_counter()
        for name in names:
            analyzer = LearningCoefficientAnalyzer(
                n_chains=4,
                n_steps=args.steps,
                localization=gamma,
                random_state=seeds["directions"],
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                analyzer.fit(nets[name], data.X_train, data.y_train)
            found.append(analyzer.llc_)
            mixed.append(analyzer.llc_ if analyzer.converged_ else np.nan)
            steps.append(analyzer.step_size_)
        found, mixed = np.array(found), np.array(mixed)
        values[f"gamma={gamma:g}"] = found
        values[f"gamma={gamma:g}, mixed"] = mixed

        def spread(v):
            v = v[np.isfinite(v)]
            if not len(v):
                return "none finite"
            return f"median {np.median(v):.1f} [{v.min():.1f}, {v.max():.1f}]"

        print(
            f"gamma {gamma:g}: diverged {int(np.isnan(found).sum())}, mixed "
            f"{int(np.isfinite(mixed).sum())} of {len(names)}; clean "
            f"{spread(found[clean])}, poisoned {spread(found[~clean])}; median "
            f"step {np.median(steps):.3g}; {time.perf_counter() - start:.0f} s"
        )
    print(
        "\nKendall's tau with the gap (95 % bootstrap interval, models with a value):"
    )
    for row in rank_measures(values, gaps, params, n_bootstrap=1000, seed=0):
        low, high = row["tau_ci"]
        print(
            f"  {row['measure']:<20} {row['tau']:+.2f} [{low:+.2f}, {high:+.2f}] "
            f"over {row['n_models']}"
        )


if __name__ == "__main__":
    main()
