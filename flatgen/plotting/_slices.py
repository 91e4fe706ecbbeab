"""LossSliceDisplay: training loss along a line or over a plane of weights."""

import numpy as np

from ._basin import OKABE_ITO

_UNITS = "filter-normalized units"


def _positive_range(values):
    """Smallest positive and largest finite value, for a logarithmic scale."""
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    if positive.size == 0:
        raise ValueError(
            "log_scale=True needs positive finite losses; use log_scale=False."
        )
    return positive.min(), positive.max()


class LossSliceDisplay:
    """Training loss on a 1-D or 2-D slice through a minimum.

    Holds the arrays an analyzer computed; :meth:`plot` only draws, so a
    figure can be redrawn from saved results. Create it with
    :meth:`from_analyzer` or :meth:`flatgen.LossSlice.plot`.

    Parameters
    ----------
    distances : ndarray of shape (resolution,)
        Grid values along each direction, in filter-normalized units.
    losses : ndarray of shape (resolution,) or (resolution, resolution)
        Training loss; in 2-D, ``losses[i, j]`` is at
        ``distances[i]`` along the first direction and ``distances[j]``
        along the second.
    accuracies : ndarray of the same shape as ``losses``, default=None
        Training accuracy, drawn on a twin axis of a 1-D slice.
    base_loss : float, default=None
        Loss at the minimum.
    label : str, default=None
        Legend label (1-D) or title (2-D).
    loss_name : str, default='cross-entropy'
        The loss, named on the loss axis (or colour bar) as ``'training
        <loss_name>'``.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes drawn on.
    figure_ : matplotlib Figure
        Figure drawn on.
    line_ : matplotlib Line2D
        The loss curve (1-D only).
    accuracy_ax_ : matplotlib Axes or None
        Twin axis of the accuracy curve (1-D with ``show_accuracy``).
    accuracy_line_ : matplotlib Line2D or None
        The accuracy curve.
    contour_ : matplotlib QuadContourSet
        Filled contours (2-D only).
    colorbar_ : matplotlib Colorbar or None
        Colour bar of the 2-D slice.

    Examples
    --------
    >>> import numpy as np
    >>> from flatgen.plotting import LossSliceDisplay
    >>> distances = np.linspace(-1, 1, 21)
    >>> disp = LossSliceDisplay(distances, 0.1 + distances**2).plot()
    >>> disp.ax_.get_xlabel()
    'distance along direction (filter-normalized units)'
    """

    def __init__(
        self,
        distances,
        losses,
        accuracies=None,
        base_loss=None,
        label=None,
        loss_name="cross-entropy",
    ):
        self.loss_name = loss_name
        self.distances = np.asarray(distances, dtype=float)
        self.losses = np.asarray(losses, dtype=float)
        self.accuracies = None if accuracies is None else np.asarray(accuracies)
        self.base_loss = base_loss
        self.label = label

    @classmethod
    def from_estimator(cls, estimator, X, y, *, label=None, **params):
        """Measure a model with a new LossSlice, then build the display.

        The same as ``from_analyzer(LossSlice(**params).fit(estimator, X, y))``.

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
            Hyperparameters of the :class:`~flatgen.LossSlice`
            (e.g. ``n_dims``, ``span``, ``resolution``).

        Returns
        -------
        display : LossSliceDisplay
            Not yet drawn; call :meth:`plot`.
        """
        from ..analyzers import LossSlice

        analyzer = LossSlice(**params).fit(estimator, X, y)
        return cls.from_analyzer(analyzer, label=label)

    @classmethod
    def from_analyzer(cls, analyzer, label=None):
        """Build the display from a fitted :class:`~flatgen.LossSlice`.

        Parameters
        ----------
        analyzer : LossSlice
            Fitted analyzer (or one loaded with :func:`flatgen.io.load_results`).
        label : str, default=None
            Legend label (1-D) or title (2-D).

        Returns
        -------
        display : LossSliceDisplay
            Not yet drawn; call :meth:`plot`.
        """
        return cls(
            analyzer.distances_,
            analyzer.losses_,
            analyzer.accuracies_,
            analyzer.base_loss_,
            label,
            # Results saved before the loss was recorded were all cross-entropy.
            getattr(analyzer, "loss_name_", "cross-entropy"),
        )

    def _check(self):
        n = len(self.distances)
        if self.distances.ndim != 1 or self.losses.shape not in {(n,), (n, n)}:
            raise ValueError(
                f"losses must have shape ({n},) or ({n}, {n}) for {n} distances. "
                f"Got {self.losses.shape} instead."
            )
        if self.accuracies is not None and self.accuracies.shape != self.losses.shape:
            raise ValueError(
                f"accuracies must have the shape of losses, {self.losses.shape}. "
                f"Got {self.accuracies.shape} instead."
            )

    def plot(
        self,
        ax=None,
        *,
        log_scale=True,
        show_accuracy=False,
        color=None,
        cmap="viridis",
        levels=15,
        loss_range=None,
        **kwargs,
    ):
        """Draw the slice.

        A 1-D slice is a loss curve (and, with ``show_accuracy``, the
        accuracy on a twin axis); a 2-D slice is filled contours with
        contour lines and a marker at the minimum.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        log_scale : bool, default=True
            Logarithmic loss axis (1-D) or colour scale (2-D): near a sharp
            minimum the loss spans many decades.
        show_accuracy : bool, default=False
            Draw the training accuracy on a twin axis (1-D only).
        color : color, default=None
            Colour of the loss curve (1-D); the first Okabe-Ito colour if None.
        cmap : str or Colormap, default='viridis'
            Colour map of a 2-D slice (viridis is perceptually uniform and
            readable with colour-vision deficiencies).
        levels : int, default=15
            Number of filled contour levels of a 2-D slice.
        loss_range : tuple of float (low, high), default=None
            Loss range of the colour scale of a 2-D slice; pass the same
            range to several displays to compare them on one scale. By
            default the range of this slice's losses.
        **kwargs
            Passed to :meth:`matplotlib.axes.Axes.plot` (1-D) or
            :meth:`matplotlib.axes.Axes.contourf` (2-D).

        Returns
        -------
        self : LossSliceDisplay
            With ``ax_`` and ``figure_`` set.
        """
        import matplotlib.pyplot as plt

        self._check()
        if ax is None:
            _, ax = plt.subplots(layout="constrained")
        self.line_ = self.contour_ = self.colorbar_ = None
        self.accuracy_ax_ = self.accuracy_line_ = None
        if self.losses.ndim == 1:
            self._plot_line(ax, log_scale, show_accuracy, color, kwargs)
        else:
            self._plot_plane(ax, log_scale, cmap, levels, loss_range, kwargs)
        self.ax_, self.figure_ = ax, ax.figure
        return self

    def _plot_line(self, ax, log_scale, show_accuracy, color, kwargs):
        color = OKABE_ITO[0] if color is None else color
        style = {"color": color, "linewidth": 1.5, **kwargs}
        (self.line_,) = ax.plot(
            self.distances, self.losses, label=self.label or self.loss_name, **style
        )
        if log_scale:
            _positive_range(self.losses)
            ax.set_yscale("log")
        ax.set_xlabel(f"distance along direction ({_UNITS})")
        ax.set_ylabel(f"training {self.loss_name}")
        handles = [self.line_]
        if show_accuracy and self.accuracies is not None:
            self.accuracy_ax_ = ax.twinx()
            (self.accuracy_line_,) = self.accuracy_ax_.plot(
                self.distances,
                100 * self.accuracies,
                color=style["color"],
                linestyle="--",
                linewidth=1.0,
                label="accuracy",
            )
            self.accuracy_ax_.set_ylim(-2, 102)
            self.accuracy_ax_.set_ylabel("training accuracy (%)")
            handles.append(self.accuracy_line_)
        if self.label is not None or len(handles) > 1:
            # Above the axes: inside, it would hide the curves of the twin axis.
            ax.legend(
                handles=handles,
                loc="lower center",
                bbox_to_anchor=(0.5, 1.0),
                ncols=len(handles),
                fontsize="small",
                frameon=False,
            )

    def _plot_plane(self, ax, log_scale, cmap, levels, loss_range, kwargs):
        from matplotlib.colors import LogNorm, Normalize
        from matplotlib.ticker import LogLocator, MaxNLocator

        # contourf draws z[row, col] at (x[col], y[row]): rows are direction 2.
        z = np.ma.masked_invalid(self.losses.T)
        if loss_range is not None:
            low, high = (float(v) for v in loss_range)
            if not low < high or (log_scale and not low > 0):
                raise ValueError(
                    "loss_range must be (low, high) with low < high"
                    + (" and low > 0 on a log scale" if log_scale else "")
                    + f". Got {tuple(loss_range)!r} instead."
                )
        elif log_scale:
            low, high = _positive_range(self.losses)
            high = max(high, low * 1.01)
        else:
            low, high = float(z.min()), float(z.max())
            high = max(high, low + 1e-12)
        if log_scale:
            bounds = np.geomspace(low, high, levels + 1)
            norm = LogNorm(low, high)
            z = np.ma.masked_less_equal(z, 0)
        else:
            bounds = np.linspace(low, high, levels + 1)
            norm = Normalize(low, high)
        d = self.distances
        # Values outside a given loss_range get the end colours.
        extend = "neither" if loss_range is None else "both"
        self.contour_ = ax.contourf(
            d, d, z, levels=bounds, norm=norm, cmap=cmap, extend=extend, **kwargs
        )
        ax.contour(
            d,
            d,
            z,
            levels=bounds[::3],
            colors="black",
            linewidths=0.5,
            alpha=0.5,
            norm=norm,
        )
        ax.plot(
            0,
            0,
            marker="*",
            markersize=11,
            color="white",
            markeredgecolor="black",
            linestyle="none",
            label="minimum",
        )
        self.colorbar_ = ax.figure.colorbar(self.contour_, ax=ax)
        # The level boundaries are not round numbers: tick round values.
        if log_scale:
            subs = (1, 2, 5) if high < 1e3 * low else (1,)
            ticks = LogLocator(subs=subs).tick_values(low, high)
        else:
            ticks = MaxNLocator(6).tick_values(low, high)
        ticks = ticks[(ticks >= low) & (ticks <= high)]
        self.colorbar_.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
        self.colorbar_.set_label(f"training {self.loss_name}")
        ax.set_xlabel(f"direction 1 ({_UNITS})")
        ax.set_ylabel(f"direction 2 ({_UNITS})")
        ax.set_aspect("equal")
        if self.label is not None:
            ax.set_title(self.label)
