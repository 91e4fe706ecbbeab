"""PerturbationAnimation: decision regions along a path in weight space."""

import os

import numpy as np
from tqdm.auto import tqdm

from ._basin import OKABE_ITO

_MARKERS = ("o", "^", "s", "D", "v", "P")


def _tint(color, amount):
    """Blend ``color`` with white; ``amount`` is the share of the colour."""
    from matplotlib.colors import to_rgb

    return tuple(amount * c + (1 - amount) for c in to_rgb(color))


def _log_axis(axis, low, high):
    """Log scale with plain labels: 1-2-5 ticks over a short range."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.axes.set_yscale("log")
    if high < 100 * low:
        axis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


class PerturbationAnimation:
    """The paper's perturbation animation, one frame per step of the path.

    Each frame shows, on the left, the network's decision regions at
    ``theta* + c d`` with the training points, and on the right three
    stacked panels along the whole path: training cross-entropy, training
    accuracy and curvature against ``c``, with a dot at the current ``c``.
    The display holds the arrays a :class:`~flatgen.PerturbationPath`
    computed and only draws them, so an animation can be redrawn from saved
    results.

    Parameters
    ----------
    coefficients : ndarray of shape (n_frames,)
        Step ``c`` of each frame (filter-normalized units).
    losses : ndarray of shape (n_frames,)
        Training cross-entropy at each frame.
    accuracies : ndarray of shape (n_frames,)
        Training accuracy at each frame.
    curvatures : ndarray of shape (n_frames,)
        Second derivative of the training loss along the path.
    grid_x : ndarray of shape (n_x,)
        First input coordinate of the grid columns.
    grid_y : ndarray of shape (n_y,)
        Second input coordinate of the grid rows.
    frames : ndarray of shape (n_frames, n_y, n_x)
        Class indices (int) or probabilities of the second class (float) on
        the grid.
    classes : array-like of shape (n_classes,), default=None
        Class labels; ``frames`` index into them and ``y`` holds them.
    X : ndarray of shape (n_samples, 2), default=None
        Points drawn on the regions (the training set).
    y : ndarray of shape (n_samples,), default=None
        Their labels.

    Attributes
    ----------
    figure_ : matplotlib Figure
        Figure of the last drawn frame.
    ax_ : matplotlib Axes
        Axes of the decision regions.
    side_axes_ : list of matplotlib Axes
        The cross-entropy, accuracy and curvature panels.
    image_ : matplotlib AxesImage
        The decision regions.
    frame_ : int
        Index of the frame shown.

    Examples
    --------
    >>> import numpy as np
    >>> from flatgen.plotting import PerturbationAnimation
    >>> c = np.array([0.0, 0.1, 0.0, -0.1])
    >>> grid = np.linspace(-1, 1, 5)
    >>> frames = np.zeros((4, 5, 5), dtype=int)
    >>> frames[:, :, 3:] = 1
    >>> anim = PerturbationAnimation(c, 0.1 + c**2, 1 - abs(c), 1 + c, grid, grid,
    ...                              frames, classes=[0, 1])
    >>> anim.plot_frame(1).frame_
    1
    """

    def __init__(
        self,
        coefficients,
        losses,
        accuracies,
        curvatures,
        grid_x,
        grid_y,
        frames,
        *,
        classes=None,
        X=None,
        y=None,
    ):
        self.coefficients = np.asarray(coefficients, dtype=float)
        self.losses = np.asarray(losses, dtype=float)
        self.accuracies = np.asarray(accuracies, dtype=float)
        self.curvatures = np.asarray(curvatures, dtype=float)
        self.grid_x = np.asarray(grid_x, dtype=float)
        self.grid_y = np.asarray(grid_y, dtype=float)
        self.frames = np.asarray(frames)
        self.classes = None if classes is None else np.asarray(classes)
        self.X = None if X is None else np.asarray(X, dtype=float)
        self.y = None if y is None else np.asarray(y)

    @classmethod
    def from_estimator(cls, estimator, X, y, **params):
        """Follow a model along a new PerturbationPath, then build the animation.

        Parameters
        ----------
        estimator : fitted model
            Any model the analyzers accept (see :ref:`any-model`); not
            modified.
        X : array-like of shape (n_samples, 2)
            Training inputs, drawn on the regions.
        y : array-like of shape (n_samples,)
            Training labels.
        **params
            Hyperparameters of the :class:`~flatgen.PerturbationPath` (e.g.
            ``n_frames``, ``span``, ``grid_resolution``).

        Returns
        -------
        animation : PerturbationAnimation
            Not yet drawn; call :meth:`plot_frame` or :meth:`save`.
        """
        from ..analyzers import PerturbationPath

        path = PerturbationPath(**params).fit(estimator, X, y)
        return cls.from_analyzer(path, X, y)

    @classmethod
    def from_analyzer(cls, path, X=None, y=None):
        """Build the animation from a fitted :class:`~flatgen.PerturbationPath`.

        Parameters
        ----------
        path : PerturbationPath
            Fitted with a ``grid_resolution`` (decision regions recorded).
        X : ndarray of shape (n_samples, 2), default=None
            Points to draw on the regions, usually the training set.
        y : ndarray of shape (n_samples,), default=None
            Their labels.

        Returns
        -------
        animation : PerturbationAnimation
            Not yet drawn; call :meth:`plot_frame` or :meth:`save`.
        """
        if getattr(path, "frames_", None) is None:
            raise ValueError(
                "The path holds no decision regions: fit PerturbationPath with a "
                "grid_resolution (and 2-D inputs) to animate it."
            )
        return cls(
            path.coefficients_,
            path.losses_,
            path.accuracies_,
            path.curvatures_,
            path.grid_x_,
            path.grid_y_,
            path.frames_,
            classes=path.classes_,
            X=X,
            y=y,
        )

    @property
    def n_frames(self):
        """Number of frames."""
        return len(self.coefficients)

    def _check(self):
        n = self.n_frames
        for name in ("losses", "accuracies", "curvatures"):
            if getattr(self, name).shape != (n,):
                raise ValueError(
                    f"{name} must have shape ({n},), one value per frame. Got "
                    f"{getattr(self, name).shape} instead."
                )
        expected = (n, len(self.grid_y), len(self.grid_x))
        if self.frames.shape != expected:
            raise ValueError(
                f"frames must have shape {expected} (frames, grid_y, grid_x). Got "
                f"{self.frames.shape} instead."
            )
        if self.X is not None and (self.X.ndim != 2 or self.X.shape[1] != 2):
            raise ValueError(
                f"X must have shape (n_samples, 2). Got {self.X.shape} instead."
            )

    def _is_proba(self):
        return np.issubdtype(self.frames.dtype, np.floating)

    def _class_names(self):
        if self.classes is not None:
            return [str(c) for c in self.classes]
        n = int(self.frames.max()) + 1 if not self._is_proba() else 2
        return [str(k) for k in range(max(n, 2))]

    def plot_frame(self, i, fig=None):
        """Draw frame ``i``: decision regions and the three side panels.

        Parameters
        ----------
        i : int
            Frame index, from 0 to ``n_frames - 1`` (negative counts from
            the end).
        fig : matplotlib Figure, default=None
            Figure to draw on (cleared first); a new one when None.

        Returns
        -------
        self : PerturbationAnimation
            With ``figure_``, ``ax_``, ``side_axes_`` and ``frame_`` set.
        """
        import matplotlib.pyplot as plt

        self._check()
        i = self._frame_index(i)
        if fig is None:
            fig = plt.figure(figsize=(9.5, 4.8), layout="constrained")
        else:
            fig.clear()
        grid = fig.add_gridspec(3, 2, width_ratios=(1.2, 1))
        ax = fig.add_subplot(grid[:, 0])
        side = [fig.add_subplot(grid[0, 1])]
        side += [fig.add_subplot(grid[k, 1], sharex=side[0]) for k in (1, 2)]
        self.figure_, self.ax_, self.side_axes_ = fig, ax, side
        self._draw_regions(ax)
        self._draw_panels(side)
        self._show(i)
        return self

    def _frame_index(self, i):
        n = self.n_frames
        if not isinstance(i, (int, np.integer)) or not -n <= i < n:
            raise ValueError(
                f"Frame index i must be an integer in [{-n}, {n - 1}]. Got {i!r} "
                "instead."
            )
        return int(i) % n

    def _draw_regions(self, ax):
        from matplotlib.colors import (
            BoundaryNorm,
            LinearSegmentedColormap,
            ListedColormap,
        )

        names = self._class_names()
        colors = [OKABE_ITO[k % len(OKABE_ITO)] for k in range(len(names))]
        extent = (self.grid_x[0], self.grid_x[-1], self.grid_y[0], self.grid_y[-1])
        if self._is_proba():
            cmap = LinearSegmentedColormap.from_list(
                "proba", [_tint(colors[0], 0.6), "white", _tint(colors[1], 0.6)]
            )
            norm = None
            kwargs = {"vmin": 0.0, "vmax": 1.0}
        else:
            cmap = ListedColormap([_tint(c, 0.35) for c in colors])
            norm = BoundaryNorm(np.arange(len(names) + 1) - 0.5, len(names))
            kwargs = {}
        self.image_ = ax.imshow(
            self.frames[0],
            extent=extent,
            origin="lower",
            cmap=cmap,
            norm=norm,
            interpolation="nearest",
            aspect="equal",
            **kwargs,
        )
        if self._is_proba():
            bar = ax.figure.colorbar(self.image_, ax=ax, shrink=0.8, location="left")
            bar.set_label(f"probability of class {names[1]}")
        if self.X is not None:
            self._draw_points(ax, names, colors)
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")

    def _draw_points(self, ax, names, colors):
        if self.y is None:
            ax.scatter(*self.X.T, s=14, color="0.2", edgecolors="white", lw=0.4)
            return
        codes = (
            np.searchsorted(self.classes, self.y)
            if self.classes is not None
            else self.y.astype(int)
        )
        for k, name in enumerate(names):
            mask = codes == k
            if np.any(mask):
                ax.scatter(
                    *self.X[mask].T,
                    s=16,
                    marker=_MARKERS[k % len(_MARKERS)],
                    color=colors[k],
                    edgecolors="black",
                    linewidths=0.4,
                    label=f"class {name}",
                )
        ax.legend(loc="lower right", fontsize="small", framealpha=0.8)

    def _draw_panels(self, side):
        # The path visits every c twice (out and back): draw the curves over
        # sorted c, so each is one clean line.
        order = np.argsort(self.coefficients, kind="stable")
        c = self.coefficients[order]
        series = (
            (self.losses, "train\ncross-entropy", OKABE_ITO[0]),
            (100 * self.accuracies, "train\naccuracy (%)", OKABE_ITO[2]),
            (self.curvatures, "curvature\n$d^{\\,T}Hd$", OKABE_ITO[3]),
        )
        self.dots_ = []
        for ax, (values, label, color) in zip(side, series):
            ax.plot(c, values[order], color=color, linewidth=1.5)
            (dot,) = ax.plot([], [], "o", color="black", markersize=6, zorder=3)
            self.dots_.append(dot)
            ax.set_ylabel(label, fontsize="small")
            ax.axvline(0, color="0.7", linewidth=0.8, zorder=0)
            ax.grid(alpha=0.3)
        finite = self.losses[np.isfinite(self.losses)]
        if finite.size and finite.min() > 0 and finite.max() > 10 * finite.min():
            _log_axis(side[0].yaxis, finite.min(), finite.max())
        side[1].set_ylim(-5, 105)
        # Far from a sharp minimum the curvature grows by orders of magnitude;
        # a symmetric log scale keeps the values near the minimum readable.
        finite = self.curvatures[np.isfinite(self.curvatures)]
        if finite.size and finite.min() > 0 and finite.max() > 100 * finite.min():
            _log_axis(side[2].yaxis, finite.min(), finite.max())
        elif finite.size:
            near = abs(self.curvatures[np.argmin(np.abs(self.coefficients))])
            linear = max(near, 1e-6 * np.abs(finite).max())
            if linear > 0 and np.abs(finite).max() > 100 * linear:
                # A power of ten keeps the tick labels off each other.
                linear = 10.0 ** np.floor(np.log10(linear))
                side[2].set_yscale("symlog", linthresh=linear)
                # Symlog's default margins add decades nobody reached.
                side[2].set_ylim(min(1.5 * finite.min(), -linear), 1.5 * finite.max())
        for ax in side[:2]:
            ax.tick_params(labelbottom=False)
        side[2].set_xlabel("step c along direction\n(filter-normalized units)")

    def _show(self, i):
        """Point every artist at frame ``i``."""
        self.image_.set_data(self.frames[i])
        c = self.coefficients[i]
        values = (self.losses[i], 100 * self.accuracies[i], self.curvatures[i])
        for dot, value in zip(self.dots_, values):
            dot.set_data([c], [value])
        self.figure_.suptitle(
            f"frame {i + 1}/{self.n_frames}:  c = {c:+.4f},  "
            f"train accuracy {self.accuracies[i]:.0%},  "
            f"train cross-entropy {self.losses[i]:.3g}",
            fontsize="medium",
        )
        self.frame_ = i

    def save(self, path, *, fps=10, dpi=100, verbose=True):
        """Write the animation to a GIF, one image per frame.

        The figure is laid out once from the first frame; later frames only
        update the regions, the dots and the title.

        Parameters
        ----------
        path : str or path-like
            Destination file, e.g. ``'animation.gif'``.
        fps : float, default=10
            Frames per second.
        dpi : float, default=100
            Resolution of every frame.
        verbose : bool, default=True
            Show a progress bar over the frames.

        Returns
        -------
        path : str or path-like
            The path written.
        """
        import matplotlib.pyplot as plt
        from matplotlib.animation import PillowWriter

        if not fps > 0:
            raise ValueError(f"fps must be positive. Got {fps!r} instead.")
        folder = os.path.dirname(os.path.abspath(os.fspath(path)))
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                f"Cannot write {os.fspath(path)!r}: the folder {folder!r} does not "
                "exist."
            )
        self.plot_frame(0)
        fig = self.figure_
        # Freeze the layout after the first frame, so titles of different
        # widths do not shift the axes from one frame to the next. Without a
        # layout engine each frame is drawn once instead of twice (0.18 s vs
        # 0.30 s per frame on the swiss-roll animation).
        fig.canvas.draw()
        fig.set_layout_engine(None)
        writer = PillowWriter(fps=fps)
        try:
            with writer.saving(fig, os.fspath(path), dpi):
                for i in tqdm(
                    range(self.n_frames),
                    disable=not verbose,
                    desc="GIF",
                    unit="frame",
                    leave=False,
                ):
                    self._show(i)
                    writer.grab_frame()
        finally:
            plt.close(fig)
        return path
