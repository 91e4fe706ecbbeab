"""Save and load analyzer results; write files atomically.

Results go to ``.npz`` archives: every array attribute is one member, stored
bit for bit with its dtype, and a JSON member describes the rest (class,
flatgen version, hyperparameters, scalars). Nothing is pickled, so loading a
file never runs code from it.

Every writer here writes a temporary file in the destination's folder,
flushes it to disk and renames it over the destination: a process killed
mid-write leaves either the old file or none, never a half-written one.
"""

import importlib
import json
import math
import os
import tempfile
import warnings
import zipfile
import zlib
from contextlib import contextmanager
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "atomic_write_json",
    "atomic_writer",
    "load_results",
    "read_json",
    "save_results",
]

_FORMAT = "flatgen.results"
_FORMAT_VERSION = 1
_METADATA_KEY = "__flatgen_metadata__"
# Only classes of this package are rebuilt: importing a module named in a
# file would otherwise let the file choose what code runs.
_TRUSTED_PACKAGE = "flatgen"


@contextmanager
def atomic_writer(path):
    """Open ``path`` for binary writing so that it appears complete or not at all.

    The data go to a temporary file in the same folder, which is flushed and
    synced to disk and then renamed over ``path`` (an atomic replace on
    POSIX and Windows). If the block raises, the temporary file is removed
    and ``path`` is left as it was.

    Parameters
    ----------
    path : str or path-like
        Destination file; its folder must exist.

    Yields
    ------
    file : binary file object
        Write the contents here.

    Examples
    --------
    >>> import os, tempfile
    >>> from flatgen.io import atomic_writer
    >>> path = os.path.join(tempfile.mkdtemp(), "figure.bin")
    >>> with atomic_writer(path) as f:
    ...     _ = f.write(b"data")
    >>> open(path, "rb").read()
    b'data'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"Cannot write {path!r}: the folder {folder!r} does not exist."
        )
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        # mkstemp creates owner-only files; give the result the permissions
        # an ordinary open() would (0o666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Also on KeyboardInterrupt: no stray temporary file stays behind.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


def _fsync_folder(folder):
    # Makes the rename itself durable; not possible (nor needed) on Windows.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_default(value):
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def atomic_write_json(path, obj, *, indent=2):
    """Write ``obj`` as JSON to ``path`` atomically (see :func:`atomic_writer`).

    numpy scalars and arrays are written as numbers and lists. Non-finite
    floats are refused, so the file is strict JSON that any reader accepts.

    Parameters
    ----------
    path : str or path-like
        Destination file.
    obj : object
        JSON-serializable data (dicts, lists, str, numbers, bool, None).
    indent : int or None, default=2
        Indentation of the written JSON.

    Raises
    ------
    ValueError
        If ``obj`` holds NaN or infinity.
    TypeError
        If ``obj`` holds something JSON cannot represent.

    Examples
    --------
    >>> import os, tempfile
    >>> from flatgen.io import atomic_write_json, read_json
    >>> path = os.path.join(tempfile.mkdtemp(), "run.json")
    >>> atomic_write_json(path, {"poison_factor": 0.3, "done": [1, 2]})
    >>> read_json(path)
    {'poison_factor': 0.3, 'done': [1, 2]}
    """
    # Serialize first: an unserializable object must not touch the file.
    try:
        text = json.dumps(obj, indent=indent, allow_nan=False, default=_json_default)
    except ValueError as exc:
        raise ValueError(
            f"Cannot write {os.fspath(path)!r}: {exc} (NaN and infinity are not "
            "valid JSON)."
        ) from exc
    with atomic_writer(path) as f:
        f.write(text.encode("utf-8"))


def read_json(path):
    """Read a JSON file, with errors that name the file.

    Parameters
    ----------
    path : str or path-like
        File written by :func:`atomic_write_json` (or any JSON file).

    Returns
    -------
    obj : object
        The decoded data.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not valid UTF-8 JSON (truncated, corrupt or another
        format).
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{path!r} is not a valid JSON file (truncated, corrupt or another "
            f"format): {exc}."
        ) from exc


# -- encoding of values ------------------------------------------------------
# Every value becomes a small JSON node with a "type"; arrays and numpy
# scalars become npz members referenced by "key", so they keep their dtype
# and bits.


def _encode(value, where, arrays):
    if value is None:
        return {"type": "none"}
    if isinstance(value, (bool, str)):
        return {"type": type(value).__name__, "value": value}
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise TypeError(
                f"Cannot save {where}: arrays of Python objects are not supported."
            )
        key = f"values/{len(arrays)}"
        arrays[key] = array
        kind = "ndarray" if isinstance(value, np.ndarray) else "numpy_scalar"
        return {"type": kind, "key": key}
    if isinstance(value, int):
        return {"type": "int", "value": value}
    if isinstance(value, float):
        # JSON has no NaN or infinity; write them as strings.
        number = value if math.isfinite(value) else repr(value)
        return {"type": "float", "value": number}
    if isinstance(value, (list, tuple)):
        return {
            "type": type(value).__name__,
            "items": [
                _encode(item, f"{where}[{i}]", arrays) for i, item in enumerate(value)
            ],
        }
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {
            "type": "dict",
            "items": {
                k: _encode(v, f"{where}[{k!r}]", arrays) for k, v in value.items()
            },
        }
    if isinstance(value, np.random.RandomState):
        name, keys, pos, has_gauss, cached = value.get_state(legacy=True)
        return {
            "type": "random_state",
            "state": _encode((name, keys, pos, has_gauss, cached), where, arrays),
        }
    raise TypeError(
        f"Cannot save {where} of type {type(value).__name__}: results files hold "
        "numbers, strings, booleans, None, numpy arrays, and lists, tuples or "
        "dicts of them. Save fitted estimators with joblib.dump or pickle."
    )


def _decode(node, arrays, where):
    kind = node.get("type") if isinstance(node, dict) else None
    if kind == "none":
        return None
    if kind in ("bool", "str", "int"):
        return node["value"]
    if kind == "float":
        return float(node["value"])
    if kind in ("ndarray", "numpy_scalar"):
        key = node["key"]
        if key not in arrays:
            raise ValueError(f"{where} refers to the missing member {key!r}.")
        return arrays[key] if kind == "ndarray" else arrays[key][()]
    if kind in ("list", "tuple"):
        items = [_decode(item, arrays, where) for item in node["items"]]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {k: _decode(v, arrays, where) for k, v in node["items"].items()}
    if kind == "random_state":
        state = _decode(node["state"], arrays, where)
        random_state = np.random.RandomState()
        random_state.set_state(state)
        return random_state
    raise ValueError(f"{where} has an unknown value type {kind!r}.")


def _fitted_attributes(obj):
    # sklearn's convention: fitted state ends in "_" and does not start with it.
    return {
        name: value
        for name, value in vars(obj).items()
        if name.endswith("_") and not name.startswith("_")
    }


def save_results(obj, path):
    """Save a fitted analyzer's hyperparameters and results to an ``.npz`` file.

    Stores ``obj.get_params(deep=False)`` and every fitted attribute (names
    ending in ``_``) losslessly: arrays and numpy scalars bit for bit with
    their dtype, Python numbers, strings and booleans exactly, lists, tuples
    and dicts of them recursively, and ``RandomState`` parameters with their
    state. The file is written atomically: a process killed meanwhile leaves
    the previous file (or none), never a half-written one. ``path`` is used
    as given (no extension is added).

    Parameters
    ----------
    obj : fitted analyzer
        E.g. a fitted :class:`~flatgen.BasinAnalyzer`,
        :class:`~flatgen.VolumeEstimator` or :class:`~flatgen.CurvatureAnalyzer`;
        any fitted flatgen object with ``get_params`` whose results are plain
        values.
    path : str or path-like
        Destination file, conventionally ending in ``.npz``.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``obj`` is not fitted.
    TypeError
        If ``obj`` is not a flatgen estimator-like object, or holds a value
        that cannot be stored (e.g. a fitted estimator's torch network; use
        ``joblib.dump`` for those).

    See Also
    --------
    load_results : Rebuild the analyzer from the file.

    Examples
    --------
    >>> import os, tempfile
    >>> from flatgen import BasinAnalyzer, PoisonedMLPClassifier, make_spirals
    >>> from flatgen.io import load_results, save_results
    >>> X, y = make_spirals(60, random_state=0)
    >>> clf = PoisonedMLPClassifier((8,), max_iter=100, random_state=0).fit(X, y)
    >>> basin = BasinAnalyzer(n_directions=4, cutoff=2, cutoff_type="relative",
    ...                       random_state=0).fit(clf, X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "basin.npz")
    >>> save_results(basin, path)
    >>> loaded = load_results(path)
    >>> bool((loaded.radii_ == basin.radii_).all())
    True
    >>> loaded.get_params() == basin.get_params()
    True
    """
    if not isinstance(obj, BaseEstimator):
        raise TypeError(
            "save_results expects a fitted flatgen analyzer (an object with "
            f"get_params); got {type(obj).__name__}."
        )
    cls = type(obj)
    if cls.__module__.split(".")[0] != _TRUSTED_PACKAGE:
        raise TypeError(
            f"save_results saves flatgen objects; {cls.__module__}.{cls.__qualname__} "
            "would not load back (only flatgen classes are rebuilt)."
        )
    check_is_fitted(obj)
    from . import __version__

    arrays = {}
    params = {
        name: _encode(value, f"parameter {name!r}", arrays)
        for name, value in obj.get_params(deep=False).items()
    }
    attributes = {
        name: _encode(value, f"attribute {name!r}", arrays)
        for name, value in _fitted_attributes(obj).items()
    }
    metadata = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "flatgen_version": __version__,
        "params": params,
        "attributes": attributes,
    }
    text = json.dumps(metadata, indent=1, allow_nan=False)
    arrays[_METADATA_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    with atomic_writer(path) as f:
        np.savez_compressed(f, **arrays)


def _read_archive(path):
    """Return all members of the npz at ``path``; ValueError if unreadable."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            # Read every member now: zip checks each member's CRC as it is
            # read, so damage inside the file surfaces here and not later.
            return {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        ValueError,
        KeyError,
    ) as exc:
        raise ValueError(
            f"{path!r} is not a readable flatgen results file (truncated, corrupt "
            f"or another format): {type(exc).__name__}: {exc}"
        ) from exc


def _read_metadata(path, arrays):
    if _METADATA_KEY not in arrays:
        raise ValueError(
            f"{path!r} is an .npz archive but not a flatgen results file: it has no "
            f"{_METADATA_KEY!r} member (members: {sorted(arrays)[:5]})."
        )
    raw = arrays.pop(_METADATA_KEY)
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError("the metadata member is not UTF-8 bytes")
        metadata = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(metadata, dict):
            raise ValueError("the metadata is not a JSON object")
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path!r} has corrupt metadata: {exc}.") from exc
    if metadata.get("format") != _FORMAT:
        raise ValueError(
            f"{path!r} is not a flatgen results file: its metadata declares format "
            f"{metadata.get('format')!r}, not {_FORMAT!r}."
        )
    version = metadata.get("format_version")
    if not isinstance(version, Integral) or version > _FORMAT_VERSION:
        raise ValueError(
            f"{path!r} has results format version {version!r}; this flatgen reads "
            f"up to version {_FORMAT_VERSION}. Upgrade flatgen to load it."
        )
    return metadata


def _resolve_class(path, name):
    module_name, _, qualname = str(name).partition(":")
    if module_name.split(".")[0] != _TRUSTED_PACKAGE or not qualname:
        raise ValueError(
            f"{path!r} names the class {name!r}; only flatgen classes are loaded."
        )
    try:
        cls = importlib.import_module(module_name)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"{path!r} holds results of {name}, which this flatgen does not have."
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, BaseEstimator)):
        raise ValueError(f"{path!r} names {name}, which is not an analyzer class.")
    return cls


def load_results(path):
    """Rebuild an analyzer saved with :func:`save_results`.

    The analyzer is created from the saved hyperparameters and gets every
    saved fitted attribute back, arrays bit-identical and of the same dtype,
    so its methods (``plot``, say) work as on the original. A file written
    by another flatgen version loads with a warning.

    Parameters
    ----------
    path : str or path-like
        File written by :func:`save_results`.

    Returns
    -------
    obj : analyzer
        The fitted analyzer.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is truncated, corrupt, not a flatgen results file, or
        names a class or hyperparameters this flatgen does not have; the
        message names the file and the problem.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No flatgen results file at {path!r}.")
    arrays = _read_archive(path)
    metadata = _read_metadata(path, arrays)
    cls = _resolve_class(path, metadata.get("class"))
    from . import __version__

    if metadata.get("flatgen_version") != __version__:
        warnings.warn(
            f"{path!r} was written by flatgen {metadata.get('flatgen_version')}; "
            f"this is flatgen {__version__}. The results load as saved.",
            UserWarning,
            stacklevel=2,
        )
    try:
        params = {
            name: _decode(node, arrays, f"{path!r}: parameter {name!r}")
            for name, node in metadata["params"].items()
        }
        attributes = {
            name: _decode(node, arrays, f"{path!r}: attribute {name!r}")
            for name, node in metadata["attributes"].items()
        }
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path!r} has corrupt metadata: {exc!r}.") from exc
    unknown = sorted(set(params) - set(cls().get_params(deep=False)))
    if unknown:
        raise ValueError(
            f"{path!r} holds parameters {unknown} that {cls.__name__} in this "
            "flatgen does not have."
        )
    obj = cls(**params)
    for name, value in attributes.items():
        setattr(obj, name, value)
    return obj
