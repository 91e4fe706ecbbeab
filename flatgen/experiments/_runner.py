"""Run an experiment's steps in parallel, reusing the ones a previous run finished."""

import itertools
import os
import platform
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from .._torch_utils import resolve_device
from ._cache import StepCache, compute_and_save, step_key

# Folder inside --out that holds the finished steps.
STEPS_FOLDER = "steps"


@dataclass
class Step:
    """One unit of work: a function, its arguments and what determines its result.

    Parameters
    ----------
    name : StepKey or str
        Unique within the experiment, e.g. ``StepKey('fit', 'net beta=0.3')``;
        its text names the step's file.
    func : callable
        Module-level function (joblib workers must be able to import it).
    kwargs : dict
        Its keyword arguments.
    settings : dict
        Everything besides the data and ``depends`` that determines the
        result; part of the cache key.
    depends : tuple of StepKey or str, default=()
        Names of earlier steps whose results are in ``kwargs``.
    parallel_inside : bool, default=False
        Whether ``func`` takes ``n_jobs`` and spreads its own work over
        that many workers (the annealed volume's runs). Such steps run
        after the others, one at a time, each with all the runner's
        workers; ``n_jobs`` is not part of the cache key (the result does
        not depend on it).
    """

    name: str
    func: object
    kwargs: dict
    settings: dict
    depends: tuple = field(default_factory=tuple)
    parallel_inside: bool = False


class StepRunner:
    """Runs steps through joblib; every finished step is saved at once.

    Parameters
    ----------
    out : path-like
        Output folder of the experiment; steps go to ``out/steps``.
    data_key : str
        Fingerprint of the experiment's data, part of every key.
    n_jobs : int or None
        joblib workers over the steps of one stage.
    verbose : int
        Progress bars when positive.
    """

    def __init__(self, out, *, data_key, n_jobs, verbose):
        self.cache = StepCache(os.path.join(os.fspath(out), STEPS_FOLDER))
        self.data_key = data_key
        self.n_jobs = capped_n_jobs(n_jobs)
        self.verbose = verbose
        self.keys = {}
        self.seconds = {}
        self.reused = []
        self.computed = []

    def _key(self, step):
        unknown = [name for name in step.depends if name not in self.keys]
        if unknown:
            raise RuntimeError(f"Step {step.name!r} depends on unknown {unknown}.")
        depends = [self.data_key] + [self.keys[name] for name in step.depends]
        return step_key(str(step.name), step.settings, depends)

    def alias(self, name, of):
        """Key the part ``name`` of the result of step ``of`` (a batch's models).

        Steps that depend on ``name`` then follow ``of``'s key.
        """
        self.keys[name] = step_key(str(name), {}, [self.keys[of]])

    def run(self, steps, desc):
        """Run ``steps`` (independent of each other); return their results by name.

        Finished steps of earlier runs with the same key are loaded instead
        of computed. The others run in parallel, each saving its result as
        soon as it is done, so an interruption loses only unfinished steps.
        """
        results, todo = {}, []
        for step in steps:
            key = self.keys[step.name] = self._key(step)
            text = str(step.name)
            found, record = self.cache.load(text, key)
            if found:
                results[step.name] = record["result"]
                self.seconds[text] = record["seconds"]
                self.reused.append(text)
                self.cache.mark_finished(text, key, record["seconds"], True)
            else:
                todo.append(step)
        if not todo:
            return results
        pooled = [step for step in todo if not step.parallel_inside]

        # A step that spreads its own work over workers gets them all, one
        # such step at a time: one worker each would leave the pool idle
        # behind the slowest (the poisoned net's annealed runs take about
        # twice the clean net's).
        def one_at_a_time():
            for step in todo:
                if step.parallel_inside:
                    kwargs = {**step.kwargs, "n_jobs": self.n_jobs}
                    key = self.keys[step.name]
                    yield compute_and_save(
                        self.cache, str(step.name), key, step.func, kwargs
                    )

        tasks = (
            delayed(compute_and_save)(
                self.cache, str(step.name), self.keys[step.name], step.func, step.kwargs
            )
            for step in pooled
        )
        # Never more workers than steps: each one starts a torch runtime.
        n_jobs = min(self.n_jobs, len(pooled))
        records = (
            Parallel(n_jobs=n_jobs, return_as="generator_unordered")(tasks)
            if pooled
            else iter(())
        )
        records = itertools.chain(records, one_at_a_time())
        bar = tqdm(
            records,
            total=len(todo),
            desc=desc,
            unit="step",
            disable=not self.verbose,
            leave=False,
        )
        by_key = {self.keys[step.name]: step.name for step in todo}
        for record in bar:
            results[by_key[record["key"]]] = record["result"]
            text = record["step"]
            self.seconds[text] = record["seconds"]
            self.computed.append(text)
            self.cache.mark_finished(text, record["key"], record["seconds"], False)
        return results


def prepare_out(out):
    """Create ``out``, check that files can be written there, drop an old summary.

    ``summary.json`` is written last, when a run has finished; a summary of
    an earlier run is removed first so that it cannot pass for this one's.

    Raises
    ------
    ValueError
        Naming the folder and the reason, when it cannot be created or
        written to.
    """
    if out is None:
        raise ValueError("`out` must be a folder for the results. Got None instead.")
    out = os.fspath(out)
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(
            f"Cannot write results to {out!r}: {reason}. Choose a writable folder "
            "with --out."
        ) from exc
    summary = os.path.join(out, "summary.json")
    if os.path.exists(summary):
        os.unlink(summary)
    return out


def check_common(random_state, n_jobs, device):
    """Validate the arguments every experiment takes; return the seed as an int.

    A ``random_state`` of None draws a seed from the operating system; it
    is returned (and recorded in the summary) so the run can be repeated.
    """
    if random_state is None:
        random_state = int(np.random.SeedSequence().entropy % (2**31 - 1))
    if isinstance(random_state, bool) or not isinstance(
        random_state, (int, np.integer)
    ):
        raise ValueError(
            "`random_state` must be an int or None (the summary records the seed). "
            f"Got {random_state!r} instead."
        )
    if not 0 <= random_state < 2**32:
        raise ValueError(
            "`random_state` must be between 0 and 2**32 - 1. "
            f"Got {random_state} instead."
        )
    if n_jobs is not None and (
        isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer))
    ):
        raise ValueError(f"`n_jobs` must be an int or None. Got {n_jobs!r} instead.")
    if n_jobs == 0:
        raise ValueError("`n_jobs` must not be 0 (use 1, or -1 for all cores).")
    resolve_device(device)
    return int(random_state)


def usable_cores():
    """Return the number of CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def capped_n_jobs(n_jobs):
    """Return the worker count for ``n_jobs``, at most the usable cores.

    None means 1 and -1 all cores (joblib's convention). A larger number
    than the cores is capped with a warning: every worker holds a torch
    runtime and a copy of the data (hundreds of MB), so extra workers only
    cost memory and time.
    """
    cores = usable_cores()
    if n_jobs is None:
        return 1
    if n_jobs < 0:
        return max(1, cores + 1 + int(n_jobs))
    if n_jobs > cores:
        warnings.warn(
            f"`n_jobs`={n_jobs} is more than the {cores} usable CPU cores; "
            f"using {cores}.",
            UserWarning,
            stacklevel=3,
        )
        return cores
    return int(n_jobs)


def check_positive(name, value, *, allow_none=False):
    """Raise a ValueError naming ``name`` unless ``value`` is a positive int."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"`{name}` must be a positive int. Got {value!r} instead.")
    if value < 1:
        raise ValueError(f"`{name}` must be a positive int. Got {value} instead.")
    return int(value)


def derive_seeds(random_state, names):
    """Return one int seed per name, drawn from ``random_state`` in order.

    Each part of an experiment (data split, network initialization,
    directions, ...) gets its own seed, so that results do not depend on the
    order in which steps run.
    """
    rng = np.random.RandomState(random_state)
    return {name: int(rng.randint(np.iinfo(np.int32).max)) for name in names}


def versions():
    """Return the versions of Python, flatgen and the libraries it uses."""
    found = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    for package in ("flatgen", "torch", "numpy", "scipy", "scikit-learn", "skorch"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found
