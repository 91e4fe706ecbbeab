"""Save and load analyzer results; write files atomically.

Results go to ``.npz`` archives: every array attribute is one member, stored
bit for bit with its dtype, and a JSON member describes the rest (class,
flatgen version, hyperparameters, scalars). Nothing is pickled, so loading a
file never runs code from it. Loading checks the file against the format
strictly (version, every field and its type, every hyperparameter of the class,
fitted attributes present) and refuses, naming the file and the field, anything
that is not what it claims to be.

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

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
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
# Versions this flatgen reads; a newer file gets "upgrade", any other value is
# a damaged or forged file.
_SUPPORTED_FORMAT_VERSIONS = (1,)
_METADATA_KEY = "__flatgen_metadata__"
# The metadata fields of format version 1 and their JSON types.
_METADATA_FIELDS = {
    "format": (str, "a string"),
    "format_version": (int, "an integer"),
    "class": (str, "a string"),
    "flatgen_version": (str, "a string"),
    "params": (dict, "a JSON object"),
    "attributes": (dict, "a JSON object"),
}
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

    Raises
    ------
    IsADirectoryError
        If ``path`` is a folder (or ends in a path separator).
    FileNotFoundError
        If the folder of ``path`` does not exist.
    NotADirectoryError
        If what should be the folder of ``path`` is a file.

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
    folder = _check_destination(path)
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
        try:
            os.replace(tmp, path)
        except IsADirectoryError as exc:
            # A folder appeared at path after the check; name path, not tmp.
            raise IsADirectoryError(
                f"Cannot write {path!r}: it is a directory."
            ) from exc
    except BaseException:
        # Also on KeyboardInterrupt: no stray temporary file stays behind.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


def _check_destination(path):
    """Refuse a destination that cannot become a file; return its folder.

    Runs before any work, so that a bad path neither costs the encoding nor
    leaves a temporary file, and the error names ``path`` (the rename would
    name the temporary file).
    """
    if os.path.isdir(path) or path.endswith(tuple(filter(None, (os.sep, os.altsep)))):
        raise IsADirectoryError(
            f"Cannot write {path!r}: it is a directory; give a file name, e.g. "
            f"{os.path.join(path, 'results.npz')!r}."
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise NotADirectoryError(
                f"Cannot write {path!r}: {folder!r} is a file, not a folder."
            )
        raise FileNotFoundError(
            f"Cannot write {path!r}: the folder {folder!r} does not exist."
        )
    return folder


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


# The fields of each kind of value node besides "type": their JSON types
# (checked with type(), so JSON's true is not an int) and how to name them.
_NODE_FIELDS = {
    "none": {},
    "bool": {"value": ((bool,), "a boolean")},
    "str": {"value": ((str,), "a string")},
    "int": {"value": ((int,), "an integer")},
    "float": {"value": ((float, str), "a finite number or 'nan', 'inf', '-inf'")},
    "ndarray": {"key": ((str,), "a member name")},
    "numpy_scalar": {"key": ((str,), "a member name")},
    "list": {"items": ((list,), "a JSON array")},
    "tuple": {"items": ((list,), "a JSON array")},
    "dict": {"items": ((dict,), "a JSON object")},
    "random_state": {"state": ((dict,), "an encoded tuple")},
}
# How _encode writes non-finite floats (their repr).
_NON_FINITE = frozenset({"nan", "inf", "-inf"})


def _describe(value):
    """``value``'s repr, cut to a readable length, and its type, for errors."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _decode(node, arrays, where, used):
    """Rebuild the value that ``_encode`` wrote as ``node``, checking its form.

    ``used`` collects the archive members the node refers to.
    """
    if not isinstance(node, dict):
        raise ValueError(
            f"{where} must be an encoded value (a JSON object with a 'type'); "
            f"got {_describe(node)}."
        )
    kind = node.get("type")
    if not isinstance(kind, str) or kind not in _NODE_FIELDS:
        raise ValueError(f"{where} has an unknown value type {kind!r}.")
    fields = _NODE_FIELDS[kind]
    if set(node) != {"type", *fields}:
        raise ValueError(
            f"{where}: a value of type {kind!r} has the fields {sorted(fields)} "
            f"besides 'type'; got {sorted(set(node) - {'type'})}."
        )
    for field, (types, description) in fields.items():
        value = node[field]
        valid = type(value) in types
        if valid and kind == "float":
            # _encode writes finite floats as numbers, the others as their repr.
            valid = value in _NON_FINITE if type(value) is str else math.isfinite(value)
        if not valid:
            raise ValueError(
                f"{where}: the {field!r} of a value of type {kind!r} must be "
                f"{description}; got {_describe(value)}."
            )
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
        used.add(key)
        if kind == "ndarray":
            return arrays[key]
        if arrays[key].ndim != 0:
            raise ValueError(
                f"{where} is a numpy scalar, but the member {key!r} holds an array "
                f"of shape {arrays[key].shape}."
            )
        return arrays[key][()]
    if kind in ("list", "tuple"):
        items = [
            _decode(item, arrays, f"{where}[{i}]", used)
            for i, item in enumerate(node["items"])
        ]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {
            k: _decode(v, arrays, f"{where}[{k!r}]", used)
            for k, v in node["items"].items()
        }
    # kind == "random_state"
    state = _decode(node["state"], arrays, f"{where}.state", used)
    random_state = np.random.RandomState()
    try:
        if not isinstance(state, tuple):
            raise TypeError(f"the state is a {type(state).__name__}, not a tuple")
        random_state.set_state(state)
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"{where} is not a valid RandomState: {exc}.") from exc
    return random_state


def _is_fitted_name(name):
    # sklearn's convention: fitted state ends in "_" and does not start with
    # it. Also an identifier, so that a file cannot set odd names on load.
    return name.isidentifier() and name.endswith("_") and not name.startswith("_")


def _fitted_attributes(obj):
    return {name: value for name, value in vars(obj).items() if _is_fitted_name(name)}


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
        If ``obj`` is not fitted (has no fitted attribute to save).
    TypeError
        If ``obj`` is not a flatgen estimator-like object, or holds a value
        that cannot be stored (e.g. a fitted estimator's torch network; use
        ``joblib.dump`` for those).
    IsADirectoryError
        If ``path`` is a folder.
    FileNotFoundError
        If the folder of ``path`` does not exist.
    NotADirectoryError
        If what should be the folder of ``path`` is a file.

    The path is checked before anything is encoded; a failed save leaves no
    file behind, temporary or not.

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
    path = os.fspath(path)
    _check_destination(path)
    check_is_fitted(obj)
    fitted = _fitted_attributes(obj)
    if not fitted:
        # check_is_fitted also counts private names like "_cache_", which are
        # not saved; a file without fitted attributes would not load.
        raise NotFittedError(
            f"This {cls.__name__} has no fitted attributes to save (public names "
            "ending in '_'); fit it first."
        )
    from . import __version__

    arrays = {}
    params = {
        name: _encode(value, f"parameter {name!r}", arrays)
        for name, value in obj.get_params(deep=False).items()
    }
    attributes = {
        name: _encode(value, f"attribute {name!r}", arrays)
        for name, value in fitted.items()
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
        # Open the file here rather than let np.load do it: np.load leaves its
        # own handle open when the zip directory cannot be read (a truncated
        # file). allow_pickle=False: an object member is refused, not unpickled.
        with open(path, "rb") as f:
            archive = np.load(f, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single .npy array, not an .npz archive")
            with archive:
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
        # zipfile's answer to an encrypted member or an unknown compression.
        RuntimeError,
    ) as exc:
        raise ValueError(
            f"{path!r} is not a readable flatgen results file (truncated, corrupt "
            f"or another format): {type(exc).__name__}: {exc}"
        ) from exc


def _json_object(pairs):
    # json keeps the last of repeated keys silently; a file that says two
    # things about one field is not a file save_results wrote.
    result = dict(pairs)
    if len(result) != len(pairs):
        keys = [key for key, _ in pairs]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        raise ValueError(f"the metadata names {repeated} more than once")
    return result


def _json_constant(name):
    # save_results writes strict JSON (allow_nan=False).
    raise ValueError(f"the metadata holds {name}, which is not valid JSON")


def _check_format_version(path, metadata):
    if "format_version" not in metadata:
        raise ValueError(
            f"{path!r} has no format_version in its metadata; results files have "
            f"format_version {_FORMAT_VERSION}."
        )
    version = metadata["format_version"]
    # type(), not isinstance: JSON's true must not pass for version 1.
    if type(version) is int and version > max(_SUPPORTED_FORMAT_VERSIONS):
        raise ValueError(
            f"{path!r} was written by a newer flatgen (results format version "
            f"{version}; this flatgen reads version {_FORMAT_VERSION}). Upgrade "
            "flatgen to load it."
        )
    if type(version) is not int or version not in _SUPPORTED_FORMAT_VERSIONS:
        raise ValueError(
            f"{path!r}: format_version must be the integer {_FORMAT_VERSION}; got "
            f"{_describe(version)}."
        )


def _read_metadata(path, arrays):
    """Parse the metadata member and check the format's fields and their types."""
    if _METADATA_KEY not in arrays:
        raise ValueError(
            f"{path!r} is an .npz archive but not a flatgen results file: it has no "
            f"{_METADATA_KEY!r} member (members: {sorted(arrays)[:5]})."
        )
    raw = arrays.pop(_METADATA_KEY)
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError("the metadata member is not UTF-8 bytes")
        metadata = json.loads(
            raw.tobytes().decode("utf-8"),
            object_pairs_hook=_json_object,
            parse_constant=_json_constant,
        )
        if not isinstance(metadata, dict):
            raise ValueError("the metadata is not a JSON object")
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path!r} has corrupt metadata: {exc}.") from exc
    if metadata.get("format") != _FORMAT:
        raise ValueError(
            f"{path!r} is not a flatgen results file: its metadata declares format "
            f"{metadata.get('format')!r}, not {_FORMAT!r}."
        )
    # The version first: a newer file may have other fields.
    _check_format_version(path, metadata)
    missing = [field for field in _METADATA_FIELDS if field not in metadata]
    if missing:
        raise ValueError(
            f"{path!r} lacks the metadata field(s) {missing}; results files have "
            f"{list(_METADATA_FIELDS)}."
        )
    unknown = sorted(set(metadata) - set(_METADATA_FIELDS))
    if unknown:
        raise ValueError(
            f"{path!r} has metadata field(s) {unknown} that results format version "
            f"{_FORMAT_VERSION} does not have."
        )
    for field, (kind, description) in _METADATA_FIELDS.items():
        if type(metadata[field]) is not kind:
            raise ValueError(
                f"{path!r}: {field} must be {description}; got "
                f"{_describe(metadata[field])}."
            )
    return metadata


def _resolve_class(path, name):
    module_name, _, qualname = name.partition(":")
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
    if cls.__module__.split(".")[0] != _TRUSTED_PACKAGE:
        # E.g. "flatgen.io:BaseEstimator": found through flatgen, defined elsewhere.
        raise ValueError(
            f"{path!r} names the class {name!r}, which is "
            f"{cls.__module__}.{cls.__qualname__}; only flatgen classes are loaded."
        )
    return cls


def _check_names(path, cls, params, attributes):
    """Check that the file names every hyperparameter and real fitted results."""
    expected = cls().get_params(deep=False)
    missing = [name for name in expected if name not in params]
    if missing:
        # A default would silently stand in for what the results were made with.
        raise ValueError(
            f"{path!r}: params is missing the hyperparameter"
            f"{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} of "
            f"{cls.__name__}; a results file names every hyperparameter."
        )
    unknown = sorted(set(params) - set(expected))
    if unknown:
        raise ValueError(
            f"{path!r} holds parameters {unknown} that {cls.__name__} in this "
            "flatgen does not have."
        )
    if not attributes:
        raise ValueError(
            f"{path!r}: attributes is empty: the file holds no fitted results."
        )
    for name in attributes:
        if not _is_fitted_name(name):
            raise ValueError(
                f"{path!r}: attributes holds {name!r}, which is not the name of a "
                "fitted attribute (an identifier ending in '_', not starting with "
                "'_')."
            )
        if hasattr(cls, name):
            # Setting it would replace (or fail on) a method or property.
            raise ValueError(
                f"{path!r}: attributes holds {name!r}, which {cls.__name__} "
                "defines itself; it is not a fitted result."
            )


def load_results(path):
    """Rebuild an analyzer saved with :func:`save_results`.

    The analyzer is created from the saved hyperparameters and gets every
    saved fitted attribute back, arrays bit-identical and of the same dtype,
    so its methods (``plot``, say) work as on the original. A file written
    by another flatgen version loads with a warning.

    The file is checked strictly before anything is built: ``format_version``
    must be the integer 1, every metadata field must be there with its JSON
    type, ``params`` must name every hyperparameter of the class (none falls
    back to a default) and no other, ``attributes`` must be non-empty and
    hold only fitted-attribute names (ending in ``_``), every value must be
    well formed, and every array in the archive must belong to a field.
    Nothing in the file is unpickled or executed, and only flatgen classes
    are rebuilt.

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
        If the file is truncated, corrupt, not a flatgen results file, of
        another format version, breaks one of the rules above, or names a
        class or hyperparameters this flatgen does not have; the message
        names the file and the field.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No flatgen results file at {path!r}.")
    arrays = _read_archive(path)
    metadata = _read_metadata(path, arrays)
    cls = _resolve_class(path, metadata["class"])
    _check_names(path, cls, metadata["params"], metadata["attributes"])
    used = set()
    params = {
        name: _decode(node, arrays, f"{path!r}: params[{name!r}]", used)
        for name, node in metadata["params"].items()
    }
    attributes = {
        name: _decode(node, arrays, f"{path!r}: attributes[{name!r}]", used)
        for name, node in metadata["attributes"].items()
    }
    stray = sorted(set(arrays) - used)
    if stray:
        raise ValueError(
            f"{path!r} holds members that no field refers to: {stray[:5]}; "
            "save_results writes none."
        )
    obj = cls(**params)
    for name, value in attributes.items():
        setattr(obj, name, value)
    from . import __version__

    # Warn only once the file is known to load.
    if metadata["flatgen_version"] != __version__:
        warnings.warn(
            f"{path!r} was written by flatgen {metadata['flatgen_version']}; "
            f"this is flatgen {__version__}. The results load as saved.",
            UserWarning,
            stacklevel=2,
        )
    return obj
