"""Speed of the batched landscape engine vs one-direction-at-a-time loops.

Side by side, same model, data and directions, at 1 and then 2 torch threads:

1. the paper-sized swiss-roll MLP (3,370 parameters, 200 points):
   BasinAnalyzer's batched engine vs the same scan+bisection evaluating one
   perturbed weight vector at a time (copied into the model, as the paper's
   code does), and vs the paper's dense grid of 600 radii per direction;
2. a large MLP (6x256, 500 points) and the digits CNN (8 and 16 channels,
   400 images): engine vs loop, and the GFLOP/s each reaches against one
   large float32 matmul on this machine.

    python benchmarks/basin_speed.py [--n-directions 1000] [--grid-directions 50]
"""

import argparse
import time

import numpy as np
import torch
from torch.nn.utils import vector_to_parameters

from flatgen import (
    BasinAnalyzer,
    PoisonedCNNClassifier,
    PoisonedMLPClassifier,
    make_spirals,
)
from flatgen.datasets import load_digit_images
from flatgen.landscape import (
    BatchedEvaluator,
    basin_radii,
    filter_normalized_directions,
    flatten_parameters,
)
from flatgen.landscape._models import network_and_data


def matmul_gflops(size=2048, repeats=5):
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def forward_flops(module, X):
    """Multiply-add FLOPs of one forward pass (linear and convolution layers)."""
    flops = []

    def count(layer, inputs, output):
        if isinstance(layer, torch.nn.Linear):
            flops.append(2 * output.numel() * layer.in_features)
        elif isinstance(layer, torch.nn.Conv2d):
            per_output = layer.in_channels // layer.groups * np.prod(layer.kernel_size)
            flops.append(2 * output.numel() * int(per_output))

    hooks = [m.register_forward_hook(count) for m in module.modules()]
    try:
        with torch.no_grad():
            module(torch.as_tensor(X))
    finally:
        for hook in hooks:
            hook.remove()
    return sum(flops)


def loop_along(module, X, y):
    """Loss of one perturbed weight vector at a time, copied into the model."""
    X, y = torch.as_tensor(X), torch.as_tensor(y)

    @torch.no_grad()
    def evaluate(theta0, directions, rows, steps):
        losses = []
        for row, step in zip(rows, steps):
            vector_to_parameters(
                theta0 + float(step) * directions[row], module.parameters()
            )
            losses.append(float(torch.nn.functional.cross_entropy(module(X), y)))
        return np.array(losses)

    return evaluate


def compare(name, clf, X, y, n_directions, cutoff, grid_directions, repeats):
    module, X_net, y_net = network_and_data(clf, X, y)
    theta0 = flatten_parameters(module)
    engine = BatchedEvaluator(module, X_net, y_net)
    loss0 = float(engine.loss(theta0[None])[0])
    cutoff = cutoff if cutoff is not None else 2 * loss0
    directions = filter_normalized_directions(engine.layout, theta0, n_directions, 0)
    flops = forward_flops(module, X_net)
    print(
        f"\n{name}: {theta0.numel()} parameters, {len(X_net)} points, "
        f"{n_directions} directions, cutoff {cutoff:.3g} (loss at minimum "
        f"{loss0:.3g})"
    )

    def engine_radii():
        return basin_radii(
            engine.loss,
            theta0,
            directions,
            cutoff,
            loss0=loss0,
            evaluate_along=engine.loss_along,
        )

    def loop_radii():
        return basin_radii(
            None,
            theta0,
            directions,
            cutoff,
            loss0=loss0,
            evaluate_along=loop_along(module, X_net, y_net),
        )

    # Interleaved repeats, best of each: the machine's speed drifts.
    t_engine = t_loop = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fast = engine_radii()
        t_engine = min(t_engine, time.perf_counter() - start)
        start = time.perf_counter()
        slow = loop_radii()
        t_loop = min(t_loop, time.perf_counter() - start)
    gf_engine = fast.n_evaluations * flops / t_engine / 1e9
    gf_loop = slow.n_evaluations * flops / t_loop / 1e9
    rel = np.max(np.abs(fast.radii - slow.radii) / slow.radii)
    print(
        f"  batched engine : {t_engine:8.3f} s  {gf_engine:6.1f} GFLOP/s  "
        f"({fast.n_evaluations} loss evaluations)"
    )
    print(
        f"  per-vector loop: {t_loop:8.3f} s  {gf_loop:6.1f} GFLOP/s  "
        f"-> engine is {t_loop / t_engine:.1f}x faster"
    )
    # Each radius is within rtol=1e-6 of its crossing: two searches that
    # evaluate in different orders may differ by up to twice that.
    print(f"  radii agree to {rel:.2g} relative (each within rtol=1e-6)")

    if grid_directions:
        grid = np.linspace(0, 1, 601)[1:]
        evaluate = loop_along(module, X_net, y_net)
        start = time.perf_counter()
        for row in range(grid_directions):
            evaluate(theta0, directions, np.full(len(grid), row), grid)
        t_grid = (time.perf_counter() - start) * n_directions / grid_directions
        print(
            f"  paper's method (600-point grid per direction, one at a time): "
            f"{t_grid:8.1f} s for {n_directions} directions (timed on "
            f"{grid_directions}) -> engine is {t_grid / t_engine:.0f}x faster"
        )
    return gf_engine


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-directions", type=int, default=1000)
    parser.add_argument("--grid-directions", type=int, default=50)
    parser.add_argument("--large-directions", type=int, default=100)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = matmul_gflops()
        print(
            f"\n=== {threads} torch thread(s): one 2048x2048 float32 matmul "
            f"{peak:.1f} GFLOP/s ==="
        )
        X, y = make_spirals(200, noise=0.5, random_state=0)
        small = PoisonedMLPClassifier(max_iter=4000, random_state=0).fit(X, y)
        compare(
            "swiss-roll MLP",
            small,
            X,
            y,
            args.n_directions,
            0.1,
            args.grid_directions,
            args.repeats,
        )
        start = time.perf_counter()
        BasinAnalyzer(
            n_directions=args.n_directions,
            cutoff=0.1,
            random_state=0,
            n_threads=threads,
        ).fit(small, X, y)
        print(
            f"  BasinAnalyzer end to end (with 20 plotted profiles): "
            f"{time.perf_counter() - start:.2f} s"
        )

        X, y = make_spirals(500, noise=0.5, random_state=0)
        large = PoisonedMLPClassifier(
            hidden_layer_sizes=(256,) * 6, max_iter=150, random_state=0
        ).fit(X, y)
        gf = compare(
            "6x256 MLP", large, X, y, args.large_directions, None, 0, args.repeats
        )
        print(f"  engine reaches {100 * gf / peak:.0f} % of the matmul GFLOP/s")

        images, labels = load_digit_images()
        images, labels = images[:400], labels[:400]
        cnn = PoisonedCNNClassifier(
            conv_channels=(8, 16),
            hidden_layer_sizes=(32,),
            max_iter=100,
            random_state=0,
        ).fit(images, labels)
        gf = compare(
            "digits CNN",
            cnn,
            images,
            labels,
            args.large_directions,
            None,
            0,
            args.repeats,
        )
        print(f"  engine reaches {100 * gf / peak:.0f} % of the matmul GFLOP/s")


if __name__ == "__main__":
    main()
