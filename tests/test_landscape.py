"""The landscape engine: directions, batched losses, radii and curvature."""

import copy
import gc
import pickle
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from torch.func import functional_call

from flatgen._torch_utils import seeded_torch, torch_threads
from flatgen.landscape import (
    BatchedEvaluator,
    LossHessian,
    ParameterLayout,
    basin_radii,
    filter_normalized_directions,
    flatten_parameters,
    hessian_trace,
    module_with_parameters,
    top_hessian_eigenpairs,
    top_hessian_eigenvalue,
)
from flatgen.landscape import _directions as directions_module
from flatgen.landscape import _evaluate as evaluate_module
from flatgen.landscape._curvature import _top_eigenpair, _top_ritz_pairs
from flatgen.networks import MLP, SmallCNN


@pytest.fixture(autouse=True)
def _one_thread():
    # These networks are far too small to gain from threads, and on a busy
    # machine two threads waiting for each other make the file several
    # times slower.
    with torch_threads(1):
        yield


def make_data(shape, n_samples=60, n_classes=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn((n_samples,) + shape, generator=generator)
    y = torch.randint(0, n_classes, (n_samples,), generator=generator)
    return X, y


def make_mlp(seed=0, **kwargs):
    with seeded_torch(seed):
        return MLP(2, 2, (8, 8), **kwargs)


def make_cnn(seed=0):
    with seeded_torch(seed):
        return SmallCNN((1, 8, 8), 3, (4,), (8,))


@pytest.fixture(scope="module")
def trained_mlp():
    """A tiny MLP fitted to XOR-like data: a minimum with a basin around it."""
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(80, 2, generator=generator)
    y = (X[:, 0] * X[:, 1] > 0).long()
    net = make_mlp()
    params = list(net.parameters())
    velocities = [torch.zeros_like(p) for p in params]
    # Full-batch heavy-ball descent by hand: torch.optim's first step imports
    # torch._dynamo, which alone takes seconds.
    for _ in range(400):
        grads = torch.autograd.grad(F.cross_entropy(net(X), y), params)
        with torch.no_grad():
            for param, grad, velocity in zip(params, grads, velocities):
                param.sub_(0.1 * velocity.mul_(0.9).add_(grad))
    return net, X, y


def reference_losses(module, X, y, thetas):
    """Loss and accuracy by loading each vector into a module copy."""
    losses, accuracies = [], []
    for theta in thetas:
        net = module_with_parameters(module, theta).eval()
        with torch.no_grad():
            logits = net(X)
        losses.append(F.cross_entropy(logits, y).item())
        accuracies.append((logits.argmax(1) == y).double().mean().item())
    return np.array(losses), np.array(accuracies)


def snapshot(module):
    return (
        copy.deepcopy(module.state_dict()),
        {name: p.requires_grad for name, p in module.named_parameters()},
        [m.training for m in module.modules()],
    )


def assert_unchanged(module, before):
    state, requires_grad, modes = before
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    assert requires_grad == {n: p.requires_grad for n, p in module.named_parameters()}
    assert modes == [m.training for m in module.modules()]
    assert all(p.grad is None for p in module.parameters())


# -- parameters and directions ----------------------------------------------


def test_layout_marks_filters_and_round_trips():
    net = make_cnn()
    layout = ParameterLayout.from_module(net)
    assert layout.n_params == sum(p.numel() for p in net.parameters())
    assert [s.is_filter for s in layout.specs] == [
        p.ndim >= 2 for p in net.parameters()
    ]
    assert layout.specs[0].name == "0.weight" and layout.specs[0].n_groups == 4
    theta = flatten_parameters(net)
    views = layout.unflatten(theta)
    for name, param in net.named_parameters():
        assert torch.equal(views[name], param.detach())
    # flatten returns a copy, and loading a vector touches only a copy.
    theta[0] += 1.0
    assert not torch.equal(theta, flatten_parameters(net))
    clone = module_with_parameters(net, 2 * theta)
    assert torch.equal(flatten_parameters(clone), 2 * theta)
    assert clone is not net
    with pytest.raises(ValueError, match="length"):
        layout.unflatten(theta[:-1])


@pytest.mark.parametrize("make_net", [make_mlp, make_cnn])
def test_directions_have_the_filter_norms(make_net):
    net = make_net()
    layout = ParameterLayout.from_module(net)
    theta = flatten_parameters(net)
    directions = filter_normalized_directions(layout, theta, 5, seed=3)
    assert directions.shape == (5, layout.n_params)
    assert directions.dtype == theta.dtype
    with_bias = filter_normalized_directions(
        layout, theta, 5, seed=3, include_bias=True
    )
    for name, param in net.named_parameters():
        d = layout.unflatten(directions)[name]
        d_bias = layout.unflatten(with_bias)[name]
        if param.ndim >= 2:
            weight_norms = param.detach().flatten(1).norm(dim=1)
            for rows in (d, d_bias):
                torch.testing.assert_close(
                    rows.flatten(2).norm(dim=2), weight_norms.expand(5, -1)
                )
        else:
            assert torch.equal(d, torch.zeros_like(d))
            torch.testing.assert_close(
                d_bias.norm(dim=1), param.detach().norm().expand(5)
            )


def test_directions_are_seeded_and_chunk_invariant():
    net = make_mlp()
    layout, theta = ParameterLayout.from_module(net), flatten_parameters(net)
    global_state = torch.random.get_rng_state()
    first = filter_normalized_directions(layout, theta, 6, seed=7)
    assert torch.equal(torch.random.get_rng_state(), global_state)
    assert torch.equal(first, filter_normalized_directions(layout, theta, 6, seed=7))
    other = filter_normalized_directions(layout, theta, 6, seed=8)
    assert not torch.allclose(first, other)
    chunks = [
        filter_normalized_directions(layout, theta, 2, seed=7, start=start)
        for start in (0, 2, 4)
    ]
    assert torch.equal(torch.cat(chunks), first)
    # Rows are scaled in blocks: blocks of 4 rows (not dividing 6) and of one
    # row give the same bits.
    row_bytes = 8 * layout.n_params
    for rows_per_block in (4, 1):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(directions_module, "_BLOCK_BYTES", rows_per_block * row_bytes)
            blocked = filter_normalized_directions(layout, theta, 6, seed=7)
        assert torch.equal(blocked, first)
    # Rows differ from each other (one stream per direction index).
    assert not torch.allclose(first[0], first[1])
    with pytest.raises(ValueError, match="seed"):
        filter_normalized_directions(layout, theta, 2, seed=-1)


# -- batched evaluation -----------------------------------------------------


@pytest.mark.parametrize(
    "make_net, shape, n_classes, path",
    [
        (make_mlp, (2,), 2, "fused"),
        (lambda: make_mlp(activation="tanh"), (2,), 2, "fused"),
        (lambda: make_mlp(activation="gelu"), (2,), 2, "fused"),
        (make_mlp, (2,), 2, "vmap"),
        (make_cnn, (1, 8, 8), 3, "vmap"),
        (make_cnn, (1, 8, 8), 3, "loop"),
        (make_cnn, (1, 8, 8), 3, "patches"),
        (lambda: _analytic_cases()["conv-strided"][0](), (2, 11, 11), 3, "patches"),
        (
            lambda: _analytic_cases()["cnn-tanh-adaptive"][0](),
            (2, 20, 20),
            3,
            "patches",
        ),
        (make_mlp, (2,), 2, "loop"),
    ],
)
def test_batched_evaluator_matches_a_loop(make_net, shape, n_classes, path):
    net = make_net()
    X, y = make_data(shape, n_classes=n_classes)
    layout, theta = ParameterLayout.from_module(net), flatten_parameters(net)
    directions = filter_normalized_directions(layout, theta, 7, seed=0)
    steps = torch.linspace(0.0, 1.5, 7)[:, None]
    thetas = theta + steps * directions
    expected_loss, expected_accuracy = reference_losses(net, X, y, thetas)
    before = snapshot(net)
    per_sample = BatchedEvaluator(net, X, y, path=path)._bytes_per_sample()[0]
    settings = [
        {},
        {"chunk_size": 2},
        # A budget of 25 samples' activations forces blocks of samples too.
        {"chunk_size": 1, "max_batch_bytes": 25 * per_sample},
    ]
    for setting in settings:
        evaluator = BatchedEvaluator(net, X, y.numpy(), path=path, **setting)
        assert evaluator.path == path
        loss, accuracy = evaluator.evaluate(thetas)
        assert loss.dtype == np.float64 and loss.shape == (7,)
        np.testing.assert_allclose(loss, expected_loss, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(accuracy, expected_accuracy, atol=1e-6)
    assert evaluator.sample_block == 25
    np.testing.assert_allclose(evaluator.loss(theta), expected_loss[:1], rtol=1e-5)
    assert_unchanged(net, before)


@pytest.mark.parametrize(
    "make_net, shape, n_classes",
    [
        (make_mlp, (2,), 2),
        (lambda: MLP(2, 3, (8, 8)), (2,), 3),
        (make_cnn, (1, 8, 8), 3),
    ],
)
def test_the_same_weights_give_the_same_bits_anywhere_in_a_chunk(
    make_net, shape, n_classes
):
    # 37 samples: no multiple of any vector width, so without aligned
    # per-sample work the last vector of a chunk would round differently.
    with seeded_torch(0):
        net = make_net()
    X, y = make_data(shape, n_samples=37, n_classes=n_classes)
    theta = flatten_parameters(net)
    layout = ParameterLayout.from_module(net)
    directions = filter_normalized_directions(layout, theta, 3, seed=0)
    rows = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
    steps = np.array([0.3, 0.0, 0.2, 0.5, 0.0, 0.1, 0.4, 0.6, 0.0])
    at_theta = steps == 0
    reference = BatchedEvaluator(net, X, y).evaluate(theta)
    for chunk_size in (None, 2, 4, 9):
        evaluator = BatchedEvaluator(net, X, y, chunk_size=chunk_size)
        loss, accuracy = evaluator.evaluate_along(theta, directions, rows, steps)
        np.testing.assert_array_equal(loss[at_theta], reference[0][0])
        np.testing.assert_array_equal(accuracy[at_theta], reference[1][0])


@pytest.mark.parametrize(
    "make_net, shape, n_classes, path",
    [
        (make_mlp, (2,), 2, "fused"),
        (lambda: MLP(2, 3, (8, 8)), (2,), 3, "fused"),
        (make_cnn, (1, 8, 8), 3, "patches"),
        (make_cnn, (1, 8, 8), 2, "vmap"),
        (make_cnn, (1, 8, 8), 3, "loop"),
    ],
)
def test_loss_alone_gives_the_bits_of_loss_with_accuracy(
    make_net, shape, n_classes, path
):
    # loss() and loss_along() skip the accuracy; the losses must not change.
    with seeded_torch(0):
        net = make_net()
    X, y = make_data(shape, n_samples=37, n_classes=n_classes)
    theta = flatten_parameters(net)
    evaluator = BatchedEvaluator(net, X, y, chunk_size=4, path=path)
    directions = filter_normalized_directions(evaluator.layout, theta, 3, seed=0)
    rows, steps = np.array([0, 1, 2, 0, 1, 2, 0]), np.linspace(0.0, 0.6, 7)
    full = evaluator.evaluate_along(theta, directions, rows, steps)
    np.testing.assert_array_equal(
        evaluator.loss_along(theta, directions, rows, steps), full[0]
    )
    thetas = (
        theta
        + torch.as_tensor(steps, dtype=theta.dtype)[:, None]
        * (directions[torch.as_tensor(rows)])
    )
    np.testing.assert_array_equal(evaluator.loss(thetas), evaluator.evaluate(thetas)[0])
    with pytest.raises(ValueError, match="rows and steps must have the same length"):
        evaluator.loss_along(theta, directions, rows, steps[:-1])
    # Consecutive rows read slices of the directions instead of gathering.
    consecutive = evaluator.loss_along(theta, directions, [1, 2], steps[1:3])
    gathered = evaluator.loss_along(theta, directions, [1, 2, 1], steps[1:4])
    np.testing.assert_array_equal(consecutive, gathered[:2])


def test_a_call_splits_its_vectors_into_equal_chunks(monkeypatch):
    # 10 vectors with at most 4 per chunk: 4, 3, 3 (not 4, 4, 2).
    with seeded_torch(0):
        net = make_mlp()
    X, y = make_data((2,), n_samples=20, n_classes=2)
    evaluator = BatchedEvaluator(net, X, y, chunk_size=4)
    sizes = []
    forward = evaluator._fused_logits

    def recording(thetas, block, workspace):
        sizes.append(len(thetas))
        return forward(thetas, block, workspace)

    monkeypatch.setattr(evaluator, "_fused_logits", recording)
    theta = flatten_parameters(net)
    evaluator.loss(theta.expand(10, -1))
    assert sizes == [4, 3, 3]
    sizes.clear()
    evaluator.loss(theta.expand(8, -1))
    assert sizes == [4, 4]


def test_a_kept_workspace_gives_the_bits_of_a_fresh_evaluator(monkeypatch):
    # One evaluator, calls of changing sizes and sample blocks (its cached
    # forwards are reused, and dropped when a buffer grows), against a fresh
    # evaluator for every call.
    with seeded_torch(0):
        net = MLP(2, 3, (8, 8))
    X, y = make_data((2,), n_samples=37, n_classes=3)
    theta = flatten_parameters(net)
    directions = filter_normalized_directions(
        ParameterLayout.from_module(net), theta, 6, seed=0
    )
    for max_batch_bytes in (256 * 1024**2, 2000):  # whole samples / blocks
        kept = BatchedEvaluator(
            net, X, y, chunk_size=4, max_batch_bytes=max_batch_bytes
        )
        for n in (3, 6, 2, 6, 5, 1):
            rows, steps = np.arange(n) % 6, np.linspace(0.1, 0.4, n)
            fresh = BatchedEvaluator(
                net, X, y, chunk_size=4, max_batch_bytes=max_batch_bytes
            )
            expected = fresh.evaluate_along(theta, directions, rows, steps)
            got = kept.evaluate_along(theta, directions, rows, steps)
            np.testing.assert_array_equal(got[0], expected[0])
            np.testing.assert_array_equal(got[1], expected[1])
        assert (kept.sample_block < 37) == (max_batch_bytes == 2000)
    buffers = [f.data_ptr() for f in kept._local.workspace._flat if f is not None]
    kept.loss_along(theta, directions, [0, 1, 2], [0.1, 0.2, 0.3])
    assert [f.data_ptr() for f in kept._local.workspace._flat if f is not None] == (
        buffers
    )
    # Buffers made in a call under inference mode are not written outside it.
    first_call_inside = BatchedEvaluator(net, X, y, chunk_size=4)
    with torch.inference_mode():
        inside = first_call_inside.loss_along(theta, directions, [0, 1], [0.1, 0.2])
    outside = first_call_inside.loss_along(theta, directions, [0, 1], [0.1, 0.2])
    np.testing.assert_array_equal(outside, inside)
    # Above the cap, a call's workspace is not kept.
    monkeypatch.setattr(evaluate_module, "_KEPT_WORKSPACE_BYTES", 0)
    kept.loss_along(theta, directions, [0, 1, 2], [0.1, 0.2, 0.3])
    assert kept._local.workspace is None


def test_a_kept_workspace_holds_no_caller_memory_and_is_per_thread():
    with seeded_torch(0):
        net = make_mlp()
    X, y = make_data((2,), n_samples=30, n_classes=2)
    evaluator = BatchedEvaluator(net, X, y, chunk_size=3)
    theta = flatten_parameters(net)
    thetas = theta + 0.1 * torch.randn(7, len(theta), generator=torch.Generator())
    expected = evaluator.evaluate(thetas)
    alive = weakref.ref(thetas)
    del thetas
    gc.collect()
    assert alive() is None
    # Threads sharing the evaluator each get their own workspace.
    directions = filter_normalized_directions(evaluator.layout, theta, 8, seed=1)
    steps = np.linspace(0.05, 0.5, 8)
    reference = evaluator.loss_along(theta, directions, np.arange(8), steps)
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda _: evaluator.loss_along(theta, directions, np.arange(8), steps),
                range(16),
            )
        )
    for result in results:
        np.testing.assert_array_equal(result, reference)
    # A used evaluator pickles and copies (without its workspaces).
    for copied in (pickle.loads(pickle.dumps(evaluator)), copy.deepcopy(evaluator)):
        assert getattr(copied._local, "workspace", None) is None
        np.testing.assert_array_equal(
            copied.loss_along(theta, directions, np.arange(8), steps), reference
        )
    assert expected[0].shape == (7,)


def test_two_class_losses_keep_what_float32_logsumexp_loses():
    # Logits (8, -8): the label-0 loss is softplus(-16) = 1.1e-7, below the
    # float32 spacing of the logits (9.5e-7), so logsumexp minus the picked
    # logit would give 0; the label-1 loss is softplus(16) ~= 16.
    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.copy_(torch.tensor([8.0, -8.0]))
    X = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    for label in (0, 1):
        y = torch.full((10,), label)
        loss, accuracy = BatchedEvaluator(net, X, y).evaluate(flatten_parameters(net))
        exact = F.cross_entropy(net(X).double(), y).item()
        assert exact > 0
        np.testing.assert_allclose(loss[0], exact, rtol=1e-6)
        assert accuracy[0] == (1.0 if label == 0 else 0.0)


def test_compute_bound_dense_stacks_go_one_vector_at_a_time():
    with seeded_torch(0):
        net = MLP(2, 2, (256, 256))
    X, y = make_data((2,), n_samples=300)
    layout, theta = ParameterLayout.from_module(net), flatten_parameters(net)
    directions = filter_normalized_directions(layout, theta, 5, seed=0)
    thetas = theta + torch.linspace(0.0, 1.0, 5)[:, None] * directions
    expected_loss, expected_accuracy = reference_losses(net, X, y, thetas)
    evaluator = BatchedEvaluator(net, X, y)
    assert evaluator.path == "fused" and evaluator._per_vector
    loss, accuracy = evaluator.evaluate(thetas)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(accuracy, expected_accuracy, atol=1e-6)
    small = BatchedEvaluator(net, X[:20], y[:20])
    assert small.path == "fused" and not small._per_vector


def test_evaluator_picks_paths_and_validates():
    X, y = make_data((2,))
    assert BatchedEvaluator(make_mlp(), X, y).path == "fused"
    cnn_X, cnn_y = make_data((1, 8, 8), n_classes=3)
    assert BatchedEvaluator(make_cnn(), cnn_X, cnn_y).path == "patches"
    with seeded_torch(0):
        normalized = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1),
            torch.nn.BatchNorm2d(4),
            torch.nn.Flatten(),
            torch.nn.Linear(256, 3),
        )
    assert BatchedEvaluator(normalized, cnn_X, cnn_y).path == "vmap"
    # Large activations per vector: one vector at a time on CPU.
    many_X, many_y = make_data((1, 8, 8), n_samples=2000, n_classes=3)
    assert BatchedEvaluator(normalized, many_X, many_y).path == "loop"
    assert BatchedEvaluator(make_cnn(), many_X, many_y).path == "patches"
    with pytest.raises(ValueError, match="'loop'"):
        BatchedEvaluator(make_cnn(), cnn_X, cnn_y, path="batched")
    with pytest.raises(ValueError, match="fused"):
        BatchedEvaluator(make_cnn(), cnn_X, cnn_y, path="fused")
    with pytest.raises(ValueError, match="patches"):
        BatchedEvaluator(normalized, cnn_X, cnn_y, path="patches")
    evaluator = BatchedEvaluator(make_mlp(), X, y)
    with pytest.raises(ValueError, match="thetas must have shape"):
        evaluator.evaluate(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="one label per sample"):
        BatchedEvaluator(make_mlp(), X, y[:-1])


# -- basin radii ------------------------------------------------------------


def test_radii_match_a_dense_grid(trained_mlp):
    net, X, y = trained_mlp
    before = snapshot(net)
    layout, theta = ParameterLayout.from_module(net), flatten_parameters(net)
    directions = filter_normalized_directions(layout, theta, 12, seed=0)
    evaluator = BatchedEvaluator(net, X, y)
    cutoff, max_radius, rtol = 0.3, 0.25, 1e-6
    result = basin_radii(
        evaluator.loss, theta, directions, cutoff, max_radius=max_radius, rtol=rtol
    )
    assert 0 < result.capped.sum() < len(directions)  # both cases are covered
    assert result.loss0 < 0.01
    assert result.n_evaluations > len(directions)

    spacing = max_radius / 200
    grid = torch.linspace(0, max_radius, 201)
    thetas = theta + grid[:, None, None] * directions
    losses = evaluator.loss(thetas.reshape(-1, layout.n_params)).reshape(201, -1)
    for j, radius in enumerate(result.radii):
        crossed = losses[:, j] >= cutoff
        if result.capped[j]:
            assert radius == max_radius and not crossed.any()
        else:
            first = grid[np.argmax(crossed)].item()
            assert first - spacing - 1e-6 <= radius <= first + 1e-6

    open_rows = torch.from_numpy(~result.capped)
    radii = torch.tensor(result.radii[open_rows], dtype=theta.dtype)
    at_radius = evaluator.loss(theta + radii[:, None] * directions[open_rows])
    # hi - lo <= rtol * hi plus float32 noise of the loss evaluation.
    np.testing.assert_allclose(at_radius, cutoff, rtol=5 * rtol)
    assert_unchanged(net, before)


def test_radii_find_the_first_crossing_of_a_non_monotone_profile():
    def loss(thetas):  # crosses 0.75 at t = 0.3, falls below it after 0.65
        t = thetas[:, 0]
        return torch.where(t < 0.4, 2.5 * t, 1.4 - t)

    theta0 = torch.zeros(1, dtype=torch.float64)
    scales = torch.tensor([1.0, 2.0, 3.0, 0.1], dtype=torch.float64)
    directions = scales[:, None]
    result = basin_radii(loss, theta0, directions, 0.75, rtol=1e-9)
    np.testing.assert_allclose(result.radii, [0.3, 0.15, 0.1, 1.0], rtol=1e-8)
    np.testing.assert_array_equal(result.capped, [False, False, False, True])
    # Without the scan, bisection trusts the end point: the loss is low again
    # at c = 1 along the first three directions, so their crossings are missed.
    no_scan = basin_radii(loss, theta0, directions, 0.75, rtol=1e-9, n_scan=1)
    np.testing.assert_array_equal(no_scan.capped, [True, True, True, True])


def test_radii_meet_rtol_on_profiles_with_known_crossings():
    # One direction per profile shape; the loss along direction k at step c
    # is profiles[k](c). Quadratic (one step after the square-root shaping),
    # quartic, exponential and a kinked piecewise-linear one (the safeguard's
    # bisections): every radius within rtol of the analytic crossing, in far
    # fewer rounds than bisection on the smooth ones and never more than
    # about twice as many on any. Measured: 7, 10, 11 and 11 evaluations
    # with the scan (15, 18 and 10 for the last three by regula falsi
    # alone), where bisection needs about 30 after it.
    cutoff, rtol = 1.0, 1e-9
    profiles = [
        (lambda c: 0.01 + 3 * c**2, np.sqrt(0.99 / 3)),
        (lambda c: 0.01 + 40 * c**4, (0.99 / 40) ** 0.25),
        (lambda c: 0.01 * np.exp(9 * c), np.log(100) / 9),
        (
            lambda c: 0.01 + np.where(c < 0.3, 0.5 * c, 0.15 + 9 * (c - 0.3)),
            0.3 + 0.84 / 9,
        ),
    ]
    theta0, directions = torch.zeros(4, dtype=torch.float64), torch.eye(4).double()

    def loss(thetas):
        thetas = thetas.numpy()
        k = np.argmax(np.abs(thetas), axis=1)
        c = np.abs(thetas).max(axis=1)
        values = np.array([profiles[j][0](x) for j, x in zip(k, c)])
        return np.where(c == 0, 0.01, values)

    rounds = []

    def counted(thetas):
        rounds.append(len(thetas))
        return loss(thetas)

    result = basin_radii(counted, theta0, directions, cutoff, rtol=rtol, loss0=0.01)
    expected = np.array([root for _, root in profiles])
    np.testing.assert_allclose(result.radii, expected, rtol=2 * rtol)
    assert not result.capped.any()
    bisection_rounds = int(np.ceil(np.log2(0.125 / (rtol * expected.min()))))
    assert len(rounds) - 8 <= 2 * bisection_rounds
    per_direction = result.n_evaluations / 4
    assert per_direction < 0.75 * (bisection_rounds + 4)


def test_radii_raise_on_bad_losses():
    theta0, directions = torch.zeros(2), torch.eye(2)

    def bowl(thetas):
        return 0.5 + (thetas**2).sum(1)

    with pytest.raises(ValueError, match="already at or above the cutoff"):
        basin_radii(bowl, theta0, directions, cutoff=0.5)

    def blows_up(thetas):
        out = bowl(thetas)
        out[thetas.norm(dim=1) > 0.5] = float("nan")
        return out

    with pytest.raises(ValueError, match="not finite"):
        basin_radii(blows_up, theta0, directions, cutoff=2.0)

    def quartic(thetas):  # not linear in sqrt(loss - loss0), unlike the bowl
        return 0.5 + (thetas**2).sum(1) ** 2

    with pytest.warns(ConvergenceWarning, match="max_iter"):
        basin_radii(quartic, theta0, directions, cutoff=1.0, max_iter=2)


# -- curvature --------------------------------------------------------------


def exact_hessian(net, X, y):
    layout, theta = ParameterLayout.from_module(net), flatten_parameters(net)

    def loss(flat):
        logits = functional_call(net, layout.unflatten(flat), (X,))
        return F.cross_entropy(logits, y)

    return torch.autograd.functional.hessian(loss, theta), layout, theta


@pytest.fixture(scope="module")
def tiny_double():
    """A 22-parameter float64 network and its exact Hessian."""
    with seeded_torch(1):
        net = MLP(2, 2, (4,), activation="tanh").double()
    X, y = make_data((2,), n_samples=40)
    X = X.double()
    hessian, layout, theta = exact_hessian(net, X, y)
    return net, X, y, hessian, layout, theta


@pytest.mark.parametrize("filter_normalized", [False, True])
def test_top_eigenvalue_matches_the_exact_hessian(tiny_double, filter_normalized):
    net, X, y, hessian, layout, theta = tiny_double
    if filter_normalized:
        scale = layout.group_norms(theta)
        hessian = scale[:, None] * hessian * scale[None, :]
    expected = torch.linalg.eigvalsh(hessian)[-1].item()
    before = snapshot(net)
    value, vector = top_hessian_eigenvalue(
        net,
        X,
        y,
        n_iter=2000,
        tol=1e-10,
        seed=0,
        filter_normalized=filter_normalized,
        return_vector=True,
    )
    assert value == pytest.approx(expected, rel=1e-4)
    torch.testing.assert_close(hessian @ vector, value * vector, atol=1e-3, rtol=0)
    assert_unchanged(net, before)


def test_hessian_vector_products_are_exact(tiny_double):
    net, X, y, hessian, layout, theta = tiny_double
    generator = torch.Generator().manual_seed(0)
    vector = torch.randn(layout.n_params, dtype=torch.float64, generator=generator)
    for block in (None, 7):
        operator = LossHessian(net, X, y, sample_block=block)
        torch.testing.assert_close(operator.matvec(vector), hessian @ vector)
        torch.testing.assert_close(operator.matvec(vector), hessian @ vector)
    scaled = LossHessian(net, X, y, filter_normalized=True, include_bias=True)
    scale = layout.group_norms(theta, include_bias=True)
    assert (scale > 0).all()
    torch.testing.assert_close(
        scaled.matvec(vector), scale * (hessian @ (scale * vector))
    )


def test_top_eigenpair_handles_a_dominant_negative_eigenvalue():
    generator = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(5, 5, generator=generator))
    matrix = basis @ torch.diag(torch.tensor([-6.0, 2.0, 1.0, 0.5, -1.0])) @ basis.T

    def start():
        return torch.randn(5, generator=generator)

    value, vector, converged, residual = _top_eigenpair(
        lambda v: matrix @ v, start, 500, 1e-9
    )
    assert converged and residual <= 1e-9
    assert value == pytest.approx(2.0, rel=1e-5)


def spectrum_operator(values, seed=0):
    generator = torch.Generator().manual_seed(seed)
    n = len(values)
    gaussian = torch.randn(n, n, generator=generator, dtype=torch.float64)
    basis, _ = torch.linalg.qr(gaussian)
    matrix = basis @ torch.diag(torch.as_tensor(values, dtype=torch.float64)) @ basis.T
    return matrix, basis


def test_top_eigenpair_is_not_fooled_by_a_close_second_eigenvalue():
    # Top two eigenvalues 0.1 % apart: power iteration's estimate creeps
    # between them, and a stopping test on its change between products
    # accepts a value short of the top. The residual test must not.
    values = torch.cat([torch.tensor([10.0, 9.99]), torch.linspace(5, -2, 498)])
    matrix, basis = spectrum_operator(values)
    generator = torch.Generator().manual_seed(1)

    def start():
        return torch.randn(500, generator=generator, dtype=torch.float64)

    # The old rule: stop when the Rayleigh quotient changes by <= 1e-5.
    v = start()
    v, previous = v / v.norm(), None
    for _ in range(200):
        w = matrix @ v
        rayleigh = float(v @ w)
        if previous is not None and abs(rayleigh - previous) <= 1e-5 * rayleigh:
            break
        previous, v = rayleigh, w / w.norm()
    assert rayleigh < 10.0 * (1 - 1e-5)  # accepted, though off by more than tol

    value, vector, converged, residual = _top_eigenpair(
        lambda v: matrix @ v, start, 200, 1e-6
    )
    assert converged and residual <= 1e-6
    assert value == pytest.approx(10.0, rel=1e-6)
    assert abs(float(vector @ basis[:, 0])) == pytest.approx(1.0, abs=1e-3)
    exact = torch.linalg.norm(matrix @ vector - value * vector) / value
    assert float(exact) <= 1.01e-6


def test_top_eigenpair_restarts_within_bounded_memory(monkeypatch):
    from flatgen.landscape import _curvature

    values = torch.cat([torch.tensor([3.0]), torch.linspace(2.5, 0, 299)])
    matrix, _ = spectrum_operator(values, seed=2)
    generator = torch.Generator().manual_seed(0)
    monkeypatch.setattr(_curvature, "_MAX_BASIS_FLOATS", 300 * 12)  # 12 vectors
    value, _, converged, _ = _curvature._top_eigenpair(
        lambda v: matrix @ v,
        lambda: torch.randn(300, generator=generator, dtype=torch.float64),
        400,
        1e-8,
    )
    assert converged and value == pytest.approx(3.0, rel=1e-8)


def test_restarted_lanczos_never_claims_an_exhausted_space(monkeypatch):
    # Cycles of 2 vectors on a 5-dim operator: after 5 products in all no
    # cycle's Krylov space is complete, so only the residual may end it.
    from flatgen.landscape import _curvature

    matrix, _ = spectrum_operator([3.0, 2.9, 1.0, 0.5, 0.1], seed=4)
    monkeypatch.setattr(_curvature, "_MAX_BASIS_FLOATS", 10)
    generator = torch.Generator().manual_seed(0)
    value, vector, converged, residual = _curvature._top_eigenpair(
        lambda v: matrix @ v,
        lambda: torch.randn(5, generator=generator, dtype=torch.float64),
        7,
        1e-12,
    )
    exact = float(torch.linalg.norm(matrix @ vector - value * vector)) / value
    assert not converged and residual > 1e-12
    assert exact == pytest.approx(residual, rel=1e-6)


def test_unconverged_top_eigenvalue_warns_with_its_residual(tiny_double):
    net, X, y, *_ = tiny_double
    with pytest.warns(ConvergenceWarning, match=r"residual is .* of the value"):
        top_hessian_eigenvalue(net, X, y, n_iter=2, tol=1e-12)


def test_hutchinson_trace(tiny_double):
    net, X, y, hessian, layout, theta = tiny_double
    before = snapshot(net)
    exact = torch.trace(hessian).item()
    options = {"method": "hutchinson", "return_std": True}
    trace, std_error = hessian_trace(net, X, y, n_samples=1000, seed=0, **options)
    assert trace == pytest.approx(exact, rel=0.1)
    assert abs(trace - exact) < 5 * std_error
    assert hessian_trace(net, X, y, n_samples=3, seed=0) == hessian_trace(
        net, X, y, n_samples=3, seed=0
    )
    scale = layout.group_norms(theta)
    exact_fn = torch.trace(scale[:, None] * hessian * scale[None, :]).item()
    trace_fn, std_fn = hessian_trace(
        net, X, y, n_samples=1000, filter_normalized=True, **options
    )
    # This trace is close to zero at initialization, far below the
    # off-diagonal mass that sets Hutchinson's variance: test the error bar.
    assert abs(trace_fn - exact_fn) < 4 * std_fn
    assert_unchanged(net, before)


def test_hutch_plus_plus_trace_against_the_exact_trace(tiny_double, trained_mlp):
    net, X, y, hessian, *_ = tiny_double
    exact = torch.trace(hessian).item()
    # A sketch spanning the whole space (22 of 66 products) is exact.
    trace, std_error = hessian_trace(
        net, X, y, n_samples=66, method="hutch++", return_std=True
    )
    assert trace == pytest.approx(exact, rel=1e-10)
    assert std_error < 1e-10 * abs(exact)
    with pytest.raises(ValueError, match="method must be 'hutch"):
        hessian_trace(net, X, y, method="exact")
    # At a trained minimum (a decaying spectrum), on a budget of 30 of its
    # 106 dimensions, over 30 seeds: unbiased within the error bar, and a
    # far smaller error than Hutchinson's on the same budget (measured:
    # 413x smaller; the tail beyond the sketch is nearly flat here).
    net, X, y = trained_mlp
    net, X = copy.deepcopy(net).double(), X.double()
    exact = torch.trace(exact_hessian(net, X, y)[0]).item()
    errors = {}
    for method in ("hutch++", "hutchinson"):
        estimates = np.array(
            [
                hessian_trace(net, X, y, n_samples=30, seed=seed, method=method)
                for seed in range(30)
            ]
        )
        errors[method] = estimates - exact
    for error in errors.values():
        assert abs(error.mean()) < 4 * error.std() / np.sqrt(30)
    rms = {method: np.sqrt(np.mean(error**2)) for method, error in errors.items()}
    assert rms["hutch++"] < 0.1 * rms["hutchinson"], rms


def test_curvature_on_float32_modules_leaves_them_alone():
    net = make_cnn()
    net.train()
    net[0].bias.requires_grad_(False)
    X, y = make_data((1, 8, 8), n_samples=20, n_classes=3)
    before = snapshot(net)
    with pytest.warns(ConvergenceWarning):
        top_hessian_eigenvalue(net, X, y, n_iter=2)
    hessian_trace(net, X, y, n_samples=2, sample_block=8)
    BatchedEvaluator(net, X, y).evaluate(flatten_parameters(net)[None])
    assert_unchanged(net, before)


def test_several_cutoffs_share_one_search_and_match_separate_ones():
    torch.manual_seed(0)
    module = MLP(2, 2, (8, 8))
    X, y = torch.randn(60, 2), torch.randint(2, (60,))
    evaluator = BatchedEvaluator(module, X, y)
    theta0 = flatten_parameters(module)
    directions = filter_normalized_directions(evaluator.layout, theta0, 30, 3)
    loss0 = float(evaluator.loss(theta0[None])[0])
    cutoffs = np.array([1.5, 2.0, 4.0]) * loss0
    joint = basin_radii(
        evaluator.loss,
        theta0,
        directions,
        cutoffs,
        max_radius=3.0,
        evaluate_along=evaluator.loss_along,
    )
    assert joint.radii.shape == (3, 30)
    separate = [
        basin_radii(evaluator.loss, theta0, directions, c, max_radius=3.0)
        for c in cutoffs
    ]
    for j, result in enumerate(separate):
        np.testing.assert_allclose(joint.radii[j], result.radii, rtol=1e-5)
        np.testing.assert_array_equal(joint.capped[j], result.capped)
    assert joint.n_evaluations < sum(r.n_evaluations for r in separate)
    assert np.all(np.diff(joint.radii, axis=0) >= 0)


def test_evaluate_along_matches_stacked_vectors():
    torch.manual_seed(1)
    module = SmallCNN((1, 6, 6), 3, (4,), (8,))
    X, y = torch.randn(20, 1, 6, 6), torch.randint(3, (20,))
    evaluator = BatchedEvaluator(module, X, y, chunk_size=3)
    theta0 = flatten_parameters(module)
    directions = filter_normalized_directions(evaluator.layout, theta0, 5, 0)
    rows, steps = np.array([0, 4, 2, 2, 1, 3, 0]), np.linspace(0.1, 0.7, 7)
    stacked = (
        theta0
        + torch.as_tensor(steps, dtype=torch.float32)[:, None]
        * (directions[torch.as_tensor(rows)])
    )
    along = evaluator.evaluate_along(theta0, directions, rows, steps)
    direct = evaluator.evaluate(stacked)
    np.testing.assert_allclose(along[0], direct[0], rtol=1e-6)
    np.testing.assert_array_equal(along[1], direct[1])
    coefficients = torch.randn(7, 2, generator=torch.Generator().manual_seed(0))
    combined = evaluator.evaluate_combinations(theta0, directions[:2], coefficients)
    direct = evaluator.evaluate(theta0 + coefficients @ directions[:2])
    np.testing.assert_allclose(combined[0], direct[0], rtol=1e-6)
    np.testing.assert_array_equal(combined[1], direct[1])
    with pytest.raises(ValueError, match=r"coefficients must have shape \(B, 2\)"):
        evaluator.evaluate_combinations(theta0, directions[:2], coefficients[:, :1])


@pytest.mark.parametrize("m", [1, 2, 40, 64, 65, 120])
def test_ritz_pairs_of_small_and_large_tridiagonals(m):
    # Dense symmetric solver up to 64 steps, scipy's tridiagonal one above:
    # both against numpy's eigh of the full matrix, built independently.
    rng = np.random.default_rng(m)
    alphas, betas = rng.normal(size=m), rng.uniform(0.1, 1.0, size=m - 1)
    full = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
    exact_values, exact_vectors = np.linalg.eigh(full)
    k = min(3, m)
    values, vectors = _top_ritz_pairs(list(alphas), list(betas), k)
    np.testing.assert_allclose(values, exact_values[::-1][:k], atol=1e-12)
    overlaps = np.abs(np.sum(vectors * exact_vectors[:, ::-1][:, :k], axis=0))
    np.testing.assert_allclose(overlaps, 1.0, atol=1e-9)


def test_top_eigenpairs_match_the_exact_spectrum():
    from flatgen.landscape._curvature import _top_eigenpairs

    values = torch.cat([torch.tensor([5.0, 4.0, 3.5, 3.0]), torch.linspace(2, -1, 296)])
    matrix, basis = spectrum_operator(values, seed=3)
    generator = torch.Generator().manual_seed(0)
    found, vectors, converged, relative = _top_eigenpairs(
        lambda v: matrix @ v,
        lambda: torch.randn(300, generator=generator, dtype=torch.float64),
        300,
        1e-8,
        3,
    )
    assert converged and np.all(relative <= 1e-8)
    np.testing.assert_allclose(found, [5.0, 4.0, 3.5], rtol=1e-8)
    overlaps = (vectors.T @ basis[:, :3]).abs()
    identity = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(overlaps, identity, atol=1e-6, rtol=0)


def test_top_hessian_eigenpairs_of_a_network(tiny_double):
    net, X, y, hessian, *_ = tiny_double
    exact, exact_vectors = torch.linalg.eigh(hessian)
    values, vectors = top_hessian_eigenpairs(net, X, y, 3, tol=1e-9, n_iter=500)
    np.testing.assert_allclose(values, exact.flip(0)[:3].numpy(), rtol=1e-7)
    for i in range(3):
        product = hessian @ vectors[:, i]
        residual = torch.linalg.norm(product - values[i] * vectors[:, i])
        assert float(residual) <= 1e-7 * abs(values[i])
    assert values[0] == pytest.approx(top_hessian_eigenvalue(net, X, y, tol=1e-9))
    with pytest.raises(ValueError, match="n_eigenpairs must be an integer"):
        top_hessian_eigenpairs(net, X, y, 0)


def _analytic_cases():
    nn = torch.nn
    return {
        "mlp-relu": (lambda: MLP(3, 3, (5, 4)), (3,)),
        "mlp-tanh": (lambda: MLP(3, 3, (5, 4), activation="tanh"), (3,)),
        "cnn-relu": (lambda: SmallCNN((1, 8, 8), 3, (2, 3), (4,)), (1, 8, 8)),
        # 20x20: the max pools leave 5x5 and the adaptive pool really pools.
        "cnn-tanh-adaptive": (
            lambda: SmallCNN((2, 20, 20), 3, (2, 2), (3,), activation="tanh"),
            (2, 20, 20),
        ),
        "cnn-gelu": (
            lambda: SmallCNN((1, 9, 7), 3, (2,), (), activation="gelu"),
            (1, 9, 7),
        ),
        # Stride, asymmetric padding, dilation, overlapping padded max pool,
        # average pool, sigmoid and leaky ReLU, no bias on the head.
        "conv-strided": (
            lambda: nn.Sequential(
                nn.Conv2d(2, 3, 3, stride=2, padding=(1, 0), dilation=(1, 2)),
                nn.Sigmoid(),
                nn.MaxPool2d(2, stride=1, padding=1),
                nn.AvgPool2d(2),
                nn.Flatten(),
                nn.LeakyReLU(0.1),
                nn.Linear(18, 3, bias=False),
            ),
            (2, 11, 11),
        ),
    }


@pytest.mark.parametrize("case", list(_analytic_cases()))
def test_analytic_hessian_products_equal_the_exact_hessian(case):
    # The analytic R-operator against the exact Hessian
    # (torch.autograd.functional.hessian), a batch at a time and one by one,
    # with and without sample blocks, raw and filter-normalized. Measured:
    # within 1e-15 relative on every case.
    build, shape = _analytic_cases()[case]
    with seeded_torch(3):
        net = build().double()
    X, y = make_data(shape, n_samples=12, n_classes=3)
    X = X.double()
    hessian, layout, theta = exact_hessian(net, X, y)
    vectors = torch.randn(5, layout.n_params, dtype=torch.float64)
    scale = layout.group_norms(theta, include_bias=True)
    for block in (None, 5):
        operator = LossHessian(net, X, y, sample_block=block)
        assert operator._analytic is not None
        torch.testing.assert_close(operator.matmat(vectors), vectors @ hessian)
        torch.testing.assert_close(operator.matvec(vectors[0]), hessian @ vectors[0])
        scaled = LossHessian(
            net, X, y, sample_block=block, filter_normalized=True, include_bias=True
        )
        expected = (vectors * scale) @ hessian * scale
        torch.testing.assert_close(scaled.matmat(vectors), expected)


def test_analytic_state_above_its_memory_cap_is_recomputed_per_block(monkeypatch):
    from flatgen.landscape import _sequential_hessian

    with seeded_torch(3):
        net = SmallCNN((1, 8, 8), 3, (2, 3), (4,)).double()
    X, y = make_data((1, 8, 8), n_samples=12, n_classes=3)
    X = X.double()
    hessian, layout, _ = exact_hessian(net, X, y)
    per_sample = LossHessian(net, X, y)._analytic.state_bytes_per_sample
    # A cap below the whole set's state: blocks of 5 samples, same products.
    monkeypatch.setattr(_sequential_hessian, "_MAX_CACHE_BYTES", 11 * per_sample)
    monkeypatch.setattr(_sequential_hessian, "_BLOCK_BYTES", 5 * per_sample)
    operator = LossHessian(net, X, y)
    assert operator._analytic.sample_block == 5 and operator.batch_size == 1
    vectors = torch.randn(3, layout.n_params, dtype=torch.float64)
    torch.testing.assert_close(operator.matmat(vectors), vectors @ hessian)


def test_batched_double_backprop_equals_one_by_one():
    net = make_cnn()
    X, y = make_data((1, 8, 8), n_samples=24, n_classes=3)
    operator = LossHessian(net, X, y, engine="autograd")
    assert operator._analytic is None and operator.batch_size > 1
    vectors = torch.randn(7, operator.n_params)
    loop = torch.stack([operator.matvec(v) for v in vectors])
    torch.testing.assert_close(operator.matmat(vectors), loop, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match=r"shape \(n_vectors, "):
        operator.matmat(vectors[0])


class _ResidualStack(torch.nn.Sequential):
    """A Sequential whose forward is not the chain of its children."""

    def forward(self, x):
        return super().forward(x) + x[:, :2]


def test_only_covered_networks_take_the_analytic_path():
    nn = torch.nn
    X, y = make_data((2,), n_samples=10)
    assert LossHessian(make_mlp(), X, y, engine="autograd")._analytic is None
    with seeded_torch(0):
        shared = nn.Linear(2, 2)
        covered = [
            nn.Sequential(nn.Linear(2, 3, bias=False), nn.Sigmoid(), nn.Linear(3, 2)),
            nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5), nn.Linear(3, 2)),
        ]
        not_covered = [
            _ResidualStack(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2)),
            nn.Sequential(nn.Linear(2, 3), nn.GELU("tanh"), nn.Linear(3, 2)),
            nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 2)),
            nn.Sequential(shared, nn.Tanh(), shared),
            nn.Sequential(nn.ReLU(), nn.Linear(2, 2)),
        ]
    for module in covered + not_covered:
        operator = LossHessian(module, X, y)
        assert (operator._analytic is not None) == (module in covered)
        vector = torch.randn(operator.n_params)
        # Exact either way.
        expected = LossHessian(module, X, y, engine="autograd").matvec(vector)
        torch.testing.assert_close(operator.matvec(vector), expected)
    images, labels = make_data((2, 6, 6), n_samples=6)
    with seeded_torch(0):
        grouped = nn.Sequential(
            nn.Conv2d(2, 2, 3, groups=2), nn.Flatten(), nn.Linear(32, 2)
        )
        dense_on_images = nn.Sequential(
            nn.Linear(6, 2), nn.Flatten(), nn.Linear(144, 2)
        )
    for module in (grouped, dense_on_images):
        assert LossHessian(module, images, labels)._analytic is None
    with pytest.raises(ValueError, match="engine must be"):
        LossHessian(make_mlp(), X, y, engine="fast")


def test_float32_products_keep_the_softmax_in_float64(trained_mlp):
    # Near a fitted minimum p (1 - p) cancels in float32: double backprop in
    # float32 is good to ~1e-4 there. The analytic path computes the softmax
    # block in float64 and must stay within float32 matmul rounding.
    net, X, y = trained_mlp
    net = copy.deepcopy(net)
    with torch.no_grad():  # a confident fit: every p > 1 - 1e-4
        net[-1].weight.mul_(4)
        net[-1].bias.mul_(4)
    assert float(torch.softmax(net(X), 1).max(1).values.min()) > 1 - 1e-4
    net32, X32 = copy.deepcopy(net).float(), X.float()
    exact = LossHessian(copy.deepcopy(net).double(), X.double(), y, engine="autograd")
    vectors = torch.randn(4, exact.n_params, dtype=torch.float64)
    reference = exact.matmat(vectors)
    dense = LossHessian(net32, X32, y).matmat(vectors.float()).double()
    error = float((dense - reference).norm() / reference.norm())
    assert error < 2e-5  # measured 2.7e-6 (float32 double backprop: 2.8e-4)
