"""Local learning coefficient: LearningCoefficientAnalyzer vs devinterp, side by side.

devinterp (Timaeus; Lau et al. 2023) is the reference implementation of the
SGLD estimate of the local learning coefficient. Both sample the same
localized tempered posterior exp(-n beta L(w) - gamma/2 |w - w*|^2) over
every weight and bias of the same fitted network, with the same update
(w -= eps/2 grad U, noise of variance eps), full-batch gradients, the same
step size eps, localization gamma, n beta = n / log n, chains, burn-in and
draws; only the random streams differ. flatgen runs its plain steps here
(``preconditioner='none'``; its default preconditioned steps sample the same
posterior faster). Repeats alternate the two implementations; the script
prints each one's estimates over repeats (mean, spread), the difference in
units of devinterp's own spread, and the seconds per estimate.

Networks: the measure study's swiss-roll MLPs (200 training points, 4 x 32
ReLU, Adam at 0.01 for 3,000 steps), clean and at poison factor 0.1.

devinterp is not a dependency of flatgen; install it for this script only:

    pip install -c constraints.txt devinterp==1.3.2
    python benchmarks/llc_vs_devinterp.py [--repeats 5] [--steps 2000] [--chains 4]
"""

import argparse
import math
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split

from flatgen import LearningCoefficientAnalyzer, PoisonedMLPClassifier, make_spirals


def fitted_networks():
    """The study's clean and beta = 0.1 swiss-roll networks (its preset, seed 0)."""
    X, y = make_spirals(400, noise=0.5, random_state=0)
    X_train, _, y_train, _ = train_test_split(
        X, y, train_size=200, random_state=0, stratify=y
    )
    nets = {}
    for factor in (0.0, 0.1):
        clf = PoisonedMLPClassifier(
            hidden_layer_sizes=(32,) * 4,
            solver="adam",
            learning_rate_init=0.01,
            max_iter=3000,
            poison_factor=factor,
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nets[f"beta={factor:g}"] = clf.fit(X_train, y_train)
    return nets, X_train.astype(np.float32), y_train


def flatgen_llc(clf, X, y, settings, seed):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analyzer = LearningCoefficientAnalyzer(
            n_chains=settings["chains"],
            n_steps=settings["burnin"] + settings["draws"],
            n_burnin=settings["burnin"],
            step_size=settings["step_size"],
            localization=settings["localization"],
            preconditioner="none",
            random_state=seed,
        ).fit(clf, X, y)
    return analyzer.llc_, analyzer.rhat_, time.perf_counter() - start


def devinterp_llc(clf, X, y, settings, seed):
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary

    X_t, y_t = torch.as_tensor(X), torch.as_tensor(y, dtype=torch.long)
    # One batch of the whole training set: full-batch gradients, like flatgen.
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X_t, y_t), batch_size=len(y), shuffle=False
    )

    def evaluate(model, data):
        inputs, targets = data
        return F.cross_entropy(model(inputs), targets)

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = estimate_learning_coeff_with_summary(
            clf.module_,
            loader,
            evaluate=evaluate,
            sampling_method=SGLD,
            optimizer_kwargs={
                "lr": settings["step_size"],
                "localization": settings["localization"],
                "nbeta": len(y) / math.log(len(y)),
            },
            num_chains=settings["chains"],
            num_draws=settings["draws"],
            num_burnin_steps=settings["burnin"],
            cores=1,
            seed=seed,
            verbose=False,
        )
    return float(result["llc/mean"]), None, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--chains", type=int, default=4)
    args = parser.parse_args()
    try:
        import devinterp  # noqa: F401
    except ImportError:
        raise SystemExit(
            "devinterp is needed: pip install -c constraints.txt devinterp==1.3.2"
        ) from None
    torch.set_num_threads(1)
    nets, X, y = fitted_networks()
    burnin = args.steps // 4
    for name, clf in nets.items():
        # flatgen's step-size rule for plain steps, then both use that step.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probe = LearningCoefficientAnalyzer(
                n_chains=2, n_steps=10, preconditioner="none", random_state=0
            ).fit(clf, X, y)
        settings = {
            "chains": args.chains,
            "burnin": burnin,
            "draws": args.steps - burnin,
            "step_size": probe.step_size_,
            "localization": 100.0,
        }
        print(
            f"\n{name}: {probe.n_params_} weights, n = {len(y)}, "
            f"step {probe.step_size_:.3g}, gamma 100, n beta = n / log n, "
            f"{args.chains} chains x {args.steps} steps"
            f" ({burnin} burn-in)"
        )
        found = {"flatgen": [], "devinterp": []}
        seconds = {"flatgen": [], "devinterp": []}
        for repeat in range(args.repeats):
            # Interleaved: each repeat runs both, in alternating order.
            order = ["flatgen", "devinterp"][:: 1 if repeat % 2 == 0 else -1]
            for which in order:
                run = flatgen_llc if which == "flatgen" else devinterp_llc
                llc, rhat, took = run(clf, X, y, settings, 1000 + repeat)
                found[which].append(llc)
                seconds[which].append(took)
                extra = "" if rhat is None else f", R-hat {rhat:.3f}"
                print(
                    f"  repeat {repeat} {which:<10} llc {llc:8.3f}{extra}"
                    f"  {took:6.1f} s"
                )
        ours, theirs = np.array(found["flatgen"]), np.array(found["devinterp"])
        spread = theirs.std(ddof=1)
        ratio = np.median(seconds["devinterp"]) / np.median(seconds["flatgen"])
        print(
            f"  flatgen   {ours.mean():.3f} +- {ours.std(ddof=1):.3f}"
            " (sd over repeats)\n"
            f"  devinterp {theirs.mean():.3f} +- {spread:.3f}\n"
            f"  difference of means {ours.mean() - theirs.mean():+.3f} "
            f"= {(ours.mean() - theirs.mean()) / spread:+.2f} devinterp sd; "
            f"relative {(ours.mean() / theirs.mean() - 1) * 100:+.1f} %\n"
            f"  seconds per estimate: flatgen {np.median(seconds['flatgen']):.1f}, "
            f"devinterp {np.median(seconds['devinterp']):.1f} "
            f"(ratio {ratio:.2f})"
        )


if __name__ == "__main__":
    main()
