"""Sharpness, PAC-Bayes and norm measures against answers computed independently."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from flatgen.landscape import (
    NetworkLoss,
    ParameterLayout,
    average_sharpness,
    fisher_rao_norm,
    log10_norm_products,
    log10_path_norm,
    pac_bayes_sigma,
    perturbation_scale,
    worst_case_radius,
    worst_case_sharpness,
)
from flatgen.landscape._sharpness import _largest_below

torch.set_default_dtype(torch.float32)


def quadratic(n=12, seed=0):
    """A quadratic bowl: its Hessian, minimum and both loss callables (float64)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    eigenvalues = np.geomspace(0.1, 20.0, n)
    H = torch.tensor(Q @ np.diag(eigenvalues) @ Q.T)
    theta0 = torch.tensor(rng.normal(size=n))

    def losses_at(thetas):
        d = thetas - theta0
        return 0.5 * torch.einsum("bi,ij,bj->b", d, H, d) + 1.0

    def loss_and_grad(theta):
        d = theta - theta0
        return float(0.5 * d @ H @ d + 1.0), H @ d

    return H.numpy(), theta0, losses_at, loss_and_grad


@pytest.mark.parametrize("adaptive", [False, True])
def test_worst_case_sharpness_of_a_quadratic_is_its_closed_form(adaptive):
    H, theta0, _, loss_and_grad = quadratic()
    scale = theta0.abs() if adaptive else torch.ones_like(theta0)
    S = np.diag(scale.numpy())
    radius = 0.1
    expected = 0.5 * radius**2 * np.linalg.eigvalsh(S @ H @ S)[-1]
    found, u = worst_case_sharpness(
        loss_and_grad, theta0, scale, radius, n_steps=60, seed=1
    )
    assert found == pytest.approx(expected, rel=1e-3)
    assert float(u.norm()) <= radius * (1 + 1e-9)


@pytest.mark.parametrize("adaptive", [False, True])
def test_average_sharpness_of_a_quadratic_is_half_the_scaled_trace(adaptive):
    H, theta0, losses_at, _ = quadratic()
    scale = theta0.abs() if adaptive else torch.ones_like(theta0)
    S = np.diag(scale.numpy())
    sigma = 0.05
    expected = 0.5 * sigma**2 * np.trace(S @ H @ S)
    found, error = average_sharpness(
        losses_at, theta0, scale, sigma, n_samples=4000, seed=2
    )
    assert abs(found - expected) < 4 * error
    assert error < 0.05 * expected


def test_pac_bayes_sigma_of_a_quadratic():
    H, theta0, losses_at, _ = quadratic()
    scale = torch.ones_like(theta0)
    bound = 0.1
    # E[loss increase] = sigma^2 / 2 tr(H): the closed form of the bound.
    expected = np.sqrt(2 * bound / np.trace(H))
    sigma, capped, _ = pac_bayes_sigma(
        losses_at, theta0, scale, bound=bound, n_samples=4000, seed=3
    )
    assert not capped
    assert sigma == pytest.approx(expected, rel=0.03)
    # A bound never reached within sigma_max is flagged, not hidden.
    sigma, capped, _ = pac_bayes_sigma(
        losses_at, theta0, scale, bound=1e6, sigma_max=1.0, seed=3
    )
    assert capped and sigma == 1.0


def _bisection_evaluations(crossing, upper, rtol):
    """Evaluations of a decade walk from ``upper`` and bisection to ``rtol``."""
    decades = int(np.ceil(np.log10(upper / crossing)))
    return 1 + decades + int(np.ceil(np.log2(np.log(10.0) / np.log1p(rtol))))


@pytest.mark.parametrize("power", [0.5, 2.0, 4.5])
@pytest.mark.parametrize("crossing", [3e-5, 0.0123, 0.99, 7.0])
@pytest.mark.parametrize("rtol", [1e-2, 1e-3, 1e-6])
def test_tolerated_scale_search_brackets_a_power_law_crossing(power, crossing, rtol):
    # excess = bound (x / crossing)**power crosses the bound at ``crossing``.
    bound = 0.1
    calls = []

    def excess(x):
        calls.append(x)
        return bound * (x / crossing) ** power

    x, capped, n_evaluations = _largest_below(excess, bound, 10.0, rtol)
    assert not capped and n_evaluations == len(calls)
    assert excess(x) <= bound
    assert x <= crossing * (1 + 1e-12) and crossing <= x * (1 + rtol)
    # Interpolation in (log x, log excess) is exact on a power law: at most
    # 4 evaluations past the decade walk, where bisection takes 8 to 22.
    walk = 1 + int(np.ceil(np.log10(10.0 / crossing)))
    assert n_evaluations - walk <= 4
    assert _bisection_evaluations(crossing, 10.0, rtol) - walk >= 8


def _staircase(x):
    return 0.02 * np.floor(40 * x)


@pytest.mark.parametrize(
    "excess, crossing",
    [
        # A jump from within the bound to an overflowing loss.
        (lambda x: 0.01 if x < 0.3 else np.inf, 0.3),
        (lambda x: 0.01 if x < 0.3 else np.nan, 0.3),
        # Losses below the minimum's (negative excess) up to a jump.
        (lambda x: -1.0 if x < 0.05 else 1.0, 0.05),
        # Flat and then steep: interpolation overshoots, bisection rescues.
        (lambda x: 1e-9 * x if x < 0.2 else 1e6 * (x - 0.2) + 1e-9, 0.2 + 1e-7 * 0.1),
        # A staircase: the crossing is where it first exceeds 0.1.
        (_staircase, 6 / 40),
    ],
)
def test_tolerated_scale_search_brackets_a_rough_crossing(excess, crossing):
    rtol = 1e-3
    x, capped, n_evaluations = _largest_below(excess, 0.1, 10.0, rtol)
    assert not capped
    assert excess(x) <= 0.1
    assert x <= crossing * (1 + 1e-9) and crossing <= x * (1 + rtol) * (1 + 1e-9)
    # Where interpolation fails the method falls back on bisection: at most
    # 3 evaluations more than bisection alone.
    assert n_evaluations <= _bisection_evaluations(crossing, 10.0, rtol) + 3


def test_tolerated_scale_search_at_its_ends():
    # Within the bound at the cap: capped, one evaluation.
    assert _largest_below(lambda x: 0.0, 0.1, 10.0, 1e-3) == (10.0, True, 1)
    # Beyond it at every decade: zero, flagged by the caller as it is now.
    x, capped, _ = _largest_below(lambda x: 1.0, 0.1, 10.0, 1e-3)
    assert x == 0.0 and not capped
    # A crossing on a decade's point is returned exactly.
    x, capped, n_evaluations = _largest_below(
        lambda x: 0.1 if x <= 0.1 else 1.0, 0.1, 10.0, 1e-3
    )
    assert (x, capped) == (0.1, False) and n_evaluations <= 15


@pytest.mark.parametrize("adaptive", [False, True])
def test_worst_case_radius_of_a_quadratic_is_its_closed_form(adaptive):
    H, theta0, _, loss_and_grad = quadratic()
    scale = theta0.abs() if adaptive else torch.ones_like(theta0)
    S = np.diag(scale.numpy())
    bound = 0.1
    # rho^2 / 2 lambda_max(S H S) = bound: the radius written out.
    expected = np.sqrt(2 * bound / np.linalg.eigvalsh(S @ H @ S)[-1])
    radius, capped, n_evaluations = worst_case_radius(
        loss_and_grad, theta0, scale, bound=bound, n_steps=60, rtol=1e-4, seed=1
    )
    # Bisection of the bracketing decade to rtol 1e-4 alone would take 15.
    assert not capped and n_evaluations <= 8
    assert radius == pytest.approx(expected, rel=2e-3)
    # A bound never reached within radius_max is flagged, not hidden.
    radius, capped, _ = worst_case_radius(
        loss_and_grad, theta0, scale, bound=1e6, radius_max=1.0, seed=1
    )
    assert capped and radius == 1.0
    with pytest.raises(ValueError, match="bound must be a positive"):
        worst_case_radius(loss_and_grad, theta0, scale, bound=0.0)
    with pytest.raises(ValueError, match="radius_max must be a positive"):
        worst_case_radius(loss_and_grad, theta0, scale, radius_max=np.inf)


def test_worst_case_radius_on_a_network_is_where_its_sharpness_meets_the_bound():
    net, X, y = tiny_network(bias=True)
    loss = NetworkLoss(net, X, y)
    scale = perturbation_scale(loss.layout, loss.theta0, "raw", include_bias=True)
    bound = 0.1
    radius, capped, _ = worst_case_radius(
        loss.loss_and_grad, loss.theta0, scale, bound=bound, n_steps=30, seed=0
    )
    assert not capped and radius > 0

    def sharpness(r):
        found, _ = worst_case_sharpness(
            loss.loss_and_grad, loss.theta0, scale, r, n_steps=30, seed=0
        )
        return found

    # At the radius the ascent (same starts) stays within the bound; 5 %
    # further it does not.
    assert sharpness(radius) <= bound < sharpness(1.05 * radius)


def tiny_network(bias=False, seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(3, 4, bias=bias),
        nn.ReLU(),
        nn.Linear(4, 3, bias=bias),
        nn.ReLU(),
        nn.Linear(3, 2, bias=bias),
    )
    X = torch.randn(30, 3)
    y = (X[:, 0] + X[:, 1] > 0).long()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(X), y).backward()
        optimizer.step()
    return net, X, y


def test_worst_case_sharpness_beats_brute_force_sampling_on_a_network():
    net, X, y = tiny_network(bias=True)
    loss = NetworkLoss(net, X, y)
    scale = perturbation_scale(loss.layout, loss.theta0, "raw", include_bias=True)
    radius = 0.3
    found, u = worst_case_sharpness(
        loss.loss_and_grad, loss.theta0, scale, radius, n_steps=30, seed=0
    )
    # Brute force: the best of 3,000 random points of the sphere.
    generator = torch.Generator().manual_seed(5)
    draws = torch.randn((3000, loss.theta0.numel()), generator=generator)
    draws *= radius / draws.norm(dim=1, keepdim=True)
    with torch.no_grad():
        base = float(loss.per_sample(loss.theta0).mean())
        losses = torch.func.vmap(lambda t: loss.per_sample(t).mean())
        sampled = float(losses(loss.theta0 + draws).max()) - base
    assert found >= sampled > 0
    assert float(u.norm()) <= radius * (1 + 1e-6)
    # The module handed in is never changed.
    assert torch.equal(
        torch.cat([p.detach().reshape(-1) for p in net.parameters()]), loss.theta0
    )


def test_pac_bayes_sigma_by_brute_force_sampling_on_a_network():
    net, X, y = tiny_network(bias=True)
    loss = NetworkLoss(net, X, y)
    scale = perturbation_scale(loss.layout, loss.theta0, "raw", include_bias=True)

    def losses_at(thetas):
        with torch.no_grad():
            return torch.func.vmap(lambda t: loss.per_sample(t).mean())(thetas)

    bound = 0.1
    sigma, capped, _ = pac_bayes_sigma(
        losses_at, loss.theta0, scale, bound=bound, n_samples=256, seed=0
    )
    assert not capped and sigma > 0
    # Fresh, independent draws: the mean increase at sigma is the bound, and
    # 20 % more (less) noise clearly crosses (stays under) it.
    generator = torch.Generator().manual_seed(99)
    draws = torch.randn((4000, loss.theta0.numel()), generator=generator)
    base = float(losses_at(loss.theta0[None])[0])

    def excess(s):
        return float(losses_at(loss.theta0 + s * draws).mean()) - base

    assert excess(sigma) == pytest.approx(bound, rel=0.15)
    assert excess(1.2 * sigma) > bound > excess(sigma / 1.2)


def test_norm_products_match_numpy():
    net, _, _ = tiny_network()
    weights = [p.detach().double().numpy() for p in net.parameters()]
    frobenius = sum(np.log10(np.linalg.norm(w) ** 2) for w in weights)
    spectral = sum(
        np.log10(np.linalg.svd(w, compute_uv=False)[0] ** 2) for w in weights
    )
    got = log10_norm_products(net)
    assert got == pytest.approx((frobenius, spectral), rel=1e-10)


def test_path_norm_is_the_sum_over_paths():
    net, _, _ = tiny_network()
    W1, W2, W3 = (p.detach().double().numpy() for p in net.parameters())
    # Every path input i -> hidden j -> hidden k -> output m, enumerated.
    total = sum(
        (W1[j, i] * W2[k, j] * W3[m, k]) ** 2
        for i, j, k, m in itertools.product(range(3), range(4), range(3), range(2))
    )
    assert log10_path_norm(net, (3,)) == pytest.approx(np.log10(total), rel=1e-6)


def test_fisher_rao_norm_of_a_homogeneous_network():
    net, X, y = tiny_network()
    # Independent route: (L + 1)^2 E <dloss/dlogits, logits>^2 with 3 layers.
    logits = net(X).detach().requires_grad_(True)
    losses = nn.functional.cross_entropy(logits, y, reduction="none")
    (dlogits,) = torch.autograd.grad(losses.sum(), logits)
    expected = 9 * float(((dlogits * logits).sum(dim=1) ** 2).mean())
    got = fisher_rao_norm(NetworkLoss(net, X, y))
    assert got == pytest.approx(expected, rel=1e-4)


def test_scales_and_bad_arguments():
    net, _, _ = tiny_network(bias=True)
    layout = ParameterLayout.from_module(net)
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    raw = perturbation_scale(layout, theta, "raw")
    assert set(raw.unique().tolist()) == {0.0, 1.0}  # biases left alone
    adaptive = perturbation_scale(layout, theta, "adaptive")
    assert torch.equal(adaptive, theta.abs() * raw)
    normalized = perturbation_scale(layout, theta, "filter_normalized")
    first_row = theta[:3]
    assert torch.allclose(normalized[:3], first_row.norm().expand(3))
    with pytest.raises(ValueError, match="scale must be one of"):
        perturbation_scale(layout, theta, "elementwise")
    with pytest.raises(ValueError, match="radius must be a positive"):
        worst_case_sharpness(lambda t: (0.0, t), theta, raw, 0.0)
    with pytest.raises(ValueError, match="sigma must be a positive"):
        average_sharpness(lambda t: t.sum(1), theta, raw, -1.0)
