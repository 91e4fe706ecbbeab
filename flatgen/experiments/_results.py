"""Result objects of the experiments, saved to and loaded from JSON."""

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ..io import atomic_writer, read_json

_FORMAT = "flatgen.experiment"
_FORMAT_VERSION = 1


def _plain(value):
    """JSON data for ``value``; NaN and infinity become None (JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class ModelScore:
    """Accuracy of one fitted model.

    Attributes
    ----------
    name : str
        Model name, e.g. ``'net beta=0.3'`` or ``'SVC (rbf)'``.
    estimator : str
        Class name of the fitted estimator.
    poison_factor : float or None
        Poison factor of a network; None for baselines.
    train_accuracy, test_accuracy : float
        Accuracy on the training and the test set.
    generalization_gap : float
        ``train_accuracy - test_accuracy``.
    """

    name: str
    estimator: str
    poison_factor: float | None
    train_accuracy: float
    test_accuracy: float
    generalization_gap: float


@dataclass
class Flatness:
    """Flatness of one network's minimum.

    Attributes
    ----------
    name : str
        Model name.
    poison_factor : float
        Its poison factor.
    base_loss : float
        Training cross-entropy at the minimum.
    cutoffs : list of float
        Loss cutoffs of the basin.
    log10_volume : list of float or None
        log10 basin volume per cutoff; None where the cutoff does not clear
        the loss at the minimum.
    log10_volume_ci : list of [float, float] or None
        Confidence interval per cutoff (Monte-Carlo standard error over
        rays, see :class:`~flatgen.VolumeEstimator`).
    mean_log_radius, median_radius : list of float or None
        Radius summaries per cutoff (filter-normalized units).
    top_eigenvalue : float
        Top eigenvalue of the filter-normalized Hessian ("curv").
    hessian_trace : float or None
        Hutchinson estimate of its trace.
    n_dims : int or None
        Number of perturbed parameters.
    effective_sample_size : list of float or None
        Rays that carry each volume estimate; far below the number of rays,
        the interval is optimistic.
    capped_fraction : list of float or None
        Share of rays that reached the search cap, per cutoff.
    capped_volume_share : list of float or None
        Share of each volume estimate carried by those rays.
    """

    name: str
    poison_factor: float
    base_loss: float
    cutoffs: list
    log10_volume: list
    log10_volume_ci: list
    mean_log_radius: list
    median_radius: list
    top_eigenvalue: float
    hessian_trace: float | None
    n_dims: int | None
    effective_sample_size: list | None = None
    capped_fraction: list | None = None
    capped_volume_share: list | None = None


@dataclass
class Margins:
    """Input-space margins of one model.

    Attributes
    ----------
    name : str
        Model name.
    median_margin : float
        Median distance of the training points to the decision boundary.
    median_test_margin : float or None
        The same for the test points.
    capped_fraction : float
        Fraction of training points with no boundary within the search
        radius (their margin is that radius).
    """

    name: str
    median_margin: float
    median_test_margin: float | None
    capped_fraction: float


@dataclass
class ExperimentResult:
    """Numbers of one experiment run, as written to ``summary.json``.

    Attributes
    ----------
    experiment : str
        ``'swissroll'``, ``'digits'`` or ``'svhn'``.
    settings : dict
        Every setting of the run (sizes, poison factors, cutoffs, ...).
    seeds : dict
        ``random_state`` and the seed derived from it for each part.
    versions : dict
        Versions of Python, flatgen and its libraries.
    models : list of ModelScore
        Train and test accuracy of every fitted model.
    flatness : list of Flatness
        Basin volume and curvature of every network.
    margins : list of Margins
        Input-space margins (2-D data only).
    basin_radii : dict
        Mean basin radius at the cross-section cutoff, per network drawn.
    annealed_volumes : dict
        Per network measured by :class:`~flatgen.AnnealedVolumeEstimator`
        (the clean and the most poisoned in a full run): its cutoffs,
        log-volumes, intervals, each run's estimate and hysteresis, R-hat,
        whether the diagnostics passed, the share of star-shaped samples and
        of proposals refused at the cap, the cost and the warnings.
    spearman : dict
        Spearman rank correlation of log10 volume and generalization gap
        over the networks, per cutoff (None for fewer than 3 networks).
    perturbation : dict
        Per animated network: training loss and accuracy at the minimum and
        at the ends of the path, and the curvature along it.
    study : dict
        For a study over many models: ``models`` (each model's grid values,
        accuracies, gap and measures) and ``ranking`` (Kendall's tau of each
        measure with the gap, its bootstrap interval and the granulated
        taus per grid axis); empty otherwise.
    figures : dict
        File name of each figure, relative to the output folder.
    steps : dict
        Names of the steps computed in this run and of those reused from an
        earlier, interrupted one.
    timings : dict
        Seconds per step (as first computed) and the wall time of this run.
    """

    experiment: str
    settings: dict
    seeds: dict
    versions: dict
    models: list = field(default_factory=list)
    flatness: list = field(default_factory=list)
    margins: list = field(default_factory=list)
    basin_radii: dict = field(default_factory=dict)
    annealed_volumes: dict = field(default_factory=dict)
    spearman: dict = field(default_factory=dict)
    perturbation: dict = field(default_factory=dict)
    study: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    steps: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    _ROWS = {"models": ModelScore, "flatness": Flatness, "margins": Margins}
    _ADDED = frozenset({"study", "annealed_volumes"})

    def model(self, name):
        """Return the :class:`ModelScore` called ``name``.

        Parameters
        ----------
        name : str
            Model name, e.g. ``'net beta=1'`` or ``'SVC (rbf)'``.

        Returns
        -------
        score : ModelScore
            Its accuracies.
        """
        for row in self.models:
            if row.name == name:
                return row
        raise KeyError(
            f"No model {name!r}; models are {[m.name for m in self.models]}."
        )

    def to_dict(self):
        """Return the result as plain JSON data (NaN written as None).

        Returns
        -------
        data : dict
            What :meth:`to_json` writes.
        """
        data = {"format": _FORMAT, "format_version": _FORMAT_VERSION}
        data.update(_plain(asdict(self)))
        return data

    def to_json(self, path=None):
        """Return the result as JSON text; also write it to ``path`` atomically.

        Parameters
        ----------
        path : str or path-like, default=None
            File to write; the folder must exist. A process killed while
            writing leaves the previous file or none, never a partial one.

        Returns
        -------
        text : str
            The JSON document.
        """
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            with atomic_writer(path) as f:
                f.write(text.encode("utf-8"))
        return text

    @classmethod
    def from_dict(cls, data, source="data"):
        """Rebuild a result from :meth:`to_dict` output.

        Parameters
        ----------
        data : dict
            Decoded JSON of a result.
        source : str, default='data'
            Where ``data`` came from, for error messages.

        Returns
        -------
        result : ExperimentResult
            The result, with rows as :class:`ModelScore`, :class:`Flatness`
            and :class:`Margins`.

        Raises
        ------
        ValueError
            If ``data`` is not a flatgen experiment result; the message names
            ``source`` and what is wrong.
        """
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(
                f"{source} is not a flatgen experiment result: expected a JSON "
                f"object with format {_FORMAT!r}."
            )
        if data.get("format_version") != _FORMAT_VERSION:
            raise ValueError(
                f"{source} has experiment format version "
                f"{data.get('format_version')!r}; this flatgen reads version "
                f"{_FORMAT_VERSION}."
            )
        names = [f.name for f in fields(cls)]
        # Fields added after format version 1 may be absent from older files.
        missing = [n for n in names if n not in data and n not in cls._ADDED]
        if missing:
            raise ValueError(f"{source} lacks the field {missing[0]!r}.")
        values = {name: data[name] for name in names if name in data}
        for name, row_cls in cls._ROWS.items():
            try:
                values[name] = [row_cls(**row) for row in values.get(name, [])]
            except TypeError as exc:
                raise ValueError(
                    f"{source} has malformed {name!r} rows: {exc}"
                ) from exc
        return cls(**values)

    @classmethod
    def from_json(cls, path):
        """Load a result written by :meth:`to_json` (e.g. ``summary.json``).

        Parameters
        ----------
        path : str or path-like
            The JSON file.

        Returns
        -------
        result : ExperimentResult
            The result, with rows as :class:`ModelScore`, :class:`Flatness`
            and :class:`Margins`.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If the file is not valid JSON or not an experiment result.
        """
        path = os.fspath(path)
        return cls.from_dict(read_json(path), source=repr(path))
