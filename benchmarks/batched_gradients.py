"""Gradients at many weight vectors: flatgen's batched paths vs autograd's.

The annealed volume's chains and the learning coefficient's chains ask for
the training loss and its gradient at a handful of weight vectors at once.
``NetworkLoss.losses_and_grads`` computes them, for a dense stack (linear
layers and elementwise activations, the swiss-roll MLP), by batched products
with the backward pass written out; for other networks (the digits CNN) with
one ``torch.func.vmap`` forward over the vectors and one ordinary backward
pass of the losses' sum. Timed side by side on the same network, data and
vectors, repeats interleaved: flatgen's path, that vmap-forward/autograd
path ("vmap + backward") and the plain alternative, a vmapped
``torch.func.grad_and_value``; with the largest difference of the losses and
gradients from the plain one, relative to the largest gradient entry.

Networks: the swiss-roll experiment's MLP (200 training points, 3,370
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


def vmap_and_backward(network_loss, thetas):
    """A vmapped forward pass and one backward pass of the losses' sum."""
    X, y = network_loss.X, network_loss.y
    thetas = thetas.detach().requires_grad_(True)
    losses = vmap(lambda theta: network_loss._per_sample(theta, X, y).mean())(thetas)
    (grads,) = torch.autograd.grad(losses.sum(), thetas)
    return losses.detach(), grads


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
        paths = {
            "flatgen": network_loss.losses_and_grads,
            "vmap + backward": lambda t, n=network_loss: vmap_and_backward(n, t),
            "vmap(grad_and_value)": lambda t, n=network_loss: vmapped_grad(n, t),
        }
        written_out = network_loss._dense_ops is not None
        print(
            f"{name} ({len(theta0):,} weights): flatgen's path is "
            + ("the written-out backward" if written_out else "vmap + backward")
        )
        for n_vectors in (4, 8, 16):
            thetas = theta0 + 1e-3 * torch.randn(n_vectors, len(theta0))
            reference = paths["vmap(grad_and_value)"](thetas)
            scale = float(reference[1].abs().max())
            differences = {}
            for label, path in paths.items():
                losses, grads = path(thetas)
                differences[label] = max(
                    float((losses - reference[0]).abs().max()),
                    float((grads - reference[1]).abs().max()) / scale,
                )
            times = {label: [] for label in paths}
            for _ in range(args.repeats):  # interleaved
                for label, path in paths.items():
                    times[label].append(seconds_per_call(path, thetas, args.calls))
            ms = {label: 1e3 * np.median(t) for label, t in times.items()}
            print(
                f"  {n_vectors:2d} vectors: "
                + ", ".join(
                    f"{label} {ms[label]:.2f} ms ({ms[label] / ms['flatgen']:.2f}x, "
                    f"difference {differences[label]:.1e})"
                    for label in paths
                )
                + f" per call, medians of {args.repeats}"
            )


if __name__ == "__main__":
    main()
