"""Training data as batches: full-data curvature, one batch in memory at a time."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from scipy.sparse.linalg import eigsh
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from flatgen import (
    BasinAnalyzer,
    CurvatureAnalyzer,
    LearningCoefficientAnalyzer,
    LossSlice,
    NormAnalyzer,
    PACBayesAnalyzer,
    PerturbationPath,
    SharpnessAnalyzer,
    VolumeEstimator,
    WorstCaseFlatnessAnalyzer,
)
from flatgen.landscape import DataBatches, LossHessian, TrainingObjective, is_batches


def _trained_bn_cnn():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
    ).double()
    X = torch.randn(300, 1, 8, 8, dtype=torch.float64)
    y = torch.arange(300) % 3
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(30):  # running statistics away from their initial values
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(X), y).backward()
        optimizer.step()
    return net.eval(), X, y


@pytest.fixture(scope="module")
def bn_cnn():
    return _trained_bn_cnn()


def test_products_over_batches_are_the_full_data_products(bn_cnn):
    net, X, y = bn_cnn
    loader = DataLoader(TensorDataset(X, y), batch_size=128, shuffle=True)
    full, batched = LossHessian(net, X, y), LossHessian(net, loader, None)
    assert batched.n_samples == 300
    vectors = torch.randn(3, full.n_params, dtype=torch.float64)
    # The same sums in another grouping (shuffled batches of 128): float64
    # rounding only.
    assert_allclose(batched.matmat(vectors), full.matmat(vectors), atol=1e-12)


def test_linear_operator_gives_the_exact_hessians_eigenvalues():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    X, y = torch.randn(40, 3, dtype=torch.float64), torch.arange(40) % 3
    params = dict(net.named_parameters())
    names = list(params)
    sizes = [params[n].numel() for n in names]

    def loss(flat):
        pieces = dict(zip(names, flat.split(sizes)))
        shaped = {n: pieces[n].view_as(params[n]) for n in names}
        logits = torch.func.functional_call(net, shaped, (X,))
        return nn.functional.cross_entropy(logits, y)

    theta = torch.cat([params[n].detach().reshape(-1) for n in names])
    exact = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, theta))
    batches = [(X[i : i + 16], y[i : i + 16]) for i in range(0, 40, 16)]
    operator = LossHessian(net, batches, None).as_linear_operator()
    assert operator.shape == (len(theta), len(theta))
    top = eigsh(operator, k=3, which="LA", return_eigenvectors=False)
    assert_allclose(np.sort(top), exact[-3:].numpy(), rtol=1e-9)
    assert_allclose(operator.matmat(np.eye(len(theta))).trace(), exact.sum(), 1e-9)


def test_curvature_analyzer_on_a_dataloader_equals_the_arrays(bn_cnn):
    net, X, y = bn_cnn
    loader = DataLoader(TensorDataset(X, y), batch_size=128)
    options = {"random_state": 0, "tol": 1e-8, "n_iter": 300}
    full = CurvatureAnalyzer(**options).fit(net, X, y)
    batched = CurvatureAnalyzer(**options).fit(net, loader, None)
    assert_allclose(batched.base_loss_, full.base_loss_, rtol=1e-12)
    assert_allclose(batched.top_eigenvalue_, full.top_eigenvalue_, rtol=1e-9)
    assert_allclose(batched.trace_, full.trace_, rtol=1e-9)


class _GeneratedRows(Dataset):
    """Rows made on demand from their index: the set is never in memory."""

    def __len__(self):
        return 20_000

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        x = torch.randn(4, generator=generator)
        return x, int(x[0] > 0)


@pytest.mark.slow
def test_a_set_made_on_demand_is_measured_batch_by_batch():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    loader = DataLoader(_GeneratedRows(), batch_size=2_000)
    curvature = CurvatureAnalyzer(random_state=0, n_probes=0).fit(net, loader, None)
    assert np.isfinite(curvature.top_eigenvalue_) and curvature.top_eigenvalue_ > 0
    # The same rows materialized give the same loss.
    X = torch.stack([_GeneratedRows()[i][0] for i in range(20_000)])
    y = (X[:, 0] > 0).long()
    with torch.no_grad():
        expected = nn.functional.cross_entropy(net(X), y)
    assert_allclose(curvature.base_loss_, float(expected), rtol=1e-5)


def test_batches_that_cannot_be_used_say_why(bn_cnn):
    net, X, y = bn_cnn
    pairs = [(X[:100], y[:100]), (X[100:], y[100:])]
    assert is_batches(pairs) and not is_batches(X.numpy()) and not is_batches([1, 2])
    with pytest.raises(TypeError, match="must be re-iterable"):
        CurvatureAnalyzer().fit(net, iter(pairs), None)
    with pytest.raises(ValueError, match="y must be None"):
        CurvatureAnalyzer().fit(net, pairs, y)
    with pytest.raises(TypeError, match="needs X, y as arrays"):
        PerturbationPath().fit(net, pairs, None)
    with pytest.raises(ValueError, match="y must be None"):
        BasinAnalyzer().fit(net, pairs, y)
    with pytest.raises(ValueError, match="Batch 1 .* not an \\(X, y\\) pair"):
        DataBatches([(X[:10], y[:10]), X[10:20]])
    with pytest.raises(ValueError, match="labels must be class indices"):
        DataBatches([(X[:10], y[:10] + 0.5)])


def test_batches_that_change_between_passes_are_refused(bn_cnn):
    net, X, y = bn_cnn
    with pytest.raises(ValueError, match="drop_last=True"):
        LossHessian(
            net, DataLoader(TensorDataset(X, y), batch_size=128, drop_last=True), None
        )

    class Shrinking:
        """Yields one sample fewer on every pass."""

        def __init__(self):
            self.size = 300

        def __iter__(self):
            self.size -= 1
            yield X[: self.size], y[: self.size]

    hessian = LossHessian(net, Shrinking(), None)
    with pytest.raises(ValueError, match="data changed between passes"):
        hessian.matvec(torch.ones(hessian.n_params, dtype=torch.float64))


# Every analyzer that measures the training loss around the weights gives
# the full-data answer from batches: the same sums in another grouping.
BATCH_ANALYZERS = [
    (BasinAnalyzer(n_directions=6, cutoff=2.0, random_state=0), "radii_", 1e-6),
    (
        VolumeEstimator(n_directions=20, cutoff=1.2, max_radius=100, random_state=0),
        "log10_volume_",
        1e-6,
    ),
    (
        VolumeEstimator(
            method="paper", n_directions=6, cutoff=1.2, max_radius=100, random_state=0
        ),
        "log10_volume_",
        1e-6,
    ),
    (LossSlice(n_dims=2, grid_resolution=5, random_state=0), "losses_", 1e-9),
    (
        LossSlice(n_dims=1, grid_resolution=5, directions="hessian", random_state=0),
        "losses_",
        1e-7,
    ),
    (SharpnessAnalyzer(n_steps=3, random_state=0), "sharpness_", 1e-7),
    (SharpnessAnalyzer("average", n_draws=8, random_state=0), "sharpness_", 1e-9),
    (PACBayesAnalyzer(n_draws=8, random_state=0), "flatness_", 1e-6),
    # A bisection to rtol 1e-3: rounding may move one decision, one step.
    (WorstCaseFlatnessAnalyzer(n_steps=3, random_state=0), "flatness_", 4e-3),
    (NormAnalyzer(), "fisher_rao_", 1e-9),
    (
        LearningCoefficientAnalyzer(
            n_chains=2, n_steps=30, n_burnin=10, random_state=0
        ),
        "llc_",
        1e-6,
    ),
]


@pytest.mark.parametrize(
    "analyzer, attribute, rtol",
    BATCH_ANALYZERS,
    ids=[f"{type(a).__name__}-{attr}" for a, attr, _ in BATCH_ANALYZERS],
)
def test_every_analyzer_gives_the_full_data_answer_from_batches(
    bn_cnn, analyzer, attribute, rtol
):
    net, X, y = bn_cnn
    loader = DataLoader(TensorDataset(X, y), batch_size=128)
    from sklearn.base import clone

    on_arrays = clone(analyzer).fit(net, X, y)
    on_batches = clone(analyzer).fit(net, loader, None)
    assert_allclose(on_batches.base_loss_, on_arrays.base_loss_, rtol=1e-12)
    assert_allclose(
        getattr(on_batches, attribute), getattr(on_arrays, attribute), rtol=rtol
    )


def test_objective_over_batches_matches_the_arrays(bn_cnn):
    net, X, y = bn_cnn
    arrays = TrainingObjective(net, X, y, include_bias=True)
    batches = TrainingObjective(
        net, DataLoader(TensorDataset(X, y), batch_size=64), include_bias=True
    )
    assert batches.batched and batches.n_samples == arrays.n_samples == 300
    assert batches.n_perturbed == arrays.n_perturbed
    thetas = arrays.theta0 + 0.05 * arrays.directions(4, seed=1)
    assert_allclose(batches.losses(thetas), arrays.losses(thetas), rtol=1e-12)
    loss_b, grad_b = batches.loss_and_grad(arrays.theta0)
    loss_a, grad_a = arrays.loss_and_grad(arrays.theta0)
    assert_allclose(loss_b, loss_a, rtol=1e-12)
    assert_allclose(grad_b, grad_a, atol=1e-12)
    # The mean is the full data's, not the first batch's.
    first = TrainingObjective(net, X[:64], y[:64])
    assert abs(first.base_loss()[0] - arrays.base_loss()[0]) > 1e-4
