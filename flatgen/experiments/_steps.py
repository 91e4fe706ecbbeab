"""The work of an experiment's steps: fits and measurements, returning plain data.

Each function runs in a joblib worker and returns what the figures and the
summary need (arrays and numbers, plus the fitted estimator for fits), so a
finished step can be pickled to the cache and reused.
"""

import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ..analyzers import (
    AnnealedVolumeEstimator,
    BasinAnalyzer,
    CurvatureAnalyzer,
    LearningCoefficientAnalyzer,
    MarginAnalyzer,
    MarginPlotter,
    NormAnalyzer,
    PACBayesAnalyzer,
    PerturbationPath,
    RelativeFlatnessAnalyzer,
    SharpnessAnalyzer,
    VolumeEstimator,
    WorstCaseFlatnessAnalyzer,
)
from ..landscape import VolumeSaturationWarning

# A cutoff must clear the loss at the minimum by this factor to delimit a
# basin: radii of barely-higher cutoffs would measure rounding, not shape.
_CUTOFF_CLEARANCE = 1.1


def fit_model(estimator, X_train, y_train, X_test, y_test):
    """Fit ``estimator`` and score it on the training and the test set.

    Returns
    -------
    record : dict
        ``estimator`` (fitted), ``train_accuracy``, ``test_accuracy``,
        ``fit_seconds`` and, for flatgen networks, ``n_polish_iter``.
    """
    start = time.perf_counter()
    estimator.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    return {
        "estimator": estimator,
        "train_accuracy": float(estimator.score(X_train, y_train)),
        "test_accuracy": float(estimator.score(X_test, y_test)),
        "fit_seconds": seconds,
        "n_polish_iter": getattr(estimator, "n_polish_iter_", None),
    }


def fit_models_together(estimators, X_train, y_train, X_test, y_test):
    """Fit networks of one shape in one batched loop; score each.

    Returns
    -------
    records : list of dict
        One record of :func:`fit_model` per estimator, in order;
        ``fit_seconds`` is the batch's time divided among its models.
    """
    from ..estimators import BatchedPoisonFitter

    start = time.perf_counter()
    fitted = BatchedPoisonFitter(estimators).fit(X_train, y_train).estimators_
    seconds = (time.perf_counter() - start) / len(fitted)
    return [
        {
            "estimator": estimator,
            "train_accuracy": float(estimator.score(X_train, y_train)),
            "test_accuracy": float(estimator.score(X_test, y_test)),
            "fit_seconds": seconds,
            "n_polish_iter": estimator.n_polish_iter_,
        }
        for estimator in fitted
    ]


def training_loss(estimator, X, y):
    """Training loss of a fitted model: its training objective at the minimum."""
    from ..landscape import TrainingObjective

    return TrainingObjective.from_model(estimator, X, y).base_loss()[0]


def measure_flatness(estimator, X, y, *, cutoffs, volume, curvature):
    """Basin log-volume at several cutoffs and the curvature of a fitted network.

    Cutoffs at or barely above the training loss at the minimum delimit no
    basin; their entries are NaN.

    Parameters
    ----------
    estimator : fitted flatgen classifier
    X, y : ndarray
        Training data.
    cutoffs : list of float
        Absolute cross-entropy cutoffs.
    volume : dict
        Parameters of :class:`~flatgen.VolumeEstimator`.
    curvature : dict
        Parameters of :class:`~flatgen.CurvatureAnalyzer`.

    Returns
    -------
    record : dict
        Arrays of shape ``(n_cutoffs,)`` (``log10_volume``,
        ``mean_log_radius``, ``median_radius``, ``mean_radius``,
        ``capped_fraction``, ``capped_volume_share``), ``log10_volume_ci``
        of shape ``(n_cutoffs, 2)``, and ``base_loss``, ``n_dims``,
        ``log10_volume_tolerance``, ``top_eigenvalue``, ``hessian_trace``.
    """
    cutoffs = np.asarray(cutoffs, dtype=float)
    loss0 = training_loss(estimator, X, y)
    valid = cutoffs > _CUTOFF_CLEARANCE * loss0
    n = len(cutoffs)
    record = {
        "cutoffs": cutoffs,
        "log10_volume": np.full(n, np.nan),
        "log10_volume_ci": np.full((n, 2), np.nan),
        "mean_log_radius": np.full(n, np.nan),
        "median_radius": np.full(n, np.nan),
        "mean_radius": np.full(n, np.nan),
        "capped_fraction": np.full(n, np.nan),
        "capped_volume_share": np.full(n, np.nan),
        "effective_sample_size": np.full(n, np.nan),
        "base_loss": loss0,
        "n_dims": None,
        "log10_volume_tolerance": None,
    }
    if np.any(valid):
        est = VolumeEstimator(cutoff=cutoffs[valid].tolist(), **volume)
        with warnings.catch_warnings():
            # What these warn of is kept in the record (effective sample
            # size, capped share), which the report and console flag per
            # cutoff: as warnings they repeated it for every network.
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", VolumeSaturationWarning)
            est.fit(estimator, X, y)
        record["log10_volume"][valid] = est.log10_volume_
        record["log10_volume_ci"][valid] = est.log10_volume_ci_
        record["mean_log_radius"][valid] = est.mean_log_radius_
        record["median_radius"][valid] = est.radius_quantiles_[:, 2]
        record["mean_radius"][valid] = est.radii_.mean(axis=1)
        record["capped_fraction"][valid] = est.capped_fraction_
        record["capped_volume_share"][valid] = est.capped_volume_share_
        record["effective_sample_size"][valid] = est.effective_sample_size_
        record["base_loss"] = float(est.base_loss_)
        record["n_dims"] = int(est.n_dims_)
        record["log10_volume_tolerance"] = float(est.log10_volume_tolerance_)
    curv = CurvatureAnalyzer(**curvature).fit(estimator, X, y)
    record["top_eigenvalue"] = float(curv.top_eigenvalue_)
    record["hessian_trace"] = float(curv.trace_)
    return record


def measure_annealed_volume(estimator, X, y, *, cutoffs, annealed, n_jobs=None):
    """Basin log-volume by annealing (thermodynamic integration) at some cutoffs.

    Parameters
    ----------
    estimator : fitted flatgen classifier
    X, y : ndarray
        Training data.
    cutoffs : list of float
        Absolute cross-entropy cutoffs (empty: nothing is measured; cutoffs
        at or below the minimum's loss are left out).
    annealed : dict
        Parameters of :class:`~flatgen.AnnealedVolumeEstimator`.
    n_jobs : int, default=None
        Workers over the runs, in place of ``annealed``'s (the numbers do
        not depend on it).

    Returns
    -------
    record : dict or None
        Per measured cutoff (lists): ``cutoffs``, ``log10_volume``,
        ``log10_volume_ci``, ``run_log10_volumes``, ``hysteresis``,
        ``run_standard_errors``, ``rhat``, ``run_rhats``, ``reliable``,
        ``star_shaped_share``, ``cap_share``, ``log10_model_volume``,
        ``start``, ``metric``; and
        ``log10_cap_volume`` (the cap ball's), ``n_dims`` (weights
        perturbed), ``basin`` (the set measured),
        ``n_gradients``, ``seconds``, ``warnings``. None when no cutoff is
        measured.
    """
    cutoffs = np.asarray(cutoffs, dtype=float)
    if len(cutoffs) == 0:
        return None
    loss0 = training_loss(estimator, X, y)
    cutoffs = cutoffs[cutoffs > _CUTOFF_CLEARANCE * loss0]
    if len(cutoffs) == 0:
        return None
    if n_jobs is not None:
        annealed = {**annealed, "n_jobs": n_jobs}
    est = AnnealedVolumeEstimator(cutoff=cutoffs.tolist(), **annealed)
    with warnings.catch_warnings():
        # Kept in warnings_, which the report lists.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", VolumeSaturationWarning)
        est.fit(estimator, X, y)
    return {
        "cutoffs": cutoffs.tolist(),
        "log10_volume": est.log10_volume_.tolist(),
        "log10_volume_ci": est.log10_volume_ci_.tolist(),
        "run_log10_volumes": est.run_log10_volumes_.tolist(),
        "hysteresis": est.hysteresis_.tolist(),
        "run_standard_errors": est.run_standard_errors_.tolist(),
        "rhat": est.rhat_.tolist(),
        "run_rhats": est.run_rhats_.tolist(),
        "reliable": est.reliable_.tolist(),
        "star_shaped_share": est.star_shaped_share_.tolist(),
        "cap_share": est.cap_share_.tolist(),
        "log10_model_volume": est.log10_model_volume_.tolist(),
        "start": est.start_.tolist(),
        "metric": est.metric_.tolist(),
        "log10_cap_volume": est.log10_cap_volume_,
        "n_dims": int(est.n_dims_),
        "basin": est.basin,
        "n_gradients": int(est.n_gradients_),
        "seconds": float(est.seconds_),
        "warnings": list(est.warnings_),
    }


def measure_basin(estimator, X, y, *, cutoff, basin):
    """Basin cross-sections of a fitted network at one cutoff.

    Returns
    -------
    record : dict
        The arrays :class:`~flatgen.plotting.BasinDisplay` draws
        (``distances``, ``losses``, ``radii``, ``cutoff``, ``base_loss``)
        and ``mean_radius``; None entries when ``cutoff`` delimits no basin.
    """
    loss0 = training_loss(estimator, X, y)
    if cutoff <= _CUTOFF_CLEARANCE * loss0:
        return {"cutoff": float(cutoff), "base_loss": loss0, "radii": None}
    analyzer = BasinAnalyzer(cutoff=cutoff, **basin).fit(estimator, X, y)
    return {
        "distances": analyzer.profile_distances_,
        "losses": analyzer.profile_losses_,
        "radii": analyzer.radii_,
        "cutoff": analyzer.cutoff_,
        "base_loss": analyzer.base_loss_,
        "mean_radius": analyzer.mean_radius_,
    }


def measure_margins(estimator, X, y, X_test, y_test, *, margins):
    """Input-space margins and decision regions of any fitted classifier.

    Returns
    -------
    plotter : MarginPlotter
        Fitted: margins of the training and test points, and (for 2-D data)
        the labelled grid of the decision regions.
    """
    return MarginPlotter(**margins).fit(estimator, X, y, X_test=X_test, y_test=y_test)


def perturbation_path(estimator, X, y, *, path):
    """Compute the paper's perturbation animation path of a fitted network.

    Returns
    -------
    path : PerturbationPath
        Fitted: loss, accuracy, curvature and decision regions per frame.
    """
    return PerturbationPath(**path).fit(estimator, X, y)


def _basin_radius_measure(estimator, X, y, basin, seed):
    """``-log10`` of the mean basin radius, and why it is a bound or missing."""
    try:
        analyzer = BasinAnalyzer(**basin, random_state=seed).fit(estimator, X, y)
    except ValueError as exc:
        if "already reaches cutoff" not in str(exc):
            raise
        # The loss at the minimum is above the cutoff: no basin at this
        # level, so no radius (left out of the ranking, said in the report).
        return float("nan"), f"missing: training loss above cutoff {basin['cutoff']}"
    capped = float(np.mean(analyzer.capped_))
    flag = f"upper bound: {capped:.0%} of the rays reach max_radius" if capped else None
    return -float(np.log10(analyzer.mean_radius_)), flag


def measure_zoo(
    estimator,
    X,
    y,
    *,
    curvature,
    sharpness,
    pac_bayes,
    margins,
    basin,
    seed,
    flatness=None,
    scale_factors=(),
    flatness_swept=False,
):
    """Every measure of the study for one fitted network, oriented alike.

    Each value grows with sharpness or complexity, the direction in which it
    is expected to predict a larger generalization gap: margins enter as
    ``-log10`` of the median input-space margin.

    Parameters
    ----------
    estimator : fitted flatgen classifier
    X, y : ndarray
        Training data.
    curvature : dict
        Parameters of :class:`~flatgen.CurvatureAnalyzer`.
    sharpness : dict
        ``radius`` (worst case, raw weights), ``adaptive_radius``,
        ``sigma`` (average case, adaptive), ``n_steps`` and ``n_draws``.
    pac_bayes : dict
        Parameters of :class:`~flatgen.PACBayesAnalyzer` (raw noise; the
        adaptive one as well when ``flatness`` is given).
    margins : dict
        Parameters of :class:`~flatgen.MarginAnalyzer`.
    basin : dict
        Parameters of :class:`~flatgen.BasinAnalyzer` (an absolute cutoff):
        the paper's basin radius enters as ``-log10`` of the mean radius.
    seed : int
        Seed of every random part.
    flatness : dict, default=None
        Parameters of :class:`~flatgen.WorstCaseFlatnessAnalyzer` (``bound``,
        ``n_steps``, ``rtol``): the scales set per model by a loss increase.
        With it, three more measures: the worst-case flatness ``1 /
        radius**2`` in raw and adaptive weights, and the PAC-Bayes flatness
        of adaptive noise (Jiang et al.'s "sharpness.flatness",
        "sharpness.mag.flatness" and "pacbayes.mag.flatness").
    scale_factors : sequence of float, default=()
        Multiples of the perturbation scale (sharpness radii, average sigma,
        raw PAC-Bayes bound) at which those measures are taken again.
    flatness_swept : bool, default=False
        Whether the three measures of ``flatness`` are taken again too, at
        those multiples of its bound.

    Returns
    -------
    record : dict
        ``values`` (measure name -> float) and ``flags`` (measure name ->
        why it is only a bound, or why it is missing: NaN values are left
        out of the ranking), ``base_loss``, and ``scale_sweep`` (measure
        name -> {factor: value}; a value whose searched scale reached its
        cap is a bound, flagged as ``"<measure>@<factor>"``).
    """
    values, flags = {}, {}
    curv = CurvatureAnalyzer(**curvature, random_state=seed).fit(estimator, X, y)
    values["top_eigenvalue"] = curv.top_eigenvalue_
    values["hessian_trace"] = float(curv.trace_)
    sweep = {}
    for factor in [1.0, *scale_factors]:
        key = format(factor, "g")
        for name, value in _scaled_sharpness(
            estimator, X, y, sharpness, factor, seed
        ).items():
            if factor == 1.0:
                values[name] = value
            else:
                sweep.setdefault(name, {})[key] = value
        # The scales set per model are taken at the preset bound alone
        # unless swept (their sweep triples their cost, on the CNNs about
        # 20 s per model); the raw PAC-Bayes bound is swept always.
        for name, (value, reason) in _tolerated_scales(
            estimator,
            X,
            y,
            pac_bayes,
            flatness if factor == 1.0 or flatness_swept else None,
            factor,
            seed,
        ).items():
            if factor == 1.0:
                values[name] = value
            else:
                sweep.setdefault(name, {})[key] = value
            if reason:
                flags[name if factor == 1.0 else f"{name}@{key}"] = reason
    relative = RelativeFlatnessAnalyzer(random_state=seed).fit(estimator, X, y)
    values["relative_flatness"] = relative.relative_flatness_
    norms = NormAnalyzer().fit(estimator, X, y)
    values["fisher_rao_norm"] = norms.fisher_rao_
    values["log10_path_norm"] = norms.log10_path_norm_
    values["log10_spectral_product"] = norms.log10_spectral_product_
    values["log10_frobenius_product"] = norms.log10_frobenius_product_
    margin = MarginAnalyzer(**margins, random_state=seed).fit(estimator, X, y)
    values["neg_log10_margin"] = -float(np.log10(margin.median_margin_))
    values["neg_log10_basin_radius"], flag = _basin_radius_measure(
        estimator, X, y, basin, seed
    )
    if flag:
        flags["neg_log10_basin_radius"] = flag
    return {
        "values": {k: float(v) for k, v in values.items()},
        "flags": flags,
        "base_loss": float(curv.base_loss_),
        "scale_sweep": {
            name: {k: float(v) for k, v in by_factor.items()}
            for name, by_factor in sweep.items()
        },
    }


def measure_learning_coefficient(estimator, X, y, *, llc, seed):
    """Measure the local learning coefficient of one fitted network.

    Parameters
    ----------
    estimator : fitted flatgen classifier
    X, y : ndarray
        Training data.
    llc : dict
        Parameters of :class:`~flatgen.LearningCoefficientAnalyzer`.
    seed : int
        Seed of the chains.

    Returns
    -------
    record : dict
        ``value``, ``std_error``, ``chain_values``, ``rhat``, ``step_size``,
        ``step_halvings`` (how often the step rule's step was halved because
        chains diverged at it), ``converged`` and ``warnings`` (the
        analyzer's ConvergenceWarning messages: the chains did not mix,
        diverged or went below the minimum's loss).
    """
    analyzer = LearningCoefficientAnalyzer(**llc, random_state=seed)
    messages = _fit_recording_convergence(analyzer, estimator, X, y)
    return {
        "value": float(analyzer.llc_),
        "std_error": float(analyzer.llc_std_error_),
        "chain_values": [float(v) for v in analyzer.chain_llc_],
        "rhat": float(analyzer.rhat_),
        "step_size": float(analyzer.step_size_),
        "step_halvings": int(analyzer.step_halvings_),
        "converged": bool(analyzer.converged_),
        "warnings": messages,
    }


def _scaled_sharpness(estimator, X, y, sharpness, factor, seed):
    """Return the three sharpness measures at ``factor`` times their scale."""
    values = {}
    for name, kind, scale, radius in (
        ("worst_case_sharpness", "worst_case", "raw", sharpness["radius"]),
        (
            "adaptive_worst_case_sharpness",
            "worst_case",
            "adaptive",
            sharpness["adaptive_radius"],
        ),
        ("adaptive_average_sharpness", "average", "adaptive", sharpness["sigma"]),
    ):
        analyzer = SharpnessAnalyzer(
            kind,
            scale,
            radius * factor,
            n_steps=sharpness["n_steps"],
            n_draws=sharpness["n_draws"],
            random_state=seed,
        )
        values[name] = analyzer.fit(estimator, X, y).sharpness_
    return values


def _tolerated_scales(estimator, X, y, pac_bayes, flatness, factor, seed):
    """Measure the flatness measures whose scale each model sets by a loss rise.

    Returns measure name -> (``1 / scale**2``, why it is a bound or None),
    each bound ``factor`` times its preset: the PAC-Bayes sigma of raw
    noise, and with ``flatness`` that of adaptive noise and the worst-case
    radius in raw and adaptive weights.
    """
    searches = [
        ("pac_bayes_flatness", PACBayesAnalyzer, pac_bayes, "raw", "sigma"),
    ]
    if flatness is not None:
        searches += [
            (
                "adaptive_pac_bayes_flatness",
                PACBayesAnalyzer,
                pac_bayes,
                "adaptive",
                "sigma",
            ),
            (
                "worst_case_flatness",
                WorstCaseFlatnessAnalyzer,
                flatness,
                "raw",
                "radius",
            ),
            (
                "adaptive_worst_case_flatness",
                WorstCaseFlatnessAnalyzer,
                flatness,
                "adaptive",
                "radius",
            ),
        ]
    found = {}
    for name, kind, params, scale, what in searches:
        params = {**params, "bound": params["bound"] * factor, "scale": scale}
        analyzer = kind(**params, random_state=seed)
        _fit_recording_convergence(analyzer, estimator, X, y)
        reason = f"upper bound: {what} capped" if analyzer.capped_ else None
        found[name] = (analyzer.flatness_, reason)
    return found


def _fit_recording_convergence(analyzer, estimator, X, y):
    """Fit ``analyzer``; return its ConvergenceWarnings' messages.

    The study records them in its flags instead of repeating them for every
    model; any other warning is issued as usual.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        analyzer.fit(estimator, X, y)
    messages = []
    for message in caught:
        if issubclass(message.category, ConvergenceWarning):
            messages.append(str(message.message))
        else:
            warnings.warn_explicit(
                message.message, message.category, message.filename, message.lineno
            )
    return messages
