"""The paper's experiments as functions, each writing a folder of results.

Each ``run_*`` function trains the models, measures them, draws every
figure and writes ``summary.json`` and ``report.md`` to its output folder;
the ``flatgen`` command line calls them. Finished steps are kept in
``out/steps``, so a run interrupted midway continues where it stopped when
run again with the same output folder.
"""

from ._digits import run_digits
from ._results import ExperimentResult, Flatness, Margins, ModelScore
from ._svhn import run_svhn
from ._swissroll import run_swissroll

__all__ = [
    "ExperimentResult",
    "Flatness",
    "Margins",
    "ModelScore",
    "run_digits",
    "run_svhn",
    "run_swissroll",
]
