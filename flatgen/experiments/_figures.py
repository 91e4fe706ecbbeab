"""Figures of the experiments, drawn by flatgen's Displays from computed arrays.

Nothing here computes: every function receives arrays (or fitted analyzers
holding them) and draws. Each file is written atomically, so an interrupted
run never leaves a truncated image behind.
"""

import os

import numpy as np

from ..io import atomic_writer
from ..plotting import (
    OKABE_ITO,
    BasinDisplay,
    DecisionRegionsDisplay,
    MarginDistributionDisplay,
    MeasureRankingDisplay,
    PerturbationAnimation,
    PoisonSweepDisplay,
    VolumeGapDisplay,
)

_DPI = 150


def _save(fig, out, name):
    import matplotlib.pyplot as plt

    with atomic_writer(os.path.join(out, name)) as f:
        fig.savefig(f, format="png", dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return name


def _figure(ncols=1, width=6.0, height=4.2, **kwargs):
    import matplotlib

    # Files only: no window, whatever backend the user configured.
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(
        1, ncols, figsize=(width * ncols, height), layout="constrained", **kwargs
    )


def decision_regions(out, plotters, titles, name="decision_boundaries.png"):
    """Decision regions of several models side by side (2-D data).

    Parameters
    ----------
    out : str
        Output folder.
    plotters : list of fitted MarginPlotter
        One per model, with a labelled grid.
    titles : list of str
        Axes titles.
    name : str, default='decision_boundaries.png'
        File name.

    Returns
    -------
    name : str
        The file written, relative to ``out``.
    """
    fig, axes = _figure(len(plotters), width=4.6, height=4.8, sharey=True)
    for i, (ax, plotter, title) in enumerate(
        zip(np.atleast_1d(axes), plotters, titles)
    ):
        display = DecisionRegionsDisplay.from_analyzer(plotter, title=title)
        display.plot(ax=ax, legend=i == 0, ylabel="$x_2$" if i == 0 else "")
        ax.set_aspect("equal")
    return _save(fig, out, name)


def poison_sweep(
    out, factors, train, test, baseline=None, title=None, name="poison_sweep.png"
):
    """Train/test accuracy and generalization gap against the poison factor.

    Parameters
    ----------
    out : str
        Output folder.
    factors, train, test : array-like of shape (n_factors,)
        Poison factors and the accuracies of the networks trained with them.
    baseline : tuple of (str, float), default=None
        Label and test accuracy of a baseline (the SVC), drawn as a line.
    title : str, default=None
        Axes title.
    name : str, default='poison_sweep.png'
        File name.

    Returns
    -------
    name : str
        The file written.
    """
    fig, ax = _figure()
    PoisonSweepDisplay(factors, train, test).plot(ax=ax)
    if baseline is not None:
        label, accuracy = baseline
        ax.axhline(
            accuracy,
            color=OKABE_ITO[4],
            linestyle=":",
            linewidth=1.5,
            label=f"{label} test accuracy",
        )
        ax.legend(loc="best", fontsize="small")
    if title is not None:
        ax.set_title(title)
    return _save(fig, out, name)


def basin_sections(out, sections, labels, name="basin_cross_sections.png"):
    """Basin cross-sections of several networks on one axes.

    Parameters
    ----------
    out : str
        Output folder.
    sections : list of dict
        Records of :func:`~flatgen.experiments._steps.measure_basin`; those
        without radii (no basin at the cutoff) are skipped.
    labels : list of str
        Legend labels.
    name : str, default='basin_cross_sections.png'
        File name.

    Returns
    -------
    name : str or None
        The file written, or None when no section has a basin.
    """
    drawn = [(s, label) for s, label in zip(sections, labels) if s["radii"] is not None]
    if not drawn:
        return None
    fig, ax = _figure()
    colors = (OKABE_ITO[0], OKABE_ITO[3], OKABE_ITO[2], OKABE_ITO[1])
    for (section, label), color in zip(drawn, colors):
        BasinDisplay(
            section["distances"],
            section["losses"],
            section["radii"],
            section["cutoff"],
            section["base_loss"],
            label=f"{label} (mean radius {section['mean_radius']:.3g})",
        ).plot(ax=ax, color=color)
    ax.set_title("Training loss along random filter-normalized directions")
    return _save(fig, out, name)


def volume_gap(
    out,
    gaps,
    volumes,
    cutoffs,
    ci,
    labels,
    title=None,
    name="volume_vs_gap.png",
    annealed=(),
):
    """log10 basin volume against generalization gap, one series per cutoff.

    Parameters
    ----------
    out : str
        Output folder.
    gaps : array-like of shape (n_models,)
        Generalization gaps.
    volumes : array-like of shape (n_models, n_cutoffs)
        log10 volumes (NaN where a cutoff delimits no basin).
    cutoffs : array-like of shape (n_cutoffs,)
        Loss cutoffs.
    ci : array-like of shape (n_models, n_cutoffs, 2)
        Bootstrap intervals.
    labels : list of str
        Model names.
    title : str, default=None
        Figure title.
    name : str, default='volume_vs_gap.png'
        File name.
    annealed : list of tuple, default=()
        ``(gap, cutoff, log10_volume, (low, high), reliable, label)`` of
        annealed estimates, drawn in a second panel with their intervals
        (hollow where a diagnostic warned). They lie hundreds or thousands
        of orders above the rays' estimates, which are set by a few rays,
        so one axis would show neither the gap between the networks nor the
        intervals.

    Returns
    -------
    display : VolumeGapDisplay
        The drawn display (its ``spearman_`` goes into the report).
    name : str
        The file written.
    """
    if not annealed:
        fig, ax = _figure()
    else:
        fig, (ax, right) = _figure(ncols=2, width=5.2)
    display = VolumeGapDisplay(
        gaps, volumes, cutoffs, log10_volume_ci=ci, labels=labels
    )
    display.plot(ax=ax)
    if annealed:
        _annealed_panel(right, annealed)
        ax.set_title("by rays (VolumeEstimator)", fontsize="medium")
        if title is not None:
            fig.suptitle(title)
    elif title is not None:
        ax.set_title(title)
    return display, _save(fig, out, name)


def _annealed_panel(ax, annealed):
    """Draw the annealed estimates against the gap, one marker per cutoff."""
    by_cutoff = sorted({cutoff for _, cutoff, *_ in annealed})
    warned, labelled = False, set()
    for gap, cutoff, value, (low, high), reliable, label in annealed:
        j = by_cutoff.index(cutoff)
        color = OKABE_ITO[(j + 4) % len(OKABE_ITO)]
        ax.errorbar(
            [gap],
            [value],
            yerr=[[value - low], [high - value]],
            fmt=("D", "o", "s")[j % 3],
            color=color,
            markerfacecolor=color if reliable else "white",
            markersize=7,
            capsize=4,
            zorder=3,
            label=None if j in labelled else f"CE {cutoff:g}, 95 % interval",
        )
        labelled.add(j)
        ax.annotate(
            label,
            (gap, value),
            xytext=(6, 0),
            textcoords="offset points",
            fontsize="x-small",
            va="center",
        )
        warned |= not reliable
    if warned:
        ax.plot(
            [],
            [],
            "D",
            color="0.3",
            markerfacecolor="white",
            label="hollow: a diagnostic warned",
        )
    ax.margins(x=0.15, y=0.15)
    ax.set_xlabel("generalization gap (train − test accuracy)")
    ax.set_ylabel("log$_{10}$ basin volume")
    ax.set_title("by annealing (AnnealedVolumeEstimator)", fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def margin_distributions(out, margins, labels, name="margins.png"):
    """Distributions of the training points' margins, one box per model.

    Returns
    -------
    name : str
        The file written.
    """
    fig, ax = _figure()
    MarginDistributionDisplay(margins, labels).plot(ax=ax)
    ax.set_title("Distance of training points to the decision boundary")
    return _save(fig, out, name)


def perturbation_gif(out, path, X, y, name, *, fps=10, dpi=100):
    """Save the perturbation animation of a fitted path as a GIF, atomically.

    Returns
    -------
    name : str
        The file written.
    """
    final = os.path.join(out, name)
    # The writer picks the image format from the extension: keep ".gif".
    partial = os.path.join(out, f".{name}.partial.gif")
    try:
        PerturbationAnimation.from_analyzer(path, X, y).save(
            partial, fps=fps, dpi=dpi, verbose=False
        )
        os.replace(partial, final)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return name


def measure_ranking(out, rows, title=None, name="measure_ranking.png", panels=()):
    """Kendall's tau of each measure with the gap, bars with intervals.

    Parameters
    ----------
    out : str
        Output folder.
    rows : list of dict
        A study's ranking (see :func:`~flatgen.experiments.rank_measures`).
    title : str, default=None
        Axes title.
    name : str, default='measure_ranking.png'
        File name.
    panels : sequence of (str, list of dict), default=()
        More rankings (a title and its rows each, e.g. one per model
        family), drawn to the right in the order of ``rows``.

    Returns
    -------
    name : str
        The file written.
    """
    panels = [(title, rows)] + [(t, r) for t, r in panels if r]
    fig, axes = _figure(
        ncols=len(panels), width=7.0, height=0.38 * len(rows) + 1.6, sharey=True
    )
    axes = np.atleast_1d(axes)
    order = [r["measure"] for r in rows]
    # One marker and colour per grid axis in every panel.
    axis_names = sorted(
        {
            a
            for _, r in panels
            for row in r
            for a, t in row["granulated"].items()
            if t is not None
        }
    )
    for ax, (text, ranking) in zip(axes, panels):
        known = {r["measure"] for r in ranking}
        MeasureRankingDisplay.from_rows(
            ranking, order=[m for m in order if m in known]
        ).plot(ax=ax, axis_names=axis_names)
        if text is not None:
            ax.set_title(text)
    return _save(fig, out, name)
