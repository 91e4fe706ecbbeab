"""The test bed's exact volumes, checked by means independent of each other."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.special import gammaln

from flatgen.landscape import basin_log10_volume, make_basin
from flatgen.landscape._known_basins import (
    BASIN_KINDS,
    _bromwich,
    _ellipsoid,
    _power_body,
    _quartic_laplace,
)


@pytest.mark.parametrize("n", [100, 1000])
@pytest.mark.parametrize("cutoff", [0.5, 7.0])
def test_bromwich_inversion_recovers_a_power_law_volume(n, cutoff):
    # Z(t) = C t^-k has the inverse C c^k / k!: the quadrature must find it.
    rng = np.random.RandomState(n)
    log_a = rng.uniform(-3, 3, n)
    degrees = np.where(rng.rand(n) < 0.3, 2.0, 4.0)
    k = np.sum(1 / degrees)
    log_c = np.sum(math.log(2) + gammaln(1 + 1 / degrees) - log_a / degrees)
    inverted = _bromwich(lambda t: log_c - k * np.log(t), cutoff)
    assert inverted == pytest.approx(_power_body(log_a, degrees, cutoff), abs=1e-9)


def test_one_dimensional_laplace_integrals_match_quadrature():
    for kappa in (0.0, 0.01, 3.0):
        for t in (0.3, 5.0):

            def integrand(u):
                return math.exp(-t * (0.5 * u * u + kappa * u**4))

            exact = quad(integrand, -50, 50)[0]
            value = _quartic_laplace(kappa)(np.array([t]))[0]
            assert value.real == pytest.approx(math.log(exact), abs=1e-8)


def test_quartic_without_its_quartic_term_is_the_ellipsoid():
    a = 10 ** np.random.RandomState(0).uniform(-1, 1, 300)
    gaussian = _quartic_laplace(0.0)
    inverted = _bromwich(lambda t: -0.5 * np.log(a).sum() + 300 * gaussian(t), 1.0)
    assert inverted == pytest.approx(_ellipsoid(np.log(a), 1.0), abs=1e-8)


def test_a_small_body_by_brute_force_sampling():
    # Uniform points in a box around the basin, counted: the exact value of a
    # 3-D degenerate body and of an L4 ball is within the count's error.
    rng = np.random.RandomState(0)
    for kind in ("degenerate", "lp_ball"):
        basin = make_basin(kind, 3, random_state=1)
        # The smallest box whose faces lie outside the body (rotated bodies
        # are convex here, so the faces' outside means the box holds it).
        for half in (0.5, 1.0, 2.0, 4.0, 8.0):
            face = torch.as_tensor(rng.uniform(-half, half, (20_000, 3)))
            signs = torch.as_tensor(rng.choice([-1.0, 1.0], 20_000))
            face[np.arange(20_000), rng.randint(3, size=20_000)] = half * signs
            if (basin.loss_fn(face) >= basin.cutoff).all():
                break
        points = torch.as_tensor(rng.uniform(-half, half, (400_000, 3)))
        inside = (basin.loss_fn(points) < basin.cutoff).double().mean().item()
        assert inside > 0.02
        estimate = math.log10(inside * (2 * half) ** 3)
        error = math.sqrt((1 - inside) / (inside * 400_000)) / math.log(10)
        assert abs(estimate - basin.log10_volume) < 4 * error


def test_a_moat_by_brute_force_sampling():
    # Uniform points of boxes, counted. rho < 1.5 lies inside
    # |y| < 1.5 / sqrt(lam_min) (lam_min from the Hessian at the minimum,
    # 2 pi^2 h lam): there the count below the cutoff is the sublevel set.
    # The star-shaped basin: the points whose segment from the minimum stays
    # below the cutoff at 200 points, counted in a box holding rho < 0.6
    # (beyond the inner ball and the ridge, and part of the moat); both within the
    # counts' errors of the exact values.
    basin = make_basin("moat", 3, random_state=0)
    hessian = torch.autograd.functional.hessian(
        lambda z: basin.loss_fn(z[None])[0], torch.zeros(3, dtype=torch.float64)
    )
    lam_min = torch.linalg.eigvalsh(hessian)[0].item() / (2 * math.pi**2 * 10.0)
    rng = np.random.RandomState(0)
    counts = []
    for half, star in (
        (1.5 / math.sqrt(lam_min), False),
        (0.6 / math.sqrt(lam_min), True),
    ):
        points = torch.as_tensor(rng.uniform(-half, half, (400_000, 3)))
        inside = basin.loss_fn(points) < basin.cutoff
        below = inside.clone()
        if star:
            for share in torch.linspace(0.005, 1.0, 200, dtype=torch.float64):
                inside &= basin.loss_fn(share * points) < basin.cutoff
            # The box reaches into the moat: the segment test is what counts.
            assert int(below.sum()) > 2 * int(inside.sum())
        counts.append((int(inside.sum()), half))
    exact = (basin.sublevel_log10_volume, basin.log10_volume)
    for (count, half), value in zip(counts, exact):
        share = count / 400_000
        estimate = math.log10(share * (2 * half) ** 3)
        error = math.sqrt((1 - share) / (share * 400_000)) / math.log(10)
        assert count > 400 and abs(estimate - value) < 4 * error
    assert basin.sublevel_log10_volume > basin.log10_volume + 2


@pytest.mark.parametrize("n", [2, 3, 4])
def test_a_cap_bound_basin_by_uniform_points_of_the_ball(n):
    # Uniform points of the unit ball (Gaussian direction, radius U^(1/n)),
    # counted inside the basin, times the ball's volume.
    basin = make_basin("cap_bound", n, cutoff=0.3, random_state=2)
    assert basin.max_radius == 1.0
    rng = np.random.RandomState(n)
    g = rng.standard_normal((400_000, n))
    points = g / np.linalg.norm(g, axis=1, keepdims=True)
    points *= rng.uniform(size=(400_000, 1)) ** (1.0 / n)
    share = (basin.loss_fn(torch.as_tensor(points)) < 0.3).double().mean().item()
    log10_ball = (0.5 * n * math.log(math.pi) - math.lgamma(0.5 * n + 1)) / math.log(10)
    error = math.sqrt((1 - share) / (share * 400_000)) / math.log(10)
    assert abs(math.log10(share) + log10_ball - basin.log10_volume) < 4 * error
    # The loss is a quadratic of rank n // 2: flat (to every order) in the
    # other directions, which only the cap bounds.
    hessian = torch.autograd.functional.hessian(
        lambda z: basin.loss_fn(z[None])[0], torch.zeros(n, dtype=torch.float64)
    )
    assert torch.linalg.matrix_rank(hessian).item() == n // 2


@pytest.mark.parametrize("kind", BASIN_KINDS)
def test_every_basin_is_seeded_differentiable_and_zero_at_the_minimum(kind):
    one = make_basin(kind, 60, random_state=3)
    two = make_basin(kind, 60, random_state=3)
    z = torch.randn(5, 60, dtype=torch.float64, requires_grad=True)
    losses = one.loss_fn(z)
    assert torch.equal(losses, two.loss_fn(z)) and one.log10_volume == two.log10_volume
    assert one.loss_fn(torch.zeros(1, 60, dtype=torch.float64)).item() == 0
    (grad,) = torch.autograd.grad(losses.sum(), z)
    assert torch.isfinite(grad).all() and (losses > 0).all()


@pytest.mark.parametrize("kind", [k for k in BASIN_KINDS if k != "spiked"])
def test_losses_along_segments_are_the_losses_at_their_points(kind):
    # One rotation per row instead of one per point: the same losses.
    basin = make_basin(kind, 40, random_state=1)
    generator = torch.Generator().manual_seed(0)
    z = torch.randn((5, 40), generator=generator, dtype=torch.float64)
    z = 0.3 * z / z.norm(dim=1, keepdim=True)
    shares = torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64)
    along = basin.loss_fn.losses_along(z, shares)
    expected = torch.stack([basin.loss_fn(s * z) for s in shares])
    assert along.shape == (3, 5) and bool((expected > 0).all())
    torch.testing.assert_close(along, expected, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("kind", ["rotated_ellipsoid", "power_law", "spiked"])
def test_the_exact_quadratic_model_measures_quadratic_basins_exactly(kind):
    basin = make_basin(kind, 300, random_state=0)
    result = basin_log10_volume(
        basin.loss_fn, 300, basin.cutoff, rank="full", n_directions=50, random_state=0
    )
    assert result.log10_volume == pytest.approx(basin.log10_volume, abs=1e-3)


def test_the_hessian_at_the_minimum_is_the_quadratic_part():
    # log cosh(y/s) a has curvature a / s^2 at 0; the degenerate body's quartic
    # coordinates none: its Hessian has rank n / 10.
    basin = make_basin("degenerate", 40, random_state=0)
    hessian = torch.autograd.functional.hessian(
        lambda z: basin.loss_fn(z[None])[0], torch.zeros(40, dtype=torch.float64)
    )
    assert torch.linalg.matrix_rank(hessian).item() == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "cube"}, "kind must be one of"),
        ({"kind": "quartic", "n_dims": 1}, "n_dims must be an integer >= 2"),
        ({"kind": "quartic", "n_dims": 5000}, "too large for a rotated basin"),
        ({"kind": "quartic", "cutoff": -1.0}, "cutoff must be a positive number"),
    ],
)
def test_bad_requests_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_basin(**kwargs)


def test_a_body_too_small_for_its_exact_volume_says_so():
    # Ten dimensions: the quartic's transform is heavy-tailed along the
    # Bromwich line, so no exact volume; the error says what size works.
    with pytest.raises(RuntimeError, match="n_dims >= 40"):
        make_basin("quartic", 10, random_state=0)
