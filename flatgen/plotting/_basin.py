"""BasinDisplay: basin cross-sections (loss vs distance along directions)."""

from numbers import Real

import numpy as np
from sklearn.exceptions import NotFittedError

# Okabe-Ito palette: distinguishable with colour-vision deficiencies.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9")


class BasinDisplay:
    """Basin cross-sections: training loss along random directions.

    Holds the arrays an analyzer computed; :meth:`plot` only draws, so a
    figure can be redrawn from saved results. Create it with
    :meth:`from_analyzer` or :meth:`flatgen.BasinAnalyzer.plot`.

    Parameters
    ----------
    distances : ndarray of shape (n_points,)
        Distances along each direction, in filter-normalized units.
    losses : ndarray of shape (n_profiles, n_points)
        Training loss at each distance along each profiled direction.
    radii : ndarray of shape (n_directions,)
        Basin radius along every direction (the first ``n_profiles`` belong
        to the drawn profiles).
    cutoff : float
        Loss level that ends the basin.
    base_loss : float, default=None
        Loss at the minimum.
    label : str, default=None
        Legend label of the profiles.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes drawn on.
    figure_ : matplotlib Figure
        Figure drawn on.
    lines_ : list of matplotlib Line2D
        The profile curves.

    Examples
    --------
    >>> import numpy as np
    >>> from flatgen import BasinDisplay
    >>> distances = np.linspace(0, 0.2, 21)
    >>> losses = 0.01 + np.array([[20.0], [40.0]]) * distances**2
    >>> display = BasinDisplay(distances, losses, radii=[0.067, 0.047], cutoff=0.1)
    >>> display.plot().ax_.get_xlabel()
    'distance along direction (filter-normalized units)'
    """

    def __init__(self, distances, losses, radii, cutoff, base_loss=None, label=None):
        self.distances = _as_float_array("distances", distances, ndim=1)
        self.losses = _as_float_array("losses", losses, ndim=2, allow_inf=True)
        self.radii = _as_float_array("radii", radii, ndim=1)
        if self.losses.shape[1] != len(self.distances):
            raise ValueError(
                f"losses must have one column per distance ({len(self.distances)}); "
                f"got shape {self.losses.shape}."
            )
        if len(self.radii) < len(self.losses):
            raise ValueError(
                f"radii must hold at least one radius per profile "
                f"({len(self.losses)}); got {len(self.radii)}."
            )
        for name, value in [("cutoff", cutoff), ("base_loss", base_loss)]:
            if value is None and name == "base_loss":
                continue
            if not isinstance(value, Real) or not np.isfinite(value) or value < 0:
                raise ValueError(
                    f"{name} must be a finite non-negative number. Got {value!r} "
                    "instead."
                )
        self.cutoff = cutoff
        self.base_loss = base_loss
        self.label = label

    @classmethod
    def from_estimator(cls, estimator, X, y, *, label=None, **params):
        """Measure a model with a new BasinAnalyzer, then build the display.

        The same as ``from_analyzer(BasinAnalyzer(**params).fit(estimator, X, y))``.

        Parameters
        ----------
        estimator : fitted model
            Any model the analyzers accept (see :ref:`any-model`); not
            modified.
        X : array-like or DataLoader
            Training inputs (or batches, where the analyzer takes them).
        y : array-like of shape (n_samples,) or None
            Training labels.
        label : str, default=None
            Legend label.
        **params
            Hyperparameters of the :class:`~flatgen.BasinAnalyzer`
            (e.g. ``cutoff``, ``n_directions``, ``random_state``).

        Returns
        -------
        display : BasinDisplay
            Not yet drawn; call :meth:`plot`.
        """
        from ..analyzers import BasinAnalyzer

        analyzer = BasinAnalyzer(**params).fit(estimator, X, y)
        return cls.from_analyzer(analyzer, label=label)

    @classmethod
    def from_analyzer(cls, analyzer, label=None):
        """Build the display from a fitted :class:`~flatgen.BasinAnalyzer`.

        Parameters
        ----------
        analyzer : BasinAnalyzer
            Fitted analyzer.
        label : str, default=None
            Legend label.

        Returns
        -------
        display : BasinDisplay
            Not yet drawn; call :meth:`plot`.
        """
        needed = ("profile_distances_", "profile_losses_", "radii_", "cutoff_")
        if not all(hasattr(analyzer, name) for name in needed):
            if hasattr(analyzer, "n_profiles"):
                raise NotFittedError(
                    f"This {type(analyzer).__name__} instance is not fitted yet. "
                    "Call 'fit' before BasinDisplay.from_analyzer."
                )
            raise TypeError(
                "BasinDisplay.from_analyzer needs a fitted BasinAnalyzer; got "
                f"{type(analyzer).__name__}, which has no loss profiles."
            )
        return cls(
            analyzer.profile_distances_,
            analyzer.profile_losses_,
            analyzer.radii_,
            analyzer.cutoff_,
            analyzer.base_loss_,
            label,
        )

    def plot(self, ax=None, *, color=None, log_scale=True, **line_kwargs):
        """Draw the cross-sections, the cutoff line and the radii.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        color : color, default=None
            Colour of the curves; the first of the Okabe-Ito palette if None.
        log_scale : bool, default=True
            Logarithmic loss axis: losses near a minimum span many decades.
        **line_kwargs
            Passed to :meth:`matplotlib.axes.Axes.plot`.

        Returns
        -------
        self : BasinDisplay
            With ``ax_``, ``figure_`` and ``lines_`` set.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        color = OKABE_ITO[0] if color is None else color
        style = {"color": color, "alpha": 0.6, "linewidth": 1.0, **line_kwargs}
        self.lines_ = []
        for i, losses in enumerate(self.losses):
            label = self.label if i == 0 else None
            self.lines_.extend(ax.plot(self.distances, losses, label=label, **style))
        n_profiles = len(self.losses)
        ax.plot(
            self.radii[:n_profiles],
            np.full(n_profiles, self.cutoff),
            "o",
            color=color,
            markersize=4,
        )
        ax.axhline(self.cutoff, color="0.3", linestyle="--", linewidth=1)
        # Anchored to the right edge of the axes, so displays drawn on the
        # same axes with the same cutoff put their labels on top of each other.
        ax.annotate(
            f"cutoff {self.cutoff:.3g}",
            (0.99, self.cutoff),
            xycoords=ax.get_yaxis_transform(),
            textcoords="offset points",
            xytext=(0, 4),
            ha="right",
            fontsize="small",
            color="0.3",
        )
        if log_scale:
            ax.set_yscale("log")
        ax.set_xlabel("distance along direction (filter-normalized units)")
        ax.set_ylabel("training cross-entropy")
        if self.label is not None:
            ax.legend()
        self.ax_, self.figure_ = ax, ax.figure
        return self


def _as_float_array(name, values, *, ndim, allow_inf=False):
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers.") from None
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D; got shape {array.shape}.")
    bad = np.isnan(array) if allow_inf else ~np.isfinite(array)
    if np.any(bad):
        what = "NaN" if allow_inf else "NaN or infinity"
        raise ValueError(f"{name} must not contain {what}.")
    return array
