"""One table of bad inputs to every public entry point, each with its specific error.

Each row is ``bad(id, call, exception, message_regex)``; ``call`` receives
the shared context ``ctx`` (data, fitted tiny models, a fitted analyzer, a
folder of good and damaged files). To cover a new entry point, append rows
to ``CASES`` (or build a list and add it); fixtures that need fitting go
into ``ctx`` so they are fitted once per module. After every row the test
also checks that no file was left behind in the context's folder.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from flatgen import (
    ArraySampler,
    BasinAnalyzer,
    BasinDisplay,
    CurvatureAnalyzer,
    MarginDistributionDisplay,
    MarginPlotter,
    PoisonedCNNClassifier,
    PoisonedMLPClassifier,
    PoisonSweepDisplay,
    SpiralSampler,
    VolumeEstimator,
    VolumeGapDisplay,
    make_spirals,
)
from flatgen.analyzers import log10_ball_volume
from flatgen.io import atomic_write_json, load_results, read_json, save_results
from flatgen.landscape import basin_radii, filter_normalized_directions


@dataclass(frozen=True)
class Bad:
    id: str
    call: Callable[[SimpleNamespace], Any]
    raises: type | tuple
    match: str


def bad(id, call, raises, match):
    return Bad(id, call, raises, match)


# -- helpers used by the rows -------------------------------------------------


def mlp(**params):
    return PoisonedMLPClassifier(**{"max_iter": 2, **params})


def cnn(**params):
    return PoisonedCNNClassifier(**{"max_iter": 1, **params})


def with_value(X, value, where=(3, 1)):
    X = np.array(X, dtype=float)
    X[where] = value
    return X


def sampler_returning(result):
    def sampler(n_samples, random_state=None):
        return result(n_samples)

    return sampler


def basin(**params):
    defaults = {"n_directions": 4, "cutoff": 2, "cutoff_type": "relative"}
    return BasinAnalyzer(**{**defaults, **params})


def volume(**params):
    defaults = {"n_directions": 4, "cutoff": 2, "cutoff_type": "relative"}
    return VolumeEstimator(**{**defaults, "rank": 4, "n_probes": 4, **params})


def display(**overrides):
    args = {
        "distances": np.linspace(0, 1, 5),
        "losses": np.ones((2, 5)),
        "radii": np.ones(3),
        "cutoff": 0.5,
    }
    return BasinDisplay(**{**args, **overrides})


# -- the table ----------------------------------------------------------------

# fmt: off
P = "'{}' parameter of {} must be"  # sklearn's parameter-validation message

ESTIMATOR_FIT = [
    bad("X-nan", lambda c: mlp().fit(with_value(c.X, np.nan), c.y), ValueError,
        "Input X contains NaN"),
    bad("X-inf", lambda c: mlp().fit(with_value(c.X, np.inf), c.y), ValueError,
        "Input X contains infinity"),
    bad("X-neg-inf", lambda c: mlp().fit(with_value(c.X, -np.inf), c.y), ValueError,
        "Input X contains infinity"),
    bad("X-1d", lambda c: mlp().fit(c.X[:, 0], c.y), ValueError,
        "Expected 2D array, got 1D array"),
    bad("X-3d-for-mlp", lambda c: mlp().fit(c.X[:, :, None], c.y), ValueError,
        "Found array with dim 3"),
    bad("X-strings", lambda c: mlp().fit(np.full((40, 3), "a"), c.y), ValueError,
        "could not convert string to float"),
    bad("X-complex", lambda c: mlp().fit(c.X + 1j, c.y), ValueError,
        "Complex data not supported"),
    bad("X-empty", lambda c: mlp().fit(np.empty((0, 3)), np.empty(0)), ValueError,
        "0 sample\\(s\\)"),
    bad("X-no-features", lambda c: mlp().fit(c.X[:, :0], c.y), ValueError,
        "0 feature\\(s\\)"),
    bad("X-None", lambda c: mlp().fit(None, c.y), ValueError,
        "expected 2D array|not None|Expected 2D array"),
    bad("y-nan", lambda c: mlp().fit(c.X, with_value(c.y, np.nan, 0)), ValueError,
        "Input y contains NaN"),
    bad("y-None", lambda c: mlp().fit(c.X, None), ValueError,
        "requires y to be passed"),
    bad("y-length", lambda c: mlp().fit(c.X, c.y[:-1]), ValueError,
        "inconsistent numbers of samples: 40 and 39"),
    bad("y-2d", lambda c: mlp().fit(c.X, np.c_[c.y, c.y]), ValueError,
        "y should be a 1d array"),
    bad("y-continuous", lambda c: mlp().fit(c.X, c.X[:, 0]), ValueError,
        "Unknown label type: continuous"),
    bad("y-one-class", lambda c: mlp().fit(c.X, np.zeros(40)), ValueError,
        "at least 2 classes"),
    bad("poison_factor-negative", lambda c: mlp(poison_factor=-1).fit(c.X, c.y),
        ValueError, P.format("poison_factor", "PoisonedMLPClassifier")),
    bad("poison_factor-nan", lambda c: mlp(poison_factor=np.nan).fit(c.X, c.y),
        ValueError, P.format("poison_factor", "PoisonedMLPClassifier")),
    bad("poison_factor-str", lambda c: mlp(poison_factor="high").fit(c.X, c.y),
        ValueError, P.format("poison_factor", "PoisonedMLPClassifier")),
    bad("poison_loss-unknown", lambda c: mlp(poison_loss="flip").fit(c.X, c.y),
        ValueError, "'poison_loss' parameter .*Got 'flip'"),
    bad("learning_rate_init-zero",
        lambda c: mlp(learning_rate_init=0).fit(c.X, c.y), ValueError,
        P.format("learning_rate_init", "PoisonedMLPClassifier")),
    bad("max_iter-zero", lambda c: mlp(max_iter=0).fit(c.X, c.y), ValueError,
        P.format("max_iter", "PoisonedMLPClassifier")),
    bad("batch_size-zero", lambda c: mlp(batch_size=0).fit(c.X, c.y), ValueError,
        P.format("batch_size", "PoisonedMLPClassifier")),
    bad("momentum-above-1", lambda c: mlp(momentum=1.5).fit(c.X, c.y), ValueError,
        P.format("momentum", "PoisonedMLPClassifier")),
    bad("n_threads-zero", lambda c: mlp(n_threads=0).fit(c.X, c.y), ValueError,
        P.format("n_threads", "PoisonedMLPClassifier")),
    bad("random_state-str", lambda c: mlp(random_state="x").fit(c.X, c.y),
        ValueError, P.format("random_state", "PoisonedMLPClassifier")),
    bad("activation-unknown", lambda c: mlp(activation="swish").fit(c.X, c.y),
        ValueError, P.format("activation", "PoisonedMLPClassifier")),
    bad("solver-unknown", lambda c: mlp(solver="lbfgs").fit(c.X, c.y), ValueError,
        P.format("solver", "PoisonedMLPClassifier")),
    bad("callbacks-str", lambda c: mlp(callbacks="x").fit(c.X, c.y), ValueError,
        P.format("callbacks", "PoisonedMLPClassifier")),
    bad("hidden_layer_sizes-zero",
        lambda c: mlp(hidden_layer_sizes=(4, 0)).fit(c.X, c.y), ValueError,
        "hidden_layer_sizes must hold positive integers"),
    bad("hidden_layer_sizes-float",
        lambda c: mlp(hidden_layer_sizes=(2.5,)).fit(c.X, c.y), ValueError,
        "hidden_layer_sizes must hold positive integers"),
    bad("hidden_layer_sizes-str",
        lambda c: mlp(hidden_layer_sizes="abc").fit(c.X, c.y), ValueError,
        P.format("hidden_layer_sizes", "PoisonedMLPClassifier")),
    bad("device-unknown", lambda c: mlp(device="tpu").fit(c.X, c.y), ValueError,
        "device='tpu' is not a torch device"),
    bad("device-cuda-missing", lambda c: mlp(device="cuda").fit(c.X, c.y),
        ValueError, "CUDA is not available"),
    bad("device-int", lambda c: mlp(device=3).fit(c.X, c.y), ValueError,
        P.format("device", "PoisonedMLPClassifier")),
    bad("poison_source-not-callable", lambda c: mlp(poison_source=42).fit(c.X, c.y),
        ValueError, P.format("poison_source", "PoisonedMLPClassifier")),
    bad("poison_source-nan", lambda c: mlp(
        poison_factor=1,
        poison_source=sampler_returning(
            lambda n: (np.full((n, 3), np.nan), np.zeros(n, int))
        )).fit(c.X, c.y), ValueError, "poison_source returned points with NaN"),
    bad("poison_source-count", lambda c: mlp(
        poison_factor=1,
        poison_source=sampler_returning(lambda n: (np.zeros((3, 3)), np.zeros(3)))
    ).fit(c.X, c.y), ValueError, "labels of shape \\(3,\\) when asked for 80"),
    bad("poison_source-shape", lambda c: mlp(
        poison_factor=1,
        poison_source=sampler_returning(lambda n: (np.zeros((n, 5)), np.zeros(n)))
    ).fit(c.X, c.y), ValueError, "points of shape \\(5,\\)"),
    bad("poison_source-labels", lambda c: mlp(
        poison_factor=1,
        poison_source=sampler_returning(lambda n: (np.zeros((n, 3)), np.full(n, 7)))
    ).fit(c.X, c.y), ValueError, "labels that are not among the classes"),
    bad("poison_source-returns-None", lambda c: mlp(
        poison_factor=1, poison_source=sampler_returning(lambda n: None)
    ).fit(c.X, c.y), TypeError, "must return a pair \\(X, y\\).*got NoneType"),
    bad("poison_source-signature", lambda c: mlp(
        poison_factor=1, poison_source=lambda n: (np.zeros((n, 3)), np.zeros(n))
    ).fit(c.X, c.y), TypeError, "poison_source must be callable as sampler"),
    bad("ArraySampler-poison-wrong-width", lambda c: mlp(
        poison_factor=1, poison_source=ArraySampler(np.zeros((5, 2)), np.zeros(5))
    ).fit(c.X, c.y), ValueError, "points of shape \\(2,\\)"),
    bad("cnn-image_shape-mismatch",
        lambda c: cnn(image_shape=(1, 7, 7)).fit(c.images.reshape(10, 64), c.y10),
        ValueError, "image_shape must be .* n_features \\(64\\)"),
    bad("cnn-image_shape-2-values",
        lambda c: cnn(image_shape=(1, 8)).fit(c.images.reshape(10, 64), c.y10),
        ValueError, "image_shape must be \\(channels, height, width\\)"),
    bad("cnn-X-5d", lambda c: cnn().fit(c.images[:, None], c.y10), ValueError,
        "Found array with dim 5"),
    bad("cnn-conv_channels-zero",
        lambda c: cnn(conv_channels=(0,)).fit(c.images, c.y10), ValueError,
        "conv_channels must hold positive integers"),
    bad("cnn-images-nan", lambda c: cnn().fit(
        with_value(c.images, np.nan, (0, 0, 2, 2)), c.y10), ValueError,
        "Input X contains NaN"),
]

ESTIMATOR_PREDICT = [
    bad("predict-not-fitted", lambda c: mlp().predict(c.X), NotFittedError,
        "not fitted yet"),
    bad("predict_proba-not-fitted", lambda c: mlp().predict_proba(c.X),
        NotFittedError, "not fitted yet"),
    bad("score-not-fitted", lambda c: mlp().score(c.X, c.y), NotFittedError,
        "not fitted yet"),
    bad("predict-n-features", lambda c: c.mlp.predict(c.X[:, :2]), ValueError,
        "X has 2 features, but PoisonedMLPClassifier is expecting 3"),
    bad("predict-nan", lambda c: c.mlp.predict(with_value(c.X, np.nan)), ValueError,
        "Input X contains NaN"),
    bad("predict_proba-inf", lambda c: c.mlp.predict_proba(with_value(c.X, np.inf)),
        ValueError, "Input X contains infinity"),
    bad("predict-empty", lambda c: c.mlp.predict(c.X[:0]), ValueError,
        "0 sample\\(s\\)"),
    bad("predict-1d", lambda c: c.mlp.predict(c.X[0]), ValueError,
        "Expected 2D array, got 1D array"),
    bad("predict-strings", lambda c: c.mlp.predict(np.full((2, 3), "a")), ValueError,
        "could not convert string to float"),
    bad("predict_log_proba-n-features",
        lambda c: c.mlp.predict_log_proba(c.X[:, :1]), ValueError,
        "X has 1 features"),
    bad("score-y-length", lambda c: c.mlp.score(c.X, c.y[:5]), ValueError,
        "inconsistent numbers of samples"),
    bad("cnn-predict-image-shape", lambda c: c.cnn.predict(np.zeros((2, 2, 4, 8))),
        ValueError, "images of shape \\(2, 4, 8\\), but PoisonedCNNClassifier was "
        "fitted on images of shape \\(1, 8, 8\\)"),
    bad("cnn-predict-n-features", lambda c: c.cnn.predict(np.zeros((2, 63))),
        ValueError, "X has 63 features, but PoisonedCNNClassifier is expecting 64"),
]

ANALYZERS = [
    bad("basin-not-fitted-estimator", lambda c: basin().fit(mlp(), c.X, c.y),
        NotFittedError, "not fitted yet"),
    bad("basin-unfitted-pipeline",
        lambda c: basin().fit(make_pipeline(StandardScaler(), mlp()), c.X, c.y),
        NotFittedError, "not fitted yet"),
    bad("basin-svc", lambda c: basin().fit(c.svc, c.X, c.y), TypeError,
        "need a torch network classifier .* got SVC"),
    bad("basin-None-estimator", lambda c: basin().fit(None, c.X, c.y), TypeError,
        "got NoneType"),
    bad("basin-call-svc", lambda c: basin()(c.svc, c.X, c.y), TypeError,
        "need a torch network classifier"),
    bad("basin-X-n-features", lambda c: basin().fit(c.mlp, c.X[:, :2], c.y),
        ValueError, "X has 2 features, but PoisonedMLPClassifier is expecting 3"),
    bad("basin-X-nan", lambda c: basin().fit(c.mlp, with_value(c.X, np.nan), c.y),
        ValueError, "Input X contains NaN"),
    bad("basin-X-empty", lambda c: basin().fit(c.mlp, c.X[:0], c.y[:0]), ValueError,
        "0 sample\\(s\\)"),
    bad("basin-y-None", lambda c: basin().fit(c.mlp, c.X, None), ValueError,
        "y is required"),
    bad("basin-y-length", lambda c: basin().fit(c.mlp, c.X, c.y[:-3]), ValueError,
        "inconsistent numbers of samples: 40 and 37"),
    bad("basin-y-unknown-labels", lambda c: basin().fit(c.mlp, c.X, c.y + 5),
        ValueError, "labels the estimator was not fitted on: \\[5, 6\\]"),
    bad("basin-y-nan", lambda c: basin().fit(c.mlp, c.X, with_value(c.y, np.nan, 0)),
        ValueError, "labels the estimator was not fitted on: \\[nan\\]"),
    bad("basin-y-2d", lambda c: basin().fit(c.mlp, c.X, np.c_[c.y, c.y]),
        ValueError, "y should be a 1d array"),
    bad("basin-cnn-wrong-images",
        lambda c: basin().fit(c.cnn, np.zeros((10, 1, 4, 4)), c.y10), ValueError,
        "X has 16 features, but PoisonedCNNClassifier is expecting 64"),
    bad("basin-n_directions-zero", lambda c: basin(n_directions=0).fit(c.mlp, c.X, c.y),
        ValueError, P.format("n_directions", "BasinAnalyzer")),
    bad("basin-cutoff-negative",
        lambda c: basin(cutoff=-1, cutoff_type="absolute").fit(c.mlp, c.X, c.y),
        ValueError, P.format("cutoff", "BasinAnalyzer")),
    bad("basin-cutoff-nan", lambda c: basin(cutoff=np.nan).fit(c.mlp, c.X, c.y),
        ValueError, P.format("cutoff", "BasinAnalyzer")),
    bad("basin-cutoff-below-minimum",
        lambda c: basin(cutoff=1e-12, cutoff_type="absolute").fit(c.mlp, c.X, c.y),
        ValueError, "already reaches cutoff 1e-12: no basin"),
    bad("basin-relative-cutoff-below-1", lambda c: basin(cutoff=0.5).fit(
        c.mlp, c.X, c.y), ValueError, "relative cutoff .* must exceed 1"),
    bad("basin-cutoff_type-unknown",
        lambda c: basin(cutoff_type="log").fit(c.mlp, c.X, c.y), ValueError,
        P.format("cutoff_type", "BasinAnalyzer")),
    bad("basin-max_radius-zero", lambda c: basin(max_radius=0).fit(c.mlp, c.X, c.y),
        ValueError, P.format("max_radius", "BasinAnalyzer")),
    bad("basin-rtol-above-1", lambda c: basin(rtol=2).fit(c.mlp, c.X, c.y),
        ValueError, P.format("rtol", "BasinAnalyzer")),
    bad("basin-n_profile_points-1",
        lambda c: basin(n_profile_points=1).fit(c.mlp, c.X, c.y), ValueError,
        P.format("n_profile_points", "BasinAnalyzer")),
    bad("volume-cutoff-empty", lambda c: volume(cutoff=[]).fit(c.mlp, c.X, c.y),
        ValueError, "cutoff must be a positive finite number or a non-empty list"),
    bad("volume-cutoff-negative-entry",
        lambda c: volume(cutoff=[2, -1]).fit(c.mlp, c.X, c.y), ValueError,
        "cutoff must be a positive finite number"),
    bad("volume-cutoff-inf-entry",
        lambda c: volume(cutoff=[2, np.inf]).fit(c.mlp, c.X, c.y), ValueError,
        "cutoff must be a positive finite number"),
    bad("volume-cutoff-nested", lambda c: volume(cutoff=[[2, 3]]).fit(c.mlp, c.X, c.y),
        ValueError, "cutoff must be a positive finite number"),
    bad("volume-cutoff-strings", lambda c: volume(cutoff=["a"]).fit(c.mlp, c.X, c.y),
        ValueError, "cutoff must be a positive finite number .* Got \\['a'\\]"),
    bad("volume-cutoff-str", lambda c: volume(cutoff="high").fit(c.mlp, c.X, c.y),
        ValueError, P.format("cutoff", "VolumeEstimator")),
    bad("volume-confidence_level-1",
        lambda c: volume(confidence_level=1).fit(c.mlp, c.X, c.y), ValueError,
        P.format("confidence_level", "VolumeEstimator")),
    bad("volume-estimator-unknown",
        lambda c: volume(estimator="bootstrap").fit(c.mlp, c.X, c.y), ValueError,
        P.format("estimator", "VolumeEstimator")),
    bad("volume-space-unknown",
        lambda c: volume(space="weights").fit(c.mlp, c.X, c.y), ValueError,
        P.format("space", "VolumeEstimator")),
    bad("volume-paper-raw",
        lambda c: volume(method="paper", space="raw").fit(c.mlp, c.X, c.y),
        ValueError, "method='paper' .* needs space='filter_normalized'"),
    bad("volume-rank-negative",
        lambda c: volume(rank=-1).fit(c.mlp, c.X, c.y), ValueError,
        P.format("rank", "VolumeEstimator")),
    bad("volume-max_capped_fraction",
        lambda c: volume(max_capped_fraction=1.5).fit(c.mlp, c.X, c.y), ValueError,
        P.format("max_capped_fraction", "VolumeEstimator")),
    bad("volume-call-unfitted", lambda c: volume()(mlp(), c.X, c.y), NotFittedError,
        "not fitted yet"),
    bad("curvature-n_iter-zero",
        lambda c: CurvatureAnalyzer(n_iter=0).fit(c.mlp, c.X, c.y), ValueError,
        P.format("n_iter", "CurvatureAnalyzer")),
    bad("curvature-tol-zero", lambda c: CurvatureAnalyzer(tol=0).fit(c.mlp, c.X, c.y),
        ValueError, P.format("tol", "CurvatureAnalyzer")),
    bad("curvature-n_probes-negative",
        lambda c: CurvatureAnalyzer(n_probes=-1).fit(c.mlp, c.X, c.y),
        ValueError, P.format("n_probes", "CurvatureAnalyzer")),
    bad("curvature-svc", lambda c: CurvatureAnalyzer().fit(c.svc, c.X, c.y),
        TypeError, "got SVC"),
    bad("curvature-y-unknown",
        lambda c: CurvatureAnalyzer()(c.mlp, c.X, np.full(40, 9)), ValueError,
        "labels the estimator was not fitted on: \\[9\\]"),
    bad("log10_ball_volume-negative-radius",
        lambda c: log10_ball_volume([-1.0, 1.0], 3), ValueError,
        "radii must be finite and non-negative"),
    bad("log10_ball_volume-nan", lambda c: log10_ball_volume([np.nan], 3), ValueError,
        "radii must be finite and non-negative"),
    bad("log10_ball_volume-empty", lambda c: log10_ball_volume([], 3), ValueError,
        "at least one radius"),
    bad("log10_ball_volume-n_dims", lambda c: log10_ball_volume([1.0], -3),
        ValueError, "n_dims must be a positive integer. Got -3"),
    bad("directions-negative-seed",
        lambda c: filter_normalized_directions(c.layout, c.theta, 2, -1), ValueError,
        "seed must be a non-negative integer"),
    bad("basin_radii-cutoff-below-loss0",
        lambda c: basin_radii(lambda t: np.ones(len(t)), c.theta, c.theta[None], 0.5),
        ValueError, "already at or above the cutoff"),
    bad("basin_radii-directions-shape",
        lambda c: basin_radii(lambda t: np.zeros(len(t)), c.theta, c.theta, 0.5),
        ValueError, "directions must have shape \\(n_directions, n_params\\)"),
]

DISPLAYS_AND_DATA = [
    bad("BasinDisplay-losses-columns", lambda c: display(losses=np.ones((2, 4))),
        ValueError, "losses must have one column per distance \\(5\\)"),
    bad("BasinDisplay-losses-1d", lambda c: display(losses=np.ones(5)), ValueError,
        "losses must be 2-D"),
    bad("BasinDisplay-losses-nan", lambda c: display(losses=np.full((2, 5), np.nan)),
        ValueError, "losses must not contain NaN"),
    bad("BasinDisplay-distances-inf",
        lambda c: display(distances=[0, 1, 2, 3, np.inf]), ValueError,
        "distances must not contain NaN or infinity"),
    bad("BasinDisplay-too-few-radii", lambda c: display(radii=np.ones(1)), ValueError,
        "at least one radius per profile \\(2\\)"),
    bad("BasinDisplay-cutoff-nan", lambda c: display(cutoff=np.nan), ValueError,
        "cutoff must be a finite non-negative number"),
    bad("BasinDisplay-cutoff-str", lambda c: display(cutoff="x"), ValueError,
        "cutoff must be a finite non-negative number. Got 'x'"),
    bad("BasinDisplay-losses-strings", lambda c: display(losses=[["a"] * 5] * 2),
        ValueError, "losses must be an array of numbers"),
    bad("BasinDisplay-from-unfitted", lambda c: BasinDisplay.from_analyzer(basin()),
        NotFittedError, "BasinAnalyzer instance is not fitted"),
    bad("BasinDisplay-from-classifier",
        lambda c: BasinDisplay.from_analyzer(c.mlp), TypeError,
        "needs a fitted BasinAnalyzer; got PoisonedMLPClassifier"),
    bad("make_spirals-zero", lambda c: make_spirals(0), ValueError,
        P.format("n_samples", "make_spirals")),
    bad("make_spirals-float", lambda c: make_spirals(2.5), ValueError,
        P.format("n_samples", "make_spirals")),
    bad("make_spirals-noise", lambda c: make_spirals(10, noise=-1), ValueError,
        P.format("noise", "make_spirals")),
    bad("make_spirals-random_state", lambda c: make_spirals(10, random_state="x"),
        ValueError, P.format("random_state", "make_spirals")),
    bad("SpiralSampler-noise", lambda c: SpiralSampler(noise=-1)(5), ValueError,
        P.format("noise", "make_spirals")),
    bad("SpiralSampler-n", lambda c: SpiralSampler()(-1), ValueError,
        P.format("n_samples", "make_spirals")),
    bad("ArraySampler-length", lambda c: ArraySampler(c.X, c.y[:3])(2), ValueError,
        "same, non-zero length; got 40 and 3"),
    bad("ArraySampler-empty", lambda c: ArraySampler(c.X[:0], c.y[:0])(2),
        ValueError, "same, non-zero length; got 0 and 0"),
    bad("ArraySampler-None", lambda c: ArraySampler(None, None)(2), ValueError,
        "X of shape \\(n_points, ...\\)"),
    bad("ArraySampler-n-negative", lambda c: ArraySampler(c.X, c.y)(-1), ValueError,
        "n_samples must be a non-negative integer. Got -1"),
]

FILES = [
    bad("load-missing", lambda c: load_results(c.folder / "absent.npz"),
        FileNotFoundError, "No flatgen results file at .*absent.npz"),
    bad("load-truncated", lambda c: load_results(c.files["truncated"]), ValueError,
        "truncated.npz.*truncated, corrupt or another format"),
    bad("load-corrupt", lambda c: load_results(c.files["corrupt"]), ValueError,
        "corrupt.npz.*truncated, corrupt or another format"),
    bad("load-empty-file", lambda c: load_results(c.files["empty"]), ValueError,
        "empty.npz.*truncated, corrupt or another format"),
    bad("load-plain-npz", lambda c: load_results(c.files["plain"]), ValueError,
        "plain.npz.*not a flatgen results file"),
    bad("load-text", lambda c: load_results(c.files["text"]), ValueError,
        "text.npz.*truncated, corrupt or another format"),
    bad("load-folder", lambda c: load_results(c.folder), ValueError,
        "truncated, corrupt or another format"),
    bad("save-not-fitted", lambda c: save_results(basin(), c.folder / "x.npz"),
        NotFittedError, "not fitted yet"),
    bad("save-estimator", lambda c: save_results(c.mlp, c.folder / "x.npz"),
        TypeError, "attribute 'net_' of type .* joblib.dump"),
    bad("save-not-an-analyzer", lambda c: save_results([1, 2], c.folder / "x.npz"),
        TypeError, "expects a fitted flatgen analyzer .*; got list"),
    bad("save-missing-folder",
        lambda c: save_results(c.basin, c.folder / "no" / "x.npz"),
        FileNotFoundError, "the folder .* does not exist"),
    bad("read_json-missing", lambda c: read_json(c.folder / "absent.json"),
        FileNotFoundError, "absent.json"),
    bad("read_json-truncated", lambda c: read_json(c.files["json"]), ValueError,
        "truncated.json' is not a valid JSON file"),
    bad("read_json-binary", lambda c: read_json(c.files["truncated"]), ValueError,
        "is not a valid JSON file"),
    bad("write_json-nan", lambda c: atomic_write_json(c.folder / "x.json", [np.nan]),
        ValueError, "x.json.*NaN and infinity are not valid JSON"),
    bad("write_json-object", lambda c: atomic_write_json(c.folder / "x.json", [mlp]),
        TypeError, "not JSON serializable"),
]

MARGINS_AND_SWEEPS = [
    bad("MarginPlotter-no-predict", lambda c: MarginPlotter().fit(c.X, c.X, c.y),
        TypeError, "fitted classifier with a predict method; got ndarray"),
    bad("MarginPlotter-unfitted", lambda c: MarginPlotter().fit(SVC(), c.X, c.y),
        NotFittedError, "SVC instance is not fitted"),
    bad("MarginPlotter-X-nan", lambda c: MarginPlotter().fit(
        c.svc, with_value(c.X, np.nan), c.y), ValueError, "Input X contains NaN"),
    bad("MarginPlotter-X-empty", lambda c: MarginPlotter().fit(
        c.svc, c.X[:0], c.y[:0]), ValueError, "0 sample\\(s\\)"),
    bad("MarginPlotter-y-length", lambda c: MarginPlotter().fit(c.svc, c.X, c.y[:5]),
        ValueError, "y has 5 labels for 40 samples"),
    bad("MarginPlotter-X_test-shape", lambda c: MarginPlotter().fit(
        c.svc, c.X, c.y, X_test=c.X[:, :2]), ValueError, "X_test has samples of"),
    bad("MarginPlotter-grid_resolution", lambda c: MarginPlotter(
        grid_resolution=1).fit(c.svc, c.X, c.y), ValueError,
        P.format("grid_resolution", "MarginPlotter")),
    bad("MarginPlotter-rtol", lambda c: MarginPlotter(rtol=0).fit(c.svc, c.X, c.y),
        ValueError, P.format("rtol", "MarginPlotter")),
    bad("MarginPlotter-exact-rbf", lambda c: MarginPlotter("exact").fit(
        c.svc, c.X, c.y), ValueError, "method='exact' needs a binary linear"),
    bad("MarginPlotter-plot-3-features", lambda c: MarginPlotter(
        n_directions=4, n_refine=0).fit(c.svc, c.X, c.y).plot(), ValueError,
        "only be drawn for data with 2 features"),
    bad("MarginDistribution-labels", lambda c: MarginDistributionDisplay(
        [np.ones(3)], ["a", "b"]), ValueError, "2 labels for 1 models"),
    bad("MarginDistribution-nan", lambda c: MarginDistributionDisplay(
        [np.array([np.nan])], ["a"]), ValueError, "finite, non-negative"),
    bad("MarginDistribution-empty", lambda c: MarginDistributionDisplay([], []),
        ValueError, "at least one model"),
    bad("PoisonSweep-lengths", lambda c: PoisonSweepDisplay([0, 1], [1], [1, 0]),
        ValueError, "train_scores must have one value per poison factor"),
    bad("PoisonSweep-negative", lambda c: PoisonSweepDisplay([-1], [1], [1]),
        ValueError, "finite and non-negative"),
    bad("PoisonSweep-no-train-scores", lambda c: PoisonSweepDisplay.from_cv_results(
        {"param_poison_factor": [0], "mean_test_score": [1.0]}), ValueError,
        "return_train_score=True"),
    bad("PoisonSweep-no-param", lambda c: PoisonSweepDisplay.from_cv_results(
        {"param_C": [1], "mean_train_score": [1.0]}), ValueError,
        "no unique column for parameter 'poison_factor'"),
    bad("PoisonSweep-svc-estimators", lambda c: PoisonSweepDisplay.from_estimators(
        [c.svc], c.X, c.y, c.X, c.y), ValueError,
        "SVC has no unique parameter 'poison_factor'"),
    bad("VolumeGap-shape", lambda c: VolumeGapDisplay([0.1, 0.2], [[1.0]], [0.5]),
        ValueError, "shape \\(n_models, n_cutoffs\\) = \\(2, 1\\)"),
    bad("VolumeGap-unfitted", lambda c: VolumeGapDisplay.from_estimators(
        [volume()], [0.1]), ValueError, "must be fitted"),
]

# fmt: on

CASES = (
    ESTIMATOR_FIT
    + ESTIMATOR_PREDICT
    + ANALYZERS
    + DISPLAYS_AND_DATA
    + FILES
    + MARGINS_AND_SWEEPS
)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    rng = np.random.RandomState(0)
    X, y = rng.randn(40, 3), np.arange(40) % 2
    images, y10 = rng.rand(10, 1, 8, 8), np.arange(10) % 2
    fitted_mlp = PoisonedMLPClassifier((4,), max_iter=30, random_state=0).fit(X, y)
    fitted_basin = basin(random_state=0, n_profiles=2).fit(fitted_mlp, X, y)
    import torch

    from flatgen.landscape import ParameterLayout, flatten_parameters

    module = fitted_mlp.net_.module_
    folder = tmp_path_factory.mktemp("bad_files")
    files = {name: folder / f"{name}.npz" for name in ("good", "truncated", "corrupt")}
    save_results(fitted_basin, files["good"])
    data = files["good"].read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[100:110] = bytes(b ^ 0xFF for b in flipped[100:110])
    files["corrupt"].write_bytes(bytes(flipped))
    files["empty"] = folder / "empty.npz"
    files["empty"].write_bytes(b"")
    files["plain"] = folder / "plain.npz"
    np.savez(files["plain"], radii=np.ones(3))
    files["text"] = folder / "text.npz"
    files["text"].write_text("radii: 1, 2, 3\n")
    files["json"] = folder / "truncated.json"
    files["json"].write_text('{"poison_factor": 0.')
    return SimpleNamespace(
        X=X,
        y=y,
        images=images,
        y10=y10,
        mlp=fitted_mlp,
        cnn=PoisonedCNNClassifier(max_iter=1, random_state=0).fit(images, y10),
        svc=SVC().fit(X, y),
        basin=fitted_basin,
        layout=ParameterLayout.from_module(module),
        theta=flatten_parameters(module).to(torch.float64),
        folder=folder,
        files=files,
    )


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gets_a_specific_error(case, ctx):
    before = sorted(os.listdir(ctx.folder))
    with pytest.raises(case.raises, match=case.match):
        case.call(ctx)
    # Nothing half-written stays behind.
    assert sorted(os.listdir(ctx.folder)) == before


def test_table_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
