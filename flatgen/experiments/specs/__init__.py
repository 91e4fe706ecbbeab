"""The experiments that ship with flatgen, one module each.

Every module here defines ``SPEC``, an
:class:`~flatgen.experiments.ExperimentSpec`, and is found by name: a new
experiment is a new module (its spec and its data loader), and the
``flatgen`` command and :func:`~flatgen.experiments.run_experiment` know it
at once. Spec modules import torch only inside their functions, so listing
the experiments costs milliseconds.
"""

import importlib
import pkgutil


def spec_names():
    """Return the names of the shipped experiments, sorted.

    Returns
    -------
    names : list of str
        Module names under ``flatgen.experiments.specs`` (those starting
        with an underscore hold shared pieces, not experiments).
    """
    return sorted(
        info.name
        for info in pkgutil.iter_modules(__path__)
        if not info.ispkg and not info.name.startswith("_")
    )


def get_spec(name):
    """Return the spec of the shipped experiment ``name``.

    Parameters
    ----------
    name : str
        E.g. ``'swissroll'``.

    Returns
    -------
    spec : ExperimentSpec
        The experiment.

    Raises
    ------
    ValueError
        If no experiment has that name; the message lists those that do.
    """
    names = spec_names()
    if name not in names:
        raise ValueError(f"No experiment {name!r}; experiments are {names}.")
    return importlib.import_module(f"{__name__}.{name}").SPEC
