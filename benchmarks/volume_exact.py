"""Volume estimators against basins of exactly known volume.

Cases (the loss is a function of a displacement z from the minimum):

- axis:     ellipsoid, eigenvalues log-uniform over four decades (n = 1,500);
- rotated:  isotropic bulk plus 10 spikes of 1e2-1e4 along random orthonormal
            vectors (n = 2,000);
- both:     the axis spread plus the rotated spikes (n = 1,500): beyond the
            preconditioner's model, shown to say where it stops;
- quartic:  q_a + q_b + gamma q_a^2 on blocks of 500 and 1,000 dimensions,
            exact volume from a 1-D quadrature (non-quadratic, star-shaped);
- full rot: an ellipsoid whose four-decade spectrum is fully rotated (n = 1,200);
- flat:     sum z_i^4 (n = 10): flat to second order, exact volume
            (2 Gamma(5/4))^n / Gamma(1 + n/4).

Estimators: 'preconditioned' (low-rank + diagonal model, rank 40), 'full'
(the exact quadratic model, rank='full') and 'naive' (uniform rays).

For each case and estimator, the error |log10 V_est - log10 V_true| (orders of
magnitude) at 100, 300 and 1,000 rays, the effective sample size, and the
coverage of the 95 % interval over repeated seeds.

    python benchmarks/volume_exact.py            # full table (a few minutes)
    python benchmarks/volume_exact.py --quick    # smaller
"""

import argparse
import math
import time
import warnings

import numpy as np
import torch
from scipy.special import gammaln, logsumexp

from flatgen.landscape import basin_log10_volume


def log10_ball(n):
    return (0.5 * n * math.log(math.pi) - gammaln(0.5 * n + 1)) / math.log(10)


def ellipsoid(eigenvalues, cutoff):
    return log10_ball(len(eigenvalues)) + 0.5 * np.log10(2 * cutoff / eigenvalues).sum()


def axis_case(n=1500, seed=0):
    lam = 10 ** np.random.RandomState(seed).uniform(-2, 2, n)
    t = torch.as_tensor(lam)
    return (lambda z: 0.5 * (z.square() * t).sum(1)), n, ellipsoid(lam, 1.0)


def rotated_case(n=2000, k=10, seed=0, spread=False):
    rng = np.random.RandomState(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, k)))
    spikes = 10 ** rng.uniform(2, 4, k)
    diag = 10 ** rng.uniform(-2, 2, n) if spread else np.ones(n)
    qt, st, dt = torch.as_tensor(q), torch.as_tensor(spikes), torch.as_tensor(diag)

    def loss(z):
        return 0.5 * ((z.square() * dt).sum(1) + ((z @ qt).square() * st).sum(1))

    dense = np.diag(diag) + q @ np.diag(spikes) @ q.T
    return loss, n, ellipsoid(np.linalg.eigvalsh(dense), 1.0)


def full_rotation_case(n=1200, seed=0):
    rng = np.random.RandomState(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = 10 ** rng.uniform(-2, 2, n)
    a = torch.as_tensor((q * lam) @ q.T)
    return (lambda z: 0.5 * ((z @ a) * z).sum(1)), n, ellipsoid(lam, 1.0)


def flat_case(n=10):
    exact = (n * math.log(2 * math.gamma(1.25)) - gammaln(1 + n / 4)) / math.log(10)
    return (lambda z: (z**4).sum(1)), n, exact


def quartic_case(n_a=500, n_b=1000, gamma=0.2, seed=0):
    rng = np.random.RandomState(seed)
    lam_a, lam_b = 10 ** rng.uniform(-1, 1, n_a), 10 ** rng.uniform(-1, 1, n_b)
    ta, tb = torch.as_tensor(lam_a), torch.as_tensor(lam_b)

    def loss(z):
        qa = 0.5 * (z[:, :n_a].square() * ta).sum(1)
        return qa + 0.5 * (z[:, n_a:].square() * tb).sum(1) + gamma * qa.square()

    a_max = math.sqrt((-0.5 + math.sqrt(0.25 + gamma)) / (gamma / 2))
    a = np.linspace(0.0, a_max, 2_000_001)[1:-1]
    rest = 1.0 - 0.5 * a**2 - 0.25 * gamma * a**4
    log_f = math.log(n_a) + (n_a - 1) * np.log(a) + 0.5 * n_b * np.log(2 * rest)
    log_i = logsumexp(log_f) + math.log(a[1] - a[0])
    exact = (
        log10_ball(n_a)
        + log10_ball(n_b)
        + log_i / math.log(10)
        - 0.5 * (np.log10(lam_a).sum() + np.log10(lam_b).sum())
    )
    return loss, n_a + n_b, exact


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    sizes = [100, 300] if args.quick else [100, 300, 1000]
    n_seeds = 10 if args.quick else 40
    cases = {
        "axis n=1500": axis_case(),
        "rotated n=2000": rotated_case(),
        "both n=1500": rotated_case(1500, spread=True),
        "quartic g=0.2 n=1500": quartic_case(gamma=0.2),
        "quartic g=5 n=1500": quartic_case(gamma=5.0),
        "full rot n=1200": full_rotation_case(),
        "flat z^4 n=10": flat_case(),
    }
    estimators = {
        "preconditioned": {},
        "full": {"rank": "full"},
        "naive": {"estimator": "naive"},
    }
    print("error = log10 V_est - log10 V_true (orders of magnitude); ESS of M rays")
    print(
        f"{'case':<22}{'estimator':<16}"
        + "".join(f"{'M=' + str(m):>18}" for m in sizes)
        + f"{'time (M max)':>14}"
    )
    for name, (loss, n, exact) in cases.items():
        for estimator, options in estimators.items():
            cells = []
            for m in sizes:
                start = time.perf_counter()
                r = basin_log10_volume(
                    loss, n, 1.0, n_directions=m, random_state=0, **options
                )
                elapsed = time.perf_counter() - start
                error = r.log10_volume - exact
                cells.append(f"{error:+9.3f} ({r.effective_sample_size:5.0f})")
            print(
                f"{name:<22}{estimator:<16}"
                + "".join(f"{c:>18}" for c in cells)
                + f"{elapsed:>12.1f} s"
            )
    print()
    print(f"coverage of the 95 % interval over {n_seeds} seeds, M = 300 rays")
    for name, (loss, n, exact) in cases.items():
        for estimator in ("preconditioned", "full"):
            hits, ess = 0, []
            for seed in range(n_seeds):
                r = basin_log10_volume(
                    loss,
                    n,
                    1.0,
                    n_directions=300,
                    random_state=seed,
                    **estimators[estimator],
                )
                lo, hi = r.log10_volume_ci
                hits += lo <= exact <= hi
                ess.append(r.effective_sample_size)
            print(
                f"{name:<22}{estimator:<16} coverage {hits / n_seeds:6.1%}   median "
                f"ESS {np.median(ess):6.1f}   (warned: ESS < 30 in "
                f"{sum(e < 30 for e in ess)} of {n_seeds})"
            )


if __name__ == "__main__":
    main()
