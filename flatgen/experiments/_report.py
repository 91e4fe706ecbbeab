"""The written side of a run: ``report.md`` and the summary printed at the end."""

import os

import numpy as np

from ..io import atomic_writer
from ..landscape._annealed import CAP_SHARE_WARN
from ..landscape._llc import _SETTLE_HALVINGS
from ..landscape._volume import rests_on_few_rays


def _fmt(value, spec=".3f"):
    if value is None:
        return "–"
    return format(value, spec)


def _pct(value):
    return "–" if value is None else f"{100 * value:.1f} %"


def table(headers, rows):
    """Return a Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _unfitted_flag(model, *, markdown):
    """Return a visible mark for networks that do not fit their training set."""
    if model.poison_factor is None or model.train_accuracy >= 1.0:
        return ""
    text = "does not fit its training set: flatness not comparable"
    return f" **({text})**" if markdown else f"   <- {text}"


def _accuracy_table(result):
    rows = [
        (
            m.name,
            "–" if m.poison_factor is None else f"{m.poison_factor:g}",
            _pct(m.train_accuracy) + _unfitted_flag(m, markdown=True),
            _pct(m.test_accuracy),
            _fmt(m.generalization_gap),
        )
        for m in result.models
    ]
    return table(["model", "poison factor", "train acc", "test acc", "gap"], rows)


# VolumeEstimator's default max_capped_fraction.
_SATURATED = 0.05


def _few_rays(result, flatness):
    """Per cutoff, the effective sample size if few rays set the volume, else None."""
    n_rays = result.settings.get("n_directions")
    ess = flatness.effective_sample_size or [None] * len(flatness.log10_volume)
    return [
        e if n_rays and e is not None and rests_on_few_rays(e, n_rays) else None
        for e in ess
    ]


def _volume_table(result):
    cutoffs = result.flatness[0].cutoffs if result.flatness else []
    gaps = {m.name: m.generalization_gap for m in result.models}
    headers = ["network", "gap", "train CE"]
    headers += [f"log10 V (CE {c:g}) [95 % CI]" for c in cutoffs]
    headers += ["top eigenvalue"]
    rows = []
    for f in result.flatness:
        cells = [f.name, _fmt(gaps.get(f.name)), _fmt(f.base_loss, ".3g")]
        capped = f.capped_fraction or [None] * len(f.log10_volume)
        few = _few_rays(result, f)
        for volume, ci, share, ess in zip(
            f.log10_volume, f.log10_volume_ci, capped, few
        ):
            if volume is None:
                cells.append("no basin")
                continue
            cell = f"{volume:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]"
            if share is not None and share > _SATURATED:
                cell += f" **saturated: {share:.0%} of rays capped**"
            if ess is not None:
                cell += (
                    f" **set by {ess:.1f} of {result.settings['n_directions']} rays**"
                )
            cells.append(cell)
        cells.append(_fmt(f.top_eigenvalue, ".3g"))
        rows.append(cells)
    return table(headers, rows)


def _share(record, key, i):
    """Format ``record[key][i]`` as a percentage; '-' where absent."""
    values = record.get(key)
    if not values or values[i] is None:
        return "-"
    return f"{values[i]:.0%}"


def _path_start(record, i):
    """Where an annealing path started and how its HMC was whitened."""
    if not record.get("start"):  # saved before the field existed
        return "-"
    start, metric = record["start"][i], record["metric"][i]
    whitening = "adaptive" if metric == "adaptive" else "model's"
    return f"{start}, {whitening} whitening"


def _annealed_text(result):
    """Describe the annealed estimates beside the rays' ones."""
    if not result.annealed_volumes:
        return ""
    rays = {f.name: f for f in result.flatness}
    rows, notes = [], []
    for name, record in result.annealed_volumes.items():
        for i, cutoff in enumerate(record["cutoffs"]):
            volume, ci = record["log10_volume"][i], record["log10_volume_ci"][i]
            ray_cell = "-"
            flat = rays.get(name)
            if flat is not None and cutoff in flat.cutoffs:
                j = flat.cutoffs.index(cutoff)
                if flat.log10_volume[j] is not None:
                    low, high = flat.log10_volume_ci[j]
                    ray_cell = f"{flat.log10_volume[j]:.1f} [{low:.1f}, {high:.1f}]"
            runs = ", ".join(_fmt(v, ".1f") for v in record["run_log10_volumes"][i])
            hysteresis = max(abs(h) for h in record["hysteresis"][i] if h is not None)
            rows.append(
                [
                    name,
                    f"{cutoff:g}",
                    f"{volume:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]"
                    + ("" if record["reliable"][i] else " **diagnostics warned**"),
                    runs,
                    f"{hysteresis:.2f}",
                    _rhat_cell(record, i),
                    f"{record['star_shaped_share'][i]:.0%}",
                    _share(record, "cap_share", i),
                    _path_start(record, i),
                    ray_cell,
                ]
            )
            # Where the cap bounds the basin, the estimator's own warning
            # (among the record's warnings below) says so.
        notes += [f"{name}: {w}" for w in record["warnings"]]
        if record.get("basin", "star") == "sublevel":
            # Results saved before the option existed measured the sublevel
            # set too; they have no "basin" and say so through star-shaped.
            notes.append(
                f"{name}: the sublevel set of the loss was measured "
                "(basin='sublevel'), not the star-shaped basin of the rays."
            )
        rows[-1].append(f"{record['seconds'] / 60:.1f} min")
    headers = [
        "network",
        "CE",
        "annealed log10 V [95 % CI]",
        "runs",
        "max hysteresis",
        "R-hat (each run's)",
        "star-shaped",
        "at cap",
        "start",
        "rays' log10 V [95 % CI]",
        "time",
    ]
    for row in rows:
        if len(row) < len(headers):
            row.append("")
    caps = {
        f"{r['log10_cap_volume']:.1f}"
        for r in result.annealed_volumes.values()
        if r.get("log10_cap_volume") is not None
    }
    cap_text = f" (log10 V of the cap ball: {', '.join(sorted(caps))})" if caps else ""
    text = (
        "Measured by annealing (`AnnealedVolumeEstimator`): thermodynamic "
        "integration of the Gibbs measure exp(-t (L - L0)) over the cap ball"
        f"{cap_text}, with Hamiltonian Monte Carlo chains, inverted at the "
        "saddle point of its Laplace transform; by default of the star-shaped "
        "basin, as the rays (L replaced by its maximum along the segment from "
        "the minimum). 'start' says where the paths began: the cap ball "
        "itself (uniform, t = 0), or the basin's calibrated quadratic model; "
        "and which whitening HMC used (adapted to the chains' gradients, or "
        "the model's). 'at cap' is the share of HMC trajectories at the saddle "
        "point that reflected off the cap ball (near 100 %: the cap bounds "
        "the basin). "
        "Each interval is Student's t over independent runs, widened by half "
        "of each run's forward/backward hysteresis (the chains' lag behind "
        "the path); an interval whose diagnostics warned (lag above one order, "
        "R-hat above 1.1) may be too narrow. 'star-shaped' is the share of the "
        "final samples whose segment from the minimum, checked at 1,024 points, "
        "stays below the cutoff (100 %: the same set as the rays measure).\n\n"
        + table(headers, rows)
    )
    if notes:
        text += "\n\nWarnings: " + " ".join(notes)
    return text


def _radius_table(result):
    cutoffs = result.flatness[0].cutoffs if result.flatness else []
    headers = ["network"] + [f"median radius (CE {c:g})" for c in cutoffs]
    rows = [
        [f.name] + [_fmt(r, ".4g") for r in f.median_radius] for f in result.flatness
    ]
    return table(headers, rows)


def _spearman_line(result):
    parts = [
        f"cutoff {c}: {_fmt(r, '.2f')}" for c, r in sorted(result.spearman.items())
    ]
    return "Spearman correlation of log10 volume with the gap: " + "; ".join(parts)


def _interval(ci):
    return "–" if ci[0] is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _ranking_table(ranking):
    # Axes with no tau anywhere (they vary only between families) are left out.
    axes = sorted(
        {a for r in ranking for a, t in r["granulated"].items() if t is not None}
    )
    rows = [
        [r["measure"], _fmt(r["tau"], ".2f"), _interval(r["tau_ci"])]
        + [_fmt(r["granulated"].get(a), ".2f") for a in axes]
        + [_fmt(r["mean_granulated"], ".2f"), str(r["n_models"])]
        for r in ranking
    ]
    headers = ["measure", "tau", "95 % interval"] + [f"tau along {a}" for a in axes]
    return table(headers + ["psi", "models"], rows)


def _study_text(result):
    study = result.study
    ranking = study.get("ranking", [])
    families = study.get("families", [])
    lines = [
        f"Kendall's tau of each measure with the generalization gap over the "
        f"{ranking[0]['n_models'] if ranking else 0} models that reach "
        f"{_pct(study.get('min_train_accuracy'))} training accuracy, with a 95 % "
        "bootstrap interval over models, and the granulated tau along each grid "
        "axis (mean over the settings of the other axes; psi is their mean). "
        "Every measure is oriented so that larger means sharper or more complex.",
        "",
    ]
    if families:
        lines[0] += (
            " Pooled over the model families first (granulated taus within a "
            "family), then each family alone."
        )
    if study.get("excluded"):
        lines += [
            f"**Left out (training set not fitted): {', '.join(study['excluded'])}.**",
            "",
        ]
    if not ranking:
        return "\n".join(lines + ["Fewer than 3 models fit their training set."])
    # One entry per model and reason, naming every measure it flags (the
    # two volume measures share theirs).
    grouped = {}
    for m in study["models"]:
        for k, v in m["flags"].items():
            grouped.setdefault((m["name"], v), []).append(k)
    flagged = sorted(
        f"{name}: {', '.join(measures)} ({reason})"
        for (name, reason), measures in grouped.items()
    )
    # A measure that is not finite for some models ranks fewer of them: say so.
    text = list(lines)
    if families:
        pooled = ranking[0]["n_models"]
        text += [_table_title(f"All families pooled ({pooled} models)"), ""]
    text += [_ranking_table(ranking)]
    for family in families:
        text += ["", _table_title(f"{family['label']} ({family['n_models']} models)")]
        text += [
            "",
            _ranking_table(family["ranking"])
            if family["ranking"]
            else "Fewer than 3 models of this family fit their training set.",
        ]
    text += _disagreement_text(study.get("disagreements", []), families)
    text += _llc_text(study, result.settings.get("family_labels", {}))
    text += _volume_text(study, result.settings)
    if flagged:
        text += [
            "",
            "Flagged values (bounds, or chains the analyzer warned about): "
            + "; ".join(flagged)
            + ".",
        ]
    text += _scale_sweep_text(study.get("scale_sweep", []))
    for family in families:
        sweep = _scale_sweep_text(family.get("scale_sweep", []))
        if sweep:
            text += ["", _table_title(f"Scale sweep, {family['label']}")] + sweep
    return "\n".join(text)


def _rhat_cell(record, i):
    """Format the largest split R-hat, then each run's.

    Records saved before the runs' R-hats were kept show the largest only.
    """
    cell = _fmt(record["rhat"][i], ".3f")
    runs = record.get("run_rhats")
    if runs is not None:
        cell += " (" + ", ".join(_fmt(v, ".2f") for v in runs[i]) + ")"
    return cell


def _llc_text(study, labels):
    """How many models' learning-coefficient chains mixed, per family."""
    found = study.get("learning_coefficients")
    if not found:
        return []
    by_family, halved = {}, {}
    models = [row for row in study["models"] if row["name"] in found]
    for row in models:
        record = found[row["name"]]
        mixed = by_family.setdefault(row["family"], [0, 0])
        mixed[0] += record["converged"]
        mixed[1] += 1
        if record.get("step_halvings"):
            halved.setdefault(row["family"], []).append(record["step_halvings"])
    counts = "; ".join(
        f"{m} of {n} {labels.get(family, family or 'models')}"
        for family, (m, n) in by_family.items()
    )
    text = [
        "",
        "The local learning coefficient's chains mixed without a warning "
        "(split R-hat at most 1.1, losses finite and not below the "
        f"minimum's) on {counts}. local_learning_coefficient ranks every "
        "model, local_learning_coefficient_mixed those whose chains mixed "
        "only; poisoned minima mix worse, so the two together show how much "
        "of its tau the sampler sets.",
    ]
    if halved:
        # Where the rule's step diverged the estimate comes from a smaller
        # step than the other models': the reader should know how many.
        per_family = "; ".join(
            f"{len(h)} of {by_family[family][1]} "
            f"{labels.get(family, family or 'models')} ("
            + (f"{min(h)}" if min(h) == max(h) else f"{min(h)}-{max(h)}")
            + " halvings)"
            for family, h in halved.items()
        )
        text[-1] += (
            " The step rule's step diverged and was halved until the chains "
            "ran through (the estimate from a run "
            f"{_SETTLE_HALVINGS} halvings further) on "
            f"{per_family}."
        )
    elif all(found[row["name"]].get("step_halvings") == 0 for row in models):
        text[-1] += " The step rule's step ran through on every model (no halving)."
    return text


def _volume_text(study, settings):
    """How the annealed basin volumes were measured, how wide, how trusted."""
    found = study.get("basin_volumes")
    if not found:
        return []
    preset = settings.get("annealed", {})
    widths, reliable, total, seconds = [], 0, 0, 0.0
    for record in found.values():
        seconds += record.get("seconds", 0.0)
        for (low, high), ok in zip(record["log10_volume_ci"], record["reliable"]):
            total += 1
            reliable += bool(ok)
            if low is not None and high is not None:
                widths.append(high - low)
    labels = settings.get("family_labels", {})
    measured = {r["family"] for r in study["models"] if r["name"] in found}
    left = [f for f in settings.get("families", []) if f not in measured]
    width_text = (
        f"median 95 % interval {np.median(widths):.1f} orders of magnitude wide "
        f"({min(widths):.1f}-{max(widths):.1f})"
        if widths
        else "no finite interval"
    )
    lines = [
        "",
        "The basin log-volume was measured by annealing "
        f"(AnnealedVolumeEstimator: {preset.get('n_runs', 4)} runs of "
        f"{preset.get('n_chains', 16)} chains, {preset.get('n_steps', 20)} HMC "
        "transitions per temperature) at training cross-entropy "
        + ", ".join(f"{c:g}" for c in settings.get("annealed_cutoffs", []))
        + f" on {len(found)} models: {width_text}; {reliable} of {total} "
        f"estimates without a diagnostic warning; {seconds / 60:.0f} min of "
        "worker time. neg_log10_basin_volume_ce* ranks minus the log-volume "
        "(the paper's measure; it grows with the number of weights, so across "
        "widths it also orders widths), neg_log10_volume_radius_ce* minus "
        "log10 of the radius of the ball of equal volume in units of the "
        "cap's radius (per weight).",
    ]
    if left:
        names = ", ".join(labels.get(f, f) for f in left)
        lines[-1] += (
            f" Not measured on {names} (the preset's volume_families): those "
            "models have no value and are left out of these measures' "
            "rankings, pooled ones included."
        )
    return lines


def _table_title(text):
    """Return a bold line naming the table below it."""
    return f"**{text}**"


def _tau_cell(entry):
    return (
        f"{_fmt(entry['tau'], '.2f')} {_interval(entry['tau_ci'])} (#{entry['rank']})"
    )


def _disagreement_text(found, families):
    """Per measure, tau and rank in each family; where the intervals part."""
    if not found:
        return []
    labels = {f["family"]: f["label"] for f in families}
    names = list(found[0]["taus"])
    rows = [
        [row["measure"]]
        + [_tau_cell(row["taus"][n]) for n in names]
        + ["yes" if row["disagree"] else "no"]
        for row in found
    ]
    parted = [row["measure"] for row in found if row["disagree"]]
    agreed = [
        row["measure"]
        for row in found
        if not row["disagree"] and all(row["taus"][n]["rank"] <= 5 for n in names)
    ]
    summary = (
        "The families disagree (95 % intervals of tau do not overlap) on: "
        + (", ".join(parted) if parted else "no measure")
        + ". In the top five of every family: "
        + (", ".join(agreed) if agreed else "no measure")
        + "."
    )
    return [
        "",
        _table_title("Where the families agree and where they do not"),
        "",
        "Tau with its 95 % interval and rank (#1 the best) in each family, "
        "sorted by how far the families' taus lie apart.",
        "",
        table(
            ["measure"] + [f"tau in {labels[n]}" for n in names] + ["disagree"], rows
        ),
        "",
        summary,
    ]


def _scale_sweep_text(sweep):
    """Table of each perturbation-based measure's tau at several scales."""
    if not sweep:
        return []
    factors = sorted({f for row in sweep for f in row["taus"]}, key=float)
    rows = []
    for row in sweep:
        cells = [row["measure"]]
        for f in factors:
            entry = row["taus"].get(f)
            if entry is None or entry["tau"] is None:
                cells.append("–")
            elif entry["tau_ci"][0] is None:
                cells.append(_fmt(entry["tau"], ".2f"))
            else:
                low, high = entry["tau_ci"]
                cells.append(f"{entry['tau']:.2f} [{low:.2f}, {high:.2f}]")
        rows.append(cells)
    return [
        "",
        "How each perturbation-based measure's tau depends on its scale: the "
        "same measure at multiples of its preset radius, sigma or PAC-Bayes "
        "bound (x1 is the ranking above), with 95 % intervals.",
        "",
        table(["measure"] + [f"x{f}" for f in factors], rows),
    ]


def _sections(result):
    """``(title, figure keys, text)`` of each report section."""
    figures = result.figures
    sections = []
    # The accuracy table heads the report; the figures of the sweep and the
    # decision boundaries show it rather than repeat it.
    if "poison_sweep" in figures:
        sections.append(
            ("Poison sweep", ["poison_sweep"], "Accuracies: see the table above.")
        )
    if "decision_boundaries" in figures:
        sections.append(
            (
                "Decision boundaries",
                ["decision_boundaries"],
                "Training points marked right or wrong; accuracies above.",
            )
        )
    if "basin_cross_sections" in figures:
        lines = [
            f"- {name}: mean basin radius {_fmt(r, '.4g')} at cutoff "
            f"{result.settings.get('basin_cutoff')}"
            for name, r in result.basin_radii.items()
        ]
        sections.append(
            ("Basin cross-sections", ["basin_cross_sections"], "\n".join(lines))
        )
    if result.study:
        sections.append(
            ("Which measure predicts the gap", ["measure_ranking"], _study_text(result))
        )
    if "volume_vs_gap" not in figures:
        return sections + _later_sections(result)
    estimator = result.settings.get("volume_estimator", "preconditioned")
    space = (
        "filter-normalized coordinates (each weight divided by its filter's norm)"
        if estimator != "paper"
        else "units of the paper's filter-normalized directions"
    )
    where = (
        f"Volumes are Lebesgue volumes in {space}, estimated with "
        f"`VolumeEstimator(method={estimator!r})`. Each 95 % interval is one of "
        "two kinds: where many rays carry the estimate, the delta-method "
        "interval of the rays' importance weights; where a few rays set it "
        "(flagged **set by ... rays**), sure bounds instead: below, Markov's "
        "inequality on the unbiased mean of the weights (the truth is above "
        "estimate - log10(40) with probability 97.5 %, whatever the tails); "
        "above, only the volume of the capped ball the rays search, since no "
        "finite number of rays bounds a volume from above. A flagged estimate "
        "is a lower bound in practice: the true volume is usually above it "
        "(see the effective sample size in `summary.json`)."
    )
    parts = [
        where,
        _volume_table(result),
        _cap_share_line(result),
        _annealed_text(result),
        _radius_table(result),
        _spearman_line(result),
    ]
    text = "\n\n".join(part for part in parts if part)
    sections.append(("Log-volume vs generalization gap", ["volume_vs_gap"], text))
    return sections + _later_sections(result)


def _cap_share_line(result):
    """Where rays at the search cap carry a visible share of an estimate."""
    shares = []
    for f in result.flatness:
        for cutoff, share in zip(f.cutoffs, f.capped_volume_share or []):
            if share is not None and share >= 0.005:
                shares.append(f"{f.name} at CE {cutoff:g}: {share:.0%}")
    if not shares:
        return (
            "Rays that reached the search cap carry less than 0.5 % of every estimate."
        )
    return (
        "Share of the estimate carried by rays that reached the search cap (the "
        "basin is wider than the cap there, so the estimate is a lower bound "
        "set partly by the cap): " + "; ".join(shares) + "."
    )


def _later_sections(result):
    figures = result.figures
    sections = []
    if "margins" in figures:
        rows = [
            (
                m.name,
                _fmt(m.median_margin, ".3g"),
                _fmt(m.median_test_margin, ".3g"),
                _pct(m.capped_fraction),
            )
            for m in result.margins
        ]
        sections.append(
            (
                "Margins",
                ["margins"],
                table(
                    [
                        "model",
                        "median train margin",
                        "median test margin",
                        "no boundary in reach",
                    ],
                    rows,
                ),
            )
        )
    gifs = [key for key in figures if key.startswith("perturbation_")]
    if gifs:
        rows = [
            (
                name,
                _fmt(p["max_coefficient"], ".3g"),
                _fmt(p["loss_at_minimum"], ".3g"),
                _fmt(p["max_loss"], ".3g"),
                _pct(p["min_accuracy"]),
                _fmt(p["curvature_at_minimum"], ".3g"),
            )
            for name, p in result.perturbation.items()
        ]
        sections.append(
            (
                "Perturbation animations",
                gifs,
                table(
                    [
                        "network",
                        "max step",
                        "train CE at minimum",
                        "max train CE",
                        "min train acc",
                        "curvature at minimum",
                    ],
                    rows,
                ),
            )
        )
    return sections


def render_report(result, paper=""):
    """Return the Markdown of ``report.md``; ``paper`` quotes what the paper found."""
    s = result.settings
    lines = [
        f"# flatgen {result.experiment}: report",
        "",
        f"random_state {result.seeds.get('random_state')}, "
        f"{'quick' if s.get('quick') else 'full'} settings, flatgen "
        f"{result.versions.get('flatgen')}, torch {result.versions.get('torch')}. "
        "Every number is also in `summary.json`; settings and seeds are there too.",
        "",
        "## Accuracy",
        "",
        _accuracy_table(result),
        "",
        paper,
        "",
    ]
    for title, keys, text in _sections(result):
        lines += [f"## {title}", ""]
        lines += [
            f"![{key}]({result.figures[key]})" for key in keys if key in result.figures
        ]
        lines += ["", text, ""]
    computed, reused = result.steps.get("computed", []), result.steps.get("reused", [])
    lines += [
        "## Run",
        "",
        f"{len(computed)} steps computed, {len(reused)} reused from an earlier run; "
        f"{result.timings.get('total_seconds', 0):.0f} s wall time.",
        "",
    ]
    return "\n".join(lines)


def write_report(out, result, paper=""):
    """Write ``report.md`` atomically; return its file name."""
    with atomic_writer(os.path.join(out, "report.md")) as f:
        f.write(render_report(result, paper).encode("utf-8"))
    return "report.md"


def format_summary(result, out):
    """Return the plain-text summary the command line prints at the end."""
    lines = [f"flatgen {result.experiment}: results in {out}", ""]
    width = max([18] + [len(m.name) + 2 for m in result.models])
    header = f"{'model':<{width}}{'train acc':>10}{'test acc':>10}{'gap':>8}"
    lines.append(header)
    for m in result.models:
        lines.append(
            f"{m.name:<{width}}{m.train_accuracy:>10.3f}{m.test_accuracy:>10.3f}"
            f"{m.generalization_gap:>8.3f}{_unfitted_flag(m, markdown=False)}"
        )
    if result.flatness:
        cutoffs = result.flatness[0].cutoffs
        estimator = result.settings.get("volume_estimator", "preconditioned")
        lines += [
            "",
            "log10 basin volume by training-loss cutoff "
            f"(VolumeEstimator(method={estimator!r})), top Hessian eigenvalue",
        ]
        head = f"{'network':<18}" + "".join(
            f"{'CE ' + format(c, 'g'):>12}" for c in cutoffs
        )
        lines.append(head + f"{'curv':>10}")
        flagged = False
        for f in result.flatness:
            cells = ""
            for volume, ess in zip(f.log10_volume, _few_rays(result, f)):
                text = "no basin" if volume is None else format(volume, ".1f")
                if volume is not None and ess is not None:
                    text, flagged = text + "*", True
                cells += f"{text:>12}"
            lines.append(f"{f.name:<18}{cells}{f.top_eigenvalue:>10.3g}")
        if flagged:
            lines.append(
                "* set by a few rays (effective sample size under 10 %): "
                "usually an underestimate; see report.md"
            )
    if result.annealed_volumes:
        lines += ["", "log10 V by annealing (AnnealedVolumeEstimator) [95 % CI]:"]
        for name, record in result.annealed_volumes.items():
            for i, cutoff in enumerate(record["cutoffs"]):
                low, high = record["log10_volume_ci"][i]
                flags = [] if record["reliable"][i] else ["diagnostics warned"]
                cap_share = (record.get("cap_share") or [None] * (i + 1))[i]
                if cap_share is not None and cap_share >= CAP_SHARE_WARN:
                    flags.append("the cap bounds it")
                flag = f"  ({'; '.join(flags)})" if flags else ""
                lines.append(
                    f"  {name:<16} CE {cutoff:g}: {record['log10_volume'][i]:.1f} "
                    f"[{low:.1f}, {high:.1f}]{flag}"
                )
    if result.study.get("ranking"):
        # With several families: the pooled tau, then each family's.
        families = result.study.get("families", [])
        taus = [
            {r["measure"]: r["tau"] for r in family["ranking"]} for family in families
        ]
        header = f"{'measure':<32}{'tau':>7}{'95 % interval':>18}{'psi':>7}"
        header += "".join(f"{'tau ' + f['family']:>10}" for f in families)
        lines += ["", header]
        for r in result.study["ranking"]:
            lines.append(
                f"{r['measure']:<32}{_fmt(r['tau'], '.2f'):>7}"
                f"{_interval(r['tau_ci']):>18}{_fmt(r['mean_granulated'], '.2f'):>7}"
                + "".join(f"{_fmt(t.get(r['measure']), '.2f'):>10}" for t in taus)
            )
        parted = [
            d["measure"] for d in result.study.get("disagreements", []) if d["disagree"]
        ]
        if families:
            lines.append(
                "families disagree (intervals apart) on: "
                + (", ".join(parted) if parted else "none")
            )
    if result.study.get("excluded"):
        lines.append(
            "left out (training set not fitted): " + ", ".join(result.study["excluded"])
        )
    if result.margins:
        lines += [
            "",
            "median margin (input space): "
            + ", ".join(f"{m.name} {m.median_margin:.3g}" for m in result.margins),
        ]
    if result.basin_radii:
        lines.append(
            "mean basin radius: "
            + ", ".join(
                f"{name} {_fmt(r, '.4g')}" for name, r in result.basin_radii.items()
            )
        )
    computed, reused = result.steps.get("computed", []), result.steps.get("reused", [])
    lines += [
        "",
        f"{len(computed)} steps computed, {len(reused)} reused; "
        f"{result.timings.get('total_seconds', 0):.0f} s. Files: "
        + ", ".join(["summary.json", "report.md"] + sorted(result.figures.values())),
    ]
    return "\n".join(lines)
