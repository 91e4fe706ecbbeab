"""The poisoned classifiers inside ordinary scikit-learn workflows."""

import pickle

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import Callback

from flatgen import PoisonedCNNClassifier, PoisonedMLPClassifier

from .conftest import blobs

FAST = {"hidden_layer_sizes": (16, 16), "max_iter": 300}


class RecordThreads(Callback):
    """Writes torch's thread count during training into the history."""

    def on_epoch_end(self, net, **kwargs):
        net.history.record("torch_threads", torch.get_num_threads())


class CaptureInitialWeights(Callback):
    def on_train_begin(self, net, **kwargs):
        self.weights_ = [p.detach().clone() for p in net.module_.parameters()]


def test_pipeline_and_clone():
    X, y = blobs()
    pipe = make_pipeline(
        StandardScaler(), PoisonedMLPClassifier(**FAST, random_state=0)
    )
    pipe.fit(X, y)
    assert pipe.score(X, y) > 0.9
    cloned = clone(pipe)
    assert not hasattr(cloned[-1], "net_")
    assert cloned.get_params()["poisonedmlpclassifier__max_iter"] == 300


def test_grid_search_over_poison_factor_and_architecture(spirals):
    X_train, _, y_train, _ = spirals
    search = GridSearchCV(
        # A short polish: the search's mechanics are under test, not the fit.
        PoisonedMLPClassifier(max_iter=100, max_polish_iter=50, random_state=0),
        {"poison_factor": [0.0, 0.5], "hidden_layer_sizes": [(8,), (8, 8)]},
        cv=2,
    )
    search.fit(X_train, y_train)
    assert len(search.cv_results_["params"]) == 4
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


@pytest.mark.slow
def test_parallel_grid_search_matches_serial(spirals):
    X_train, _, y_train, _ = spirals
    grid = {"poison_factor": [0.0, 0.5]}
    clf = PoisonedMLPClassifier(max_iter=150, max_polish_iter=50, random_state=0)
    results = [
        GridSearchCV(clf, grid, cv=2, n_jobs=n_jobs).fit(X_train, y_train).cv_results_
        for n_jobs in (1, 2)
    ]
    for key in ("split0_test_score", "split1_test_score", "mean_test_score"):
        assert_array_equal(results[0][key], results[1][key])


@pytest.mark.slow
def test_parallel_fits_use_one_thread_and_match_serial_bit_for_bit(spirals):
    X_train, _, y_train, _ = spirals
    clf = PoisonedMLPClassifier(
        max_iter=150,
        max_polish_iter=50,
        poison_factor=0.3,
        random_state=0,
        callbacks=[RecordThreads()],
    )
    runs = [
        cross_validate(
            clf, X_train, y_train, cv=2, n_jobs=n_jobs, return_estimator=True
        )
        for n_jobs in (1, 2)
    ]
    for fitted in runs[1]["estimator"]:
        assert set(fitted.net_.history[:, "torch_threads"]) == {1}
    for a, b in zip(runs[0]["estimator"], runs[1]["estimator"]):
        assert_array_equal(a.predict_proba(X_train), b.predict_proba(X_train))


def test_string_labels_and_three_classes():
    X, y = blobs(n_classes=3)
    labels = np.array(["cat", "dog", "emu"])[y]
    clf = PoisonedMLPClassifier(**FAST, random_state=0).fit(X, labels)
    assert_array_equal(clf.classes_, ["cat", "dog", "emu"])
    assert clf.predict_proba(X).shape == (len(X), 3)
    assert set(clf.predict(X)) <= {"cat", "dog", "emu"}
    assert clf.score(X, labels) > 0.9


@pytest.mark.slow
def test_three_classes_with_poison_and_random_wrong_labels():
    X, y = blobs(n_classes=3)
    for loss in ("reverse", "random"):
        clf = PoisonedMLPClassifier(
            **FAST, poison_factor=0.5, poison_loss=loss, random_state=0
        ).fit(X, y)
        assert np.all(np.isfinite(clf.loss_curve_))


@pytest.mark.slow
def test_pickle_round_trip_gives_identical_probabilities(spirals):
    X_train, X_test, y_train, _ = spirals
    clf = PoisonedMLPClassifier(**FAST, poison_factor=0.3, random_state=0)
    clf.fit(X_train, y_train)
    restored = pickle.loads(pickle.dumps(clf))
    assert_array_equal(clf.predict_proba(X_test), restored.predict_proba(X_test))
    assert restored.net_.trainer is None  # no training data in the pickle


@pytest.mark.slow
def test_same_random_state_is_bit_identical(spirals):
    X_train, X_test, y_train, _ = spirals
    fits = [
        PoisonedMLPClassifier(**FAST, poison_factor=0.5, random_state=3).fit(
            X_train, y_train
        )
        for _ in range(2)
    ]
    assert_array_equal(fits[0].predict_proba(X_test), fits[1].predict_proba(X_test))
    assert_array_equal(fits[0].loss_curve_, fits[1].loss_curve_)
    other = PoisonedMLPClassifier(**FAST, poison_factor=0.5, random_state=4)
    other.fit(X_train, y_train)
    assert not np.array_equal(other.loss_curve_, fits[0].loss_curve_)


@pytest.mark.slow
def test_fit_does_not_touch_global_torch_rng(spirals):
    X_train, _, y_train, _ = spirals
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    PoisonedMLPClassifier(max_iter=5, random_state=0).fit(X_train, y_train)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.slow
def test_poison_factor_sweep_shares_initial_weights(spirals):
    X_train, _, y_train, _ = spirals
    captured = []
    for beta in (0.0, 1.0):
        capture = CaptureInitialWeights()
        PoisonedMLPClassifier(
            max_iter=5, poison_factor=beta, random_state=7, callbacks=[capture]
        ).fit(X_train, y_train)
        captured.append(capture.weights_)
    for a, b in zip(*captured):
        assert torch.equal(a, b)


class CountSteps(Callback):
    def on_train_begin(self, net, **kwargs):
        self.begins_, self.ends_, self.losses_, self.blocks_ = 0, 0, [], 0

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        assert training
        self.begins_ += 1

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        inputs, targets = batch
        self.rows_ = len(inputs), len(targets)
        self.ends_ += 1
        self.losses_.append(float(kwargs["loss"]))

    def on_epoch_end(self, net, **kwargs):
        self.blocks_ += 1


def test_skorch_batch_and_epoch_callbacks_fire_per_step_and_block(spirals):
    X_train, _, y_train, _ = spirals
    counter = CountSteps()
    clf = PoisonedMLPClassifier(
        max_iter=450,
        poison_factor=0.3,
        max_polish_iter=0,
        random_state=0,
        callbacks=[counter],
    ).fit(X_train, y_train)
    assert counter.begins_ == counter.ends_ == 450
    # 100 training rows then 200 poison points per step; targets: the rows'.
    assert counter.rows_ == (300, 100)
    assert counter.blocks_ == len(clf.loss_curve_) == len(clf.net_.history)
    # The history's per-block loss is the mean of the per-step objectives.
    block = clf.net_.history[0, "n_steps"]
    assert np.mean(counter.losses_[:block]) == pytest.approx(clf.loss_curve_[0])


def test_poisoning_lowers_test_accuracy(spirals, clean_and_poisoned):
    """A short version of the paper's effect, with a sampler of the true data."""
    _, X_test, _, y_test = spirals
    scores = {
        beta: clf.score(X_test, y_test) for beta, clf in clean_and_poisoned.items()
    }
    assert scores[0.0] > 0.85
    assert scores[1.0] < scores[0.0] - 0.2


def test_adam_solver_and_minibatches():
    X, y = blobs()
    clf = PoisonedMLPClassifier(
        hidden_layer_sizes=(32, 32),
        solver="adam",
        learning_rate_init=3e-3,
        batch_size=32,
        max_iter=100,
        random_state=0,
    ).fit(X, y)
    assert clf.n_iter_ == 100
    assert clf.score(X, y) > 0.9


@pytest.mark.slow
def test_cnn_accepts_images_flat_rows_and_pipelines():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = X[:300], y[:300]
    params = {"max_iter": 60, "max_polish_iter": 50, "random_state": 0}
    flat = PoisonedCNNClassifier(image_shape=(1, 8, 8), **params).fit(X, y)
    images = PoisonedCNNClassifier(**params).fit(X.reshape(-1, 1, 8, 8), y)
    assert flat.image_shape_ == images.image_shape_ == (1, 8, 8)
    assert_array_equal(flat.predict_proba(X), images.predict_proba(X.reshape(-1, 8, 8)))
    assert flat.score(X, y) > 0.8
    pipe = make_pipeline(StandardScaler(), PoisonedCNNClassifier((1, 8, 8), **params))
    assert pipe.fit(X, y).score(X, y) > 0.8


def test_cnn_takes_svhn_sized_images():
    rng = np.random.RandomState(0)
    X = rng.rand(20, 3, 32, 32).astype(np.float32)
    y = np.arange(20) % 2
    clf = PoisonedCNNClassifier(
        max_iter=2, poison_factor=0.5, max_polish_iter=0, random_state=0
    )
    assert clf.fit(X, y).predict(X).shape == (20,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fit_predict_and_pickle(spirals):
    X_train, X_test, y_train, _ = spirals
    clf = PoisonedMLPClassifier(
        **FAST, poison_factor=0.3, device="cuda", random_state=0
    )
    clf.fit(X_train, y_train)
    assert next(clf.net_.module_.parameters()).device.type == "cuda"
    proba = clf.predict_proba(X_test)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(restored.predict_proba(X_test), proba, rtol=1e-6)
    # Training on the GPU learns as much as on the CPU (same settings; float
    # summation order differs, so the trajectories do not match exactly).
    cuda_score = clf.score(X_train, y_train)
    cpu = PoisonedMLPClassifier(**FAST, poison_factor=0.3, random_state=0)
    cpu_score = cpu.fit(X_train, y_train).score(X_train, y_train)
    assert cuda_score > 0.6 and abs(cuda_score - cpu_score) <= 0.15


def test_torch_optimizer_class_as_solver():
    X, y = blobs()
    clf = PoisonedMLPClassifier(
        **FAST, solver=torch.optim.RMSprop, learning_rate_init=1e-3, random_state=0
    ).fit(X, y)
    assert isinstance(clf.net_.optimizer_, torch.optim.RMSprop)
    assert clf.score(X, y) > 0.9


def test_verbose_shows_a_progress_bar(capsys):
    X, y = blobs()
    params = {"max_iter": 20, "max_polish_iter": 50, "random_state": 0}
    PoisonedMLPClassifier(verbose=1, **params).fit(X, y)
    assert "training" in capsys.readouterr().err
    PoisonedMLPClassifier(**params).fit(X, y)
    assert capsys.readouterr().err == ""


def test_history_has_one_row_per_block_and_counts_every_step(spirals):
    X_train, _, y_train, _ = spirals
    clf = PoisonedMLPClassifier(max_iter=1000, max_polish_iter=0, random_state=0)
    clf.fit(X_train, y_train)
    steps = clf.net_.history[:, "n_steps"]
    assert sum(steps) == 1000 and len(steps) == 200
    assert len(clf.loss_curve_) == 200
    # The cosine schedule decays the step size to 1 % of the initial rate.
    assert clf.net_.history[-1, "lr"] == pytest.approx(1e-4, rel=1e-2)
