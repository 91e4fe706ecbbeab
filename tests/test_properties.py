"""Property-based tests of the numerics: volumes, radii, directions.

Examples are derandomized (the same on every run) and the example database is
off, so the suite is deterministic and leaves no files behind.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from flatgen import PoisonedMLPClassifier, VolumeEstimator
from flatgen.analyzers import log10_ball_volume
from flatgen.landscape import (
    ParameterLayout,
    basin_radii,
    filter_normalized_directions,
    flatten_parameters,
)
from flatgen.networks import MLP, SmallCNN

from .conftest import blobs

FAST = settings(max_examples=40, deadline=None, database=None, derandomize=True)
SLOW = settings(max_examples=8, deadline=None, database=None, derandomize=True)

radius = st.floats(1e-3, 10.0, allow_nan=False, allow_infinity=False)


def direct_log10_volume(radii, n):
    """``log10(omega_n * mean(r_i^n))`` in plain float arithmetic (small n)."""
    unit_ball = math.pi ** (n / 2) / math.gamma(n / 2 + 1)
    return math.log10(unit_ball * sum(r**n for r in radii) / len(radii))


# -- log-volume formula ------------------------------------------------------


@FAST
@given(n=st.integers(1, 10), radii=st.lists(radius, min_size=1, max_size=30))
def test_log10_volume_matches_direct_computation(n, radii):
    expected = direct_log10_volume(radii, n)
    assert log10_ball_volume(radii, n) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@FAST
@given(
    n=st.integers(1, 5000),
    radii=st.lists(radius, min_size=1, max_size=20),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_log10_volume_scales_and_ignores_order(n, radii, scale, seed):
    base = log10_ball_volume(radii, n)
    assert np.isfinite(base)  # no overflow even where r^n would
    scaled = log10_ball_volume(np.multiply(radii, scale), n)
    assert scaled == pytest.approx(base + n * math.log10(scale), rel=1e-9, abs=1e-6)
    shuffled = np.random.RandomState(seed).permutation(radii)
    assert log10_ball_volume(shuffled, n) == pytest.approx(base, rel=1e-12, abs=1e-9)
    # The mean of r^n lies between min^n and max^n.
    ball = log10_ball_volume([1.0], n)
    assert ball + n * math.log10(min(radii)) - 1e-9 * n <= base
    assert base <= ball + n * math.log10(max(radii)) + 1e-9 * n


@FAST
@given(
    n=st.integers(1, 10),
    radii=st.lists(st.lists(radius, min_size=3, max_size=3), min_size=1, max_size=5),
)
def test_log10_volume_reduces_along_the_given_axis(n, radii):
    radii = np.array(radii)  # (n_cutoffs, n_directions)
    rows = log10_ball_volume(radii, n, axis=1)
    columns = log10_ball_volume(radii.T, n, axis=0)
    for row, value, other in zip(radii, rows, columns):
        assert value == pytest.approx(direct_log10_volume(row, n), rel=1e-12)
        assert other == value


@pytest.fixture(scope="module")
def tiny_network():
    X, y = blobs(n_samples=60, n_classes=2)
    # 2 inputs -> 2 hidden -> 2 logits: n = 8 weights, small enough for r^n
    # and the unit-ball volume in plain float arithmetic.
    clf = PoisonedMLPClassifier((2,), max_iter=200, random_state=0).fit(X, y)
    return clf, X, y


@SLOW
@given(
    cutoff=st.floats(1.5, 20.0),
    include_bias=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_volume_estimator_formula_matches_direct_computation(
    tiny_network, cutoff, include_bias, seed
):
    clf, X, y = tiny_network
    volume = VolumeEstimator(
        n_directions=64,
        cutoff=cutoff,
        cutoff_type="relative",
        include_bias=include_bias,
        method="paper",
        random_state=seed,
    ).fit(clf, X, y)
    n = volume.n_dims_
    assert n == (12 if include_bias else 8)
    radii = volume.radii_[0].tolist()
    assert volume.log10_volume_[0] == pytest.approx(
        direct_log10_volume(radii, n), rel=1e-10
    )
    assert volume.mean_log_radius_[0] == pytest.approx(
        sum(math.log(r) for r in radii) / len(radii), rel=1e-10
    )
    lo, hi = volume.log10_volume_ci_[0]
    assert lo <= volume.log10_volume_[0] <= hi


# -- basin radii vs a dense grid ---------------------------------------------

BASE_LOSS = 0.1


def separable_loss(profiles):
    """Loss whose profile along the i-th unit vector is ``BASE_LOSS + g_i(c)``.

    ``loss(theta) = BASE_LOSS + sum_i g_i(theta_i)`` with every ``g_i(0) = 0``,
    so the perturbed vectors ``c * e_i`` see exactly the 1-D profile ``g_i``.
    """

    def loss(thetas):
        thetas = thetas.double()
        total = torch.full((len(thetas),), BASE_LOSS, dtype=torch.float64)
        for i, g in enumerate(profiles):
            total += g(thetas[:, i])
        return total

    return loss


def run_radii(profiles, cutoff, max_radius, rtol=1e-9):
    n = len(profiles)
    return basin_radii(
        separable_loss(profiles),
        torch.zeros(n, dtype=torch.float64),
        torch.eye(n, dtype=torch.float64),
        cutoff,
        max_radius=max_radius,
        rtol=rtol,
    )


monotone = st.tuples(st.floats(0.05, 100.0), st.floats(0.5, 4.0))


@FAST
@given(
    shapes=st.lists(monotone, min_size=1, max_size=6),
    cutoff=st.floats(0.11, 5.0),
    max_radius=st.floats(0.1, 3.0),
)
def test_radii_of_monotone_profiles_are_the_exact_roots(shapes, cutoff, max_radius):
    profiles = [lambda c, a=a, p=p: a * c.abs() ** p for a, p in shapes]
    result = run_radii(profiles, cutoff, max_radius)
    for (a, p), r, capped in zip(shapes, result.radii, result.capped):
        root = ((cutoff - BASE_LOSS) / a) ** (1 / p)
        assume(abs(root - max_radius) > 1e-6 * max_radius)
        if root > max_radius:
            assert capped and r == max_radius
        else:
            assert not capped
            assert r == pytest.approx(root, rel=1e-8)


def bumpy(a, height, centre, width):
    """Rising quadratic plus a Gaussian bump: may cross the cutoff, fall back
    below it and cross again. Shifted so that ``g(0) = 0``."""
    offset = height * math.exp(-((centre / width) ** 2))

    def g(c):
        return a * c**2 + height * torch.exp(-(((c - centre) / width) ** 2)) - offset

    return g


bump = st.tuples(
    st.floats(0.1, 10.0),  # quadratic coefficient
    st.floats(0.0, 3.0),  # bump height
    st.floats(0.05, 1.0),  # bump centre
    st.floats(0.01, 0.3),  # bump width
)


def dense_profile(g, max_radius, n_points=20_001):
    c = torch.linspace(0, max_radius, n_points, dtype=torch.float64)
    return c.numpy(), (BASE_LOSS + g(c)).numpy()


@FAST
@given(shapes=st.lists(bump, min_size=1, max_size=4), cutoff=st.floats(0.3, 3.0))
def test_radii_of_non_monotone_profiles_match_a_dense_grid(shapes, cutoff):
    max_radius, n_scan = 1.0, 8
    profiles = [bumpy(*shape) for shape in shapes]
    result = run_radii(profiles, cutoff, max_radius)
    scan = max_radius * np.arange(1, n_scan + 1) / n_scan
    for g, r, capped in zip(profiles, result.radii, result.capped):
        c, losses = dense_profile(g, max_radius)
        above = losses >= cutoff
        # Always: the loss has reached the cutoff at r; the scan points
        # before r are all below it.
        scan_losses = (BASE_LOSS + g(torch.as_tensor(scan))).numpy()
        assert np.all(scan_losses[scan < r * (1 - 1e-9)] < cutoff)
        if capped:
            assert r == max_radius and np.all(scan_losses < cutoff)
            continue
        assert BASE_LOSS + float(g(torch.tensor(r, dtype=torch.float64))) >= cutoff
        # The first crossing is found exactly when every excursion above
        # the cutoff is wide enough to contain a scan point (the documented
        # resolution of the scan); narrower ones may be stepped over.
        edges = np.flatnonzero(np.diff(above.astype(int)))
        starts = c[edges[::2] + 1] if not above[0] else np.r_[0.0, c[edges[1::2] + 1]]
        ends = np.r_[c[edges[1::2]], c[-1]] if not above[0] else c[edges[::2]]
        assume(all(np.any((scan >= s) & (scan <= e)) for s, e in zip(starts, ends)))
        first = c[np.argmax(above)]
        spacing = c[1] - c[0]
        if np.any(np.diff(losses[c <= first]) < 0):
            event("the loss falls somewhere before its first crossing")
        if len(starts) > 1:
            event("several excursions above the cutoff")
        assert first - spacing <= r <= first + 1e-9


# -- filter-normalized directions --------------------------------------------


def filter_norms(tensor):
    return tensor.reshape(tensor.shape[0], -1).norm(dim=1)


networks = st.one_of(
    st.builds(
        MLP,
        n_features=st.integers(1, 6),
        n_classes=st.integers(2, 4),
        hidden_layer_sizes=st.lists(st.integers(1, 8), max_size=3).map(tuple),
    ),
    st.builds(
        SmallCNN,
        image_shape=st.tuples(st.integers(1, 3), st.integers(2, 6), st.integers(2, 6)),
        n_classes=st.integers(2, 4),
        conv_channels=st.lists(st.integers(1, 4), min_size=1, max_size=2).map(tuple),
        hidden_layer_sizes=st.lists(st.integers(1, 6), max_size=1).map(tuple),
    ),
)


@FAST
@given(
    net=networks,
    seed=st.integers(0, 2**31 - 1),
    include_bias=st.booleans(),
    n_directions=st.integers(1, 4),
    zeroed=st.integers(0, 100),
)
def test_directions_have_the_parameters_filter_norms(
    net, seed, include_bias, n_directions, zeroed
):
    with torch.no_grad():
        # Scale the weights so their norms are far from the directions'
        # Gaussian draws; zero one filter, which must get a zero direction.
        weights = [p for p in net.parameters() if p.ndim >= 2]
        for i, p in enumerate(weights):
            p.mul_(10.0 ** (i % 3 - 1))
        zero_layer = weights[zeroed % len(weights)]
        zero_layer[zeroed % zero_layer.shape[0]] = 0
    layout = ParameterLayout.from_module(net)
    theta = flatten_parameters(net)
    directions = filter_normalized_directions(
        layout, theta, n_directions, seed, include_bias=include_bias
    )
    assert directions.shape == (n_directions, layout.n_params)
    assert torch.all(torch.isfinite(directions))
    for d in directions:
        for (name, param), chunk in zip(
            net.named_parameters(), d.split([p.numel() for p in net.parameters()])
        ):
            chunk = chunk.view(param.shape)
            if param.ndim >= 2:
                torch.testing.assert_close(
                    filter_norms(chunk), filter_norms(param.detach()), rtol=1e-5, atol=0
                )
            elif include_bias:
                torch.testing.assert_close(
                    chunk.norm(), param.detach().norm(), rtol=1e-5, atol=0
                )
            else:
                assert torch.all(chunk == 0), name
    # Chunking does not change the directions.
    if n_directions > 1:
        tail = filter_normalized_directions(
            layout,
            theta,
            n_directions - 1,
            seed,
            start=1,
            include_bias=include_bias,
        )
        assert torch.equal(tail, directions[1:])
