"""MeasureRankingDisplay: which measure tracks the generalization gap, at a glance."""

import numpy as np

from ._basin import OKABE_ITO

_MARKERS = ("o", "s", "^", "D", "v", "P")


class MeasureRankingDisplay:
    """Kendall's tau of each measure with the gap, as sorted horizontal bars.

    Bars show the tau over all models with its bootstrap interval; markers
    show the granulated tau along each hyperparameter axis (Jiang et al.,
    2020), so a measure that tracks the gap only through one axis stands out.

    Parameters
    ----------
    measures : list of str
        Measure names.
    taus : array-like of shape (n_measures,)
        Kendall's tau with the gap (NaN where undefined).
    tau_ci : array-like of shape (n_measures, 2), default=None
        Interval of each tau.
    granulated : list of dict, default=None
        Per measure, axis name -> granulated tau (None where undefined).
    order : list of str, default=None
        Measure names from the top row down (to draw several rankings in
        one order); by tau when None.

    Attributes
    ----------
    order_ : ndarray of shape (n_measures,)
        Indices of the measures from the top row down: by ``order``, or from
        the highest tau to the lowest (NaN last).
    ax_ : matplotlib Axes
        Axes drawn on.
    figure_ : matplotlib Figure
        Figure drawn on.

    Examples
    --------
    >>> from flatgen.plotting import MeasureRankingDisplay
    >>> disp = MeasureRankingDisplay(["curvature", "norm"], [0.8, 0.1])
    >>> [disp.measures[i] for i in disp.order_]
    ['curvature', 'norm']
    """

    def __init__(self, measures, taus, tau_ci=None, granulated=None, order=None):
        self.measures = list(measures)
        self.taus = np.asarray(taus, dtype=float)
        if self.taus.shape != (len(self.measures),):
            raise ValueError(
                f"taus must have one value per measure ({len(self.measures)}); "
                f"got shape {self.taus.shape}."
            )
        self.tau_ci = None
        if tau_ci is not None:
            self.tau_ci = np.array(
                [[np.nan if v is None else v for v in ci] for ci in tau_ci],
                dtype=float,
            )
            if self.tau_ci.shape != (len(self.measures), 2):
                raise ValueError(
                    f"tau_ci must have shape (n_measures, 2); got {self.tau_ci.shape}."
                )
        self.granulated = granulated
        key = np.where(np.isfinite(self.taus), -self.taus, np.inf)
        self.order_ = np.argsort(key, kind="stable")
        if order is not None:
            order = list(order)
            if sorted(order) != sorted(self.measures):
                raise ValueError(
                    "order must name every measure once; got "
                    f"{order} for measures {self.measures}."
                )
            self.order_ = np.array([self.measures.index(m) for m in order])

    @classmethod
    def from_rows(cls, rows, order=None):
        """Build the display from the rows of a study's ranking.

        Parameters
        ----------
        rows : list of dict
            With ``measure``, ``tau``, ``tau_ci`` and ``granulated`` (as in
            a study's ``summary.json``).
        order : list of str, default=None
            Measure names from the top row down; by tau when None.

        Returns
        -------
        display : MeasureRankingDisplay
            Not drawn yet.
        """
        return cls(
            [r["measure"] for r in rows],
            [np.nan if r["tau"] is None else r["tau"] for r in rows],
            [r["tau_ci"] for r in rows],
            [r["granulated"] for r in rows],
            order=order,
        )

    def plot(self, ax=None, *, color=None, axis_names=None):
        """Draw the bars, intervals and granulated markers.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure when None.
        color : color, default=None
            Bar colour; Okabe-Ito blue when None.
        axis_names : list of str, default=None
            Grid axes in the order that picks their markers and colours, so
            that several displays mark one axis alike; the axes of
            ``granulated``, sorted, when None.

        Returns
        -------
        self : MeasureRankingDisplay
            With ``ax_`` and ``figure_`` set.
        """
        import matplotlib.pyplot as plt

        n = len(self.measures)
        if ax is None:
            _, ax = plt.subplots(figsize=(6.5, 0.35 * n + 1.5))
        rows = np.arange(n)[::-1]  # best measure on top
        taus = np.nan_to_num(self.taus[self.order_])
        ax.barh(rows, taus, color=color or OKABE_ITO[4], alpha=0.8, label="all models")
        if self.tau_ci is not None:
            ci = self.tau_ci[self.order_]
            low, high = ci[:, 0], ci[:, 1]
            drawn = np.isfinite(low) & np.isfinite(high)
            ax.errorbar(
                taus[drawn],
                rows[drawn],
                xerr=[taus[drawn] - low[drawn], high[drawn] - taus[drawn]],
                fmt="none",
                ecolor="black",
                capsize=3,
                linewidth=1,
                label="95 % bootstrap interval",
            )
        if self.granulated:
            present = {
                a
                for g in self.granulated
                for a, t in (g or {}).items()
                if t is not None
            }
            axes = list(axis_names) if axis_names is not None else sorted(present)
            for k, axis in enumerate(axes):
                if axis not in present:
                    continue
                values = np.array(
                    [
                        np.nan
                        if (self.granulated[i] or {}).get(axis) is None
                        else self.granulated[i][axis]
                        for i in self.order_
                    ]
                )
                ax.scatter(
                    values,
                    rows,
                    marker=_MARKERS[k % len(_MARKERS)],
                    color=OKABE_ITO[(k + 1) % len(OKABE_ITO)],
                    zorder=3,
                    s=22,
                    label=f"along {axis}",
                )
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_yticks(rows, [self.measures[i] for i in self.order_])
        ax.set_xlim(-1.08, 1.08)  # markers at +-1 stay whole
        ax.set_xlabel("Kendall's tau with the generalization gap")
        # Below the axes: inside, the legend would hide bars.
        ax.legend(
            loc="upper center",
            bbox_to_anchor=(0.5, -0.12),
            ncol=2,
            fontsize="small",
            frameon=False,
        )
        self.ax_, self.figure_ = ax, ax.figure
        return self
