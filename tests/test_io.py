"""Saved results: lossless round trips, atomic writes, clear errors; pickles."""

import gc
import io
import json
import os
import pickle
import re
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
from sklearn.base import clone
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
        "curvature": CurvatureAnalyzer(n_iter=20, n_probes=3, random_state=0),
        "curvature_no_trace": CurvatureAnalyzer(
            n_iter=20, n_probes=0, random_state=np.random.RandomState(3)
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


# -- strict schema: a file loads only when it is what it claims --------------


@pytest.fixture(scope="module")
def basin(analyzers):
    specs, (clf, X, y) = analyzers
    return clone(specs["basin"]).fit(clf, X, y)


@pytest.fixture(scope="module")
def good_file(basin, tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "basin.npz"
    save_results(basin, path)
    return path


def _members(path):
    with np.load(path, allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


def _forge(good, folder, change=None, edit_text=None, members=None):
    """Copy of ``good`` with its metadata changed in place by ``change``."""
    arrays = _members(good)
    metadata = json.loads(arrays["__flatgen_metadata__"].tobytes())
    if change is not None:
        change(metadata)
    text = json.dumps(metadata)
    if edit_text is not None:
        text = edit_text(text)
    arrays["__flatgen_metadata__"] = np.frombuffer(text.encode(), dtype=np.uint8)
    arrays.update(members or {})
    path = folder / "forged.npz"
    np.savez(path, **arrays)
    return path


def _load_error(path, error=ValueError):
    with pytest.raises(error) as excinfo:
        load_results(path)
    return str(excinfo.value)


@pytest.mark.parametrize(
    "version, shown",
    [
        (0, "0 (int)"),
        (-1, "-1 (int)"),
        (True, "True (bool)"),
        ("1", "'1' (str)"),
        (1.0, "1.0 (float)"),
        (None, "None (NoneType)"),
    ],
)
def test_format_version_must_be_the_supported_integer(
    good_file, tmp_path, version, shown
):
    forged = _forge(good_file, tmp_path, lambda m: m.update(format_version=version))
    message = _load_error(forged)
    assert f"forged.npz': format_version must be the integer 1; got {shown}." in message
    assert "Upgrade" not in message  # only a newer version asks for an upgrade


@pytest.mark.parametrize("version", [2, 2**70])
def test_newer_format_version_asks_for_an_upgrade(good_file, tmp_path, version):
    forged = _forge(good_file, tmp_path, lambda m: m.update(format_version=version))
    message = _load_error(forged)
    assert f"written by a newer flatgen (results format version {version}; " in message
    assert message.endswith("Upgrade flatgen to load it.")


def test_missing_format_version_is_refused(good_file, tmp_path):
    forged = _forge(good_file, tmp_path, lambda m: m.pop("format_version"))
    assert "forged.npz' has no format_version in its metadata" in _load_error(forged)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda m: m.pop("class"), r"lacks the metadata field\(s\) \['class'\]"),
        (lambda m: m.pop("params"), r"lacks the metadata field\(s\) \['params'\]"),
        (lambda m: m.pop("attributes"), r"field\(s\) \['attributes'\]"),
        (lambda m: m.pop("flatgen_version"), r"field\(s\) \['flatgen_version'\]"),
        (lambda m: m.update({"class": 5}), r"class must be a string; got 5 \(int\)"),
        (
            lambda m: m.update(params=[]),
            r"params must be a JSON object; got \[\] \(list\)",
        ),
        (
            lambda m: m.update(attributes="radii_"),
            r"attributes must be a JSON object; got 'radii_' \(str\)",
        ),
        (
            lambda m: m.update(flatgen_version=None),
            r"flatgen_version must be a string; got None \(NoneType\)",
        ),
        (
            lambda m: m.update(comment="hi"),
            r"metadata field\(s\) \['comment'\] that results format version 1 does",
        ),
    ],
    ids=[
        "no-class",
        "no-params",
        "no-attributes",
        "no-flatgen_version",
        "class-int",
        "params-list",
        "attributes-str",
        "flatgen_version-null",
        "unknown-field",
    ],
)
def test_every_metadata_field_is_required_with_its_type(
    good_file, tmp_path, change, expected
):
    forged = _forge(good_file, tmp_path, change)
    with pytest.raises(ValueError, match=rf"forged.npz'?:? .*{expected}"):
        load_results(forged)


def test_empty_attributes_are_refused(good_file, tmp_path):
    forged = _forge(good_file, tmp_path, lambda m: m.update(attributes={}))
    message = _load_error(forged)
    assert message.endswith(
        "forged.npz': attributes is empty: the file holds no fitted results."
    )


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda m: m["params"].pop("cutoff"),
            "params is missing the hyperparameter 'cutoff' of BasinAnalyzer; a "
            "results file names every hyperparameter.",
        ),
        (
            lambda m: m.update(params={}),
            "params is missing the hyperparameters 'cutoff', 'cutoff_type', ",
        ),
        # Already refused before; kept here with the other rules on params.
        (
            lambda m: m["params"].update(bogus={"type": "none"}),
            "holds parameters ['bogus'] that BasinAnalyzer in this flatgen does not",
        ),
    ],
    ids=["one-missing", "all-missing", "unknown"],
)
def test_params_name_every_hyperparameter_and_no_other(
    good_file, tmp_path, change, expected
):
    forged = _forge(good_file, tmp_path, change)
    assert expected in _load_error(forged)


@pytest.mark.parametrize("name", ["radii", "_radii_", "__class__", "1st_", "a b_"])
def test_attribute_names_must_be_fitted_names(good_file, tmp_path, name):
    forged = _forge(
        good_file, tmp_path, lambda m: m["attributes"].update({name: {"type": "none"}})
    )
    assert (
        f"attributes holds {name!r}, which is not the name of a fitted attribute"
        in _load_error(forged)
    )


def test_attribute_names_the_class_defines_are_refused(
    good_file, tmp_path, monkeypatch
):
    # A read-only property: setting it on load would fail or replace it.
    monkeypatch.setattr(
        BasinAnalyzer, "summary_", property(lambda self: "computed"), raising=False
    )
    forged = _forge(
        good_file,
        tmp_path,
        lambda m: m["attributes"].update(summary_={"type": "str", "value": "x"}),
    )
    assert "holds 'summary_', which BasinAnalyzer defines itself" in _load_error(forged)


def _radii_key(metadata):
    return metadata["attributes"]["radii_"]["key"]


@pytest.mark.parametrize(
    "make_node, expected",
    [
        (
            lambda m: {"type": "int", "value": "7"},
            "the 'value' of a value of type 'int' must be an integer; got '7' (str)",
        ),
        (
            lambda m: {"type": "int", "value": True},
            "must be an integer; got True (bool)",
        ),
        (
            lambda m: {"type": "bool", "value": 1},
            "must be a boolean; got 1 (int)",
        ),
        (
            lambda m: {"type": "float", "value": "1e5"},
            "must be a finite number or 'nan', 'inf', '-inf'; got '1e5' (str)",
        ),
        (
            lambda m: {"type": "none", "value": 3},
            "has the fields [] besides 'type'; got ['value']",
        ),
        (
            lambda m: {"type": "ndarray", "key": 0},
            "must be a member name; got 0 (int)",
        ),
        (
            lambda m: {"type": "numpy_scalar", "key": _radii_key(m)},
            "is a numpy scalar, but the member",
        ),
        (
            lambda m: {"type": "list", "items": {}},
            "the 'items' of a value of type 'list' must be a JSON array",
        ),
        (
            lambda m: {"type": "list", "items": [{"type": "int", "value": 1.5}]},
            "attributes['bad_'][0]: the 'value' of a value of type 'int'",
        ),
        (
            lambda m: {"type": "random_state", "state": {"type": "none"}},
            "attributes['bad_'] is not a valid RandomState",
        ),
        (lambda m: "radii", "must be an encoded value"),
    ],
    ids=[
        "int-str",
        "int-bool",
        "bool-int",
        "float-str",
        "extra-field",
        "key-int",
        "scalar-array",
        "list-dict",
        "nested",
        "random_state",
        "not-a-node",
    ],
)
def test_malformed_values_are_refused(good_file, tmp_path, make_node, expected):
    forged = _forge(
        good_file, tmp_path, lambda m: m["attributes"].update(bad_=make_node(m))
    )
    message = _load_error(forged)
    assert "forged.npz': attributes['bad_']" in message and expected in message


def test_members_no_field_refers_to_are_refused(good_file, tmp_path):
    forged = _forge(good_file, tmp_path, members={"values/999": np.zeros(3)})
    assert "holds members that no field refers to: ['values/999']" in _load_error(
        forged
    )


def test_metadata_must_be_strict_unambiguous_json(good_file, tmp_path):
    # Two "class" keys: json would silently keep the last one.
    twice = _forge(
        good_file,
        tmp_path,
        edit_text=lambda t: '{"class": "flatgen.io:BaseEstimator", ' + t[1:],
    )
    assert "corrupt metadata: the metadata names ['class'] more than once" in (
        _load_error(twice)
    )
    nan = _forge(
        good_file,
        tmp_path,
        edit_text=lambda t: t.replace(
            '"attributes": {', '"attributes": {"bad_": NaN, '
        ),
    )
    assert "holds NaN, which is not valid JSON" in _load_error(nan)


def test_class_reached_through_flatgen_but_defined_elsewhere_is_refused(
    good_file, tmp_path
):
    forged = _forge(
        good_file, tmp_path, lambda m: m.update({"class": "flatgen.io:BaseEstimator"})
    )
    assert "which is sklearn.base.BaseEstimator; only flatgen classes are loaded" in (
        _load_error(forged)
    )


def test_npy_file_is_refused(tmp_path):
    path = tmp_path / "array.npz"
    with open(path, "wb") as f:
        np.save(f, np.ones(3))
    message = _load_error(path)
    assert "array.npz' is not a readable flatgen results file" in message
    assert "a single .npy array, not an .npz archive" in message


def test_unreadable_files_close_every_handle(good_file, tmp_path):
    data = good_file.read_bytes()
    contents = {
        f"cut{keep}.npz": data[: int(len(data) * keep)]
        for keep in (0.0, 0.1, 0.5, 0.9, 0.999)
    }
    flipped = bytearray(data)
    flipped[100:110] = bytes(b ^ 0xFF for b in flipped[100:110])
    contents["corrupt.npz"] = bytes(flipped)
    contents["text.npz"] = b"radii: 1, 2, 3\n"
    for name, content in contents.items():
        (tmp_path / name).write_bytes(content)
    with warnings.catch_warnings(record=True) as caught:
        # An unclosed file warns when it is collected; collect inside the block.
        warnings.simplefilter("always", ResourceWarning)
        for name in contents:
            message = _load_error(tmp_path / name)
            assert re.search(rf"{re.escape(name)}.*truncated, corrupt", message)
        gc.collect()
    leaks = [str(w.message) for w in caught if w.category is ResourceWarning]
    assert not leaks


class _Trap:
    """Unpickling this creates the folder ``marker``: code run from a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_content_is_never_unpickled(good_file, tmp_path):
    marker = tmp_path / "code-ran"
    # A valid file whose radii_ member is a pickled object array.
    key = json.loads(_members(good_file)["__flatgen_metadata__"].tobytes())[
        "attributes"
    ]["radii_"]["key"]
    trap = np.array([_Trap(str(marker))], dtype=object)
    forged = _forge(good_file, tmp_path, members={key: trap})
    assert "Object arrays cannot be loaded when allow_pickle=False" in _load_error(
        forged
    )
    whole = tmp_path / "pickle.npz"
    whole.write_bytes(pickle.dumps(_Trap(str(marker))))
    assert "pickle.npz' is not a readable flatgen results file" in _load_error(whole)
    assert not marker.exists()
    # The trap is live: unpickling it does run code.
    pickle.loads(whole.read_bytes())
    assert marker.is_dir()


def _must_not_run(*args, **kwargs):
    raise AssertionError("save_results encoded values before checking the path")


def test_save_into_a_folder_fails_first_and_leaves_nothing(
    basin, tmp_path, monkeypatch
):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.txt").write_text("kept")
    monkeypatch.setattr("flatgen.io._encode", _must_not_run)
    for path in (folder, str(folder), str(tmp_path / "new") + os.sep):
        with pytest.raises(IsADirectoryError) as excinfo:
            save_results(basin, path)
        message = str(excinfo.value)
        assert message.startswith(f"Cannot write {str(path)!r}: it is a directory")
        assert ".tmp" not in message
    with pytest.raises(IsADirectoryError, match="results': it is a directory"):
        atomic_write_json(folder, {"a": 1})
    assert os.listdir(tmp_path) == ["results"]
    assert os.listdir(folder) == ["keep.txt"]


def test_save_into_a_missing_folder_or_a_file_fails_first(basin, tmp_path, monkeypatch):
    monkeypatch.setattr("flatgen.io._encode", _must_not_run)
    with pytest.raises(FileNotFoundError, match=r"x.npz': the folder .*no' does not"):
        save_results(basin, tmp_path / "no" / "x.npz")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match=r"x.npz': .*file' is a file, not a"):
        save_results(basin, tmp_path / "file" / "x.npz")
    assert os.listdir(tmp_path) == ["file"]


def test_save_refuses_an_object_without_public_fitted_attributes(tmp_path):
    # check_is_fitted accepts "_cache_", which is not saved: the file would
    # hold no fitted results.
    analyzer = BasinAnalyzer()
    analyzer._cache_ = 1
    with pytest.raises(NotFittedError, match="no fitted attributes to save"):
        save_results(analyzer, tmp_path / "x.npz")
    assert not os.listdir(tmp_path)


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


@pytest.mark.slow
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
