"""The paper's experiments, each a declarative spec run by one generic runner.

An experiment is an :class:`ExperimentSpec`: its data loader, presets, the
network trained at every poison factor, baselines, measures and figures.
:func:`run_experiment` runs any spec (or a shipped one by name): it trains
the models, measures them, draws every figure and writes ``summary.json``
and ``report.md`` to its output folder; the ``run_*`` functions are the
shipped specs with their arguments spelled out, and the ``flatgen`` command
line offers every spec in ``flatgen.experiments.specs``. Finished steps
are kept in ``out/steps``, so a run interrupted midway continues where it
stopped when run again with the same output folder.

Names are imported on first use, so the command line lists the experiments
without loading torch.
"""

import importlib

# Public name -> submodule that defines it.
_EXPORTS = {
    "ExperimentData": "_spec",
    "ExperimentResult": "_results",
    "ExperimentSpec": "_spec",
    "Flatness": "_results",
    "Margins": "_results",
    "Model": "_spec",
    "ModelScore": "_results",
    "Option": "_spec",
    "StepKey": "_spec",
    "get_spec": "specs",
    "granulated_taus": "_ranking",
    "rank_measures": "_ranking",
    "run_digits": "specs.digits",
    "run_experiment": "_experiment",
    "run_study": "specs.study",
    "run_svhn": "specs.svhn",
    "run_swissroll": "specs.swissroll",
    "spec_names": "specs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
