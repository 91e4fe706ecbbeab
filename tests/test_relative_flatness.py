"""Relative flatness (Petzka et al. 2021) against an independent closed form.

For the last layer of a classifier under the cross-entropy, the Hessian in
that layer's weights is ``E_x[(diag(p) - p p^T) (x) phi phi^T]`` (``phi`` the
layer's input, ``p`` the softmax), so ``sum_j H_{(s,j),(s',j)} =
E_x[A_{ss'} |phi|^2]`` and ``kappa = E_x[|phi|^2 tr(W W^T A)]``, computed
here from a forward pass alone.
"""

import copy

import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.base import clone
from torch import nn

from flatgen import CurvatureAnalyzer, PoisonedMLPClassifier, RelativeFlatnessAnalyzer
from flatgen.landscape import layer_weight_name

from .conftest import blobs


def _network():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(2, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)
    ).double()
    X, y = blobs(n_samples=90, n_classes=3)
    X = torch.as_tensor(X, dtype=torch.float64)
    y = torch.as_tensor(y)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(200):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(X), y).backward()
        optimizer.step()
    return net.eval(), X, y


@pytest.fixture(scope="module")
def network():
    return _network()


def _closed_form(net, X):
    with torch.no_grad():
        features = net[:-1](X)
        p = torch.softmax(net(X), dim=1)
    W = net[-1].weight.detach()
    gram = W @ W.T
    A = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    per_sample = features.square().sum(1) * torch.einsum("st,nts->n", gram, A)
    return float(per_sample.mean())


def test_last_layer_matches_the_closed_form(network):
    net, X, y = network
    analyzer = RelativeFlatnessAnalyzer().fit(net, X, y)
    assert analyzer.layer_name_ == "4.weight"
    assert analyzer.std_error_ == 0.0
    assert_allclose(analyzer.relative_flatness_, _closed_form(net, X), rtol=1e-10)
    assert analyzer.score_ == -analyzer.relative_flatness_


def test_moving_a_factor_between_relu_layers_leaves_it_unchanged(network):
    # The same function: layer 2 times a, layer 3 times 1/a. The Hessian's
    # trace changes; relative flatness of the last layer does not.
    net, X, y = network
    scaled = copy.deepcopy(net)
    with torch.no_grad():
        scaled[2].weight.mul_(4.0)
        scaled[2].bias.mul_(4.0)
        scaled[4].weight.div_(4.0)
    assert torch.allclose(scaled(X), net(X))
    original = RelativeFlatnessAnalyzer().fit(net, X, y).relative_flatness_
    moved = RelativeFlatnessAnalyzer().fit(scaled, X, y).relative_flatness_
    assert_allclose(moved, original, rtol=1e-9)
    trace = CurvatureAnalyzer(filter_normalized=False, n_probes=60, random_state=0)
    assert clone(trace).fit(scaled, X, y).trace_ != pytest.approx(
        clone(trace).fit(net, X, y).trace_, rel=0.1
    )


def test_hutchinson_estimate_brackets_the_exact_value(network):
    net, X, y = network
    exact = RelativeFlatnessAnalyzer(layer=1).fit(net, X, y)
    estimate = RelativeFlatnessAnalyzer(layer=1, n_probes=400, random_state=0)
    estimate.fit(net, X, y)
    assert exact.layer_name_ == "2.weight"
    assert estimate.std_error_ > 0
    assert abs(estimate.relative_flatness_ - exact.relative_flatness_) < (
        4 * estimate.std_error_
    )


def test_layers_are_named_or_counted_and_bad_ones_say_why(network):
    net, X, y = network
    assert layer_weight_name(net, 0) == "0.weight"
    assert layer_weight_name(net, "2") == "2.weight"
    with pytest.raises(ValueError, match="its linear layers are"):
        RelativeFlatnessAnalyzer(layer="7").fit(net, X, y)
    with pytest.raises(ValueError, match="index in \\[-3, 3\\)"):
        RelativeFlatnessAnalyzer(layer=3).fit(net, X, y)


def test_the_scorer_is_minus_kappa_on_any_model():
    X, y = blobs(n_samples=90, n_classes=2)
    clf = PoisonedMLPClassifier(
        hidden_layer_sizes=(16,), max_iter=300, random_state=0
    ).fit(X, y)
    fitted = RelativeFlatnessAnalyzer().fit(clf, X, y)
    assert RelativeFlatnessAnalyzer()(clf, X, y) == -fitted.relative_flatness_
    assert fitted.relative_flatness_ > 0 and fitted.layer_name_.endswith(".weight")
