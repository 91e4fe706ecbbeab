"""Finished steps of an experiment, kept on disk so an interrupted run resumes.

Each step's result is pickled to its own file, named by the step and a hash
of everything that determines it (its settings, the data, the keys of the
steps it builds on, the flatgen version). A rerun with other settings looks
for other files, so it never reuses a result computed differently. Files are
written atomically (temporary file, then rename), so a run killed midway
leaves whole files or none, never one that loads as a valid result.

Step results hold fitted estimators, which only pickle can store, and
unpickling a file can run any code in it. So every file is signed with an
HMAC-SHA256 under a secret key kept outside the results folder (in the
user's cache directory, readable by the user alone), and a file is unpickled
only when its signature checks out: a step file written on another account
or machine, or altered after it was written, is never loaded, only computed
again.
"""

import hashlib
import hmac
import io
import json
import os
import re
import tempfile
import time
import warnings

import joblib
import numpy as np

from .. import __version__
from ..io import atomic_write_json, atomic_writer, read_json

# Bump when the layout of cached results changes: old files are then ignored.
_CACHE_FORMAT = 2
_MANIFEST = "progress.json"
# A signed step file: this tag, the HMAC-SHA256 of the payload, the payload.
_SIGNED_TAG = b"flatgen-step-v2\n"
_MAC_BYTES = hashlib.sha256().digest_size
_KEY_BYTES = 32
# Environment variable naming the signing key file (tests, shared setups).
KEY_ENV = "FLATGEN_STEP_KEY_FILE"


def signing_key_path():
    """Return the file of this user's secret step-signing key.

    ``$FLATGEN_STEP_KEY_FILE`` when set, else ``flatgen/step-signing.key``
    under ``$XDG_CACHE_HOME`` (default ``~/.cache``).
    """
    path = os.environ.get(KEY_ENV)
    if path:
        return path
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return os.path.join(cache_home, "flatgen", "step-signing.key")


def signing_key():
    """Return this user's secret step-signing key, creating it on first use."""
    path = signing_key_path()
    if os.path.exists(path):
        with open(path, "rb") as f:
            return f.read()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # mkstemp creates the file readable by its owner alone; linking it into
    # place fails if another process created the key meanwhile, and then
    # both use that one.
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".step-key-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(_KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
    with open(path, "rb") as f:
        return f.read()


def _signature(key, payload):
    return hmac.new(key, payload, hashlib.sha256).digest()


def jsonable(value):
    """Return ``value`` as plain JSON data (for settings and hashing).

    numpy scalars and arrays become numbers and lists; objects that JSON
    cannot hold (samplers, say) are described by their ``repr``.

    Parameters
    ----------
    value : object
        Settings value.

    Returns
    -------
    data : dict, list, str, int, float, bool or None
        A JSON-serializable equivalent.
    """
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return repr(value)


def fingerprint(*arrays):
    """Return a short hash of the bytes, shapes and dtypes of ``arrays``.

    Parameters
    ----------
    *arrays : ndarray
        The data a step depends on.

    Returns
    -------
    digest : str
        16 hexadecimal characters.
    """
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def step_key(name, settings, depends=()):
    """Return the hash that identifies a step's result.

    Parameters
    ----------
    name : str
        Step name.
    settings : dict
        Everything that determines the result (JSON-serializable after
        :func:`jsonable`).
    depends : sequence of str, default=()
        Keys of the steps whose results this one uses.

    Returns
    -------
    key : str
        16 hexadecimal characters.
    """
    payload = json.dumps(
        {
            "format": _CACHE_FORMAT,
            "flatgen": __version__,
            "step": name,
            "settings": jsonable(settings),
            "depends": list(depends),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _file_stem(name):
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", name).strip("_")


def read_step_file(path):
    """Return the record in a signed step file, after checking its signature.

    Parameters
    ----------
    path : path-like
        A file written by :meth:`StepCache.save`.

    Returns
    -------
    record : object
        The unpickled record.

    Raises
    ------
    ValueError
        If the file's signature does not match this user's key; the file is
        then not unpickled.
    """
    with open(path, "rb") as f:
        blob = f.read()
    head = len(_SIGNED_TAG)
    mac = blob[head : head + _MAC_BYTES]
    payload = blob[head + _MAC_BYTES :]
    if not blob.startswith(_SIGNED_TAG) or not hmac.compare_digest(
        mac, _signature(signing_key(), payload)
    ):
        raise ValueError(
            "its signature does not match this user's step-signing key "
            f"({signing_key_path()}): it was written on another account or "
            "machine, or altered, and is not unpickled"
        )
    return joblib.load(io.BytesIO(payload))


class StepCache:
    """Folder of finished step results, and a manifest of what finished when.

    Parameters
    ----------
    folder : path-like
        Where the files go (created if missing).
    """

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        os.makedirs(self.folder, exist_ok=True)

    def path(self, name, key):
        """Return the file of step ``name`` with key ``key``."""
        return os.path.join(self.folder, f"{_file_stem(name)}-{key}.joblib")

    def load(self, name, key):
        """Return ``(found, record)`` for a finished step.

        A file that cannot be read back (damaged after it was written), or
        whose signature does not match this user's key (written elsewhere,
        or altered), is treated as missing, with a warning, and the step runs
        again. Only a file with a valid signature is unpickled.
        """
        path = self.path(name, key)
        if not os.path.exists(path):
            return False, None
        try:
            record = read_step_file(path)
            if not isinstance(record, dict) or record.get("key") != key:
                raise ValueError("the file does not hold this step's result")
        except Exception as exc:  # noqa: BLE001 - any damage means: recompute
            warnings.warn(
                f"Ignoring the unreadable cached step {path!r} ({exc}); it is "
                "computed again.",
                RuntimeWarning,
                stacklevel=2,
            )
            return False, None
        return True, record

    def save(self, name, key, record):
        """Write a step's record atomically, signed with this user's key."""
        buffer = io.BytesIO()
        joblib.dump(record, buffer)
        payload = buffer.getvalue()
        with atomic_writer(self.path(name, key)) as f:
            f.write(_SIGNED_TAG)
            f.write(_signature(signing_key(), payload))
            f.write(payload)

    def mark_finished(self, name, key, seconds, reused):
        """Record in the manifest that step ``name`` finished."""
        manifest_path = os.path.join(self.folder, _MANIFEST)
        manifest = {}
        if os.path.exists(manifest_path):
            try:
                manifest = read_json(manifest_path)
            except ValueError:
                manifest = {}
        manifest[name] = {
            "key": key,
            "seconds": round(float(seconds), 3),
            "reused": bool(reused),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        atomic_write_json(manifest_path, manifest)


def compute_and_save(cache, name, key, func, kwargs):
    """Run ``func(**kwargs)``, save its result under ``key`` and return the record.

    Runs inside joblib workers: the result is on disk as soon as the step is
    done, whatever happens to the other steps.
    """
    start = time.perf_counter()
    result = func(**kwargs)
    record = {
        "key": key,
        "step": name,
        "result": result,
        "seconds": time.perf_counter() - start,
    }
    cache.save(name, key, record)
    return record
