"""SmallCNN's pooling layers: flatgen's vs torch's, side by side.

``flatgen.networks.SmallCNN`` max-pools with :class:`flatgen.networks.MaxPool2d`
(on a CPU: without gradients, maxima of strided slices instead of torch's
channels-first kernel; with gradients, torch's channels-last kernel and
torch's backward on its indices) and puts an identity where the adaptive
average pool would pool a map to its own size. Both give the same numbers
bit for bit; this script checks that on one trained network and times:

- ``predict`` on 51,200 images (200 calls of 256),
- ``MarginAnalyzer`` (the study's 32 directions, 20 refinement rounds) on
  100 training images: about 450,000 predictions,
- ``BasinAnalyzer`` (200 filter-normalized directions, CE 0.5): a control,
  ratio ~1: its engine evaluates plain sequential networks layer by layer
  on channels-last images and pools them by the same strided maxima
  whichever max-pool layer the module holds,
- the training loss's gradient on the 400 training images (50 forward and
  backward passes, as in training; the gradients compared),
- the same gradient at 4 weight vectors at once (20 calls), as the
  learning coefficient's chains take it (a vmapped forward pass),
- ``LearningCoefficientAnalyzer`` (4 chains, 200 steps): gradients of 4
  weight vectors at once.

The network: the study's digits CNN (16-32 channels, 32 hidden units, 400
training images, SGD at learning rate 0.1, 300 steps). The reference is the
same fitted estimator with torch's ``nn.MaxPool2d`` and
``nn.AdaptiveAvgPool2d`` in place of flatgen's layers. Repeats interleaved,
one thread each; medians and their ratio printed.

    python benchmarks/cnn_pooling.py [--repeats 5]
"""

import argparse
import copy
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from flatgen import (
    BasinAnalyzer,
    LearningCoefficientAnalyzer,
    MarginAnalyzer,
    PoisonedCNNClassifier,
)
from flatgen.landscape import TrainingObjective
from flatgen.landscape._parameters import flatten_parameters
from flatgen.networks import MaxPool2d


def fitted_pair():
    """A trained study CNN and the same estimator with torch's pooling layers."""
    digits = load_digits()
    images = (digits.data[:400] / 16).astype(np.float32).reshape(-1, 1, 8, 8)
    labels = digits.target[:400]
    net = PoisonedCNNClassifier(
        image_shape=(1, 8, 8),
        conv_channels=(16, 32),
        hidden_layer_sizes=(32,),
        learning_rate_init=0.1,
        max_iter=300,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.fit(images, labels)
    reference = copy.deepcopy(net)
    module = reference.net_.module_
    for index, layer in enumerate(module):
        if isinstance(layer, MaxPool2d):
            module[index] = nn.MaxPool2d(layer.kernel_size)
        elif isinstance(layer, nn.Identity):
            module[index] = nn.AdaptiveAvgPool2d((2, 2))
    return {"flatgen": net, "torch": reference}, images, labels


def tasks(images, labels):
    """Name -> function of the estimator returning something to compare."""
    rng = np.random.default_rng(0)
    queries = rng.random((51_200, 1, 8, 8), dtype=np.float32)
    X, y = images[:100], labels[:100]

    def predict(est):
        return np.concatenate(
            [est.predict_proba(queries[i : i + 256]) for i in range(0, 51_200, 256)]
        )

    def margins(est):
        analyzer = MarginAnalyzer(n_directions=32, n_refine=20, random_state=0)
        return analyzer.fit(est, X, y).margins_

    def basin(est):
        analyzer = BasinAnalyzer(
            n_directions=200, cutoff=0.5, max_radius=1.0, random_state=0
        )
        return analyzer.fit(est, images, labels).radii_

    def gradients(est):
        module = est.net_.module_
        inputs, targets = torch.as_tensor(images), torch.as_tensor(labels)
        grads = []
        for _ in range(50):
            module.zero_grad()
            loss = nn.functional.cross_entropy(module(inputs), targets)
            loss.backward()
            grads.append(torch.cat([p.grad.ravel() for p in module.parameters()]))
        return torch.stack(grads).numpy()

    def chain_gradients(est):
        # The learning coefficient's step: the training loss's gradient at 4
        # weight vectors at once (vmapped forward pass, one backward pass).
        objective = TrainingObjective.from_model(est, images, labels)
        theta0 = flatten_parameters(objective.module).detach()
        generator = torch.Generator().manual_seed(0)
        thetas = theta0 + 1e-2 * torch.randn(4, len(theta0), generator=generator)
        grads = [objective.losses_and_grads(thetas)[1] for _ in range(20)]
        return torch.stack(grads).numpy()

    def llc(est):
        analyzer = LearningCoefficientAnalyzer(n_chains=4, n_steps=200, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return analyzer.fit(est, images, labels).llc_

    return {
        "predict (51,200 images)": predict,
        "margins (100 images)": margins,
        "basin radii (control)": basin,
        "gradients (400 images, x50)": gradients,
        "chains' gradients (4 x 400, x20)": chain_gradients,
        "learning coefficient": llc,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    estimators, images, labels = fitted_pair()
    print(f"{'task':32s} {'flatgen s':>10s} {'torch s':>9s} {'ratio':>6s}  same")
    for name, task in tasks(images, labels).items():
        times = {key: [] for key in estimators}
        results = {}
        for _ in range(args.repeats):
            for key, est in estimators.items():
                start = time.perf_counter()
                results[key] = task(est)
                times[key].append(time.perf_counter() - start)
        ours, theirs = np.median(times["flatgen"]), np.median(times["torch"])
        same = np.array_equal(results["flatgen"], results["torch"])
        print(f"{name:32s} {ours:10.2f} {theirs:9.2f} {theirs / ours:5.2f}x  {same}")


if __name__ == "__main__":
    main()
