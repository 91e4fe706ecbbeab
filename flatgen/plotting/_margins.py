"""MarginDistributionDisplay: input-space margins of several models side by side."""

import numpy as np

from ._basin import OKABE_ITO


class MarginDistributionDisplay:
    """Distributions of input-space margins of several models, side by side.

    Compares, e.g., a clean network, a poisoned network and an SVM baseline
    on one scale: each point's distance to the model's decision boundary.
    Create it with :meth:`from_plotters` from fitted
    :class:`~flatgen.MarginPlotter` objects, or from arrays.

    Parameters
    ----------
    margins : list of ndarray
        Margins of each model (one array per model).
    labels : list of str
        Model names.

    Attributes
    ----------
    medians_ : ndarray of shape (n_models,)
        Median margin of each model.
    ax_ : matplotlib Axes
        Axes drawn on.
    figure_ : matplotlib Figure
        Figure drawn on.
    artists_ : list
        The drawn artists, one entry per model.

    Examples
    --------
    >>> import numpy as np
    >>> from flatgen.plotting import MarginDistributionDisplay
    >>> disp = MarginDistributionDisplay([np.ones(5), np.full(5, 0.1)], ["a", "b"])
    >>> disp.medians_.tolist()
    [1.0, 0.1]
    """

    def __init__(self, margins, labels):
        margins = [np.asarray(m, dtype=float).ravel() for m in margins]
        labels = list(labels)
        if len(margins) == 0:
            raise ValueError("margins must hold at least one model's margins.")
        if len(labels) != len(margins):
            raise ValueError(
                f"Got {len(labels)} labels for {len(margins)} models; give one "
                "label per model."
            )
        for label, m in zip(labels, margins):
            if m.size == 0 or not np.all(np.isfinite(m)) or np.any(m < 0):
                raise ValueError(
                    f"Margins of {label!r} must be a non-empty array of finite, "
                    "non-negative distances."
                )
        self.margins = margins
        self.labels = labels
        self.medians_ = np.array([np.median(m) for m in margins])

    @classmethod
    def from_plotters(cls, plotters, labels=None):
        """Build the display from fitted margin analyzers or plotters.

        Parameters
        ----------
        plotters : list of MarginAnalyzer or MarginPlotter
            Fitted, one per model.
        labels : list of str, default=None
            Model names; the estimators' class names when None.

        Returns
        -------
        display : MarginDistributionDisplay
            Not yet drawn; call :meth:`plot`.
        """
        plotters = list(plotters)
        for p in plotters:
            if not hasattr(p, "margins_"):
                raise ValueError(
                    "Every plotter must be fitted (MarginAnalyzer().fit(estimator, "
                    f"X, y)); got an unfitted {type(p).__name__}."
                )
        if labels is None:
            labels = [p.estimator_name_ for p in plotters]
        return cls([p.margins_ for p in plotters], labels)

    def plot(self, ax=None, *, kind="box", log_scale=True, colors=None):
        """Draw the distributions.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        kind : {'box', 'ecdf'}, default='box'
            ``'box'``: a box per model with every point overlaid (jittered)
            and the median written under the model's name; ``'ecdf'``:
            empirical cumulative distribution curves.
        log_scale : bool, default=True
            Logarithmic distance axis: margins of sharp and flat models
            differ by orders of magnitude. Zero margins (points on the
            boundary) are drawn at the smallest positive margin.
        colors : list of color, default=None
            One colour per model; the Okabe-Ito palette when None.

        Returns
        -------
        self : MarginDistributionDisplay
            With ``ax_``, ``figure_`` and ``artists_`` set.
        """
        import matplotlib.pyplot as plt

        if kind not in ("box", "ecdf"):
            raise ValueError(f"kind must be 'box' or 'ecdf'. Got {kind!r} instead.")
        if ax is None:
            _, ax = plt.subplots(figsize=(1.6 + 1.4 * len(self.margins), 4))
        colors = list(OKABE_ITO if colors is None else colors)
        margins = self.margins
        if log_scale:
            positive = np.concatenate([m[m > 0] for m in margins])
            floor = positive.min() if positive.size else 1.0
            margins = [np.maximum(m, floor) for m in margins]
        label = "distance to decision boundary (input units)"
        self.artists_ = []
        if kind == "box":
            rng = np.random.RandomState(0)  # fixed jitter: identical re-plots
            positions = np.arange(1, len(margins) + 1)
            boxes = ax.boxplot(
                margins,
                positions=positions,
                widths=0.55,
                showfliers=False,
                medianprops={"color": "black", "linewidth": 1.5},
            )
            for i, (m, color) in enumerate(zip(margins, colors * len(margins))):
                jitter = rng.uniform(-0.18, 0.18, len(m))
                self.artists_.append(
                    ax.scatter(
                        positions[i] + jitter,
                        m,
                        s=6,
                        color=color,
                        alpha=0.55,
                        linewidths=0,
                        zorder=3,
                    )
                )
            self.boxes_ = boxes
            ax.set_xticks(positions)
            # Medians go under the names: above the boxes they would collide
            # with a title.
            ax.set_xticklabels(
                [
                    f"{name}\nmedian {m:.3g}"
                    for name, m in zip(self.labels, self.medians_)
                ]
            )
            ax.set_ylabel(label)
            if log_scale:
                ax.set_yscale("log")
        else:
            for m, name, color in zip(margins, self.labels, colors * len(margins)):
                values = np.sort(m)
                fraction = np.arange(1, len(values) + 1) / len(values)
                self.artists_.extend(
                    ax.step(
                        values,
                        fraction,
                        where="post",
                        color=color,
                        label=f"{name} (median {np.median(m):.3g})",
                    )
                )
            ax.set_xlabel(label)
            ax.set_ylabel("fraction of points")
            ax.set_ylim(0, 1.02)
            if log_scale:
                ax.set_xscale("log")
            ax.legend(fontsize="small")
        self.ax_, self.figure_ = ax, ax.figure
        return self
