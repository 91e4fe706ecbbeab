"""Basin radii, a 2-D slice and sharpness through a DataLoader vs arrays in memory.

Two models, each measured twice in fresh processes (peak resident memory
cannot be reset inside one): once with the training set as arrays, once as
a ``DataLoader`` of batches, which every measurement passes over and sums
(the full-data loss, one batch in memory at a time):

- ``resnet``: the residual CNN with batch norm of
  ``curvature_resnet_vs_pyhessian.py`` (trained by a plain PyTorch loop on the
  1,797 digits images, eval mode), batches of 128: ``BasinAnalyzer``
  (50 directions, cutoff 2x the minimum's loss), ``LossSlice`` (2-D,
  21 x 21) and average ``SharpnessAnalyzer`` (32 draws);
- ``rows``: a 100,000-row synthetic set made on demand by a ``Dataset``
  (64 features, 10 classes) and a 64-256-256-10 MLP trained on 5,000 of
  them, batches of 1,000:
  ``BasinAnalyzer`` (20 directions); the set is never in memory.

Printed per model and data form: the measured numbers, the largest relative
difference between the two forms, the wall time (one thread) and the growth
of the peak resident set size during the measurement.

    python benchmarks/measure_through_batches.py [--rows 100000]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from curvature_batches_memory import _rows  # noqa: E402 - the same rows


def _resnet(weights):
    sys.path.insert(0, HERE)
    from curvature_resnet_vs_pyhessian import _model_and_loader

    model, loader, _ = _model_and_loader(weights)
    return model, loader


def _mlp(weights=None):
    """The MLP: trained here (Adam, 5,000 rows, 30 epochs) or loaded."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(64, 256),
        nn.ReLU(),
        nn.Linear(256, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )
    if weights is not None:
        net.load_state_dict(torch.load(weights, weights_only=True))
        return net.eval()
    rows = _rows(5000)
    X = torch.stack([rows[i][0] for i in range(len(rows))])
    y = X[:, :10].argmax(dim=1)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(30):
        for batch in torch.randperm(len(X)).split(250):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(X[batch]), y[batch]).backward()
            optimizer.step()
    return net.eval()


def measure(model_name, form, weights, n_rows):
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from flatgen import BasinAnalyzer, LossSlice, SharpnessAnalyzer

    torch.set_num_threads(1)
    if model_name == "resnet":
        model, loader = _resnet(weights)
        analyzers = {
            "radii": BasinAnalyzer(
                n_directions=50, cutoff=2.0, cutoff_type="relative", random_state=0
            ),
            "slice": LossSlice(n_dims=2, grid_resolution=21, span=1.0, random_state=0),
            "sharpness": SharpnessAnalyzer("average", n_draws=32, random_state=0),
        }
        attributes = {"radii": "radii_", "slice": "losses_", "sharpness": "sharpness_"}
    else:
        model, rows = _mlp(weights.replace("resnet.pt", "mlp.pt")), _rows(n_rows)
        loader = DataLoader(rows, batch_size=1000)
        analyzers = {
            "radii": BasinAnalyzer(
                n_directions=20, cutoff=2.0, cutoff_type="relative", random_state=0
            )
        }
        attributes = {"radii": "radii_"}
    if form == "arrays":
        X = torch.cat([inputs for inputs, _ in loader])
        y = torch.cat([labels for _, labels in loader])
        data = (X, y)
    else:
        data = (loader, None)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    values = {}
    for name, analyzer in analyzers.items():
        analyzer.fit(model, *data)
        values[name] = np.asarray(getattr(analyzer, attributes[name])).tolist()
        values["base_loss"] = analyzer.base_loss_
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "values": values,
        "seconds": seconds,
        "peak_growth_mb": (after - before) / 1024,
        "peak_mb": after / 1024,
    }


def _relative_difference(a, b):
    import numpy as np

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--form", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model:
        print(json.dumps(measure(args.model, args.form, args.weights, args.rows)))
        return
    import numpy as np
    import torch

    sys.path.insert(0, HERE)
    from curvature_resnet_vs_pyhessian import _model_and_loader

    weights = os.path.join(tempfile.mkdtemp(), "resnet.pt")
    torch.save(_model_and_loader()[0].state_dict(), weights)
    torch.save(_mlp().state_dict(), weights.replace("resnet.pt", "mlp.pt"))
    for model_name, title in (
        ("resnet", "residual CNN with batch norm, digits, batches of 128"),
        (
            "rows",
            f"64-256-256-10 MLP, {args.rows:,} rows made on demand, batches of 1,000",
        ),
    ):
        print(title, flush=True)
        results = {}
        for form in ("arrays", "batches"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--model",
                    model_name,
                    "--form",
                    form,
                    "--weights",
                    weights,
                    "--rows",
                    str(args.rows),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results[form] = json.loads(out.stdout.strip().splitlines()[-1])
        for form, result in results.items():
            summary = ", ".join(
                f"{name} mean {np.mean(value):.6g}"
                for name, value in result["values"].items()
            )
            print(
                f"  {form:8s} {summary}; {result['seconds']:.1f} s, peak RSS "
                f"{result['peak_mb']:.0f} MB (+{result['peak_growth_mb']:.0f} MB "
                "during the measurement)"
            )
        worst = max(
            _relative_difference(results["batches"]["values"][name], value)
            for name, value in results["arrays"]["values"].items()
        )
        print(f"  largest relative difference batches vs arrays: {worst:.1e}")


if __name__ == "__main__":
    main()
