"""The volume engine against basins of exactly known volume.

Ground truth here is written from the formulas alone, independently of the
engine: an ellipsoid ``{z : z^T H z / 2 < c}`` has
``log V = log omega_n + sum_i log(2 c / lambda_i) / 2``; the block-quartic
basin's volume is a 1-D integral evaluated by quadrature.
"""

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import gammaln, logsumexp
from sklearn.exceptions import ConvergenceWarning

from flatgen import PoisonedMLPClassifier, VolumeConvergenceDisplay, VolumeEstimator
from flatgen.landscape import (
    CurvaturePreconditioner,
    NetworkBasinLoss,
    TrainingObjective,
    VolumeSaturationWarning,
    basin_log10_volume,
    log10_unit_ball_volume,
)
from flatgen.landscape._volume import _PROBE_BLOCK, _whitened_trace, full_hessian

from .conftest import blobs


def log10_ball(n):
    return (0.5 * n * math.log(math.pi) - gammaln(0.5 * n + 1)) / math.log(10)


def ellipsoid_log10_volume(eigenvalues, cutoff):
    eigenvalues = np.asarray(eigenvalues, dtype=float)
    n = len(eigenvalues)
    return log10_ball(n) + 0.5 * np.log10(2 * cutoff / eigenvalues).sum()


class AxisQuadratic:
    """``sum_i lambda_i z_i^2 / 2`` (picklable, for joblib workers)."""

    def __init__(self, eigenvalues):
        self.eigenvalues = torch.as_tensor(eigenvalues, dtype=torch.float64)

    def __call__(self, z):
        return 0.5 * (z.square() * self.eigenvalues).sum(1)


class RotatedSpikes:
    """Isotropic bulk plus large eigenvalues along random orthonormal vectors."""

    def __init__(self, n, n_spikes, seed):
        rng = np.random.RandomState(seed)
        basis, _ = np.linalg.qr(rng.standard_normal((n, n_spikes)))
        self.spikes = 10 ** rng.uniform(2, 4, n_spikes)
        self.basis = torch.as_tensor(basis)
        self.eigenvalues = np.r_[np.ones(n - n_spikes), self.spikes]

    def __call__(self, z):
        along = (z @ self.basis).square() * torch.as_tensor(self.spikes - 1.0)
        return 0.5 * (z.square().sum(1) + along.sum(1))


def block_quartic(n_a, n_b, gamma, seed):
    """``q_a + q_b + gamma q_a^2`` and the exact log10 volume of ``< 1``.

    In whitened block coordinates the basin is ``a^2/2 + gamma a^4/4 + b^2/2
    < 1`` with ``a = ||u_a||``, ``b = ||u_b||``: its volume integrates the
    shell of radius ``a`` in the first block times the ball of radius
    ``b_max(a)`` in the second.
    """
    rng = np.random.RandomState(seed)
    lam_a, lam_b = 10 ** rng.uniform(-1, 1, n_a), 10 ** rng.uniform(-1, 1, n_b)
    ta, tb = torch.as_tensor(lam_a), torch.as_tensor(lam_b)

    def loss(z):
        qa = 0.5 * (z[:, :n_a].square() * ta).sum(1)
        qb = 0.5 * (z[:, n_a:].square() * tb).sum(1)
        return qa + qb + gamma * qa.square()

    a_max = math.sqrt((-0.5 + math.sqrt(0.25 + gamma)) / (gamma / 2))
    a = np.linspace(0.0, a_max, 400_001)[1:-1]
    rest = 1.0 - 0.5 * a**2 - 0.25 * gamma * a**4
    log_integrand = math.log(n_a) + (n_a - 1) * np.log(a) + 0.5 * n_b * np.log(2 * rest)
    log_integral = logsumexp(log_integrand) + math.log(a[1] - a[0])
    log10_v = (
        log10_ball(n_a)
        + log10_ball(n_b)
        + log_integral / math.log(10)
        - 0.5 * (np.log10(lam_a).sum() + np.log10(lam_b).sum())
    )
    return loss, log10_v


def test_unit_ball_volume_matches_closed_forms():
    assert 10 ** log10_unit_ball_volume(2) == pytest.approx(math.pi)
    assert 10 ** log10_unit_ball_volume(3) == pytest.approx(4 / 3 * math.pi)
    assert log10_unit_ball_volume(1000) == pytest.approx(log10_ball(1000))


def test_axis_aligned_ellipsoid_over_four_decades():
    n = 1500
    eigenvalues = 10 ** np.random.RandomState(0).uniform(-2, 2, n)
    loss = AxisQuadratic(eigenvalues)
    exact = ellipsoid_log10_volume(eigenvalues, 1.0)
    result = basin_log10_volume(loss, n, 1.0, n_directions=200, random_state=0)
    assert abs(result.log10_volume - exact) < 0.05
    lo, hi = result.log10_volume_ci
    assert lo <= exact <= hi
    assert result.effective_sample_size > 150
    # The naive estimate is hundreds of orders low, and says so.
    with pytest.warns(ConvergenceWarning, match="effective sample size"):
        naive = basin_log10_volume(
            loss, n, 1.0, n_directions=200, estimator="naive", random_state=0
        )
    assert naive.log10_volume < exact - 100
    assert naive.effective_sample_size < 5


def test_rotated_bulk_plus_spikes():
    n = 2000
    loss = RotatedSpikes(n, n_spikes=10, seed=1)
    exact = ellipsoid_log10_volume(loss.eigenvalues, 0.5)
    result = basin_log10_volume(loss, n, 0.5, n_directions=200, random_state=0)
    assert abs(result.log10_volume - exact) < 0.05
    assert result.preconditioner_rank >= 10
    with pytest.warns(ConvergenceWarning):
        naive = basin_log10_volume(
            loss, n, 0.5, n_directions=200, estimator="naive", random_state=0
        )
    assert naive.log10_volume < exact - 100


def test_non_quadratic_basin_against_quadrature():
    loss, exact = block_quartic(100, 200, gamma=0.5, seed=0)
    result = basin_log10_volume(loss, 300, 1.0, n_directions=1000, random_state=0)
    assert abs(result.log10_volume - exact) < 0.1
    lo, hi = result.log10_volume_ci
    assert lo - 0.05 <= exact <= hi + 0.05


@pytest.mark.slow
def test_interval_covers_the_truth_at_about_its_nominal_rate():
    loss, exact = block_quartic(60, 120, gamma=0.5, seed=2)
    hits = []
    for seed in range(20):
        result = basin_log10_volume(loss, 180, 1.0, n_directions=200, random_state=seed)
        lo, hi = result.log10_volume_ci
        hits.append(lo <= exact <= hi)
    # Nominal 95 %; 20 draws at 95 % fall below 16 with probability < 0.2 %.
    assert sum(hits) >= 16


def test_multiple_cutoffs_share_rays_and_grow():
    loss = AxisQuadratic(np.logspace(-1, 1, 40))
    result = basin_log10_volume(
        loss, 40, [0.5, 1.0, 2.0], n_directions=64, random_state=0
    )
    assert result.radii.shape == (3, 64)
    assert np.all(np.diff(result.log10_volume) > 0)
    exact = [ellipsoid_log10_volume(loss.eigenvalues.numpy(), c) for c in [0.5, 1, 2]]
    assert_allclose(result.log10_volume, exact, atol=0.01)
    assert result.convergence_log10_volume.shape == (
        3,
        len(result.convergence_n_directions),
    )


def test_same_seed_same_result_and_n_jobs_does_not_matter():
    loss = AxisQuadratic(np.logspace(-2, 2, 30))
    kwargs = {"n_directions": 300, "estimator": "naive", "random_state": 3}
    one = basin_log10_volume(loss, 30, 1.0, n_jobs=1, **kwargs)
    again = basin_log10_volume(loss, 30, 1.0, n_jobs=1, **kwargs)
    two = basin_log10_volume(loss, 30, 1.0, n_jobs=2, **kwargs)
    assert_array_equal(one.radii, again.radii)
    assert_array_equal(one.radii, two.radii)
    assert one.log10_volume == two.log10_volume


def test_capped_rays_warn():
    loss = AxisQuadratic(np.full(10, 1e-3))
    with pytest.warns(VolumeSaturationWarning, match="search cap"):
        result = basin_log10_volume(
            loss, 10, 1.0, n_directions=50, max_radius=1.0, random_state=0
        )
    assert result.capped_fraction == 1.0
    assert result.capped.all()
    assert_allclose(result.radii, 1.0)


@pytest.mark.parametrize("case", ["axis", "rotated", "both"])
def test_preconditioner_whitens_and_knows_its_determinant(case):
    rng = np.random.RandomState(0)
    n = 200
    q, _ = np.linalg.qr(rng.standard_normal((n, 3)))
    spikes = q @ np.diag([1e4, 3e4, 1e5]) @ q.T
    spread = np.diag(10 ** rng.uniform(-2, 2, n))
    dense = {"axis": spread, "rotated": np.eye(n) + spikes, "both": spread + spikes}
    hessian = torch.as_tensor(dense[case])
    pre = CurvaturePreconditioner.from_curvature(
        lambda v: v @ hessian, n, rank=20, n_probes=16, floor=0.0, seed=0
    )
    p = pre.apply(torch.eye(n, dtype=torch.float64)).T  # columns P e_i
    sign, logdet = np.linalg.slogdet(p.numpy())
    assert sign > 0
    assert pre.log_det == pytest.approx(logdet, abs=1e-8)
    eigenvalues = np.linalg.eigvalsh((p.T @ hessian @ p).numpy())
    if case != "both":
        # Condition numbers of 1e4 and 1e5 whitened to within 15 %.
        assert eigenvalues.min() > 0.85 and eigenvalues.max() < 1.15
    else:
        # A spread diagonal under rotated spikes is beyond the model (the
        # probed diagonal of the deflated part is noisy): it only helps.
        assert eigenvalues.max() / eigenvalues.min() < 0.5 * np.linalg.cond(dense[case])


@pytest.mark.parametrize("space", ["raw", "filter_normalized"])
def test_network_loss_hessian_matches_autograd(space):
    X, y = blobs(n_samples=30, n_classes=2)
    clf = PoisonedMLPClassifier((3,), max_iter=50, random_state=0).fit(X, y)
    module = clf.net_.module_
    loss = NetworkBasinLoss(module, X.astype(np.float32), y, space=space)
    n = loss.n_dims
    assert n == 2 * 3 + 3 * 2
    dense = torch.stack(
        [loss.hvp(torch.eye(n, dtype=torch.float64)[i : i + 1])[0] for i in range(n)]
    )
    # Independent: the full Hessian of the loss in the perturbed weights.
    weights = [p for p in module.parameters() if p.ndim >= 2]
    biases = [p.detach() for p in module.parameters() if p.ndim < 2]
    scale = loss.scale

    def as_function(flat):
        w1 = flat[:6].view(3, 2)
        w2 = flat[6:].view(2, 3)
        hidden = torch.relu(
            torch.as_tensor(X, dtype=torch.float64) @ w1.T + biases[0].double()
        )
        logits = hidden @ w2.T + biases[1].double()
        return torch.nn.functional.cross_entropy(logits, torch.as_tensor(y))

    theta = torch.cat([w.detach().double().reshape(-1) for w in weights])
    exact = torch.autograd.functional.hessian(
        lambda z: as_function(theta + scale * z), torch.zeros(n, dtype=torch.float64)
    )
    assert_allclose(dense.numpy(), exact.numpy(), rtol=1e-3, atol=1e-5)
    assert pickle.loads(pickle.dumps(loss)).n_dims == n


@pytest.mark.parametrize("include_bias", [False, True])
def test_network_loss_moves_the_perturbed_weights_by_scale_times_z(include_bias):
    # Independent of the loss's own embedding: the weights a displacement
    # gives, written parameter by parameter, and the gradient from autograd
    # through them. Without biases the perturbed entries are two runs of the
    # flat weights (each layer's weights), with them one.
    X, y = blobs(n_samples=30, n_classes=3)
    clf = PoisonedMLPClassifier((4,), max_iter=50, random_state=0).fit(X, y)
    module = clf.net_.module_
    objective = TrainingObjective.from_model(clf, X, y, include_bias=include_bias)
    loss = objective.basin_loss()
    params = [p.detach().double() for p in module.parameters()]
    moved = [p for p in params if include_bias or p.ndim >= 2]
    assert loss.n_dims == sum(p.numel() for p in moved)
    z = torch.randn((5, loss.n_dims), generator=torch.Generator().manual_seed(0))
    z = 0.3 * z.double()

    def weights(row):
        out, position = [], 0
        for p in params:
            if include_bias or p.ndim >= 2:
                size = p.numel()
                part = slice(position, position + size)
                out.append(p + (loss.scale[part] * row[part]).view(p.shape))
                position += size
            else:
                out.append(p)
        return out

    def cross_entropy(w):
        h = torch.relu(torch.as_tensor(X, dtype=torch.float64) @ w[0].T + w[1])
        logits = h @ w[2].T + w[3]
        return torch.nn.functional.cross_entropy(logits, torch.as_tensor(y))

    thetas = loss._displaced(z, "cpu")
    for row, theta in zip(z, thetas):
        expected = torch.cat([w.reshape(-1) for w in weights(row)])
        torch.testing.assert_close(theta.double(), expected, rtol=1e-6, atol=1e-6)
    values, grads = loss.losses_and_grads(z)
    for row, value, grad in zip(z, values, grads):
        point = row.clone().requires_grad_(True)
        exact = cross_entropy(weights(point))
        (exact_grad,) = torch.autograd.grad(exact, point)
        assert value.item() == pytest.approx(exact.item(), rel=1e-5)
        torch.testing.assert_close(grad, exact_grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(loss(z), values, rtol=1e-6, atol=1e-7)
    # Along segments from the minimum: the losses at the rows s z.
    shares = torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64)
    along = loss.losses_along(z, shares)
    assert along.shape == (3, 5) and along.dtype == torch.float64
    for share, row in zip(shares, along):
        expected = [cross_entropy(weights(share * point)).item() for point in z]
        np.testing.assert_allclose(row.numpy(), expected, rtol=1e-5)


def test_volume_estimator_filter_normalized_and_raw_agree_on_raw_volume(fitted):
    clf, X, y = fitted
    common = {
        "n_directions": 40,
        "cutoff": 1.05,
        "cutoff_type": "relative",
        "random_state": 0,
        "max_capped_fraction": 1.0,
    }
    fn = VolumeEstimator(space="filter_normalized", **common).fit(clf, X, y)
    raw = VolumeEstimator(space="raw", **common).fit(clf, X, y)
    assert fn.space_ == "filter_normalized" and raw.space_ == "raw"
    assert raw.log10_scale_det_ == fn.log10_scale_det_
    # Filter norms below 1 in this small net: raw volumes are smaller.
    assert np.isfinite(fn.log10_scale_det_)
    assert_allclose(fn.log10_volume_raw_, fn.log10_volume_ + fn.log10_scale_det_)
    assert_allclose(raw.log10_volume_raw_, raw.log10_volume_)


def test_volume_convergence_display(fitted):
    clf, X, y = fitted
    vol = VolumeEstimator(
        n_directions=30,
        cutoff=1.05,
        cutoff_type="relative",
        random_state=0,
        max_capped_fraction=1.0,
    ).fit(clf, X, y)
    display = vol.plot_convergence()
    assert isinstance(display, VolumeConvergenceDisplay)
    assert display.ax_.get_xscale() == "log"
    assert_allclose(display.line_.get_ydata(), vol.convergence_log10_volume_[0])
    assert vol.convergence_n_directions_[-1] == 30
    assert vol.convergence_log10_volume_[0, -1] == pytest.approx(vol.log10_volume_[0])


@pytest.fixture(scope="module")
def fitted():
    X, y = blobs(n_samples=90, n_classes=3)
    clf = PoisonedMLPClassifier((16,), max_iter=300, random_state=0).fit(X, y)
    return clf, X, y


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_directions": 0}, "n_directions must be an integer >= 1"),
        ({"estimator": "exact"}, "estimator must be one of"),
        ({"rtol": 2.0}, "rtol must be in"),
        ({"max_radius": -1.0}, "max_radius must be a positive"),
        ({"confidence_level": 1.0}, "confidence_level must be in"),
        ({"rank": -1}, "rank must be an integer >= 0"),
    ],
)
def test_engine_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        basin_log10_volume(AxisQuadratic(np.ones(3)), 3, 1.0, **kwargs)


def test_engine_bad_loss_and_cutoff():
    with pytest.raises(ValueError, match="below every cutoff"):
        basin_log10_volume(lambda z: 2.0 + z.sum(1) * 0, 3, 1.0)
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        basin_log10_volume(3.0, 3, 1.0)
    with pytest.raises(ValueError, match="must map"):
        basin_log10_volume(lambda z: torch.zeros(5), 3, 1.0, estimator="naive")
    with pytest.raises(TypeError, match="differentiable"):
        basin_log10_volume(lambda z: np.zeros(len(z)), 3, 1.0)


def test_interval_falls_back_to_sure_bounds_when_few_rays_count():
    n = 300
    eigenvalues = 10 ** np.random.RandomState(1).uniform(-2, 2, n)
    loss = AxisQuadratic(eigenvalues)
    exact = ellipsoid_log10_volume(eigenvalues, 1.0)
    with pytest.warns(ConvergenceWarning, match="distribution-free"):
        naive = basin_log10_volume(
            loss,
            n,
            1.0,
            n_directions=100,
            estimator="naive",
            max_radius=1e3,
            random_state=0,
        )
    assert naive.conservative_ci
    lo, hi = naive.log10_volume_ci
    # Markov below: log10(2 / 0.05) orders under the estimate, whatever the tails.
    assert lo == pytest.approx(naive.log10_volume - math.log10(40), abs=1e-3)
    # Above: the ball of the search cap.
    assert hi == pytest.approx(log10_ball(n) + n * 3.0)
    assert lo <= exact <= hi
    good = basin_log10_volume(
        loss, n, 1.0, n_directions=100, max_radius=1e3, random_state=0
    )
    assert not good.conservative_ci
    assert good.log10_volume_ci[1] - good.log10_volume_ci[0] < 0.1


def test_volume_estimator_seeded_and_independent_of_n_jobs(fitted):
    clf, X, y = fitted
    params = {
        "n_directions": 150,
        "cutoff": [1.05, 1.2],
        "cutoff_type": "relative",
        "max_capped_fraction": 1.0,
        "rank": 8,
        "n_probes": 8,
    }
    serial = VolumeEstimator(**params, random_state=4, n_jobs=1).fit(clf, X, y)
    again = VolumeEstimator(**params, random_state=4, n_jobs=1).fit(clf, X, y)
    parallel = VolumeEstimator(**params, random_state=4, n_jobs=2).fit(clf, X, y)
    other = VolumeEstimator(**params, random_state=5, n_jobs=1).fit(clf, X, y)
    for fitted_volume in (again, parallel):
        assert_array_equal(fitted_volume.radii_, serial.radii_)
        assert_array_equal(fitted_volume.log10_volume_, serial.log10_volume_)
    assert not np.array_equal(other.radii_, serial.radii_)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_volume_estimator_on_cuda_matches_cpu_radii():
    X, y = blobs(n_samples=90, n_classes=3)
    clf = PoisonedMLPClassifier((16,), max_iter=300, random_state=0, device="cuda")
    clf.fit(X, y)
    # Uniform rays: the same on both devices (the preconditioner's choice
    # could flip on float32 rounding of the curvature).
    params = {
        "n_directions": 40,
        "cutoff": 1.2,
        "cutoff_type": "relative",
        "max_capped_fraction": 1.0,
        "estimator": "naive",
        "random_state": 0,
    }
    gpu = VolumeEstimator(**params).fit(clf, X, y)
    clf.net_.module_.cpu()
    cpu = VolumeEstimator(**params).fit(clf, X, y)
    # Same rays; the losses differ only by float32 rounding across devices.
    assert_allclose(gpu.radii_, cpu.radii_, rtol=1e-3)


def _quartic(z):
    return (z**4).sum(1)


# Volume of {z in R^10 : sum z_i^4 <= 1}: (2 Gamma(5/4))^n / Gamma(1 + n/4),
# from the 1-D integrals of a separable body (Dirichlet's formula).
QUARTIC_10 = (10 * math.log(2 * math.gamma(1.25)) - gammaln(3.5)) / math.log(10)


@pytest.mark.parametrize("estimator", ["preconditioned", "naive"])
def test_a_loss_flat_to_second_order_is_measured_and_said(estimator):
    estimates = []
    for max_radius in (None, 10.0, 1e12):
        with pytest.warns(ConvergenceWarning, match="flat to second order"):
            result = basin_log10_volume(
                _quartic,
                10,
                1.0,
                n_directions=200,
                random_state=0,
                estimator=estimator,
                max_radius=max_radius,
            )
        low, high = result.log10_volume_ci
        assert low <= QUARTIC_10 <= high and high - low < 0.2
        assert result.warnings[0].startswith("The loss is flat to second order")
        estimates.append(result.log10_volume)
    # No ray reaches the cap: the cap changes the estimate only within the
    # root search's tolerance (another first step, another bisection path).
    tolerance = result.log10_volume_tolerance
    assert np.ptp(estimates) <= tolerance


@pytest.mark.parametrize(
    "to_numpy",
    [lambda z: z.detach().cpu().numpy(), lambda z: z.numpy()],
    ids=["detached", "numpy-of-graph"],
)
def test_a_loss_without_autograd_is_measured_by_uniform_rays(to_numpy):
    def squares(z):  # numpy inside: no autograd graph
        return torch.as_tensor((to_numpy(z) ** 2).sum(1))

    result = basin_log10_volume(squares, 10, 1.0, n_directions=50, estimator="naive")
    # The unit ball in 10 dimensions, exactly: every ray has radius 1.
    assert_allclose(result.log10_volume, log10_unit_ball_volume(10), atol=1e-5)
    with pytest.raises(TypeError, match="differentiable by torch autograd"):
        basin_log10_volume(squares, 10, 1.0, n_directions=50)


@pytest.mark.parametrize("estimator", ["preconditioned", "naive"])
@pytest.mark.parametrize("max_radius", [None, 5.0])
def test_a_linear_loss_is_refused_as_no_minimum(estimator, max_radius):
    with pytest.raises(ValueError, match="falls from the origin .* not a minimum"):
        basin_log10_volume(
            lambda z: z.sum(1),
            10,
            1.0,
            n_directions=40,
            max_radius=max_radius,
            estimator=estimator,
        )


@pytest.mark.parametrize("estimator", ["preconditioned", "naive"])
def test_a_maximum_is_refused_before_any_ray(estimator):
    with pytest.raises(ValueError, match="negative curvature .* not a minimum"):
        basin_log10_volume(
            lambda z: -(z**2).sum(1) + 2.0, 10, 3.0, loss0=2.0, estimator=estimator
        )


def test_too_many_rays_are_refused_before_any_work():
    def never(z):
        raise AssertionError("no loss may be evaluated")

    with pytest.raises(ValueError, match=r"n_directions=1000000000 would keep 15"):
        basin_log10_volume(never, 10, 1.0, n_directions=10**9, loss0=0.0)


def test_trace_probes_in_several_blocks_give_the_exact_diagonal_trace():
    curvatures = torch.linspace(0.5, 3.0, 7, dtype=torch.float64)

    def hvp(vectors):
        return vectors * curvatures

    identity = CurvaturePreconditioner.identity(7)
    # +-1 probes give z^T D z = trace(D) exactly, in every block of probes.
    trace = _whitened_trace(identity, hvp, 7, 3 * _PROBE_BLOCK + 5, seed=0)
    assert trace == pytest.approx(float(curvatures.sum()), rel=1e-12)


def test_full_quadratic_model_is_exact_on_a_rotated_four_decade_ellipsoid():
    n, cutoff = 400, 1.0
    generator = torch.Generator().manual_seed(0)
    rotation, _ = torch.linalg.qr(
        torch.randn(n, n, generator=generator, dtype=torch.float64)
    )
    spectrum = torch.logspace(-2, 2, n, dtype=torch.float64)
    hessian = (rotation * spectrum) @ rotation.T

    def loss(z):
        return 0.5 * ((z @ hessian) * z).sum(1)

    # {z : z^T A z / 2 <= c} is an ellipsoid: omega_n (2c)^(n/2) / sqrt(det A).
    exact = (
        log10_unit_ball_volume(n)
        + n / 2 * math.log10(2 * cutoff)
        - 0.5 * float(torch.log(spectrum).sum()) / math.log(10)
    )
    result = basin_log10_volume(loss, n, cutoff, n_directions=100, rank="full")
    low, high = result.log10_volume_ci
    assert abs(result.log10_volume - exact) < 1e-3 and low <= exact <= high
    # Whitened into a ball: every ray carries the estimate.
    assert result.effective_sample_size > 99
    assert result.preconditioner_rank == n and result.n_hvp >= n
    assert result.warnings == ()


def test_full_hessian_sums_and_symmetrizes_across_blocks():
    # Two blocks and a remainder; products that are not symmetric (as
    # float32 network products are not quite) come back as (A + A^T) / 2.
    n = 2 * _PROBE_BLOCK + 37
    generator = torch.Generator().manual_seed(0)
    first, second = (
        torch.randn(n, n, generator=generator, dtype=torch.float64) for _ in range(2)
    )
    hessian = full_hessian(lambda v: v @ first.T, lambda v: v @ second.T, n_dims=n)
    total = first + second
    assert_allclose(hessian.numpy(), (0.5 * (total + total.T)).numpy(), atol=1e-12)
    assert torch.equal(hessian, hessian.T)


def test_full_quadratic_model_refuses_more_dimensions_than_it_can_hold():
    def never(z):
        raise AssertionError("no loss may be evaluated")

    with pytest.raises(ValueError, match="rank='full' keeps the whole 20001 x 20001"):
        basin_log10_volume(never, 20_001, 1.0, rank="full", loss0=0.0)
    with pytest.raises(ValueError, match="rank must be an integer"):
        basin_log10_volume(never, 10, 1.0, rank="most", loss0=0.0)


def test_volume_estimator_takes_the_full_quadratic_model(fitted):
    clf, X, y = fitted
    volume = VolumeEstimator(
        cutoff=2.0,
        cutoff_type="relative",
        n_directions=20,
        rank="full",
        random_state=0,
        max_capped_fraction=1.0,
    ).fit(clf, X, y)
    assert volume.preconditioner_rank_ == volume.n_dims_
    assert np.all(np.isfinite(volume.log10_volume_))
    with pytest.raises(ValueError, match="'rank' parameter of VolumeEstimator"):
        VolumeEstimator(rank="most").fit(clf, X, y)


def test_volume_estimator_former_estimator_parameter_still_works(fitted):
    clf, X, y = fitted
    options = {
        "cutoff": 2.0,
        "cutoff_type": "relative",
        "n_directions": 10,
        "random_state": 0,
        "max_capped_fraction": 1.0,
    }
    new = VolumeEstimator(method="naive", **options).fit(clf, X, y)
    with pytest.warns(FutureWarning, match="renamed 'method'"):
        old = VolumeEstimator(estimator="naive", **options).fit(clf, X, y)
    assert_array_equal(old.log10_volume_, new.log10_volume_)
    # The old name is a hidden alias: the new one holds the setting.
    assert new.get_params()["estimator"] == "deprecated"


def test_the_share_of_the_volume_at_the_cap_is_the_capped_rays_weight():
    from flatgen.landscape import volume_from_radii

    rng = np.random.RandomState(0)
    radii = rng.uniform(0.5, 1.0, 200)
    capped = np.zeros(200, dtype=bool)
    capped[:20] = True
    radii[:20] = 1.0  # the cap
    n_dims = 30
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = volume_from_radii(radii, capped, n_dims, 1.0)
    weights = radii.astype(float) ** n_dims  # written out, no logs needed here
    assert result.capped_fraction == pytest.approx(0.1)
    assert result.capped_volume_share == pytest.approx(
        weights[:20].sum() / weights.sum(), rel=1e-12
    )
    # The capped rays are the longest: they carry far more than their tenth.
    assert result.capped_volume_share > 0.5
