"""Flatness of any model: skorch nets, sklearn MLPs and plain torch modules."""

import copy
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.metrics import log_loss
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetBinaryClassifier, NeuralNetClassifier
from torch import nn

from flatgen import (
    BasinAnalyzer,
    CurvatureAnalyzer,
    LossSlice,
    MarginAnalyzer,
    PerturbationPath,
    PoisonedMLPClassifier,
    SharpnessAnalyzer,
    VolumeEstimator,
    make_spirals,
)
from flatgen.landscape._models import network_and_data

from .conftest import blobs


@pytest.fixture(scope="module")
def three_classes():
    X, y = blobs(n_samples=150, n_classes=3, seed=0)
    X = X.astype(np.float32)
    clf = PoisonedMLPClassifier(
        hidden_layer_sizes=(16, 16), max_iter=500, random_state=0
    ).fit(X, y)
    return clf, X, y


def _skorch(module, **params):
    net = NeuralNetClassifier(
        module, classes=[0, 1, 2], max_epochs=0, train_split=None, **params
    )
    return net.initialize()


def _sklearn_mlp_with_weights(module, X, y, activation="relu"):
    """An sklearn MLPClassifier carrying ``module``'s weights (float64)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPClassifier((16, 16), activation=activation, max_iter=1).fit(X, y)
    linear = [m for m in module if isinstance(m, nn.Linear)]
    mlp.coefs_ = [layer.weight.detach().double().numpy().T.copy() for layer in linear]
    mlp.intercepts_ = [layer.bias.detach().double().numpy().copy() for layer in linear]
    return mlp


def _measurements(model, X, y):
    basin = BasinAnalyzer(n_directions=20, cutoff=0.5, random_state=0).fit(model, X, y)
    curvature = CurvatureAnalyzer(random_state=0).fit(model, X, y)
    volume = VolumeEstimator(n_directions=50, cutoff=0.5, random_state=0)
    volume.fit(model, X, y)
    sharpness = SharpnessAnalyzer(random_state=0).fit(model, X, y)
    return {
        "loss": basin.base_loss_,
        "radii": basin.radii_,
        "eigenvalue": curvature.top_eigenvalue_,
        "trace": curvature.trace_,
        "log10_volume": volume.log10_volume_,
        "sharpness": sharpness.sharpness_,
    }


@pytest.mark.slow
def test_one_network_in_every_form_gives_the_same_numbers(three_classes):
    clf, X, y = three_classes
    module = clf.module_
    reference = _measurements(clf, X, y)
    same_float32_network = {
        "skorch, CrossEntropyLoss": _skorch(
            copy.deepcopy(module), criterion=nn.CrossEntropyLoss
        ),
        "plain module": copy.deepcopy(module),
    }
    for name, model in same_float32_network.items():
        numbers = _measurements(model, X, y)
        for key, value in reference.items():
            # The same float32 network, data and seeds: the same bits.
            assert_array_equal(numbers[key], value, err_msg=f"{name}: {key}")
    rounded = {
        # skorch's default: the module returns probabilities (final Softmax).
        "skorch, NLLLoss": _skorch(
            nn.Sequential(copy.deepcopy(module), nn.Softmax(dim=-1))
        ),
        # sklearn's float64 copy of the float32 weights.
        "sklearn MLPClassifier": _sklearn_mlp_with_weights(module, X, y),
    }
    for name, model in rounded.items():
        numbers = _measurements(model, X, y)
        for key, value in reference.items():
            assert_allclose(numbers[key], value, rtol=2e-5, err_msg=f"{name}: {key}")


def test_loss_at_the_minimum_is_the_models_own_log_loss():
    X, y = make_spirals(120, noise=0.5, random_state=0)
    labels = np.where(y == 1, "b", "a")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPClassifier((16, 16), activation="tanh", max_iter=300, random_state=0)
        mlp.fit(X, labels)
    basin = BasinAnalyzer(n_directions=5, cutoff=2, cutoff_type="relative")
    basin.fit(mlp, X, labels)
    # One logistic output, measured as the logits (0, z): sklearn's log loss.
    assert_allclose(basin.base_loss_, log_loss(labels, mlp.predict_proba(X)), 1e-12)
    assert basin.base_accuracy_ == mlp.score(X, labels)

    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
    net = NeuralNetBinaryClassifier(
        module, max_epochs=20, lr=0.1, train_split=None, verbose=0
    ).fit(X.astype(np.float32), y.astype(np.float32))
    basin.fit(net, X, y)
    proba = net.predict_proba(X.astype(np.float32))
    assert_allclose(basin.base_loss_, log_loss(y, proba), rtol=1e-6)
    assert basin.base_accuracy_ == pytest.approx(net.score(X.astype(np.float32), y))


def test_pipeline_ending_in_an_sklearn_mlp_sees_transformed_inputs():
    X, y = blobs(n_samples=90, n_classes=3, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=200))
        pipe.fit(X, y)
    module, X_net, codes = network_and_data(pipe, X, y)
    assert_allclose(X_net, pipe[0].transform(X))
    proba = torch.softmax(module(torch.as_tensor(X_net)), dim=1).detach().numpy()
    assert_allclose(proba, pipe.predict_proba(X), rtol=1e-10)
    assert_array_equal(codes, y)


def test_module_with_batch_norm_in_training_mode_is_measured_in_eval_mode():
    torch.manual_seed(0)
    cnn = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(4 * 6 * 6, 3),
    )
    images, labels = torch.randn(30, 1, 8, 8), np.arange(30) % 3
    before = copy.deepcopy(cnn.state_dict())
    with pytest.warns(UserWarning, match="training mode .* measured in eval mode"):
        basin = BasinAnalyzer(n_directions=4, cutoff=2, cutoff_type="relative")
        basin.fit(cnn, images, labels)
    # The caller's module: same mode, same weights and running statistics.
    assert cnn.training
    for key, value in before.items():
        assert torch.equal(cnn.state_dict()[key], value)
    with torch.no_grad():
        logits = cnn.eval()(images)
    expected = nn.functional.cross_entropy(logits, torch.as_tensor(labels))
    assert_allclose(basin.base_loss_, float(expected), rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # in eval mode: nothing to say
        LossSlice(n_dims=1, grid_resolution=5, span=0.1).fit(cnn, images, labels)


def test_perturbation_path_of_an_sklearn_mlp_draws_its_regions():
    X, y = make_spirals(80, noise=0.5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPClassifier((16,), max_iter=300, random_state=0).fit(X, y + 1)
    path = PerturbationPath(n_frames=4, grid_resolution=6, random_state=0)
    path.fit(mlp, X, y + 1)
    assert_array_equal(path.classes_, [1, 2])
    # Frame 0 is the trained network itself: its regions are the model's.
    xx, yy = np.meshgrid(path.grid_x_, path.grid_y_)
    predicted = mlp.predict(np.c_[xx.ravel(), yy.ravel()])
    assert_array_equal(path.classes_[path.frames_[0].ravel()], predicted)


def _unfitted_skorch():
    return NeuralNetClassifier(nn.Linear(2, 3), classes=[0, 1, 2])


def _weighted_skorch():
    return _skorch(
        nn.Linear(2, 3),
        criterion=nn.CrossEntropyLoss,
        criterion__weight=torch.ones(3),
    )


def _mse_skorch():
    # A classifier trained with a regression loss: no cross-entropy to measure.
    return NeuralNetClassifier(nn.Linear(2, 3), criterion=nn.MSELoss).initialize()


def _regressor():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        regressor = MLPRegressor(loss="poisson", hidden_layer_sizes=(4,), max_iter=5)
        return regressor.fit(np.zeros((6, 2)), np.arange(6.0))


def _multilabel():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Y = np.array([[0, 1], [1, 0], [1, 1], [0, 0]] * 3)
        return MLPClassifier((4,), max_iter=5).fit(np.random.rand(12, 2), Y)


@pytest.mark.parametrize(
    "make_model, y, error, match",
    [
        (_unfitted_skorch, None, Exception, "not fitted yet|not initialized"),
        (_weighted_skorch, None, ValueError, "class weights or label smoothing"),
        (_mse_skorch, None, TypeError, "trained with MSELoss"),
        (_regressor, None, TypeError, "loss='squared_error'"),
        (_multilabel, None, TypeError, "multi-label"),
        (
            lambda: nn.Linear(2, 3),
            np.arange(12) % 4,
            ValueError,
            "class indices 0 .. 2",
        ),
        (
            lambda: nn.Linear(2, 3),
            (np.arange(12) % 3) + 0.5,
            ValueError,
            "class indices 0 .. 2",
        ),
    ],
)
def test_models_that_cannot_be_measured_say_why(make_model, y, error, match):
    X = np.random.RandomState(0).rand(12, 2).astype(np.float32)
    y = np.arange(12) % 3 if y is None else y
    with pytest.raises(error, match=match):
        BasinAnalyzer(n_directions=2).fit(make_model(), X, y)


@pytest.mark.slow
def test_margins_of_a_skorch_net_are_asked_in_its_own_dtype():
    X, y = make_spirals(20, noise=0.5, random_state=0)
    X = X.astype(np.float32)
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    net = NeuralNetClassifier(
        module,
        criterion=nn.CrossEntropyLoss,
        max_epochs=5,
        train_split=None,
        batch_size=-1,
        verbose=0,
    ).fit(X, y)
    # skorch casts nothing: float64 queries would fail inside the module.
    margins = MarginAnalyzer(n_directions=4, random_state=0).fit(net, X, y)
    assert margins.margins_.shape == (20,) and np.all(margins.margins_ >= 0)
