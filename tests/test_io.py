"""Saved results: lossless round trips, atomic writes, clear errors; pickles."""

import io
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import warnings

import joblib
import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.exceptions import NotFittedError

import flatgen
from flatgen import (
    BasinAnalyzer,
    CurvatureAnalyzer,
    PoisonedMLPClassifier,
    VolumeEstimator,
    make_spirals,
)
from flatgen.io import (
    atomic_write_json,
    atomic_writer,
    load_results,
    read_json,
    save_results,
)


@pytest.fixture(scope="module")
def fitted():
    X, y = make_spirals(60, random_state=0)
    clf = PoisonedMLPClassifier((8, 8), max_iter=150, random_state=0).fit(X, y)
    return clf, X, y


@pytest.fixture(scope="module")
def analyzers(fitted):
    clf, X, y = fitted
    relative = {"cutoff_type": "relative", "random_state": 0}
    return {
        "basin": BasinAnalyzer(n_directions=12, cutoff=2, n_profiles=4, **relative),
        "volume": VolumeEstimator(n_directions=12, cutoff=[2, 3.5], **relative),
        "curvature": CurvatureAnalyzer(n_iter=20, n_trace_samples=3, random_state=0),
        "curvature_no_trace": CurvatureAnalyzer(
            n_iter=20, n_trace_samples=0, random_state=np.random.RandomState(3)
        ),
    }, (clf, X, y)


def _fitted_state(obj):
    return {k: v for k, v in vars(obj).items() if k.endswith("_")}


def assert_same_value(a, b):
    """Equal value *and* type; arrays bit for bit with the same dtype."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, np.ndarray | np.generic):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b)
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_value(x, y)
    elif isinstance(a, np.random.RandomState):
        for x, y in zip(a.get_state(), b.get_state()):
            assert_same_value(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("name", ["basin", "volume", "curvature", "curvature_no_trace"])
def test_analyzer_round_trip_is_lossless(analyzers, tmp_path, name):
    specs, (clf, X, y) = analyzers
    analyzer = specs[name].fit(clf, X, y)
    path = tmp_path / f"{name}.npz"
    save_results(analyzer, path)
    loaded = load_results(path)
    assert type(loaded) is type(analyzer)
    original, restored = analyzer.get_params(), loaded.get_params()
    assert original.keys() == restored.keys()
    for key in original:
        assert_same_value(original[key], restored[key])
    state, loaded_state = _fitted_state(analyzer), _fitted_state(loaded)
    assert state.keys() == loaded_state.keys() and len(state) >= 3
    for key in state:
        assert_same_value(state[key], loaded_state[key])
    # Saving the loaded object again gives the same content.
    save_results(loaded, tmp_path / "again.npz")
    again = load_results(tmp_path / "again.npz")
    for key in state:
        assert_same_value(state[key], _fitted_state(again)[key])


def test_loaded_basin_analyzer_still_plots(analyzers, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs, (clf, X, y) = analyzers
    basin = specs["basin"].fit(clf, X, y)
    save_results(basin, tmp_path / "basin.npz")
    display = load_results(tmp_path / "basin.npz").plot()
    try:
        assert len(display.lines_) == len(basin.profile_losses_) == 4
        assert_array_equal(display.lines_[0].get_ydata(), basin.profile_losses_[0])
        assert display.ax_.get_xlabel().startswith("distance")
    finally:
        plt.close(display.figure_)


def test_values_of_every_supported_kind_round_trip(analyzers, tmp_path):
    specs, (clf, X, y) = analyzers
    basin = specs["basin"].fit(clf, X, y)
    extras = {
        "float32_scalar_": np.float32(1.5),
        "int8_array_": np.arange(-3, 3, dtype=np.int8).reshape(2, 3),
        "fortran_": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "big_endian_": np.arange(4, dtype=">f8"),
        "strings_": np.array(["a", "bc"]),
        "empty_": np.empty((0, 3), dtype=np.float16),
        "nested_": [1, 2.5, "x", None, True, (np.int64(7), [float("-inf")])],
        "mapping_": {"a": 1, "b": [np.nan]},
        "huge_int_": 2**70,
    }
    for key, value in extras.items():
        setattr(basin, key, value)
    save_results(basin, tmp_path / "kinds.npz")
    loaded = load_results(tmp_path / "kinds.npz")
    for key, value in extras.items():
        if isinstance(value, dict):
            assert loaded.mapping_["a"] == 1 and np.isnan(loaded.mapping_["b"][0])
        else:
            assert_same_value(value, getattr(loaded, key))


def test_file_holds_no_pickles(analyzers, tmp_path):
    specs, (clf, X, y) = analyzers
    save_results(specs["volume"].fit(clf, X, y), tmp_path / "v.npz")
    with np.load(tmp_path / "v.npz", allow_pickle=False) as archive:
        assert all(archive[k].dtype != object for k in archive.files)


def test_version_mismatch_warns_but_loads(analyzers, tmp_path, monkeypatch):
    specs, (clf, X, y) = analyzers
    save_results(specs["basin"].fit(clf, X, y), tmp_path / "b.npz")
    monkeypatch.setattr(flatgen, "__version__", "99.0")
    with pytest.warns(UserWarning, match="written by flatgen 0.1.0; this is flatgen"):
        loaded = load_results(tmp_path / "b.npz")
    assert loaded.radii_.shape == (12,)


def test_save_refuses_what_it_cannot_store(fitted, tmp_path):
    clf, X, y = fitted
    with pytest.raises(NotFittedError):
        save_results(BasinAnalyzer(), tmp_path / "x.npz")
    with pytest.raises(TypeError, match="attribute 'net_' of type .*joblib.dump"):
        save_results(clf, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="expects a fitted flatgen analyzer"):
        save_results({"radii": [1.0]}, tmp_path / "x.npz")
    assert not os.listdir(tmp_path)


# -- damaged and foreign files ----------------------------------------------


@pytest.fixture
def saved(analyzers, tmp_path):
    specs, (clf, X, y) = analyzers
    path = tmp_path / "basin.npz"
    save_results(specs["basin"].fit(clf, X, y), path)
    return path


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file_is_refused(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match=rf"{saved.name}.*truncated, corrupt"):
        load_results(saved)


def test_corrupted_bytes_are_refused(saved):
    data = bytearray(saved.read_bytes())
    # Flip bytes inside the first member's compressed data (after its header).
    for i in range(100, 110):
        data[i] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{saved.name}.*truncated, corrupt"):
        load_results(saved)


def test_foreign_files_are_refused(tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, radii=np.ones(3))
    with pytest.raises(ValueError, match="plain.npz.*not a flatgen results file"):
        load_results(plain)
    text = tmp_path / "text.npz"
    text.write_text("radii: 1, 2, 3\n")
    with pytest.raises(ValueError, match="text.npz.*truncated, corrupt or another"):
        load_results(text)
    other = tmp_path / "other.npz"
    meta = np.frombuffer(b'{"format": "someone.else"}', dtype=np.uint8)
    np.savez(other, __flatgen_metadata__=meta)
    with pytest.raises(ValueError, match="declares format 'someone.else'"):
        load_results(other)


def test_file_naming_a_class_outside_flatgen_is_refused(saved, tmp_path):
    with np.load(saved) as archive:
        members = {k: archive[k] for k in archive.files}
    text = members["__flatgen_metadata__"].tobytes().decode()
    text = text.replace("flatgen.analyzers._basin:BasinAnalyzer", "os:system")
    members["__flatgen_metadata__"] = np.frombuffer(text.encode(), dtype=np.uint8)
    forged = tmp_path / "forged.npz"
    np.savez(forged, **members)
    with pytest.raises(ValueError, match="names the class 'os:system'; only flatgen"):
        load_results(forged)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No flatgen results file at"):
        load_results(tmp_path / "absent.npz")
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "absent.json")


# -- atomic writes -----------------------------------------------------------


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_writer(path) as f:
            f.write(b"new, half")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_killed_writer_never_leaves_a_half_file_that_loads(saved):
    """A process SIGKILLed in the middle of save_results leaves the old file.

    The child starts overwriting ``saved`` with different results and kills
    itself after half of the bytes are written; its temporary file stays
    behind (nothing can clean up after SIGKILL) under another name.
    """
    original = load_results(saved)
    script = textwrap.dedent(
        f"""
        import os, signal
        import numpy as np
        import flatgen.io as fio
        obj = fio.load_results({str(saved)!r})
        obj.radii_ = obj.radii_ + 1.0
        real_savez = np.savez_compressed
        def savez_then_die(f, **arrays):
            buffer = __import__("io").BytesIO()
            real_savez(buffer, **arrays)
            data = buffer.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        fio.np.savez_compressed = savez_then_die
        fio.save_results(obj, {str(saved)!r})
        """
    )
    result = subprocess.run([sys.executable, "-c", script], timeout=120)
    assert result.returncode == -signal.SIGKILL
    leftovers = [p for p in saved.parent.iterdir() if p != saved]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".basin.npz.")
    with pytest.raises(ValueError, match="truncated, corrupt"):
        load_results(leftovers[0])
    assert_array_equal(load_results(saved).radii_, original.radii_)


def test_json_helpers(tmp_path):
    path = tmp_path / "state.json"
    record = {"factor": np.float64(0.3), "seeds": np.arange(3), "ok": np.bool_(True)}
    atomic_write_json(path, record)
    assert read_json(path) == {"factor": 0.3, "seeds": [0, 1, 2], "ok": True}
    with pytest.raises(ValueError, match="state.json.*NaN and infinity"):
        atomic_write_json(path, {"factor": float("nan")})
    with pytest.raises(TypeError, match="not JSON serializable"):
        atomic_write_json(path, {"clf": object()})
    assert read_json(path)["factor"] == 0.3  # untouched by the failed writes
    assert os.listdir(tmp_path) == ["state.json"]
    path.write_text('{"factor": 0.')
    with pytest.raises(ValueError, match="state.json' is not a valid JSON file"):
        read_json(path)
    with pytest.raises(FileNotFoundError, match="folder .* does not exist"):
        atomic_write_json(tmp_path / "no" / "such.json", {})


# -- fitted estimators: pickle and joblib ------------------------------------


def _assert_same_predictions(a, b, X):
    assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert_array_equal(a.predict(X), b.predict(X))


def test_fitted_estimator_pickle_and_joblib_round_trip(fitted, tmp_path):
    clf, X, y = fitted
    _assert_same_predictions(clf, pickle.loads(pickle.dumps(clf)), X)
    joblib.dump(clf, tmp_path / "clf.joblib")
    loaded = joblib.load(tmp_path / "clf.joblib")
    _assert_same_predictions(clf, loaded, X)
    assert_array_equal(loaded.loss_curve_, clf.loss_curve_)
    # Analyzers measure the loaded estimator exactly like the original.
    basin = BasinAnalyzer(n_directions=5, cutoff=2, cutoff_type="relative")
    a = basin.set_params(random_state=0).fit(clf, X, y).radii_
    b = basin.set_params(random_state=0).fit(loaded, X, y).radii_
    assert_array_equal(a, b)


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="simulates loading on a CPU-only machine"
)
def test_estimator_pickled_on_cuda_loads_on_cpu(fitted, monkeypatch):
    """A pickle whose tensors are tagged as CUDA storages loads on a CPU machine.

    What this shows: a pickle of a fitted estimator with ``device='cuda'``
    whose every tensor storage (network weights, optimizer state) is
    recorded with the location ``cuda:0`` (as torch records tensors that
    live on a GPU) unpickles where CUDA is unavailable: skorch's
    ``NeuralNet.__setstate__`` maps the storages to the CPU, switches
    ``net_.device`` to ``'cpu'`` with a ``DeviceWarning``, and the loaded
    model predicts exactly like the original. The same bytes fail under a
    plain ``torch.load``, so the tags are really in the pickle.

    What it does not show: the device-to-host copy that torch does when it
    pickles tensors that actually live on a GPU (no GPU here); the
    tensors pickled here were on the CPU and only *tagged* as CUDA.
    """
    clf, X, y = fitted
    cuda_clf = pickle.loads(pickle.dumps(clf))
    cuda_clf.set_params(device="cuda")
    cuda_clf.net_.device = "cuda"
    monkeypatch.setattr(torch.serialization, "location_tag", lambda s: "cuda:0")
    data = pickle.dumps(cuda_clf)
    monkeypatch.undo()
    assert not torch.cuda.is_available()
    assert data.count(b"cuda:0") >= len(list(clf.net_.module_.parameters()))
    with pytest.raises(RuntimeError, match="deserialize object on a CUDA device"):
        # A tensor pickled the same way cannot load without skorch's mapping.
        with monkeypatch.context() as m:
            m.setattr(torch.serialization, "location_tag", lambda s: "cuda:0")
            weight = pickle.dumps(clf.net_.module_[0].weight)
        pickle.loads(weight)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = pickle.loads(data)
    assert any("CUDA" in str(w.message) for w in caught)
    assert torch.device(loaded.net_.device).type == "cpu"
    assert all(p.device.type == "cpu" for p in loaded.net_.module_.parameters())
    assert loaded.net_.module is loaded.net_.module_
    _assert_same_predictions(clf, loaded, X)
    # joblib goes through the same __setstate__.
    buffer = io.BytesIO()
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda s: "cuda:0")
        joblib.dump(cuda_clf, buffer)
    buffer.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_joblib = joblib.load(buffer)
    assert torch.device(from_joblib.net_.device).type == "cpu"
    _assert_same_predictions(clf, from_joblib, X)
    # Refitting where CUDA is missing gives a clear error, not a crash.
    with pytest.raises(ValueError, match="CUDA is not available"):
        loaded.fit(X, y)


def test_written_files_get_ordinary_permissions(tmp_path):
    # Results are shared files: readable by others as open() would make them.
    umask = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "summary.json", {"a": 1})
    finally:
        os.umask(umask)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o644
