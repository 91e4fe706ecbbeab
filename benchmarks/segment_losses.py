"""The star-shaped basin's energy: losses along whole segments, one gradient.

With ``basin='star'`` every step of the annealed volume's chains needs, at
each chain's displacement ``z``, the maximum of the training loss over the
segment's 16 points ``s z`` (``s = k / 16``) and the gradient where it is
reached. Two orders of that work are timed here side by side on the same
network and displacements, repeats interleaved (medians):

- *rows* (the former order): the loss and gradient at ``z``, the losses at
  the 15 inner points built as rows ``s z`` and evaluated like any
  displacements, and a second gradient where an inner point is higher
  than the end: timed with it for every chain (*two gradients*: as on the
  poisoned swiss-roll network at its cutoff, where 93 % of the steps had
  their maximum inside) and for none (*end gradient*: a loss rising all the
  way, as along random directions);
- *segments, one gradient* (flatgen's): the losses at all 16 points from
  ``NetworkBasinLoss.losses_along`` (the weights ``theta* + s embed(scale z)``
  written in one product and one sum), the end point among them, then one
  gradient at the maximum.

The losses alone are also timed both ways, and compared (they agree to the
network's float32 rounding). Chains: 8 random displacements ``z``.

Networks: the swiss-roll experiment's MLP (200 training points, 3,229
perturbed weights) and the study's digits CNN (8-16 channels, 400 images).

    python benchmarks/segment_losses.py [--repeats 7] [--calls 30]
"""

import argparse
import time

import numpy as np
import torch
from batched_gradients import networks

POINTS = 16


def rows_then_gradients(basin_loss, z, inside):
    """The former order: gradient at the end, inner rows, then a second one.

    The second gradient is taken at the inner maximum for every chain when
    ``inside`` (a maximum inside the segment, as for 93 % of the steps on
    the poisoned swiss-roll network), for none otherwise (the loss rising
    all the way, as along random directions).
    """
    values, grads = basin_loss.losses_and_grads(z)
    shares = torch.arange(1, POINTS, dtype=torch.float64) / POINTS
    rows = (shares[:, None, None] * z[None]).reshape(-1, z.shape[1])
    inner = basin_loss(rows.to(torch.float32)).reshape(len(shares), len(z))
    if inside:
        at = shares[inner.argmax(0)][:, None]
        values, grads = basin_loss.losses_and_grads(at * z)
        grads = at * grads
    return values, grads


def rows_end_gradient(basin_loss, z):
    return rows_then_gradients(basin_loss, z, inside=False)


def rows_two_gradients(basin_loss, z):
    return rows_then_gradients(basin_loss, z, inside=True)


def segments_one_gradient(basin_loss, z):
    """flatgen's order: all 16 losses at once, one gradient at the maximum."""
    shares = torch.arange(1, POINTS + 1, dtype=torch.float64) / POINTS
    along = basin_loss.losses_along(z.to(torch.float32), shares)
    share = shares[along.argmax(0)][:, None]
    values, grads = basin_loss.losses_and_grads(share * z)
    return values, share * grads


def rows_losses(basin_loss, z):
    shares = torch.arange(1, POINTS + 1, dtype=torch.float64) / POINTS
    rows = (shares[:, None, None] * z[None]).reshape(-1, z.shape[1])
    return basin_loss(rows.to(torch.float32)).reshape(POINTS, len(z))


def segment_losses(basin_loss, z):
    shares = torch.arange(1, POINTS + 1, dtype=torch.float64) / POINTS
    return basin_loss.losses_along(z.to(torch.float32), shares)


def ms_per_call(function, basin_loss, z, calls):
    start = time.perf_counter()
    for _ in range(calls):
        function(basin_loss, z)
    return (time.perf_counter() - start) / calls * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, 8 chains, {POINTS} points")
    paths = {
        "segments, one gradient": segments_one_gradient,
        "rows, two gradients": rows_two_gradients,
        "rows, end gradient": rows_end_gradient,
        "losses along segments": segment_losses,
        "losses as rows": rows_losses,
    }
    for name, objective in networks().items():
        basin_loss = objective.basin_loss()
        n = basin_loss.n_dims
        generator = torch.Generator().manual_seed(0)
        z = torch.randn((8, n), generator=generator, dtype=torch.float64)
        z /= z.norm(dim=1, keepdim=True)
        gap = float(
            (segment_losses(basin_loss, z) - rows_losses(basin_loss, z)).abs().max()
        )
        times = {label: [] for label in paths}
        for _ in range(args.repeats):
            for label, path in paths.items():
                times[label].append(ms_per_call(path, basin_loss, z, args.calls))
        ms = {label: float(np.median(value)) for label, value in times.items()}
        print(f"\n{name}: {n} perturbed weights; losses differ by at most {gap:.1e}")
        for new, old in (
            ("segments, one gradient", "rows, two gradients"),
            ("segments, one gradient", "rows, end gradient"),
            ("losses along segments", "losses as rows"),
        ):
            print(
                f"  {new}: {ms[new]:.2f} ms vs {old}: {ms[old]:.2f} ms: "
                f"{ms[old] / ms[new]:.2f}x"
            )


if __name__ == "__main__":
    main()
