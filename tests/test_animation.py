"""PerturbationPath and PerturbationAnimation."""

import copy

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.testing import assert_allclose, assert_array_equal
from PIL import Image
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.nn.utils import vector_to_parameters

from flatgen import (
    LossSlice,
    PerturbationAnimation,
    PerturbationPath,
    PoisonedMLPClassifier,
)
from flatgen.io import load_results, save_results
from flatgen.landscape import LossHessian

from .conftest import blobs

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(scope="module")
def fitted(spirals):
    X, _, y, _ = spirals
    clf = PoisonedMLPClassifier(hidden_layer_sizes=(16, 16), max_iter=300)
    return clf.set_params(random_state=0).fit(X, y), X, y


@pytest.fixture(scope="module")
def path(fitted):
    clf, X, y = fitted
    params = {"span": 0.4, "n_frames": 8, "grid_resolution": 12, "random_state": 0}
    return PerturbationPath(**params).fit(clf, X, y)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def network_at(clf, theta):
    module = copy.deepcopy(clf.net_.module_).eval()
    vector_to_parameters(
        torch.as_tensor(theta, dtype=torch.float32), module.parameters()
    )
    return module


def flat_weights(clf):
    return torch.cat([p.detach().reshape(-1) for p in clf.net_.module_.parameters()])


def test_path_walks_out_back_and_home(path):
    assert_allclose(path.t_, [0, 0.5, 1, 0.5, 0, -0.5, -1, -0.5])
    assert_allclose(path.coefficients_, 0.2 * path.t_**5)
    assert path.frames_.shape == (8, 12, 12)
    for name in ("losses_", "accuracies_", "curvatures_"):
        assert getattr(path, name).shape == (8,)
    # Frames at the same c hold the same numbers.
    assert_array_equal(path.losses_[[1, 2]], path.losses_[[3, 2]])
    assert path.losses_[0] == path.losses_[4] == path.base_loss_


def test_path_numbers_match_a_loop_over_model_copies(fitted, path):
    clf, X, y = fitted
    theta0 = flat_weights(clf)
    d = torch.as_tensor(path.direction_)
    Xt, yt = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)
    xx, yy = np.meshgrid(path.grid_x_, path.grid_y_)
    grid = torch.as_tensor(np.c_[xx.ravel(), yy.ravel()], dtype=torch.float32)
    for i, c in enumerate(path.coefficients_):
        module = network_at(clf, theta0 + float(c) * d)
        with torch.no_grad():
            logits = module(Xt).double()
            regions = module(grid).argmax(1).numpy().reshape(12, 12)
        assert_allclose(path.losses_[i], float(F.cross_entropy(logits, yt)), rtol=1e-4)
        accuracy = float((logits.argmax(1) == yt).double().mean())
        assert_allclose(path.accuracies_[i], accuracy)
        assert_array_equal(path.frames_[i], regions)
        # d^T H d by double backpropagation through the copy's own parameters.
        params = list(module.parameters())
        loss = F.cross_entropy(module(Xt), yt)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        flat = torch.cat([g.reshape(-1) for g in grads])
        hvp = torch.autograd.grad(flat @ d, params)
        curvature = float(torch.cat([h.reshape(-1) for h in hvp]) @ d)
        assert_allclose(path.curvatures_[i], curvature, rtol=1e-3, atol=1e-6)


def test_first_frame_is_the_estimators_prediction(fitted, path):
    clf, X, y = fitted
    xx, yy = np.meshgrid(path.grid_x_, path.grid_y_)
    predicted = clf.predict(np.c_[xx.ravel(), yy.ravel()]).reshape(xx.shape)
    assert_array_equal(path.classes_[path.frames_[0]], predicted)
    # The grid covers the data with a 5 % margin.
    width = X[:, 0].max() - X[:, 0].min()
    assert_allclose(path.grid_x_[0], X[:, 0].min() - 0.05 * width)
    assert_allclose(path.grid_x_[-1], X[:, 0].max() + 0.05 * width)


def test_probability_frames_and_pipelines(fitted):
    clf, X, y = fitted
    pipe = make_pipeline(StandardScaler(), clf)
    pipe.steps[0][1].fit(X)
    params = {"n_frames": 4, "grid_resolution": 6, "random_state": 0}
    proba = PerturbationPath(response_method="predict_proba", **params)
    proba.fit(pipe, X, y)
    xx, yy = np.meshgrid(proba.grid_x_, proba.grid_y_)
    expected = pipe.predict_proba(np.c_[xx.ravel(), yy.ravel()])[:, 1]
    assert proba.frames_.dtype == np.float64
    assert_allclose(proba.frames_[0].ravel(), expected, rtol=1e-5, atol=1e-7)


def test_random_direction_is_the_slices_direction(fitted, path):
    clf, X, y = fitted
    slice_ = LossSlice(grid_resolution=3, random_state=0).fit(clf, X, y)
    assert_array_equal(path.direction_, slice_.directions_[0])
    again = PerturbationPath(**path.get_params()).fit(clf, X, y)
    for name in ("losses_", "curvatures_", "frames_", "direction_"):
        assert_array_equal(getattr(again, name), getattr(path, name))
    other = PerturbationPath(**{**path.get_params(), "random_state": 1})
    assert not np.array_equal(other.fit(clf, X, y).direction_, path.direction_)
    assert np.isnan(path.eigenvalue_) and path.converged_


def test_hessian_direction_is_the_top_eigenvector(fitted):
    clf, X, y = fitted
    path = PerturbationPath(
        direction="hessian", n_frames=4, grid_resolution=None, random_state=0
    ).fit(clf, X, y)
    assert path.frames_ is None and path.grid_x_ is None
    hessian = LossHessian(clf.net_.module_, X, y, filter_normalized=True)
    d = torch.as_tensor(path.direction_, dtype=torch.float32)
    active = hessian.scale != 0
    u = torch.zeros_like(d)
    u[active] = d[active] / hessian.scale[active]
    assert torch.all(d[~active] == 0)
    # D H D u = lambda u, and lambda is the largest eigenvalue found.
    residual = hessian.matvec(u) - path.eigenvalue_ * u
    assert float(residual.norm()) < 0.01 * path.eigenvalue_ * float(u.norm())
    assert path.eigenvalue_ > 0
    assert path.converged_ and path.eigenvalue_residual_ <= 1e-4
    # Scaled like a filter-normalized direction: the norm of the moved weights.
    weights = flat_weights(clf)[active]
    assert_allclose(float(d.norm()), float(weights.norm()), rtol=1e-5)
    # Its curvature at the minimum is d^T H d = lambda ||u||^2.
    expected = path.eigenvalue_ * float(u.norm()) ** 2
    assert_allclose(path.curvatures_[0], expected, rtol=1e-3)


def test_estimator_is_left_bit_identical(fitted):
    clf, X, y = fitted
    module = clf.net_.module_
    before = [p.detach().clone() for p in module.parameters()]
    flags = [p.requires_grad for p in module.parameters()]
    proba = clf.predict_proba(X)
    for direction in ("random", "hessian"):
        PerturbationPath(direction, n_frames=4, grid_resolution=5, random_state=0).fit(
            clf, X, y
        )
    assert all(torch.equal(a, p) for a, p in zip(before, module.parameters()))
    assert flags == [p.requires_grad for p in module.parameters()]
    assert not module.training
    assert_array_equal(clf.predict_proba(X), proba)


def test_errors(fitted):
    clf, X, y = fitted
    with pytest.raises(ValueError, match=r"needs X of shape \(n_samples, 2\)"):
        PerturbationPath().fit(clf, np.c_[X, X[:, :1]], y)
    with pytest.raises(ValueError, match="'n_frames' parameter .* Got 2 instead"):
        PerturbationPath(n_frames=2).fit(clf, X, y)
    with pytest.raises(ValueError, match="'span' parameter .* Got -1 instead"):
        PerturbationPath(span=-1).fit(clf, X, y)
    with pytest.raises(ValueError, match="'grid_resolution' parameter"):
        PerturbationPath(grid_resolution=1).fit(clf, X, y)
    with pytest.raises(ValueError, match="'direction' parameter"):
        PerturbationPath(direction="top").fit(clf, X, y)
    with pytest.raises(NotFittedError):
        PerturbationPath().fit(PoisonedMLPClassifier(), X, y)
    X3, y3 = blobs(n_samples=30, n_classes=3)
    three = PoisonedMLPClassifier((4,), max_iter=20, random_state=0).fit(X3, y3)
    with pytest.raises(ValueError, match="needs 2 classes. Got 3"):
        PerturbationPath(response_method="predict_proba").fit(three, X3, y3)


def test_path_without_regions_on_other_inputs():
    X, y = blobs(n_samples=30, n_classes=2)
    X4 = np.c_[X, X]
    clf = PoisonedMLPClassifier((4,), max_iter=20, random_state=0).fit(X4, y)
    path = PerturbationPath(n_frames=4, grid_resolution=None, random_state=0)
    path.fit(clf, X4, y)
    assert path.frames_ is None and np.all(np.isfinite(path.curvatures_))
    with pytest.raises(ValueError, match="holds no decision regions"):
        PerturbationAnimation.from_analyzer(path)


def test_animation_frame_draws_the_stored_arrays(fitted, path):
    clf, X, y = fitted
    anim = PerturbationAnimation.from_analyzer(path, X, y)
    fig = plt.figure()
    assert anim.plot_frame(2, fig=fig) is anim
    assert anim.figure_ is fig and anim.ax_ in fig.axes and anim.frame_ == 2
    assert len(anim.side_axes_) == 3
    assert all(ax.figure is fig for ax in anim.side_axes_)
    assert_array_equal(anim.image_.get_array(), path.frames_[2])
    c = path.coefficients_[2]
    values = (path.losses_[2], 100 * path.accuracies_[2], path.curvatures_[2])
    for dot, value in zip(anim.dots_, values):
        assert_allclose(dot.get_data(), ([c], [value]))
    # The side curves run over sorted c.
    line = anim.side_axes_[0].get_lines()[0]
    assert np.all(np.diff(line.get_xdata()) >= 0)
    assert "filter-normalized" in anim.side_axes_[2].get_xlabel()
    assert anim.ax_.get_xlabel() and anim.ax_.get_legend() is not None
    # Another frame on the same figure, from the stored arrays.
    anim.plot_frame(-1, fig=fig)
    assert anim.frame_ == 7 and anim.figure_ is fig
    assert_array_equal(anim.image_.get_array(), path.frames_[7])
    assert "frame 8/8" in fig.get_suptitle()
    with pytest.raises(
        ValueError, match=r"Frame index i must be an integer in \[-8, 7\]"
    ):
        anim.plot_frame(8)


@pytest.mark.slow
def test_gif_has_one_image_per_frame(fitted, tmp_path):
    clf, X, y = fitted
    # Six frames: c repeats between neighbours (frames 2 and 3), which a GIF
    # writer would merge if the frames were drawn identically.
    path = PerturbationPath(n_frames=6, grid_resolution=8, random_state=0)
    path.fit(clf, X, y)
    save_results(path, tmp_path / "path.npz")
    anim = PerturbationAnimation.from_analyzer(
        load_results(tmp_path / "path.npz"), X, y
    )
    target = tmp_path / "path.gif"
    assert anim.save(target, fps=5, dpi=30, verbose=False) == target
    with Image.open(target) as gif:
        assert gif.format == "GIF" and gif.n_frames == 6
        assert gif.info["duration"] == 200
    with pytest.raises(FileNotFoundError, match="does not exist"):
        anim.save(tmp_path / "missing" / "path.gif")
    with pytest.raises(ValueError, match="fps must be positive"):
        anim.save(target, fps=0)


def test_animation_checks_its_arrays():
    c = np.zeros(4)
    grid = np.linspace(0, 1, 3)
    with pytest.raises(ValueError, match=r"frames must have shape \(4, 3, 3\)"):
        PerturbationAnimation(c, c, c, c, grid, grid, np.zeros((4, 2, 3))).plot_frame(0)
    with pytest.raises(ValueError, match=r"losses must have shape \(4,\)"):
        PerturbationAnimation(
            c, c[:3], c, c, grid, grid, np.zeros((4, 3, 3))
        ).plot_frame(0)
