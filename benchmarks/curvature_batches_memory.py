"""Peak memory of the full-data curvature: one array vs batches from a DataLoader.

A 100,000-row synthetic set (64 features, 10 classes) and a 64-256-256-10 MLP.
Each mode runs in a fresh process (peak resident memory cannot be reset inside
one) and reports the top Hessian eigenvalue, the wall time and the growth of
the peak resident set size during the analysis:

- ``arrays``: the set in memory, ``CurvatureAnalyzer().fit(net, X, y)``; the
  products keep the whole set's activations and gradient graph;
- ``batches``: the rows made on demand by a ``Dataset`` and read through a
  ``DataLoader`` of 1,000 rows, ``CurvatureAnalyzer().fit(net, loader, None)``;
  the set is never in memory, each product passes over the batches.

Both measure the same full-data Hessian: the eigenvalues agree to the solver's
tolerance.

    python benchmarks/curvature_batches_memory.py [--rows 100000]
"""

import argparse
import json
import resource
import subprocess
import sys
import time


def _rows(n_rows):
    import torch
    from torch.utils.data import Dataset

    class Rows(Dataset):
        def __len__(self):
            return n_rows

        def __getitem__(self, index):
            generator = torch.Generator().manual_seed(index)
            x = torch.randn(64, generator=generator)
            return x, int(x[:10].argmax())

    return Rows()


def measure(mode, n_rows):
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from flatgen import CurvatureAnalyzer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(64, 256),
        nn.ReLU(),
        nn.Linear(256, 256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )
    rows = _rows(n_rows)
    if mode == "arrays":
        X = torch.stack([rows[i][0] for i in range(n_rows)])
        y = X[:, :10].argmax(dim=1)
        data = (X, y)
    else:
        data = (DataLoader(rows, batch_size=1000), None)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    analyzer = CurvatureAnalyzer(random_state=0, tol=1e-3, n_probes=0)
    analyzer.fit(net, *data)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "mode": mode,
        "top_eigenvalue": analyzer.top_eigenvalue_,
        "seconds": round(seconds, 1),
        "peak_growth_mb": round((after - before) / 1024, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--mode", choices=["arrays", "batches"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.rows)))
        return
    for mode in ("arrays", "batches"):
        out = subprocess.run(
            [sys.executable, __file__, "--mode", mode, "--rows", str(args.rows)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{mode:8s} top eigenvalue {result['top_eigenvalue']:.6g}  "
            f"{result['seconds']:6.1f} s  peak memory +{result['peak_growth_mb']} MB"
        )


if __name__ == "__main__":
    main()
