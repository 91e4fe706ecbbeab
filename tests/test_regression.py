"""Regressors and custom criteria: the training objective beyond the cross-entropy.

Ground truth: a linear model under half the squared error has a quadratic
loss, whose Hessian is ``[X 1]^T [X 1] / n`` (weights and bias) and whose basin
radius along ``d`` is ``sqrt(2 (c - L0) / d^T H d)`` (the gradient vanishes
at the least-squares solution), computed here with numpy alone.
"""

import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.neural_network import MLPRegressor
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from flatgen import (
    BasinAnalyzer,
    CurvatureAnalyzer,
    LossSlice,
    PerturbationPath,
    SharpnessAnalyzer,
    VolumeEstimator,
)
from flatgen.landscape import TrainingObjective
from flatgen.landscape._criterion import HalfSquaredError


def _least_squares_line():
    rng = np.random.RandomState(0)
    X = rng.randn(80, 3) * np.array([1.0, 2.0, 0.5])
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.1 * rng.randn(80)
    design = np.c_[X, np.ones(len(X))]
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    line = nn.Linear(3, 1).double()
    with torch.no_grad():
        line.weight.copy_(torch.as_tensor(coef[:3])[None])
        line.bias.fill_(float(coef[3]))
    return line, X, y


def test_linear_least_squares_curvature_and_radii_are_exact():
    line, X, y = _least_squares_line()
    objective = TrainingObjective(line, X, y[:, None], criterion=HalfSquaredError())
    design = np.c_[X, np.ones(len(X))]
    full = design.T @ design / len(X)  # weights and bias, in layout order
    hessian = full[:3, :3]  # the weights' block (directions leave the bias)
    loss0 = 0.5 * np.mean(
        (X @ line.weight.detach().numpy()[0] + line.bias.item() - y) ** 2
    )
    assert_allclose(objective.base_loss()[0], loss0, rtol=1e-12)
    assert np.isnan(objective.base_loss()[1])  # no accuracy for a regression

    curvature = CurvatureAnalyzer(
        filter_normalized=False, tol=1e-10, n_probes=30, random_state=0
    )
    curvature.fit(objective, None, None)
    assert_allclose(curvature.top_eigenvalue_, np.linalg.eigvalsh(full)[-1], rtol=1e-8)
    # Hutch++ on a 4 x 4 operator: the sketch spans it, the trace is exact.
    assert_allclose(curvature.trace_, np.trace(full), rtol=1e-8)

    cutoff = 2 * loss0
    basin = BasinAnalyzer(
        n_directions=12, cutoff=cutoff, rtol=1e-6, max_radius=100, random_state=0
    ).fit(objective, None, None)
    from flatgen.analyzers._seeds import analysis_seeds

    (seed,) = analysis_seeds(0)
    d = objective.directions(12, seed).numpy()[:, :3]
    expected = np.sqrt(2 * (cutoff - loss0) / np.einsum("ki,ij,kj->k", d, hessian, d))
    assert_allclose(basin.radii_, expected, rtol=1e-5)


@pytest.fixture(scope="module")
def regressor():
    rng = np.random.RandomState(1)
    X = rng.randn(150, 2)
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPRegressor(hidden_layer_sizes=(12,), max_iter=3000, random_state=0)
        mlp.fit(X, y)
    return mlp, X, y


def test_mlp_regressor_objective_is_its_half_squared_error(regressor):
    mlp, X, y = regressor
    objective = TrainingObjective.from_model(mlp, X, y)
    assert not objective.classification
    assert_allclose(
        objective.base_loss()[0], 0.5 * np.mean((mlp.predict(X) - y) ** 2), rtol=1e-12
    )
    # The gradient is autograd's on an independently written loss.
    theta = objective.theta0.clone().requires_grad_(True)
    weights = list(objective.layout.unflatten(theta).values())
    hidden = torch.relu(torch.as_tensor(X) @ weights[0].T + weights[1])
    out = (hidden @ weights[2].T + weights[3])[:, 0]
    expected = 0.5 * ((out - torch.as_tensor(y)) ** 2).mean()
    (grad,) = torch.autograd.grad(expected, theta)
    loss, found = objective.loss_and_grad(objective.theta0)
    assert_allclose(loss, float(expected.detach()), rtol=1e-12)
    assert_allclose(found, grad, atol=1e-12)


def test_every_basin_analyzer_measures_a_regressor_from_arrays_and_batches(regressor):
    mlp, X, y = regressor
    loader = DataLoader(
        TensorDataset(torch.as_tensor(X), torch.as_tensor(y)), batch_size=64
    )
    settings = {"random_state": 0}
    for analyzer, attribute in [
        (BasinAnalyzer(n_directions=6, cutoff=2.0, cutoff_type="relative"), "radii_"),
        (
            VolumeEstimator(n_directions=16, cutoff=2.0, cutoff_type="relative"),
            "log10_volume_",
        ),
        (LossSlice(n_dims=2, grid_resolution=5), "losses_"),
        (SharpnessAnalyzer(n_steps=3), "sharpness_"),
    ]:
        analyzer.set_params(**settings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            on_arrays = getattr(analyzer.fit(mlp, X, y), attribute)
            on_batches = getattr(analyzer.fit(mlp, loader, None), attribute)
        assert np.all(np.isfinite(on_arrays))
        assert_allclose(on_batches, on_arrays, rtol=1e-9)


def test_what_a_regressor_cannot_be_measured_by_says_why(regressor):
    mlp, X, y = regressor
    with pytest.raises(TypeError, match="decision regions"):
        PerturbationPath(grid_resolution=None).fit(mlp, X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        poisson = MLPRegressor(
            loss="poisson", hidden_layer_sizes=(4,), max_iter=50, random_state=0
        ).fit(X, np.exp(y / 4))
    with pytest.raises(TypeError, match="loss='squared_error'"):
        BasinAnalyzer().fit(poisson, X, y)
    with pytest.raises(ValueError, match="reduction='mean'"):
        TrainingObjective(mlp_module(), X, y, criterion=nn.MSELoss(reduction="sum"))
    with pytest.raises(ValueError, match="X and y must be None"):
        BasinAnalyzer().fit(
            TrainingObjective(mlp_module(), X, y[:, None], criterion=nn.MSELoss()), X, y
        )


def mlp_module():
    return nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)).double()


def test_skorch_regressor_is_measured_with_its_own_criterion():
    from skorch import NeuralNetRegressor

    rng = np.random.RandomState(2)
    X = rng.randn(100, 2).astype(np.float32)
    y = (X[:, :1] ** 2 - X[:, 1:]).astype(np.float32)
    torch.manual_seed(0)
    net = NeuralNetRegressor(
        nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1)),
        max_epochs=20,
        lr=0.05,
        train_split=None,
        verbose=0,
    ).fit(X, y)
    objective = TrainingObjective.from_model(net, X, y)
    assert isinstance(objective.criterion, nn.MSELoss)
    assert_allclose(
        objective.base_loss()[0], np.mean((net.predict(X) - y) ** 2), rtol=1e-6
    )
    radii = BasinAnalyzer(
        n_directions=4, cutoff=2.0, cutoff_type="relative", random_state=0
    ).fit(net, X, y)
    assert np.all(radii.radii_ > 0)


def test_loss_slice_names_the_loss_it_evaluated_on_its_axis():
    import matplotlib

    matplotlib.use("Agg")
    from flatgen.plotting import LossSliceDisplay

    line, X, y = _least_squares_line()
    objective = TrainingObjective(line, X, y[:, None], criterion=nn.MSELoss())
    analyzer = LossSlice(grid_resolution=5, random_state=0).fit(objective, None, None)
    assert analyzer.loss_name_ == "MSELoss"
    display = LossSliceDisplay.from_analyzer(analyzer).plot()
    assert display.ax_.get_ylabel() == "training MSELoss"
    plane = LossSlice(n_dims=2, grid_resolution=5, random_state=0)
    display = LossSliceDisplay.from_analyzer(plane.fit(objective, None, None)).plot()
    assert display.colorbar_.ax.get_ylabel() == "training MSELoss"
