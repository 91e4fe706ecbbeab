"""Many networks trained together: each result is an ordinary, equivalent fit."""

import pickle
import re

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from flatgen import (
    BatchedPoisonFitter,
    PoisonedCNNClassifier,
    PoisonedMLPClassifier,
    make_spirals,
)


@pytest.fixture(scope="module")
def data():
    return make_spirals(120, noise=0.5, random_state=0)


def _net(**params):
    defaults = {
        "hidden_layer_sizes": (16, 16),
        "solver": "adam",
        "max_iter": 200,
        "max_polish_iter": 50,
    }
    return PoisonedMLPClassifier(**{**defaults, **params})


# Weight decay and a step size per model, as a separate fit has them.
CLEAN = [
    {"random_state": 0, "alpha": 1e-3},
    {"random_state": 1, "alpha": 1e-3, "learning_rate_init": 0.003},
]


def test_clean_models_take_the_steps_of_separate_fits(data):
    X, y = data
    # No poison draws, and too few steps for rounding to grow: batched and
    # separate fits do the same arithmetic, summed in another order, so they
    # agree to float32 rounding on any CPU (measured: at most 1.5e-7 in the
    # probabilities after 10 Adam steps, with MKL_CBWR=COMPATIBLE and
    # ATEN_CPU_CAPABILITY=default as with the native kernels). A step size 10 %
    # off or no weight decay moves them by 2.5e-2 and 7e-4.
    nets = [_net(max_iter=10, **params) for params in CLEAN]
    batched = BatchedPoisonFitter(nets).fit(X, y).estimators_
    for template, fitted in zip(nets, batched):
        alone = clone(template).fit(X, y)
        assert_allclose(fitted.loss_curve_, alone.loss_curve_, rtol=1e-5)
        assert_allclose(fitted.predict_proba(X), alone.predict_proba(X), atol=1e-5)
        assert fitted.n_iter_ == alone.n_iter_ == 10
    # The templates are not touched.
    assert not hasattr(nets[0], "net_")


@pytest.mark.slow
def test_clean_models_end_where_separate_fits_end(data):
    X, y = data
    # Over 200 Adam steps the rounding of one summation order grows: batched
    # and separate fits differed by 4e-7 in the probabilities with an AMD
    # CPU's native kernels, by 1.03e-3 on an Intel Xeon (AVX-512) and by
    # 1.07e-3 on the AMD with MKL_CBWR=COMPATIBLE and
    # ATEN_CPU_CAPABILITY=default; on the Intel Xeon with those, by 0.071 on
    # one network (one training point of 60 on the other side, while the
    # loss curves agreed within 1.1e-6). So this checks the outcome (same
    # schedule, loss curves close, accuracy within one point, probabilities
    # within 0.15); the steps themselves are checked tightly above.
    nets = [_net(**params) for params in CLEAN]
    batched = BatchedPoisonFitter(nets).fit(X, y).estimators_
    for template, fitted in zip(nets, batched):
        alone = clone(template).fit(X, y)
        assert_allclose(fitted.predict_proba(X), alone.predict_proba(X), atol=0.15)
        assert_allclose(fitted.loss_curve_, alone.loss_curve_, rtol=1e-2)
        assert fitted.n_iter_ == alone.n_iter_
        assert abs(fitted.train_accuracy_ - alone.train_accuracy_) <= 1 / 60 + 1e-9


def test_sgd_with_momentum_matches_separate_fits(data):
    X, y = data
    nets = [
        _net(solver="sgd", momentum=0.9, learning_rate_init=0.05, random_state=s)
        for s in (3, 4)
    ]
    batched = BatchedPoisonFitter(nets).fit(X, y).estimators_
    for template, fitted in zip(nets, batched):
        alone = clone(template).fit(X, y)
        assert_allclose(fitted.loss_curve_, alone.loss_curve_, rtol=1e-4)


@pytest.mark.slow
def test_poisoned_models_are_ordinary_fitted_estimators(data, tmp_path):
    X, y = data
    nets = [_net(poison_factor=f, random_state=0) for f in (0.0, 0.3, 1.0)]
    batched = BatchedPoisonFitter(nets).fit(X, y).estimators_
    for template, fitted in zip(nets, batched):
        alone = clone(template).fit(X, y)
        assert fitted.poison_factor == template.poison_factor
        assert len(fitted.loss_curve_) == len(alone.loss_curve_)
        # Own poison draws, same objective: the losses start alike.
        assert_allclose(fitted.loss_curve_[:5], alone.loss_curve_[:5], rtol=0.05)
        for name in ("train_accuracy_", "collapsed_", "n_polish_iter_", "n_iter_"):
            assert hasattr(fitted, name)
        restored = pickle.loads(pickle.dumps(fitted))
        assert_allclose(restored.predict_proba(X), fitted.predict_proba(X))


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"poison_factor": -1}, "'poison_factor' parameter"),
        ({"learning_rate_init": 0}, "'learning_rate_init' parameter"),
        ({"poison_loss": "bogus"}, "'poison_loss' parameter"),
        ({"max_iter": 0}, "'max_iter' parameter"),
        ({"activation": "foo"}, "'activation' parameter"),
    ],
)
def test_each_estimator_is_validated_as_its_own_fit_would(data, bad, match):
    nets = [_net(random_state=0), _net(random_state=1, **bad)]
    with pytest.raises(ValueError, match=f"estimators\\[1\\]: The {match}"):
        BatchedPoisonFitter(nets).fit(*data)
    with pytest.raises(ValueError, match=f"The {match}"):
        clone(nets[1]).fit(*data)


def test_only_seed_step_size_and_poison_factor_may_differ(data):
    X, y = data
    with pytest.raises(ValueError, match=r"differs from estimators\[0\] in \['hidden"):
        BatchedPoisonFitter([_net(), _net(hidden_layer_sizes=(8,))]).fit(X, y)
    with pytest.raises(ValueError, match="sets early_stopping=True"):
        BatchedPoisonFitter([_net(early_stopping=True)]).fit(X, y)
    with pytest.raises(TypeError, match="PoisonedMLPClassifier only"):
        BatchedPoisonFitter([PoisonedCNNClassifier()]).fit(X, y)
    with pytest.raises(ValueError, match="at least one estimator"):
        BatchedPoisonFitter([]).fit(X, y)
    assert np.unique(y).size == 2


def test_the_batched_fitter_uses_only_public_seams():
    # Private hooks of the classifier and its trainer may change; the
    # batched fitter goes through start_training, end_training and the
    # trainer's public methods (and sklearn's parameter validation).
    from pathlib import Path

    import flatgen.estimators._batched as batched

    text = Path(batched.__file__).read_text()
    private = re.findall(r"\b(?:est|t|trainer|first|run)\._[a-z]\w*", text)
    assert set(private) <= {"est._validate_params"}, sorted(set(private))


def test_start_and_end_training_record_a_fit_driven_elsewhere():
    X, y = make_spirals(60, random_state=0)
    clf = PoisonedMLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    run = clf.start_training(X, y)
    assert run.trainer.total_steps == 5 * run.trainer.steps_per_epoch
    assert not run.warm and list(clf.classes_) == [0, 1]
    # The module is fit's initialization: same seeds, same weights.
    reference = clone(clf).set_params(max_iter=1)
    reference_run = reference.start_training(X, y)
    for a, b in zip(run.module.parameters(), reference_run.module.parameters()):
        assert torch.equal(a, b)
    with pytest.warns(ConvergenceWarning):  # nothing was trained
        clf.end_training(run, [0.7], 0)
    assert clf.n_iter_ == 0 and clf.loss_curve_.tolist() == [0.7]
    assert clf.predict(X).shape == (60,)
    with pytest.raises(ValueError, match="early_stopping=False"):
        clone(clf).set_params(early_stopping=True).start_training(X, y)


def test_models_of_one_seed_draw_their_poison_once_with_the_same_result(
    data, monkeypatch
):
    import flatgen.estimators._batched as batched
    from flatgen.poison import JitterSource

    X, y = data
    # Two seeds, each at two poison factors and two step sizes: four models
    # per seed draw the same poison points and labels step after step.
    nets = [
        _net(max_iter=60, poison_factor=f, learning_rate_init=lr, random_state=s)
        for f in (0.3, 1.0)
        for lr in (0.003, 0.01)
        for s in (0, 1)
    ]
    draws = []
    own_draw = JitterSource._draw

    def counted(source, n_steps):
        draws.append(n_steps)
        return own_draw(source, n_steps)

    monkeypatch.setattr(JitterSource, "_draw", counted)
    shared = BatchedPoisonFitter(nets).fit(X, y).estimators_
    n_shared = len(draws)
    draws.clear()
    monkeypatch.setattr(batched, "share_identical_draws", lambda sources: [])
    alone = BatchedPoisonFitter(nets).fit(X, y).estimators_
    # Without sharing each model draws every block itself.
    assert len(draws) >= 2 * n_shared and n_shared >= 2
    for a, b in zip(shared, alone):
        for p, q in zip(a.module_.parameters(), b.module_.parameters()):
            assert torch.equal(p, q)
        assert np.array_equal(a.loss_curve_, b.loss_curve_)
        assert a.n_polish_iter_ == b.n_polish_iter_
    # Nothing of the sharing stays with the fitted estimators.
    assert pickle.loads(pickle.dumps(shared[0])).predict(X).shape == y.shape


def test_sources_share_draws_only_from_the_same_state():
    from flatgen.poison import JitterSource, share_identical_draws

    X = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    y = (X[:, 0] > 0).long()

    def source(seed):
        generator = torch.Generator().manual_seed(seed)
        return JitterSource(X, y, torch.ones(50), 2, 30, 0.1, generator)

    a, b, c, d = source(0), source(0), source(1), source(0)
    d.generator.manual_seed(5)  # same data and settings, another state
    groups = share_identical_draws([a, b, c, d, None])
    assert [g.n_members for g in groups] == [2]
    first = a.draw(4)
    # b gets a's block and ends in the state its own draw leaves.
    reference = source(0)
    expected = reference.draw(4)
    got = b.draw(4)
    for u, v, w in zip(first, got, expected):
        assert torch.equal(u, w) and torch.equal(v, w)
    assert torch.equal(b.generator.get_state(), reference.generator.get_state())
    # A member that moved on alone draws for itself, exactly.
    a.draw(3)
    b.generator.manual_seed(9)
    own = source(0)
    own.generator.manual_seed(9)
    for u, v in zip(b.draw(3), own.draw(3)):
        assert torch.equal(u, v)
    assert groups[0].n_drawn == 3
