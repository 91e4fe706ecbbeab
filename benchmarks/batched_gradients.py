"""Gradients at many weight vectors: flatgen's batched path vs a vmapped grad.

The annealed volume's chains and the learning coefficient's chains ask for
the training loss and its gradient at a handful of weight vectors at once.
``NetworkLoss.losses_and_grads`` computes the losses with one
``torch.func.vmap`` over the vectors and their gradients with one ordinary
backward pass of the losses' sum; the plain alternative vmaps
``torch.func.grad_and_value`` (a vmapped backward pass). Both are timed here
side by side on the same network, data and vectors, repeats interleaved, and
their gradients compared (they agree bit for bit on CPU).

Networks: the swiss-roll experiment's MLP (200 training points, 3,229
weights) and the study's digits CNN (8-16 channels, 400 training images).

    python benchmarks/batched_gradients.py [--repeats 7] [--calls 50]
"""

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.func import grad_and_value, vmap

from flatgen import PoisonedCNNClassifier, PoisonedMLPClassifier, make_spirals
from flatgen.landscape import TrainingObjective


def networks():
    """The two networks, briefly trained (their weights only set the numbers)."""
    X, y = make_spirals(200, noise=0.5, random_state=0)
    mlp = PoisonedMLPClassifier(max_iter=200, random_state=0)
    digits = load_digits()
    images, labels = digits.data[:400].astype(np.float32) / 16, digits.target[:400]
    cnn = PoisonedCNNClassifier(
        image_shape=(1, 8, 8),
        conv_channels=(8, 16),
        hidden_layer_sizes=(32,),
        max_iter=50,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "swiss-roll MLP": TrainingObjective.from_model(mlp.fit(X, y), X, y),
            "digits CNN": TrainingObjective.from_model(
                cnn.fit(images, labels), images, labels
            ),
        }


def vmapped_grad(network_loss, thetas):
    """The plain alternative: vmap of grad_and_value over the vectors."""
    X, y = network_loss.X, network_loss.y
    grads, losses = vmap(
        grad_and_value(lambda theta: network_loss._per_sample(theta, X, y).mean())
    )(thetas)
    return losses, grads


def seconds_per_call(function, thetas, calls):
    start = time.perf_counter()
    for _ in range(calls):
        function(thetas)
    return (time.perf_counter() - start) / calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, objective in networks().items():
        network_loss = objective.network_loss
        theta0 = network_loss.theta0
        flatgen_path = network_loss.losses_and_grads

        def plain(thetas, network_loss=network_loss):
            return vmapped_grad(network_loss, thetas)

        for n_vectors in (4, 8, 16):
            thetas = theta0 + 1e-3 * torch.randn(n_vectors, len(theta0))
            ours, theirs = flatgen_path(thetas), plain(thetas)
            difference = float((ours[1] - theirs[1]).abs().max())
            difference = max(difference, float((ours[0] - theirs[0]).abs().max()))
            times = {"flatgen": [], "vmap(grad_and_value)": []}
            for _ in range(args.repeats):  # interleaved
                times["flatgen"].append(
                    seconds_per_call(flatgen_path, thetas, args.calls)
                )
                times["vmap(grad_and_value)"].append(
                    seconds_per_call(plain, thetas, args.calls)
                )
            ours_ms = 1e3 * np.median(times["flatgen"])
            theirs_ms = 1e3 * np.median(times["vmap(grad_and_value)"])
            print(
                f"{name} ({len(theta0):,} weights), {n_vectors:2d} vectors: "
                f"flatgen {ours_ms:.2f} ms, vmap(grad_and_value) {theirs_ms:.2f} ms "
                f"per call (medians of {args.repeats}); ratio "
                f"{theirs_ms / ours_ms:.2f}x; largest difference {difference:.1e}"
            )


if __name__ == "__main__":
    main()
