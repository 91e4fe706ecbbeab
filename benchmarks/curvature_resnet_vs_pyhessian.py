"""Top eigenvalue of a residual batch-norm CNN over a DataLoader: flatgen vs PyHessian.

A small residual CNN (a convolution, one residual block of two convolutions
with batch norm, global average pooling, a linear layer: a module that is not
a plain Sequential, so flatgen takes the double-backpropagation path) is
trained by a plain PyTorch loop on scikit-learn's 8x8 digits (1,797 images),
then put in eval mode. Both tools measure the top eigenvalue of the Hessian of
the mean cross-entropy over all images, given as a DataLoader of batches of
128, over all parameters (weights, biases, batch-norm scales), one thread:

- flatgen: ``CurvatureAnalyzer(filter_normalized=False).fit(model, loader, None)``
  (Lanczos, residual tolerance 1e-6);
- PyHessian: ``hessian(model, criterion, dataloader=loader).eigenvalues()``
  (power iteration, tolerance 1e-6).

Printed: both eigenvalues and their relative difference, the time of each
(interleaved, best of ``--repeats``) and the peak resident memory of each,
each measured in a fresh process that loads the trained weights. PyHessian
is installed for this benchmark only: ``pip install --no-deps pyhessian``.

    python benchmarks/curvature_resnet_vs_pyhessian.py [--repeats 2]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def _model_and_loader(weights=None):
    import torch
    from sklearn.datasets import load_digits
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    class ResidualCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()
            )
            self.block = nn.Sequential(
                nn.Conv2d(8, 8, 3, padding=1),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.Conv2d(8, 8, 3, padding=1),
                nn.BatchNorm2d(8),
            )
            self.head = nn.Linear(8, 10)

        def forward(self, x):
            h = self.stem(x)
            h = torch.relu(h + self.block(h))
            return self.head(h.mean(dim=(2, 3)))

    torch.manual_seed(0)
    X, y = load_digits(return_X_y=True)
    X = torch.as_tensor(X / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.as_tensor(y)
    model = ResidualCNN()
    if weights is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        train = DataLoader(TensorDataset(X, y), batch_size=128, shuffle=True)
        for _ in range(30):  # a plain training loop
            for inputs, targets in train:
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(inputs), targets).backward()
                optimizer.step()
    else:
        model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    with torch.no_grad():
        accuracy = float((model(X).argmax(1) == y).float().mean())
    return model, DataLoader(TensorDataset(X, y), batch_size=128), accuracy


def measure(tool, weights):
    import torch

    torch.set_num_threads(1)
    model, loader, accuracy = _model_and_loader(weights)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if tool == "flatgen":
        from flatgen import CurvatureAnalyzer

        analyzer = CurvatureAnalyzer(
            filter_normalized=False, tol=1e-6, n_probes=0, random_state=0
        )
        value = analyzer.fit(model, loader, None).top_eigenvalue_
    else:
        from pyhessian import hessian

        criterion = torch.nn.CrossEntropyLoss()
        h = hessian(model, criterion, dataloader=loader, cuda=False)
        value = h.eigenvalues(maxIter=200, tol=1e-6)[0][0]
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "tool": tool,
        "eigenvalue": float(value),
        "seconds": seconds,
        "peak_growth_mb": (after - before) / 1024,
        "peak_mb": after / 1024,
        "train_accuracy": accuracy,
        "n_params": sum(p.numel() for p in model.parameters()),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tool", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tool:
        print(json.dumps(measure(args.tool, args.weights)))
        return
    import torch

    # Trained once here; each measuring process only loads the weights, so
    # its peak memory growth is the analysis's.
    weights = os.path.join(tempfile.mkdtemp(), "resnet.pt")
    torch.save(_model_and_loader()[0].state_dict(), weights)
    runs = {"flatgen": [], "pyhessian": []}
    for _ in range(args.repeats):  # interleaved
        for tool in runs:
            out = subprocess.run(
                [sys.executable, __file__, "--tool", tool, "--weights", weights],
                capture_output=True,
                text=True,
                check=True,
            )
            runs[tool].append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = runs["flatgen"][0]
    print(
        f"residual CNN with batch norm, {first['n_params']} parameters, digits "
        f"1,797 images (train accuracy {first['train_accuracy']:.3f}), "
        "batches of 128"
    )
    best = {tool: min(r["seconds"] for r in found) for tool, found in runs.items()}
    for tool, found in runs.items():
        print(
            f"{tool:10s} top eigenvalue {found[0]['eigenvalue']:.8g}  best "
            f"{best[tool]:.2f} s  peak RSS {found[0]['peak_mb']:.0f} MB "
            f"(+{found[0]['peak_growth_mb']:.0f} MB during the analysis)"
        )
    a, b = runs["flatgen"][0]["eigenvalue"], runs["pyhessian"][0]["eigenvalue"]
    print(
        f"relative difference {abs(a - b) / abs(b):.2e}; "
        f"time PyHessian / flatgen {best['pyhessian'] / best['flatgen']:.2f}"
    )


if __name__ == "__main__":
    main()
