"""The modules of flatgen.networks against torch's own layers."""

import pytest
import torch
from torch import nn
from torch.autograd import forward_ad
from torch.func import vmap

from flatgen.networks import MaxPool2d, SmallCNN

# Pools whose stride is their kernel, on the shapes that take each path's
# edge cases.
POOL_CASES = [
    (2, (5, 3, 8, 8)),
    (2, (4, 2, 9, 7)),  # odd sides: the last row and column are dropped
    ((2, 1), (3, 2, 6, 1)),
    ((1, 2), (3, 2, 1, 6)),
    (3, (2, 4, 10, 11)),
    (2, (3, 8, 8)),  # no batch dimension
]


@pytest.mark.parametrize("kernel, shape", POOL_CASES)
def test_inference_path_equals_torch_max_pool(kernel, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    x.view(-1)[::7] = float("nan")
    x.view(-1)[1::5] = 0.0  # ties
    with torch.no_grad():
        ours = MaxPool2d(kernel)(x)
        torch_ = nn.MaxPool2d(kernel)(x)
    assert ours.shape == torch_.shape
    assert ours.is_contiguous()
    # Bit for bit, NaN in the same places.
    assert torch.equal(torch.isnan(ours), torch.isnan(torch_))
    assert torch.equal(ours.nan_to_num(), torch_.nan_to_num())


def test_inference_path_runs_under_vmap():
    x = torch.randn(4, 6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = vmap(MaxPool2d(2))(x)
        torch_ = torch.stack([nn.MaxPool2d(2)(image) for image in x])
    assert torch.equal(ours, torch_)


@pytest.mark.parametrize(
    "kwargs", [{"stride": 1}, {"padding": 1}, {"ceil_mode": True}, {"dilation": 2}]
)
def test_other_configurations_are_torch_max_pool(kwargs):
    x = torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(MaxPool2d(2, **kwargs)(x), nn.MaxPool2d(2, **kwargs)(x))


def test_gradients_are_torch_max_pool_gradients():
    x = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(3))
    x.view(-1)[::3] = 0.0  # ties, routed as torch routes them
    grads = []
    for layer in (MaxPool2d(2), nn.MaxPool2d(2)):
        leaf = x.clone().requires_grad_()
        (layer(leaf) * torch.arange(32.0).reshape(2, 4, 4)).sum().backward()
        grads.append(leaf.grad)
    assert torch.equal(grads[0], grads[1])


def _pool_derivatives(layer, x, weights, tangent):
    """Values, gradient, a Hessian-vector product and a forward-mode derivative."""
    leaf = x.clone().requires_grad_()
    out = layer(leaf)
    (grad,) = torch.autograd.grad(
        (out.nan_to_num() * weights).sum(), leaf, create_graph=True
    )
    (second,) = torch.autograd.grad(
        (grad * tangent).sum() + (out * out).nan_to_num().sum(), leaf
    )
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(x.clone(), tangent)
        forward = forward_ad.unpack_dual(layer(dual)).tangent
    return out.detach(), grad.detach(), second, forward


# torch's own forward-mode max-pool warns that it uses torch.jit.script.
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kernel, shape", POOL_CASES)
def test_training_path_differentiates_as_torch_max_pool(kernel, shape, dtype):
    # With gradients the pool runs torch's channels-last kernel and torch's
    # backward on its indices: every derivative equals torch's bit for bit,
    # whichever element of a tied, infinite or NaN window it routes to.
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(shape, generator=generator, dtype=dtype)
    x.view(-1)[::7] = float("nan")
    x.view(-1)[1::5] = 0.0
    x.view(-1)[2::11] = -float("inf")
    x.view(-1)[3::13] = float("inf")
    tangent = torch.randn(shape, generator=generator, dtype=dtype)
    for images in (x, torch.relu(x.nan_to_num(posinf=1.0, neginf=-1.0))):
        weights = torch.randn(
            nn.MaxPool2d(kernel)(images).shape, generator=generator, dtype=dtype
        )
        ours = _pool_derivatives(MaxPool2d(kernel), images, weights, tangent)
        theirs = _pool_derivatives(nn.MaxPool2d(kernel), images, weights, tangent)
        for a, b in zip(ours, theirs):
            assert a.shape == b.shape
            assert torch.equal(torch.isnan(a), torch.isnan(b))
            assert torch.equal(a.nan_to_num(), b.nan_to_num())


def test_training_path_leaves_function_transforms_to_torch():
    # Under torch.func.grad the pool is torch's own (a custom autograd
    # function would need rules for every transform).
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))

    def total(layer):
        return lambda images: (layer(images) ** 2).sum()

    ours = torch.func.grad(total(MaxPool2d(2)))(x)
    theirs = torch.func.grad(total(nn.MaxPool2d(2)))(x)
    assert torch.equal(ours, theirs)


def test_vmapped_path_pools_and_differentiates_as_torch_max_pool():
    # Under vmap alone (a batched network's gradients: the chains' weights
    # vmapped, one backward pass of their sum) the chains' images are pooled
    # as one batch by the channels-last kernel; every number is torch's.
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(3, 5, 4, 8, 8, generator=generator)
    x[0, 0, 0, :2, :2] = 1.0  # a tied window
    x[1, 2, 1, 4:6, 2:4] = float("nan")
    tangent = torch.randn(x.shape, generator=generator)

    def squares(layer):
        return lambda images: (layer(images) ** 2).sum()

    def per_chain(layer):
        leaf = x.clone().requires_grad_(True)
        values = torch.func.vmap(lambda t: layer(t).sum((-1, -2, -3)))(leaf)
        (grad,) = torch.autograd.grad(values.nansum(), leaf)
        return values, grad

    def numbers(layer):
        return [
            *per_chain(layer),
            torch.func.vmap(layer)(x[:, 0]),  # unbatched images
            torch.func.vmap(layer, in_dims=1)(x),
            torch.func.vmap(torch.func.grad(squares(layer)))(x),
            torch.func.grad(lambda t: torch.func.vmap(squares(layer))(t).sum())(x),
            torch.func.vmap(lambda a, b: torch.func.jvp(layer, (a,), (b,))[1])(
                x, tangent
            ),
        ]

    for ours, theirs in zip(numbers(MaxPool2d(2)), numbers(nn.MaxPool2d(2))):
        assert torch.equal(ours.isnan(), theirs.isnan())
        assert torch.equal(ours.nan_to_num(), theirs.nan_to_num())


def _reference_cnn(net):
    """``net`` with torch's pooling layers (the adaptive pool always there)."""
    layers = []
    for layer in net:
        if isinstance(layer, MaxPool2d):
            layers.append(nn.MaxPool2d(layer.kernel_size))
        elif isinstance(layer, nn.Identity):
            layers.append(nn.AdaptiveAvgPool2d((2, 2)))
        else:
            layers.append(layer)
    return nn.Sequential(*layers)


def test_small_cnn_pools_to_its_own_size_by_an_identity():
    small = SmallCNN((1, 8, 8), 10, (4, 8), (16,))
    assert isinstance(small[6], nn.Identity)
    assert sum(isinstance(layer, MaxPool2d) for layer in small) == 2
    # A map larger than 4x4 is still averaged down to it.
    large = SmallCNN((3, 32, 32), 10, (4, 8), (16,))
    assert isinstance(large[6], nn.AdaptiveAvgPool2d)
    assert large[6].output_size == (4, 4)
    assert large(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_small_cnn_outputs_and_gradients_equal_torch_layers():
    torch.manual_seed(0)
    net = SmallCNN((1, 8, 8), 10, (4, 8), (16,))
    reference = _reference_cnn(net)
    x = torch.randn(50, 1, 8, 8)
    y = torch.randint(0, 10, (50,))
    with torch.no_grad():
        assert torch.equal(net(x), reference(x))
    grads = []
    for module in (net, reference):
        module.zero_grad()
        nn.functional.cross_entropy(module(x), y).backward()
        grads.append(torch.cat([p.grad.ravel() for p in module.parameters()]))
    assert torch.equal(grads[0], grads[1])
