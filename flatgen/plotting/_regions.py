"""DecisionRegionsDisplay: a classifier's decision regions with its data."""

import numpy as np

from ._basin import OKABE_ITO


def _lighten(color, amount):
    """Blend ``color`` towards white: region fills stay readable under points."""
    from matplotlib.colors import to_rgb

    rgb = np.asarray(to_rgb(color))
    return tuple(1 - amount * (1 - rgb))


class DecisionRegionsDisplay:
    """Decision regions of a classifier on 2-D data, points marked right or wrong.

    Holds arrays computed by :class:`~flatgen.MarginPlotter`; :meth:`plot`
    only draws, so the figure can be redrawn from saved results. Create it
    with :meth:`from_plotter` or :meth:`flatgen.MarginPlotter.plot`.

    Parameters
    ----------
    grid_x, grid_y : ndarray of shape (n_grid,)
        Grid coordinates.
    grid_labels : ndarray of int of shape (n_grid, n_grid)
        Index into ``classes`` of the predicted label at
        ``(grid_x[j], grid_y[i])``.
    classes : ndarray of shape (n_classes,)
        Class labels.
    X : ndarray of shape (n_samples, 2), default=None
        Training points.
    y : ndarray of shape (n_samples,), default=None
        Their true labels (predicted labels are used for colours without it).
    correct : ndarray of bool of shape (n_samples,), default=None
        Whether the classifier labels each training point right.
    X_test, y_test, test_correct : ndarray, default=None
        The same for test points, drawn hollow.
    title : str, default=None
        Axes title, e.g. the model's name.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes drawn on.
    figure_ : matplotlib Figure
        Figure drawn on.
    surface_ : matplotlib QuadContourSet
        The filled regions.
    boundary_ : list of matplotlib QuadContourSet
        The decision boundary lines.

    Examples
    --------
    >>> import numpy as np
    >>> from flatgen.plotting import DecisionRegionsDisplay
    >>> grid = np.linspace(-1, 1, 5)
    >>> labels = (grid[None, :] > 0).repeat(5, axis=0).astype(int)
    >>> disp = DecisionRegionsDisplay(grid, grid, labels, classes=np.array([0, 1]))
    >>> disp.plot().ax_.get_xlabel()
    '$x_1$'
    """

    def __init__(
        self,
        grid_x,
        grid_y,
        grid_labels,
        classes,
        X=None,
        y=None,
        correct=None,
        X_test=None,
        y_test=None,
        test_correct=None,
        title=None,
    ):
        self.grid_x = np.asarray(grid_x)
        self.grid_y = np.asarray(grid_y)
        self.grid_labels = np.asarray(grid_labels)
        self.classes = np.asarray(classes)
        self.X, self.y, self.correct = X, y, correct
        self.X_test, self.y_test, self.test_correct = X_test, y_test, test_correct
        self.title = title

    @classmethod
    def from_estimator(cls, estimator, X, y, *, title=None, **params):
        """Measure a model with a new MarginPlotter, then build the display.

        The same as ``from_analyzer(MarginPlotter(**params).fit(estimator, X, y))``.

        Parameters
        ----------
        estimator : fitted model
            Any fitted classifier (a network, an SVC, ...); not modified.
        X : array-like of shape (n_samples, 2)
            Inputs whose margins are measured and drawn.
        y : array-like of shape (n_samples,) or None
            Their labels.
        title : str, default=None
            Axes title; the estimator's class name when None.
        **params
            Hyperparameters of the :class:`~flatgen.MarginPlotter`
            (e.g. ``method``, ``grid_resolution``).

        Returns
        -------
        display : DecisionRegionsDisplay
            Not yet drawn; call :meth:`plot`.
        """
        from ..analyzers import MarginPlotter

        analyzer = MarginPlotter(**params).fit(estimator, X, y)
        return cls.from_analyzer(analyzer, title=title)

    @classmethod
    def from_plotter(cls, plotter, title=None):
        """Build the display from a fitted :class:`~flatgen.MarginPlotter`.

        The same as :meth:`from_analyzer`.

        Parameters
        ----------
        plotter : MarginPlotter
            Fitted on data with two features.
        title : str, default=None
            Axes title; the estimator's class name when None.

        Returns
        -------
        display : DecisionRegionsDisplay
            Not yet drawn; call :meth:`plot`.
        """
        return cls.from_analyzer(plotter, title=title)

    @classmethod
    def from_analyzer(cls, plotter, title=None):
        """Build the display from a fitted :class:`~flatgen.MarginPlotter`.

        Parameters
        ----------
        plotter : MarginPlotter
            Fitted on data with two features.
        title : str, default=None
            Axes title; the estimator's class name when None.

        Returns
        -------
        display : DecisionRegionsDisplay
            Not yet drawn; call :meth:`plot`.

        Raises
        ------
        ValueError
            If the plotter's data do not have exactly two features.
        """
        if plotter.grid_labels_ is None:
            raise ValueError(
                "Decision regions can only be drawn for data with 2 features; X "
                f"has samples of shape {plotter.X_.shape[1:]}. The margins "
                "(margins_) are still available."
            )
        return cls(
            plotter.grid_x_,
            plotter.grid_y_,
            plotter.grid_labels_,
            plotter.classes_,
            X=plotter.X_,
            y=plotter.y_,
            correct=plotter.correct_,
            X_test=plotter.X_test_,
            y_test=plotter.y_test_,
            test_correct=plotter.test_correct_,
            title=plotter.estimator_name_ if title is None else title,
        )

    def _codes(self, labels):
        codes = np.searchsorted(self.classes, labels)
        return np.clip(codes, 0, len(self.classes) - 1)

    def plot(
        self,
        ax=None,
        *,
        show_test=True,
        colors=None,
        region_alpha=0.3,
        point_size=14,
        legend=True,
        xlabel="$x_1$",
        ylabel="$x_2$",
    ):
        """Draw regions, boundary, training points and (optionally) test points.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        show_test : bool, default=True
            Draw the test points (hollow) when the display has them.
        colors : list of color, default=None
            One colour per class; the Okabe-Ito palette when None.
        region_alpha : float, default=0.3
            Strength of the region fill (0: white, 1: the class colour).
        point_size : float, default=14
            Marker area of the points.
        legend : bool, default=True
            Add a legend.
        xlabel, ylabel : str
            Axis labels.

        Returns
        -------
        self : DecisionRegionsDisplay
            With ``ax_``, ``figure_``, ``surface_`` and ``boundary_`` set.
        """
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 5))
        n_classes = len(self.classes)
        colors = list(OKABE_ITO if colors is None else colors)
        colors = [colors[k % len(colors)] for k in range(n_classes)]
        fills = [_lighten(c, region_alpha) for c in colors]
        levels = np.arange(n_classes + 1) - 0.5
        self.surface_ = ax.contourf(
            self.grid_x, self.grid_y, self.grid_labels, levels=levels, colors=fills
        )
        # One contour per class indicator: boundaries between any two classes.
        indicators = [0] if n_classes == 2 else range(n_classes)
        self.boundary_ = [
            ax.contour(
                self.grid_x,
                self.grid_y,
                (self.grid_labels == k).astype(float),
                levels=[0.5],
                colors="0.15",
                linewidths=1.0,
            )
            for k in indicators
        ]
        handles = []
        if self.X is not None:
            point_labels = self.y if self.y is not None else None
            codes = (
                self._codes(point_labels)
                if point_labels is not None
                else np.zeros(len(self.X), dtype=int)
            )
            ax.scatter(
                self.X[:, 0],
                self.X[:, 1],
                c=[colors[k] for k in codes],
                s=point_size,
                edgecolors="0.1",
                linewidths=0.4,
                zorder=3,
            )
            handles += [
                Line2D(
                    [],
                    [],
                    marker="o",
                    linestyle="",
                    color=colors[k],
                    markeredgecolor="0.1",
                    label=f"train: class {cls}",
                )
                for k, cls in enumerate(self.classes)
            ]
            if self.correct is not None and not np.all(self.correct):
                wrong = ~np.asarray(self.correct)
                ax.scatter(
                    self.X[wrong, 0],
                    self.X[wrong, 1],
                    marker="x",
                    s=3 * point_size,
                    color="black",
                    linewidths=1.2,
                    zorder=4,
                )
                handles.append(
                    Line2D(
                        [],
                        [],
                        marker="x",
                        linestyle="",
                        color="black",
                        label="misclassified",
                    )
                )
        if show_test and self.X_test is not None:
            codes = (
                self._codes(self.y_test)
                if self.y_test is not None
                else np.zeros(len(self.X_test), dtype=int)
            )
            ax.scatter(
                self.X_test[:, 0],
                self.X_test[:, 1],
                facecolors="none",
                edgecolors=[colors[k] for k in codes],
                s=point_size,
                linewidths=0.9,
                zorder=2,
            )
            label = "test"
            if self.test_correct is not None:
                label += f" ({np.mean(self.test_correct):.0%} correct)"
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="o",
                    linestyle="",
                    markerfacecolor="none",
                    markeredgecolor="0.3",
                    label=label,
                )
            )
        ax.set_xlim(self.grid_x[0], self.grid_x[-1])
        ax.set_ylim(self.grid_y[0], self.grid_y[-1])
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if self.title:
            ax.set_title(self.title)
        if legend and handles:
            ax.legend(
                handles=handles, loc="upper right", fontsize="small", framealpha=0.85
            )
        self.ax_, self.figure_ = ax, ax.figure
        return self
