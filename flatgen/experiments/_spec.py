"""What an experiment is, as data: the spec the generic runner executes.

An experiment names its data loader, its presets, the network trained at
every poison factor, its baselines, the measures taken of the models and the
figures drawn from them. Everything else (seeding, caching, parallel steps,
the summary and the report) is the same for every experiment and lives in
:mod:`flatgen.experiments._experiment`. Nothing here imports torch, so the
command line can list the experiments and their options at once.
"""

from dataclasses import dataclass, field

import numpy as np

# The measures that take a run's ``annealed_cutoffs`` (the command line
# offers --annealed-cutoffs to the experiments that take one of them).
ANNEALED_MEASURES = ("annealed_volume", "study_volume")


@dataclass(frozen=True)
class StepKey:
    """Name of one step: what is done (``'fit'`` or a measure) to which model.

    Attributes
    ----------
    stage : str
        ``'fit'`` or the name of a measure (``'flatness'``, ``'basin'``, ...).
    model : str
        Name of the model, e.g. ``'net beta=0.3'`` or ``'SVC (rbf)'``.
    """

    stage: str
    model: str

    def __str__(self):
        return f"{self.stage} {self.model}"


@dataclass(frozen=True)
class Option:
    """An argument of one experiment beyond the common ones (e.g. a data folder).

    Attributes
    ----------
    name : str
        Keyword of the run function and of the data loader; the command line
        spells it with dashes (``data_dir`` -> ``--data-dir``).
    help : str
        One line for ``--help``.
    default : object, default=None
        Value when not given.
    required : bool, default=False
        Whether the command line requires it.
    choices : tuple, default=None
        Allowed values, if only a few.
    positive_int : bool, default=False
        Whether it is a count (the command line checks it).
    """

    name: str
    help: str
    default: object = None
    required: bool = False
    choices: tuple | None = None
    positive_int: bool = False


@dataclass
class ExperimentData:
    """The arrays of one run, as the data loader returns them.

    Attributes
    ----------
    X_train, y_train, X_test, y_test : ndarray
        Training and test set.
    pool : tuple of (X, y) or None, default=None
        Extra points of the training distribution the networks draw their
        poison set from; None lets them jitter around the training points.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    pool: tuple | None = None

    def arrays(self):
        """Return every array, in a fixed order (for the data fingerprint).

        Returns
        -------
        arrays : list of ndarray
            Training and test arrays, then the pool's.
        """
        arrays = [self.X_train, self.y_train, self.X_test, self.y_test]
        return arrays + ([] if self.pool is None else list(self.pool))


@dataclass
class Model:
    """One model of a run: a network of the sweep or a baseline.

    Attributes
    ----------
    name : str
        Name in tables and the summary (``'net beta=0.3'``, ``'SVC (rbf)'``).
    estimator : estimator
        Unfitted.
    settings : dict
        What determines the fitted model besides the data (its cache key).
    poison_factor : float or None, default=None
        A network's poison factor; None for a baseline.
    label : str, default=None
        Short name in legends (``'clean net'``); ``name`` when None.
    title : str, default=None
        Axes title in figures of this model alone; ``label`` when None.
    flat_inputs : bool, default=False
        Whether the model sees each sample as one row (an SVC on images).
    params : dict, default={}
        The model's values of a grid's axes (``{'width': 64, ...}``), for
        analyses per hyperparameter.
    family : str, default=None
        The model family of a grid with several (``'mlp'``, ``'cnn'``): the
        study ranks measures per family and pooled.
    data : ExperimentData, default=None
        The model's own training and test data, when a grid's families
        learn different tasks; the run's data when None.
    """

    name: str
    estimator: object
    settings: dict
    poison_factor: float | None = None
    label: str | None = None
    title: str | None = None
    flat_inputs: bool = False
    params: dict = field(default_factory=dict)
    family: str | None = None
    data: ExperimentData | None = None

    @property
    def is_network(self):
        """Whether this is a network of the poison sweep (not a baseline)."""
        return self.poison_factor is not None

    def inputs(self, X):
        """Return ``X`` as this model takes it.

        Parameters
        ----------
        X : ndarray of shape (n_samples, ...)
            Samples of the experiment's data.

        Returns
        -------
        X : ndarray
            ``X``, or one row per sample when ``flat_inputs``.
        """
        return X.reshape(len(X), -1) if self.flat_inputs else X


@dataclass(frozen=True)
class ExperimentSpec:
    """An experiment as data; :func:`run_experiment` runs any of them.

    Attributes
    ----------
    name : str
        Command-line name and ``experiment`` field of the summary.
    help : str
        One line for ``flatgen --help``.
    description : str
        What the command does, for ``flatgen NAME --help``.
    full, quick : dict
        Settings of the full run and of ``--quick`` (toy sizes).
    seeds : tuple of str
        Parts that get their own seed, derived from ``random_state`` in this
        order (``'network'``, ``'directions'`` ... as the measures need).
    load : callable
        ``load(settings, seeds, **options) -> ExperimentData``; reads or
        draws the data (it may record more settings, e.g. a pool size).
    measures : tuple of str
        Names of the measures taken (see ``MEASURES``), in report order.
    figures : tuple of str
        Names of the figures drawn (see ``FIGURES``), in report order.
    network : callable, default=None
        ``network(settings, seeds, data, device) -> estimator``: the unfitted
        network; the runner fits a clone at every poison factor (same
        initial weights, same poison draws).
    baselines : callable, default=None
        ``baselines(settings, seeds, data) -> list of Model``.
    models : callable, default=None
        ``models(settings, seeds, data, device) -> list of Model``: every
        model of a grid, instead of ``network`` and ``baselines``.
    model_label : str, default='net'
        What the networks are called in legends (``'net'``, ``'CNN'``).
    sweep_title, volume_title : str, default=''
        Titles of the sweep and the volume-vs-gap figures; ``{n_train}`` is
        replaced by the number of training points.
    paper : str, default=''
        What the paper reports, quoted in ``report.md``.
    options : tuple of Option, default=()
        Arguments beyond the common ones, passed to ``load``.
    """

    name: str
    help: str
    description: str
    full: dict
    quick: dict
    seeds: tuple
    load: object
    measures: tuple
    figures: tuple
    network: object = None
    baselines: object = None
    models: object = None
    model_label: str = "net"
    sweep_title: str = ""
    volume_title: str = ""
    paper: str = ""
    options: tuple = field(default_factory=tuple)
