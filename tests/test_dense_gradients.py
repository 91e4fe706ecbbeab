"""The written-out gradients of dense stacks against automatic differentiation."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from flatgen.landscape._dense_gradients import dense_layers
from flatgen.landscape._sharpness import NetworkLoss


def _autograd_losses_and_grads(module, thetas, X, y):
    """Each vector's mean cross-entropy and gradient, one backward pass each."""
    names = [name for name, _ in module.named_parameters()]
    shapes = [p.shape for p in module.parameters()]
    losses, grads = [], []
    for theta in thetas:
        theta = theta.detach().clone().requires_grad_(True)
        pieces = torch.split(theta, [s.numel() for s in shapes])
        params = {n: p.view(s) for n, p, s in zip(names, pieces, shapes)}
        logits = torch.func.functional_call(module, params, (X,))
        loss = nn.functional.cross_entropy(logits, y)
        (grad,) = torch.autograd.grad(loss, theta)
        losses.append(loss.detach())
        grads.append(grad)
    return torch.stack(losses), torch.stack(grads)


def _assert_float64_matches_autograd(loss, module, thetas, X, y):
    """The path's losses and gradients against autograd's, in float64."""
    values, grads = loss.losses_and_grads(thetas)
    expected_values, expected_grads = _autograd_losses_and_grads(module, thetas, X, y)
    torch.testing.assert_close(values, expected_values, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(grads, expected_grads, rtol=1e-11, atol=1e-13)
    return grads


def _network(activation, bias):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(3, 6, bias=bias),
        activation,
        nn.Dropout(0.5),
        nn.Linear(6, 5, bias=True),
        nn.Tanh(),
        nn.Linear(5, 4, bias=bias),
    ).double()


@pytest.mark.parametrize(
    "activation",
    [nn.ReLU(), nn.LeakyReLU(0.2), nn.Tanh(), nn.Sigmoid(), nn.GELU(), nn.Identity()],
    ids=lambda m: type(m).__name__,
)
@pytest.mark.parametrize("bias", [True, False])
def test_dense_gradients_match_autograd_at_many_vectors(activation, bias):
    module = _network(activation, bias)
    generator = torch.Generator().manual_seed(1)
    X = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 4, (40,), generator=generator)
    loss = NetworkLoss(module, X, y)
    assert loss._dense_ops is not None
    thetas = loss.theta0 + 0.5 * torch.randn(
        5, len(loss.theta0), generator=generator, dtype=torch.float64
    )
    grads = _assert_float64_matches_autograd(loss, loss.module, thetas, X, y)
    # Each vector has its own, nonzero gradient.
    assert (grads[0] - grads[1]).abs().max() > 1e-3


def test_dense_gradients_over_batches_are_the_whole_sets():
    module = _network(nn.ReLU(), True)
    generator = torch.Generator().manual_seed(2)
    X = torch.randn(50, 3, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 4, (50,), generator=generator)
    whole = NetworkLoss(module, X, y)
    batched = NetworkLoss(module, DataLoader(TensorDataset(X, y), batch_size=16))
    thetas = whole.theta0 + 0.3 * torch.randn(
        3, len(whole.theta0), generator=generator, dtype=torch.float64
    )
    _assert_float64_matches_autograd(batched, whole.module, thetas, X, y)


def test_float32_dense_gradients_agree_to_rounding():
    module = _network(nn.ReLU(), True).float()
    generator = torch.Generator().manual_seed(3)
    X = torch.randn(200, 3, generator=generator)
    y = torch.randint(0, 4, (200,), generator=generator)
    loss = NetworkLoss(module, X, y)
    thetas = loss.theta0 + 0.3 * torch.randn(8, len(loss.theta0), generator=generator)
    values, grads = loss.losses_and_grads(thetas)
    expected_values, expected_grads = _autograd_losses_and_grads(
        loss.module, thetas, X, y
    )
    torch.testing.assert_close(values, expected_values, rtol=1e-6, atol=1e-7)
    scale = expected_grads.abs().max()
    assert (grads - expected_grads).abs().max() <= 1e-5 * scale


def test_modules_beyond_dense_stacks_keep_automatic_differentiation():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(3, 3)
            self.out = nn.Linear(3, 2)

        def forward(self, x):
            return self.out(x + torch.relu(self.inner(x)))

    assert dense_layers(Residual()) is None
    assert dense_layers(nn.Sequential(nn.Linear(3, 3), nn.Softplus())) is None
    assert dense_layers(nn.Sequential(nn.Linear(3, 3), nn.GELU("tanh"))) is None
    X = torch.randn(10, 3)
    y = torch.randint(0, 2, (10,))
    # A regression criterion is not the cross-entropy the written-out pass assumes.
    regression = NetworkLoss(
        nn.Sequential(nn.Linear(3, 2)), X, torch.randn(10, 2), criterion=nn.MSELoss()
    )
    assert regression._dense_ops is None
    residual = NetworkLoss(Residual(), X, y)
    assert residual._dense_ops is None
    values, grads = residual.losses_and_grads(residual.theta0[None])
    expected_values, expected_grads = _autograd_losses_and_grads(
        residual.module, residual.theta0[None], X, y
    )
    torch.testing.assert_close(values, expected_values)
    torch.testing.assert_close(grads, expected_grads)


def test_a_network_loss_with_dense_layers_pickles_and_keeps_its_fast_path():
    import pickle

    module = _network(nn.Tanh(), True)
    generator = torch.Generator().manual_seed(4)
    X = torch.randn(20, 3, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 4, (20,), generator=generator)
    loss = NetworkLoss(module, X, y)
    copy = pickle.loads(pickle.dumps(loss))
    assert copy._dense_ops is not None
    thetas = loss.theta0 + 0.2 * torch.randn(
        3, len(loss.theta0), generator=generator, dtype=torch.float64
    )
    for ours, theirs in zip(
        loss.losses_and_grads(thetas), copy.losses_and_grads(thetas)
    ):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
