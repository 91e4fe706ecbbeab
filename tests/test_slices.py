"""LossSlice and LossSliceDisplay."""

import copy

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import NotFittedError
from sklearn.svm import SVC
from torch.nn.utils import vector_to_parameters

from flatgen import LossSlice, LossSliceDisplay, PoisonedMLPClassifier
from flatgen.io import load_results, save_results

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(scope="module")
def fitted(spirals):
    X, _, y, _ = spirals
    clf = PoisonedMLPClassifier(hidden_layer_sizes=(16, 16), max_iter=300)
    return clf.set_params(random_state=0).fit(X, y), X, y


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def reference_loss(clf, X, y, theta):
    """Loss and accuracy with ``theta`` copied into a copy of the network."""
    module = copy.deepcopy(clf.net_.module_).eval()
    vector_to_parameters(
        torch.as_tensor(theta, dtype=torch.float32), module.parameters()
    )
    with torch.no_grad():
        logits = module(torch.as_tensor(X, dtype=torch.float32)).double()
    y = torch.as_tensor(y)
    accuracy = (logits.argmax(1) == y).double().mean()
    return float(F.cross_entropy(logits, y)), float(accuracy)


def flat_weights(clf):
    return torch.cat([p.detach().reshape(-1) for p in clf.net_.module_.parameters()])


def test_1d_slice_matches_a_loop_over_model_copies(fitted):
    clf, X, y = fitted
    slice_ = LossSlice(n_dims=1, span=0.6, grid_resolution=7, random_state=0)
    slice_.fit(clf, X, y)
    assert_allclose(slice_.distances_, np.linspace(-0.3, 0.3, 7))
    theta0 = flat_weights(clf).numpy()
    d = slice_.directions_[0]
    expected = [reference_loss(clf, X, y, theta0 + a * d) for a in slice_.distances_]
    assert_allclose(slice_.losses_, [e[0] for e in expected], rtol=1e-4)
    assert_allclose(slice_.accuracies_, [e[1] for e in expected])
    assert_allclose(slice_.base_loss_, reference_loss(clf, X, y, theta0)[0], rtol=1e-5)
    assert slice_.losses_[3] == slice_.base_loss_
    # Away from the minimum the loss grows.
    assert (
        slice_.losses_[0] > slice_.base_loss_ and slice_.losses_[-1] > slice_.base_loss_
    )


def test_2d_slice_matches_a_loop_over_model_copies(fitted):
    clf, X, y = fitted
    slice_ = LossSlice(n_dims=2, span=0.4, grid_resolution=5, random_state=3)
    slice_.fit(clf, X, y)
    assert slice_.losses_.shape == slice_.accuracies_.shape == (5, 5)
    theta0 = flat_weights(clf).numpy()
    d1, d2 = slice_.directions_
    for i, a in enumerate(slice_.distances_):
        for j, b in enumerate(slice_.distances_):
            loss, accuracy = reference_loss(clf, X, y, theta0 + a * d1 + b * d2)
            assert_allclose(slice_.losses_[i, j], loss, rtol=1e-4)
            assert_allclose(slice_.accuracies_[i, j], accuracy)
    assert slice_.losses_[2, 2] == slice_.losses_.min()


def test_directions_are_filter_normalized_and_seeded(fitted):
    clf, X, y = fitted
    a = LossSlice(n_dims=2, grid_resolution=3, random_state=1).fit(clf, X, y)
    b = LossSlice(n_dims=2, grid_resolution=3, random_state=1).fit(clf, X, y)
    c = LossSlice(n_dims=1, grid_resolution=3, random_state=1).fit(clf, X, y)
    other = LossSlice(n_dims=1, grid_resolution=3, random_state=2).fit(clf, X, y)
    assert_array_equal(a.directions_, b.directions_)
    assert_array_equal(a.losses_, b.losses_)
    # The 1-D slice runs along the first direction of the 2-D one.
    assert_array_equal(c.directions_[0], a.directions_[0])
    assert not np.array_equal(c.directions_, other.directions_)
    first = clf.net_.module_[0]
    rows = a.directions_[0][: first.weight.numel()].reshape(first.weight.shape)
    assert_allclose(
        np.linalg.norm(rows, axis=1), first.weight.detach().norm(dim=1), rtol=1e-5
    )
    bias = a.directions_[0][first.weight.numel() : first.weight.numel() + 16]
    assert np.all(bias == 0)
    assert a.n_perturbed_ == sum(
        p.numel() for p in clf.net_.module_.parameters() if p.ndim == 2
    )
    with_bias = LossSlice(grid_resolution=3, include_bias=True, random_state=1)
    assert np.any(with_bias.fit(clf, X, y).directions_[0] != c.directions_[0])


def test_estimator_is_left_bit_identical(fitted):
    clf, X, y = fitted
    module = clf.net_.module_
    before = [p.detach().clone() for p in module.parameters()]
    flags = [p.requires_grad for p in module.parameters()]
    proba = clf.predict_proba(X)
    LossSlice(n_dims=2, grid_resolution=5, random_state=0).fit(clf, X, y)
    assert all(torch.equal(a, p) for a, p in zip(before, module.parameters()))
    assert flags == [p.requires_grad for p in module.parameters()]
    assert not module.training
    assert_array_equal(clf.predict_proba(X), proba)


def test_errors(fitted):
    clf, X, y = fitted
    with pytest.raises(ValueError, match="'n_dims' parameter"):
        LossSlice(n_dims=3).fit(clf, X, y)
    with pytest.raises(
        ValueError, match="'grid_resolution' parameter .* Got 1 instead"
    ):
        LossSlice(grid_resolution=1).fit(clf, X, y)
    with pytest.raises(ValueError, match="'span' parameter"):
        LossSlice(span=0).fit(clf, X, y)
    with pytest.raises(NotFittedError):
        LossSlice().fit(PoisonedMLPClassifier(), X, y)
    with pytest.raises(TypeError, match="torch network classifier"):
        LossSlice().fit(SVC().fit(X, y), X, y)


def test_display_1d_draws_the_stored_arrays(fitted):
    clf, X, y = fitted
    slice_ = LossSlice(grid_resolution=9, random_state=0).fit(clf, X, y)
    fig, ax = plt.subplots()
    disp = slice_.plot(ax=ax, show_accuracy=True)
    assert isinstance(disp, LossSliceDisplay)
    assert disp.ax_ is ax and disp.figure_ is fig
    assert_allclose(disp.line_.get_xdata(), slice_.distances_)
    assert_allclose(disp.line_.get_ydata(), slice_.losses_)
    assert_allclose(disp.accuracy_line_.get_ydata(), 100 * slice_.accuracies_)
    assert disp.accuracy_ax_ is not ax and disp.accuracy_ax_.figure is fig
    assert ax.get_yscale() == "log"
    assert "filter-normalized" in ax.get_xlabel()
    assert disp.accuracy_ax_.get_ylabel() == "training accuracy (%)"
    # Re-plot from the stored arrays on new axes: no recomputation.
    _, ax2 = plt.subplots()
    slice_.losses_ = None
    disp.plot(ax=ax2, log_scale=False)
    assert disp.ax_ is ax2 and ax2.get_yscale() == "linear"
    assert disp.accuracy_ax_ is None
    assert_allclose(disp.line_.get_ydata(), disp.losses)


def test_display_2d_from_saved_results(fitted, tmp_path):
    clf, X, y = fitted
    slice_ = LossSlice(n_dims=2, grid_resolution=7, random_state=0).fit(clf, X, y)
    save_results(slice_, tmp_path / "slice.npz")
    loaded = load_results(tmp_path / "slice.npz")
    assert_array_equal(loaded.losses_, slice_.losses_)
    disp = LossSliceDisplay.from_analyzer(loaded, label="clean").plot()
    assert disp.figure_ is disp.ax_.figure
    assert disp.contour_ is not None and disp.line_ is None
    assert disp.colorbar_.ax.get_ylabel() == "training cross-entropy"
    extremes = [slice_.losses_.min(), slice_.losses_.max()]
    assert_allclose(disp.contour_.levels[[0, -1]], extremes)
    assert disp.ax_.get_title() == "clean"
    assert "direction 2" in disp.ax_.get_ylabel()
    linear = disp.plot(log_scale=False)
    assert_allclose(linear.contour_.levels[[0, -1]], extremes)


def test_display_2d_puts_the_first_direction_on_x():
    distances = np.linspace(-1, 1, 21)
    # Loss varies along direction 1 only: the lowest band is a vertical strip.
    losses = np.repeat(0.1 + distances[:, None] ** 2, 21, axis=1)
    disp = LossSliceDisplay(distances, losses).plot(levels=10)
    vertices = disp.contour_.get_paths()[0].vertices
    assert np.abs(vertices[:, 0]).max() < 0.5
    assert_allclose(np.ptp(vertices[:, 1]), 2)


def test_display_errors():
    with pytest.raises(ValueError, match=r"losses must have shape \(3,\) or \(3, 3\)"):
        LossSliceDisplay(np.arange(3), np.ones(4)).plot()
    with pytest.raises(ValueError, match="accuracies must have the shape"):
        LossSliceDisplay(np.arange(3), np.ones(3), np.ones(2)).plot()
    with pytest.raises(ValueError, match="log_scale=False"):
        LossSliceDisplay(np.arange(3), np.zeros(3)).plot()


def test_hessian_slice_runs_along_the_exact_top_eigenvectors(fitted):
    from torch.func import functional_call

    from flatgen.landscape import ParameterLayout

    clf, X, y = fitted
    slice_ = LossSlice(
        n_dims=2, span=0.2, grid_resolution=5, directions="hessian", random_state=0
    ).fit(clf, X, y)
    # Independent: the exact Hessian over the flat weights, in float64.
    module = copy.deepcopy(clf.net_.module_).double()
    names = [n for n, _ in module.named_parameters()]
    shapes = [p.shape for p in module.parameters()]
    sizes = [p.numel() for p in module.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
    X_t, y_t = torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(y)

    def loss(flat):
        params = {n: t.reshape(s) for n, t, s in zip(names, flat.split(sizes), shapes)}
        return F.cross_entropy(functional_call(module, params, (X_t,)), y_t)

    hessian = torch.autograd.functional.hessian(loss, theta)
    scale = ParameterLayout.from_module(module).group_norms(theta, False)
    values, vectors = torch.linalg.eigh(scale[:, None] * hessian * scale[None, :])
    assert_allclose(slice_.eigenvalues_, values.flip(0)[:2].numpy(), rtol=1e-3)
    for k in range(2):
        d = torch.as_tensor(slice_.directions_[k], dtype=torch.float64)
        u = torch.where(scale != 0, d / scale, 0.0)
        cosine = abs(float(u @ vectors[:, -1 - k])) / float(u.norm())
        assert cosine > 0.999
        # Each direction has the norm of a random filter-normalized one.
        assert float(d.norm()) == pytest.approx(float((theta * (scale != 0)).norm()))
    assert slice_.losses_[2, 2] == slice_.losses_.min()
    assert slice_.converged_ and np.all(slice_.eigenvalue_residuals_ <= 1e-4)
    random = LossSlice(n_dims=2, span=0.2, grid_resolution=5, random_state=0).fit(
        clf, X, y
    )
    assert np.isnan(random.eigenvalues_).all()
    assert random.converged_ and np.isnan(random.eigenvalue_residuals_).all()
    # The sharpest direction rises faster than a random one.
    assert slice_.losses_[0, 2] > random.losses_[0, 2]


def test_unconverged_hessian_directions_are_recorded(fitted, monkeypatch):
    from flatgen.landscape import TrainingObjective

    clf, X, y = fitted
    found = TrainingObjective.hessian_directions

    def stalled(self, n_directions, seed):
        values, directions, residuals = found(self, n_directions, seed)
        return values, directions, residuals + np.array([0.0, 1e-2])[:n_directions]

    monkeypatch.setattr(TrainingObjective, "hessian_directions", stalled)
    slice_ = LossSlice(
        n_dims=2, span=0.2, grid_resolution=3, directions="hessian", random_state=0
    ).fit(clf, X, y)
    assert not slice_.converged_ and slice_.eigenvalue_residuals_[1] > 1e-2
