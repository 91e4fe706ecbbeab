"""Losses at many displacements: flatgen's slice-wise embedding vs an indexed one.

The annealed volume's chains evaluate the training loss at displacements
``z`` of the perturbed weights (8 chains x 15 points of their segments per
step) and its gradient at the chains themselves. Each call first builds the
full weight vectors ``theta* + scale * z``. ``NetworkBasinLoss`` adds the
scaled rows to copies of ``theta*`` run by run (the perturbed entries are a
few contiguous runs, each layer's weights); the generic alternative writes
them into a zero matrix through the index of the perturbed entries and adds
``theta*``. Both are timed here side by side on the same network and
displacements, repeats interleaved (medians), their losses and gradients
compared (identical).

Networks: the swiss-roll experiment's MLP (200 training points, 3,229
perturbed weights) and the study's digits CNN (8-16 channels, 400 images).

    python benchmarks/basin_loss_embedding.py [--repeats 7] [--calls 50]
"""

import argparse

import numpy as np
import torch
from batched_gradients import networks, seconds_per_call

from flatgen.landscape import TrainingObjective


def indexed(basin_loss):
    """The generic embedding: a zero matrix, an indexed write, a sum."""

    def displaced(displacements, device):
        theta0 = basin_loss._theta0.to(device)
        return theta0 + basin_loss._embed(displacements, theta0.dtype, device)

    return displaced


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread")
    for name, objective in networks().items():
        assert isinstance(objective, TrainingObjective)
        basin_loss = objective.basin_loss()
        n = basin_loss.n_dims
        generator = torch.Generator().manual_seed(0)
        chains = 0.02 * torch.randn((8, n), generator=generator, dtype=torch.float64)
        shares = torch.arange(1, 16, dtype=torch.float64) / 16
        segments = (shares[:, None, None] * chains[None]).reshape(-1, n)
        slicewise = basin_loss._displaced
        paths = {"slices": slicewise, "indexed": indexed(basin_loss)}
        results = {}
        for label, path in paths.items():
            basin_loss._displaced = path
            results[label] = (basin_loss(segments), basin_loss.losses_and_grads(chains))
        basin_loss._displaced = slicewise
        same = torch.equal(results["slices"][0], results["indexed"][0]) and all(
            torch.equal(a, b)
            for a, b in zip(results["slices"][1], results["indexed"][1])
        )
        times = {(label, what): [] for label in paths for what in ("loss", "grad")}
        for _ in range(args.repeats):
            for label, path in paths.items():
                basin_loss._displaced = path
                times[label, "loss"].append(
                    seconds_per_call(basin_loss, segments, args.calls)
                )
                times[label, "grad"].append(
                    seconds_per_call(basin_loss.losses_and_grads, chains, args.calls)
                )
        basin_loss._displaced = slicewise
        median = {key: float(np.median(value)) for key, value in times.items()}
        print(f"\n{name}: {n} perturbed weights, outputs identical: {same}")
        for what, rows in (("loss", len(segments)), ("grad", len(chains))):
            new, old = median["slices", what], median["indexed", what]
            label = "losses" if what == "loss" else "losses and gradients"
            print(
                f"  {label} at {rows} displacements: {new * 1e3:.2f} ms vs "
                f"{old * 1e3:.2f} ms indexed: {old / new:.2f}x"
            )


if __name__ == "__main__":
    main()
