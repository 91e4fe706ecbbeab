"""VolumeConvergenceDisplay: a volume estimate against the number of rays."""

import warnings

import numpy as np
from sklearn.exceptions import NotFittedError

from ._basin import OKABE_ITO, _as_float_array


class VolumeConvergenceDisplay:
    """Running log-volume estimate and its interval against the number of rays.

    A trustworthy estimate levels off and its interval narrows like
    ``1/sqrt(M)``; jumps late in the curve mean that single rays still set
    the estimate (look at the effective sample size). Holds arrays only;
    :meth:`plot` draws them.

    Parameters
    ----------
    n_directions : array-like of shape (n_checkpoints,)
        Numbers of rays.
    log10_volume : array-like of shape (n_checkpoints,)
        Estimate from the first ``n_directions[j]`` rays.
    log10_volume_ci : array-like of shape (n_checkpoints, 2), default=None
        Intervals of those estimates.
    label : str, default=None
        Legend label.
    space : str, default=None
        Coordinates of the volume, for the axis label.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes drawn on.
    figure_ : matplotlib Figure
        Figure drawn on.
    line_ : matplotlib Line2D
        The running estimate.

    Examples
    --------
    >>> from flatgen import VolumeConvergenceDisplay
    >>> display = VolumeConvergenceDisplay([10, 100, 1000], [-52.0, -51.2, -51.1])
    >>> display.plot().ax_.get_xscale()
    'log'
    """

    def __init__(
        self, n_directions, log10_volume, log10_volume_ci=None, label=None, space=None
    ):
        self.n_directions = _as_float_array("n_directions", n_directions, ndim=1)
        self.log10_volume = _as_float_array("log10_volume", log10_volume, ndim=1)
        if len(self.log10_volume) != len(self.n_directions):
            raise ValueError(
                "log10_volume must have one value per entry of n_directions "
                f"({len(self.n_directions)}); got {len(self.log10_volume)}."
            )
        self.log10_volume_ci = None
        if log10_volume_ci is not None:
            ci = np.asarray(log10_volume_ci, dtype=float)
            if ci.shape != (len(self.n_directions), 2):
                raise ValueError(
                    f"log10_volume_ci must have shape ({len(self.n_directions)}, 2); "
                    f"got {ci.shape}."
                )
            self.log10_volume_ci = ci
        self.label = label
        self.space = space

    @classmethod
    def from_estimator(
        cls, estimator, X=None, y=None, *, cutoff_index=0, label=None, **params
    ):
        """Measure a model with a new VolumeEstimator, then build the display.

        The same as ``from_analyzer(VolumeEstimator(**params).fit(estimator, X, y))``.

        Parameters
        ----------
        estimator : fitted model
            Any model the analyzers accept (see :ref:`any-model`); not
            modified.
        X : array-like or DataLoader
            Training inputs (or batches, where the analyzer takes them).
        y : array-like of shape (n_samples,) or None
            Training labels.
        cutoff_index : int, default=0
            Which cutoff to show.
        label : str, default=None
            Legend label; the cutoff by default.
        **params
            Hyperparameters of the :class:`~flatgen.VolumeEstimator`
            (e.g. ``cutoff``, ``n_directions``, ``method``).

        Returns
        -------
        display : VolumeConvergenceDisplay
            Not yet drawn; call :meth:`plot`.
        """
        from ..analyzers import VolumeEstimator

        if isinstance(estimator, VolumeEstimator) and X is None and y is None:
            warnings.warn(
                "VolumeConvergenceDisplay.from_estimator(volume_estimator) is now "
                "VolumeConvergenceDisplay.from_analyzer(volume_estimator); "
                "from_estimator measures a model: from_estimator(model, X, y, "
                "**params).",
                FutureWarning,
                stacklevel=2,
            )
            return cls.from_analyzer(estimator, cutoff_index=cutoff_index, label=label)
        analyzer = VolumeEstimator(**params).fit(estimator, X, y)
        return cls.from_analyzer(analyzer, cutoff_index=cutoff_index, label=label)

    @classmethod
    def from_analyzer(cls, volume_estimator, *, cutoff_index=0, label=None):
        """Build the display from a fitted :class:`~flatgen.VolumeEstimator`.

        Parameters
        ----------
        volume_estimator : VolumeEstimator
            Fitted estimator.
        cutoff_index : int, default=0
            Which cutoff to show.
        label : str, default=None
            Legend label; the cutoff by default.

        Returns
        -------
        display : VolumeConvergenceDisplay
            Not yet drawn; call :meth:`plot`.
        """
        if not hasattr(volume_estimator, "convergence_log10_volume_"):
            raise NotFittedError(
                f"This {type(volume_estimator).__name__} instance is not fitted yet "
                "(no convergence_log10_volume_). Call 'fit' first."
            )
        n_cutoffs = len(volume_estimator.cutoffs_)
        if not -n_cutoffs <= cutoff_index < n_cutoffs:
            raise ValueError(
                f"cutoff_index must be in [0, {n_cutoffs}). Got {cutoff_index!r} "
                "instead."
            )
        if label is None:
            label = f"cutoff {volume_estimator.cutoffs_[cutoff_index]:.3g}"
        return cls(
            volume_estimator.convergence_n_directions_,
            volume_estimator.convergence_log10_volume_[cutoff_index],
            volume_estimator.convergence_log10_volume_ci_[cutoff_index],
            label=label,
            space=volume_estimator.space_,
        )

    def plot(self, ax=None, *, color=None, show_ci=True, **line_kwargs):
        """Draw the running estimate (and its interval band).

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        color : color, default=None
            Line colour; the first of the Okabe-Ito palette if None.
        show_ci : bool, default=True
            Shade the intervals.
        **line_kwargs
            Passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        self : VolumeConvergenceDisplay
            With ``ax_``, ``figure_`` and ``line_`` set.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        color = OKABE_ITO[0] if color is None else color
        (self.line_,) = ax.plot(
            self.n_directions,
            self.log10_volume,
            marker="o",
            markersize=3,
            color=color,
            label=self.label,
            **line_kwargs,
        )
        if show_ci and self.log10_volume_ci is not None:
            ax.fill_between(
                self.n_directions,
                self.log10_volume_ci[:, 0],
                self.log10_volume_ci[:, 1],
                color=color,
                alpha=0.2,
                linewidth=0,
            )
        ax.set_xscale("log")
        ax.set_xlabel("number of rays")
        where = f" ({self.space.replace('_', '-')})" if self.space else ""
        ax.set_ylabel(f"log10 basin volume{where}")
        if self.label is not None:
            ax.legend()
        self.ax_, self.figure_ = ax, ax.figure
        return self
