"""Experiments: result files, reproducibility, and resuming interrupted runs."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import replace

import joblib
import numpy as np
import pytest

from flatgen.experiments import ExperimentResult, run_swissroll
from flatgen.experiments._cache import StepCache, read_step_file, step_key
from flatgen.experiments._measures import MEASURES
from flatgen.experiments._runner import Step, StepRunner

# Smaller than --quick: every step and figure, as fast as possible. These
# tests check the runner, not the numbers (in 600 steps the poisoned net
# does not fit its training set).
TINY = {
    "quick": True,
    "n_directions": 6,
    "max_iter": 600,
    "poison_factors": [0.0, 1.0],
    "verbose": 0,
}


# Runs the command line, blocking (until killed) once two steps are saved.
KILL_AFTER_TWO_STEPS = """
import sys
from flatgen import cli
from flatgen.experiments._cache import StepCache

save, saved = StepCache.save, []


def save_then_wait(self, name, key, record):
    save(self, name, key, record)
    saved.append(name)
    if len(saved) == 2:
        print("two steps saved", flush=True)
        sys.stdin.read()


StepCache.save = save_then_wait
sys.exit(cli.main(sys.argv[1:]))
"""


def numbers(summary):
    """A summary without what legitimately differs between runs."""
    return {k: v for k, v in summary.items() if k not in ("timings", "steps")}


def read(folder):
    with open(os.path.join(folder, "summary.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    result = run_swissroll(out, random_state=5, **TINY)
    return out, result


@pytest.mark.slow
def test_result_round_trips_through_json(reference, tmp_path):
    out, result = reference
    loaded = ExperimentResult.from_json(out / "summary.json")
    assert loaded == result
    assert loaded.model("net beta=1").poison_factor == 1.0
    # NaN (a cutoff with no basin) is written as null: strict JSON.
    assert "NaN" not in (out / "summary.json").read_text()
    path = tmp_path / "again.json"
    loaded.to_json(path)
    assert json.loads(path.read_text()) == read(out)


def test_broken_summaries_do_not_load(reference, tmp_path):
    out, _ = reference
    text = (out / "summary.json").read_text()
    truncated = tmp_path / "truncated.json"
    truncated.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="truncated.json.*not a valid JSON"):
        ExperimentResult.from_json(truncated)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"models": []}))
    with pytest.raises(ValueError, match="not a flatgen experiment result"):
        ExperimentResult.from_json(foreign)
    partial = tmp_path / "partial.json"
    data = json.loads(text)
    del data["flatness"]
    partial.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="lacks the field 'flatness'"):
        ExperimentResult.from_json(partial)


def test_summary_records_settings_seeds_and_versions(reference):
    out, result = reference
    summary = read(out)
    assert summary["seeds"]["random_state"] == 5
    assert set(summary["seeds"]) >= {"data", "network", "directions", "margins"}
    assert summary["settings"]["n_directions"] == 6
    assert summary["versions"]["flatgen"] and summary["versions"]["torch"]
    assert [m["name"] for m in summary["models"]] == [
        "net beta=0",
        "net beta=1",
        "SVC (rbf)",
    ]
    for row in summary["flatness"]:
        assert len(row["log10_volume"]) == len(summary["settings"]["cutoffs"])
        # The weights of the paper's network (biases are not perturbed).
        assert row["n_dims"] in (None, 3229)
    assert {m["name"] for m in summary["margins"]} == {
        "net beta=0",
        "net beta=1",
        "SVC (rbf)",
    }
    for name in result.figures.values():
        assert (out / name).stat().st_size > 1000
    report = (out / "report.md").read_text()
    for name in result.figures.values():
        assert f"]({name})" in report


def test_interrupted_runs_resume_to_identical_results(reference, tmp_path, monkeypatch):
    out, _ = reference
    steps = tmp_path / "steps"
    # 1. A killed process (no chance to clean up) after two finished steps.
    # The child says when its second step is on disk and then waits, so the
    # kill lands at that point on a fast or a slow machine alike.
    command = [sys.executable, "-c", KILL_AFTER_TWO_STEPS, "swissroll", "--quick"]
    command += ["--quiet", "--n-jobs=1", "--random-state=5", "--n-directions=6"]
    command += [f"--out={tmp_path}", "--max-iter=600", "--poison-factors", "0", "1"]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "two steps saved"
        assert process.poll() is None
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        process.stdin.close()
        process.stdout.close()
    assert not (tmp_path / "summary.json").exists()
    killed = sorted(steps.glob("*.joblib"))
    for path in killed:  # whole files only: each one loads
        assert read_step_file(path)["result"] is not None

    # 2. Ctrl-C in the middle of the measurements of the rerun.
    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(MEASURES["perturbation"], "func", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_swissroll(tmp_path, random_state=5, **TINY)
    assert not (tmp_path / "summary.json").exists()
    saved = sorted(steps.glob("*.joblib"))
    # 3 fits, 2 flatness measurements and 2 basins ran before the interruption.
    assert len(saved) == 7 and set(killed) <= set(saved)
    for path in saved:
        assert read_step_file(path)["result"] is not None

    # 3. The final rerun computes only what is missing; same numbers as a
    # run that was never interrupted.
    monkeypatch.undo()
    resumed = run_swissroll(tmp_path, random_state=5, **TINY)
    assert sorted(resumed.steps["reused"]) == sorted(
        ["fit net beta=0", "fit net beta=1", "fit SVC (rbf)"]
        + ["flatness net beta=0", "flatness net beta=1"]
        + ["basin net beta=0", "basin net beta=1"]
    )
    assert len(resumed.steps["computed"]) == 5
    assert numbers(read(tmp_path)) == numbers(read(out))
    assert list(tmp_path.glob("*.tmp")) == []


@pytest.mark.slow
def test_ctrl_c_leaves_no_temporary_files(tmp_path, monkeypatch):
    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(MEASURES["basin"], "func", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_swissroll(tmp_path, random_state=5, **{**TINY, "max_iter": 20})
    assert [p.name for p in tmp_path.rglob("*") if ".tmp" in p.name] == []
    assert not (tmp_path / "summary.json").exists()


def test_changed_settings_are_not_reused(reference, tmp_path):
    out, _ = reference
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    changed = run_swissroll(tmp_path, random_state=5, **{**TINY, "n_directions": 7})
    # Fits do not depend on the directions; the volumes do.
    assert "fit net beta=0" in changed.steps["reused"]
    assert "margins net beta=0" in changed.steps["reused"]
    assert "flatness net beta=0" in changed.steps["computed"]
    assert changed.settings["n_directions"] == 7
    assert read(tmp_path)["flatness"] != read(out)["flatness"]


# -- the step machinery ------------------------------------------------------


def _square(value):
    return value**2


def test_step_keys_follow_settings_and_inputs():
    base = step_key("fit", {"a": 1}, ["data"])
    assert step_key("fit", {"a": 1}, ["data"]) == base
    assert step_key("fit", {"a": 2}, ["data"]) != base
    assert step_key("fit", {"a": 1}, ["other data"]) != base
    assert step_key("measure", {"a": 1}, ["data"]) != base
    assert step_key("fit", {"a": np.int64(1)}, ["data"]) == base


def test_damaged_cached_step_is_recomputed(tmp_path):
    runner = StepRunner(tmp_path, data_key="d", n_jobs=1, verbose=0)
    step = Step("square", _square, {"value": 3}, {"value": 3})
    assert runner.run([step], "test") == {"square": 9}
    path = StepCache(tmp_path / "steps").path("square", runner.keys["square"])
    path_bytes = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(path_bytes[: len(path_bytes) // 2])
    again = StepRunner(tmp_path, data_key="d", n_jobs=1, verbose=0)
    with pytest.warns(RuntimeWarning, match="unreadable cached step"):
        assert again.run([step], "test") == {"square": 9}
    assert again.computed == ["square"]
    third = StepRunner(tmp_path, data_key="d", n_jobs=1, verbose=0)
    assert third.run([step], "test") == {"square": 9}
    assert third.reused == ["square"]
    manifest = json.loads((tmp_path / "steps" / "progress.json").read_text())
    assert manifest["square"]["reused"] is True


class _RunsCode:
    """A pickle that creates a file when loaded: what a hostile step file holds."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_tampered_or_foreign_step_file_is_never_unpickled(tmp_path, monkeypatch):
    from flatgen.experiments import _cache

    runner = StepRunner(tmp_path, data_key="d", n_jobs=1, verbose=0)
    step = Step("square", _square, {"value": 3}, {"value": 3})
    assert runner.run([step], "test") == {"square": 9}
    cache = StepCache(tmp_path / "steps")
    path = cache.path("square", runner.keys["square"])
    marker = tmp_path / "code-ran"
    hostile = {"key": runner.keys["square"], "result": _RunsCode(marker)}
    # 1. Plain joblib pickle dropped in place (no signature).
    joblib.dump(hostile, path)
    with pytest.warns(RuntimeWarning, match="signature does not match"):
        assert cache.load("square", runner.keys["square"]) == (False, None)
    # 2. Properly signed, but with another user's key.
    monkeypatch.setenv(_cache.KEY_ENV, str(tmp_path / "other.key"))
    cache.save("square", runner.keys["square"], hostile)
    monkeypatch.undo()
    with pytest.warns(RuntimeWarning, match="signature does not match"):
        assert cache.load("square", runner.keys["square"]) == (False, None)
    # 3. A valid file with one payload byte changed.
    cache.save("square", runner.keys["square"], {"key": runner.keys["square"]})
    blob = bytearray(open(path, "rb").read())
    blob[-5] ^= 1
    open(path, "wb").write(bytes(blob))
    with pytest.warns(RuntimeWarning, match="signature does not match"):
        assert cache.load("square", runner.keys["square"])[0] is False
    assert not marker.exists()
    # The run recomputes and re-signs; the next run reuses the signed file.
    again = StepRunner(tmp_path, data_key="d", n_jobs=1, verbose=0)
    with pytest.warns(RuntimeWarning, match="computed again"):
        assert again.run([step], "test") == {"square": 9}
    third = StepRunner(tmp_path, data_key="d", n_jobs=1, verbose=0)
    assert third.run([step], "test") == {"square": 9}
    assert third.reused == ["square"]


def test_signing_key_is_private_and_stable(tmp_path, monkeypatch):
    from flatgen.experiments import _cache

    monkeypatch.setenv(_cache.KEY_ENV, str(tmp_path / "sub" / "k.key"))
    key = _cache.signing_key()
    assert len(key) == 32 and _cache.signing_key() == key
    assert os.stat(tmp_path / "sub" / "k.key").st_mode & 0o077 == 0
    assert os.listdir(tmp_path / "sub") == ["k.key"]


def test_more_workers_than_cores_are_capped_with_a_warning(tmp_path):
    from flatgen.experiments._runner import usable_cores

    with pytest.warns(UserWarning, match="more than the .* usable CPU cores"):
        runner = StepRunner(tmp_path, data_key="d", n_jobs=999, verbose=0)
    assert runner.n_jobs == usable_cores()
    assert StepRunner(tmp_path, data_key="d", n_jobs=-1, verbose=0).n_jobs == (
        usable_cores()
    )


def test_parallel_steps_match_serial(tmp_path):
    steps = [Step(f"s{i}", _square, {"value": i}, {"value": i}) for i in range(5)]
    serial = StepRunner(tmp_path / "a", data_key="d", n_jobs=1, verbose=0)
    parallel = StepRunner(tmp_path / "b", data_key="d", n_jobs=2, verbose=0)
    # Threads: the unordered parallel path without starting interpreters.
    with joblib.parallel_config(backend="threading"):
        assert serial.run(steps, "t") == parallel.run(steps, "t")
    assert sorted(parallel.computed) == [f"s{i}" for i in range(5)]


def _square_with_workers(value, n_jobs=None):
    return {"square": value**2, "n_jobs": n_jobs, "thread": threading.get_ident()}


def test_steps_parallel_inside_run_last_with_every_worker(tmp_path):
    # The annealed volume spreads its runs over workers itself: it gets all
    # of them, one such step at a time, after the pooled steps; the worker
    # count reaches it as an argument, not as part of its cache key.
    pooled = [Step(f"s{i}", _square, {"value": i}, {"value": i}) for i in range(3)]
    inside = [
        Step(f"w{i}", _square_with_workers, {"value": i}, {"value": i}, (), True)
        for i in range(2)
    ]
    runner = StepRunner(tmp_path, data_key="d", n_jobs=2, verbose=0)
    with joblib.parallel_config(backend="threading"):
        results = runner.run(pooled + inside, "t")
    assert [results[f"s{i}"] for i in range(3)] == [0, 1, 4]
    for i in range(2):
        assert results[f"w{i}"]["square"] == i**2
        assert results[f"w{i}"]["n_jobs"] == 2
        # In the calling thread, not in the pool's.
        assert results[f"w{i}"]["thread"] == threading.get_ident()
    assert runner.computed[-2:] == ["w0", "w1"]
    # Another worker count: the same keys, the results reused.
    serial = StepRunner(tmp_path, data_key="d", n_jobs=1, verbose=0)
    again = serial.run(pooled + inside, "t")
    assert again["w1"]["n_jobs"] == 2 and sorted(serial.reused) == sorted(results)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"random_state": "zero"}, "`random_state` must be an int or None"),
        ({"random_state": -1}, "`random_state` must be between 0"),
        ({"n_jobs": 0}, "`n_jobs` must not be 0"),
        ({"n_directions": -3}, "`n_directions` must be a positive int. Got -3"),
        ({"max_iter": 0}, "`max_iter` must be a positive int. Got 0"),
        ({"poison_factors": [1.0]}, "`poison_factors` must hold at least two"),
        ({"poison_factors": [0, -1]}, "`poison_factors` must hold at least two"),
        ({"device": "tpu9"}, "device='tpu9' is not a torch device"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_swissroll(tmp_path / "out", **{**TINY, **kwargs})
    assert not (tmp_path / "out").exists()


# -- experiments as specs ----------------------------------------------------


def _moons(settings, seeds):
    from sklearn.datasets import make_moons
    from sklearn.model_selection import train_test_split

    from flatgen.experiments import ExperimentData

    X, y = make_moons(120, noise=0.2, random_state=seeds["data"])
    parts = train_test_split(X, y, train_size=60, random_state=seeds["data"])
    return ExperimentData(*parts[::2], *parts[1::2])


def _moons_net(settings, seeds, data, device):
    from flatgen import PoisonedMLPClassifier

    return PoisonedMLPClassifier(
        hidden_layer_sizes=(16, 16),
        solver="adam",
        learning_rate_init=0.01,
        max_iter=settings["max_iter"],
        max_polish_iter=20,
        device=device,
        random_state=seeds["network"],
    )


def _moons_spec(**changes):
    from dataclasses import replace

    from flatgen.experiments import ExperimentSpec
    from flatgen.experiments.specs import get_spec

    swissroll = get_spec("swissroll")
    spec = ExperimentSpec(
        name="moons",
        help="two moons",
        description="The poison sweep on two moons.",
        full=swissroll.full,
        quick={**swissroll.quick, "grid_resolution": 20, "margin_directions": 4},
        seeds=("data", "network", "directions", "margins", "svc"),
        load=_moons,
        network=_moons_net,
        baselines=swissroll.baselines,
        measures=("flatness", "margins"),
        figures=("poison_sweep", "volume_vs_gap", "decision_boundaries"),
        model_label="net",
        sweep_title="Two moons, {n_train} points",
        volume_title="Two moons: basin volume vs gap",
    )
    return replace(spec, **changes)


@pytest.mark.slow
def test_a_new_experiment_is_a_spec_and_its_loader(tmp_path):
    from flatgen.experiments import run_experiment

    kwargs = {"quick": True, "n_directions": 4, "max_iter": 100, "verbose": 0}
    result = run_experiment(_moons_spec(), tmp_path, random_state=3, **kwargs)
    assert result.experiment == "moons"
    assert [m.name for m in result.models] == [
        "net beta=0",
        "net beta=0.3",
        "SVC (rbf)",
    ]
    assert [f.name for f in result.flatness] == ["net beta=0", "net beta=0.3"]
    assert [m.name for m in result.margins] == [m.name for m in result.models]
    assert sorted(result.figures) == [
        "decision_boundaries",
        "poison_sweep",
        "volume_vs_gap",
    ]
    assert result.basin_radii == {} and result.perturbation == {}
    # Steps are named by what they do to which model.
    assert "flatness net beta=0.3" in result.steps["computed"]
    assert "margins SVC (rbf)" in result.steps["computed"]
    assert (tmp_path / "summary.json").exists() and (tmp_path / "report.md").exists()
    again = run_experiment(_moons_spec(), tmp_path, random_state=3, **kwargs)
    assert again.steps["computed"] == [] and numbers(read(tmp_path)) == numbers(
        result.to_dict()
    )


def test_inconsistent_specs_and_options_are_refused_before_any_work(tmp_path):
    from flatgen.experiments import run_experiment

    out = tmp_path / "out"
    with pytest.raises(ValueError, match="draws 'perturbation', which needs the meas"):
        run_experiment(_moons_spec(figures=("perturbation",)), out, quick=True)
    with pytest.raises(
        ValueError, match=r"unknown measures or figures \['sharpness'\]"
    ):
        run_experiment(_moons_spec(measures=("sharpness",)), out, quick=True)
    with pytest.raises(TypeError, match="takes no argument 'data_dir'"):
        run_experiment(_moons_spec(), out, quick=True, data_dir="x")
    with pytest.raises(TypeError, match="needs the argument 'data_dir'"):
        run_experiment("svhn", out, quick=True)
    with pytest.raises(ValueError, match="No experiment 'cifar'; experiments are"):
        run_experiment("cifar", out)
    assert not out.exists()


def test_command_line_offers_every_shipped_spec():
    from flatgen import cli
    from flatgen.experiments import StepKey, spec_names

    assert spec_names() == ["digits", "study", "svhn", "swissroll"]
    commands = cli.build_parser()._subparsers._group_actions[0].choices
    assert sorted(commands) == spec_names()
    assert str(StepKey("fit", "net beta=0.3")) == "fit net beta=0.3"


# -- the measure study ---------------------------------------------------------


def tiny_study(**changes):
    """The study's spec on a toy grid: 4 small networks, cheap measures."""
    from dataclasses import replace

    from flatgen.experiments import get_spec

    spec = get_spec("study")
    quick = {
        **spec.quick,
        "n_train": 60,
        "n_test": 60,
        "widths": [8],
        "depths": [2],
        "n_seeds": 2,
        "max_iter": 300,
        "min_train_accuracy": 0.9,
        "curvature_iter": 10,
        "trace_samples": 2,
        "sharpness_steps": 2,
        "sharpness_samples": 4,
        "pac_bayes_samples": 4,
        "margin_directions": 4,
        "margin_refine": 2,
        "basin_directions": 4,
        "n_bootstrap": 50,
        **changes,
    }
    return replace(spec, quick=quick)


@pytest.fixture(scope="module")
def tiny_study_run(tmp_path_factory):
    from flatgen.experiments import run_experiment

    out = tmp_path_factory.mktemp("study")
    return out, run_experiment(tiny_study(), out, quick=True, verbose=0, family="mlp")


@pytest.mark.slow
def test_study_ranks_every_measure_over_the_fitted_models(tiny_study_run):
    tmp_path, result = tiny_study_run
    study = result.study
    assert len(study["models"]) == 4
    kept = [m for m in study["models"] if m["train_accuracy"] >= 0.9]
    assert sorted(study["excluded"]) == sorted(
        m["name"] for m in study["models"] if m not in kept
    )
    ranking = study["ranking"]
    assert len(ranking) >= 10 and ranking[0]["n_models"] == len(kept)
    taus = [r["tau"] for r in ranking if r["tau"] is not None]
    assert taus == sorted(taus, reverse=True)
    assert all(-1 <= t <= 1 for t in taus)
    # Seeds are repeats, not a hyperparameter axis.
    assert set(ranking[0]["granulated"]) == {"poison_factor"}
    assert (tmp_path / "measure_ranking.png").stat().st_size > 1000
    report = (tmp_path / "report.md").read_text()
    assert "Which measure predicts the gap" in report and "pac_bayes_flatness" in report
    loaded = ExperimentResult.from_json(tmp_path / "summary.json")
    assert loaded.study["ranking"] == json.loads(json.dumps(ranking))
    # The perturbation-based measures again at half their scale; x1 is the
    # ranking's own tau. On the MLPs (the preset's flatness_sweep_families)
    # the scales each model sets by a loss increase are swept by their bound.
    sweep = {row["measure"]: row["taus"] for row in study["scale_sweep"]}
    by_rule = {
        "adaptive_pac_bayes_flatness",
        "worst_case_flatness",
        "adaptive_worst_case_flatness",
    }
    assert set(sweep) == {
        "worst_case_sharpness",
        "adaptive_worst_case_sharpness",
        "adaptive_average_sharpness",
        "pac_bayes_flatness",
        *by_rule,
    }
    by_measure = {r["measure"]: r["tau"] for r in ranking}
    assert by_rule <= set(by_measure)
    for measure, taus in sweep.items():
        assert list(taus) == ["0.5", "1"]
        assert taus["1"]["tau"] == by_measure[measure]
    assert all(set(m["scale_sweep"]) == set(sweep) for m in study["models"])
    assert "depends on its scale" in report
    # The learning coefficient joins every model's row, ranked over all
    # models and over those whose chains mixed (NaN elsewhere).
    found = study["learning_coefficients"]
    assert set(found) == {m["name"] for m in study["models"]}
    for m in study["models"]:
        llc = found[m["name"]]
        assert m["measures"]["local_learning_coefficient"] == llc["value"]
        mixed = m["measures"]["local_learning_coefficient_mixed"]
        assert mixed == llc["value"] if llc["converged"] else math.isnan(mixed)
        assert ("local_learning_coefficient" in m["flags"]) != llc["converged"]
        assert isinstance(llc["step_halvings"], int) and llc["step_halvings"] >= 0
    assert {"local_learning_coefficient", "local_learning_coefficient_mixed"} <= set(
        by_measure
    )
    assert "learning coefficient's chains mixed" in report


def test_the_study_sets_each_scale_per_model_by_its_bound():
    from flatgen import (
        PACBayesAnalyzer,
        PoisonedMLPClassifier,
        WorstCaseFlatnessAnalyzer,
    )
    from flatgen.experiments._steps import _tolerated_scales

    from .conftest import blobs

    X, y = blobs(n_samples=60, n_classes=3)
    clf = PoisonedMLPClassifier(
        hidden_layer_sizes=(8,), max_iter=200, random_state=0
    ).fit(X, y)
    pac = {"bound": 0.1, "n_draws": 4}
    flat = {"bound": 0.1, "n_steps": 2, "rtol": 0.01}
    found = _tolerated_scales(clf, X, y, pac, flat, 0.5, seed=3)
    # Each value is its analyzer's 1 / scale**2 at half the preset bound.
    expected = {
        "pac_bayes_flatness": PACBayesAnalyzer(0.05, "raw", n_draws=4),
        "adaptive_pac_bayes_flatness": PACBayesAnalyzer(0.05, "adaptive", n_draws=4),
        "worst_case_flatness": WorstCaseFlatnessAnalyzer(
            0.05, "raw", n_steps=2, rtol=0.01
        ),
        "adaptive_worst_case_flatness": WorstCaseFlatnessAnalyzer(
            0.05, "adaptive", n_steps=2, rtol=0.01
        ),
    }
    assert set(found) == set(expected)
    for name, analyzer in expected.items():
        value, reason = found[name]
        analyzer.set_params(random_state=3).fit(clf, X, y)
        assert value == analyzer.flatness_ and reason is None
        assert math.isfinite(value) and value > 0
    # Without the worst-case settings only the raw PAC-Bayes search runs.
    assert list(_tolerated_scales(clf, X, y, pac, None, 1.0, seed=3)) == [
        "pac_bayes_flatness"
    ]
    # A search that reaches its cap is flagged as a bound.
    capped = _tolerated_scales(
        clf, X, y, {**pac, "sigma_max": 1e-6}, {**flat, "radius_max": 1e-6}, 1.0, 3
    )
    assert {name: reason for name, (_, reason) in capped.items()} == {
        "pac_bayes_flatness": "upper bound: sigma capped",
        "adaptive_pac_bayes_flatness": "upper bound: sigma capped",
        "worst_case_flatness": "upper bound: radius capped",
        "adaptive_worst_case_flatness": "upper bound: radius capped",
    }


@pytest.mark.slow
def test_study_without_fitted_models_says_so(tmp_path):
    from flatgen.experiments import run_experiment

    spec = tiny_study(min_train_accuracy=1.01, widths=[4], max_iter=20)
    result = run_experiment(spec, tmp_path, quick=True, verbose=0, family="mlp")
    assert result.study["ranking"] == [] and len(result.study["excluded"]) == 4
    assert (
        "Fewer than 3 models fit their training set"
        in (tmp_path / "report.md").read_text()
    )
    assert "measure_ranking" not in result.figures


# A toy CNN family on the digits beside the toy MLPs: 4 CNNs that fit.
TINY_CNNS = {
    "cnn_n_train": 60,
    "cnn_n_test": 60,
    "cnn_channels": [[4, 8]],
    "cnn_hidden": 8,
    "cnn_n_seeds": 2,
    "cnn_max_iter": 150,
    # The bound swept on one family only: the pooled sweep must then leave
    # it out.
    "flatness_sweep_families": ["mlp"],
}


@pytest.fixture(scope="module")
def two_family_run(tmp_path_factory):
    from flatgen.experiments import run_experiment

    out = tmp_path_factory.mktemp("families")
    return out, run_experiment(tiny_study(**TINY_CNNS), out, quick=True, verbose=0)


@pytest.mark.slow
def test_study_ranks_per_family_and_pooled(two_family_run):
    from flatgen.experiments._ranking import rank_measures

    out, result = two_family_run
    study = result.study
    by_family = {}
    for record in study["models"]:
        by_family.setdefault(record["family"], []).append(record)
    assert sorted(by_family) == ["cnn", "mlp"]
    assert all(r["name"].startswith("cnn ") for r in by_family["cnn"])
    assert len(by_family["cnn"]) == 4 and len(by_family["mlp"]) == 4
    assert {r["params"]["depth"] for r in by_family["cnn"]} == {2}
    kept = {
        f: [r for r in rs if r["train_accuracy"] >= 0.9] for f, rs in by_family.items()
    }
    assert all(len(rs) >= 3 for rs in kept.values()), kept
    families = {f["family"]: f for f in study["families"]}
    assert families["cnn"]["label"] == "CNNs on the 8x8 digits"
    for family, records in kept.items():
        # Each family's ranking is rank_measures over its own models alone.
        expected = rank_measures(
            {m: [r["measures"][m] for r in records] for m in records[0]["measures"]},
            [r["generalization_gap"] for r in records],
            [r["params"] for r in records],
            n_bootstrap=50,
            seed=result.seeds["bootstrap"],
        )
        assert families[family]["ranking"] == json.loads(json.dumps(expected))
        assert families[family]["n_models"] == len(records)
    pooled = study["ranking"]
    assert pooled[0]["n_models"] == sum(len(rs) for rs in kept.values())
    # Pooled, the family is a stratum, not an axis.
    assert all("family" not in r["granulated"] for r in pooled)
    taus = {f: {r["measure"]: r for r in fam["ranking"]} for f, fam in families.items()}
    for row in study["disagreements"]:
        (low_a, high_a), (low_b, high_b) = (
            taus[f][row["measure"]]["tau_ci"] for f in ("mlp", "cnn")
        )
        if None in (low_a, low_b):  # too few finite values in a family
            assert not row["disagree"]
            continue
        assert row["disagree"] == (max(low_a, low_b) > min(high_a, high_b))
    assert len(study["disagreements"]) == len(pooled)
    report = (out / "report.md").read_text()
    assert f"CNNs on the 8x8 digits ({len(kept['cnn'])} models)" in report
    assert "Where the families agree and where they do not" in report
    # The scale sweep pooled and per family.
    assert "Scale sweep, CNNs on the 8x8 digits" in report
    assert set(study["learning_coefficients"]) == {r["name"] for r in study["models"]}
    assert families["cnn"]["scale_sweep"] and study["scale_sweep"]
    # The bound of the scales set by rule is swept on the MLPs alone here,
    # so neither the CNNs nor the pooled ranking has it.
    swept = {
        where: {row["measure"] for row in sweep}
        for where, sweep in [
            ("mlp", families["mlp"]["scale_sweep"]),
            ("cnn", families["cnn"]["scale_sweep"]),
            ("pooled", study["scale_sweep"]),
        ]
    }
    assert "worst_case_flatness" in swept["mlp"]
    assert (
        swept["cnn"]
        == swept["pooled"]
        == swept["mlp"]
        - {
            "adaptive_pac_bayes_flatness",
            "worst_case_flatness",
            "adaptive_worst_case_flatness",
        }
    )
    # Three panels side by side: pooled, then one per family.
    from PIL import Image

    width, height = Image.open(out / "measure_ranking.png").size
    # One panel is 7 in wide and 0.38 in per measure (+ 1.6 in) tall.
    assert width / height > 2.5 * 7.0 / (0.38 * len(pooled) + 1.6)


@pytest.mark.slow
def test_a_family_with_its_own_data_keys_its_steps_by_that_data(
    two_family_run, tmp_path
):
    from flatgen.experiments import run_experiment

    out, first = two_family_run
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    # Other digits for the CNNs: their fits and measures run again, the
    # MLPs' steps (the run's own data) are reused.
    spec = tiny_study(**{**TINY_CNNS, "cnn_n_train": 70})
    again = run_experiment(spec, tmp_path, quick=True, verbose=0)
    assert again.steps["computed"] and all(
        "cnn " in step for step in again.steps["computed"]
    )
    assert any("net beta" in step for step in again.steps["reused"])


@pytest.mark.slow
def test_the_study_ranks_annealed_basin_volumes_of_the_families_asked(
    two_family_run, tmp_path
):
    from flatgen.experiments import run_experiment

    out, first = two_family_run
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    annealed = {"n_runs": 2, "n_chains": 4, "n_steps": 2, "max_temperatures": 200}
    spec = tiny_study(**TINY_CNNS, annealed=annealed)
    again = run_experiment(
        spec, tmp_path, quick=True, verbose=0, annealed_cutoffs=[1.0]
    )
    # Only the MLPs' volumes are new: fits and every other measure reused.
    mlps = [r for r in again.study["models"] if r["family"] == "mlp"]
    assert sorted(again.steps["computed"]) == sorted(
        f"study_volume {r['name']}" for r in mlps
    )
    volume, radius = "neg_log10_basin_volume_ce1", "neg_log10_volume_radius_ce1"
    found = again.study["basin_volumes"]
    assert set(found) == {r["name"] for r in mlps}
    for row in again.study["models"]:
        if row["family"] == "cnn":  # not in the preset's volume_families
            assert volume not in row["measures"] and row["name"] not in found
            continue
        record = found[row["name"]]
        log_v = record["log10_volume"][0]
        assert row["measures"][volume] == -log_v
        assert row["measures"][radius] == pytest.approx(
            (record["log10_cap_volume"] - log_v) / record["n_dims"], rel=1e-12
        )
        # Inside the cap ball: a positive per-weight radius measure.
        assert row["measures"][radius] > 0
        assert (volume in row["flags"]) == (
            not record["reliable"][0] or record["cap_share"][0] >= 0.5
        )
    # Ranked over the MLPs alone, pooled as in their family; the CNNs'
    # ranking has no volume.
    kept = [r for r in mlps if r["train_accuracy"] >= 0.9]
    pooled = {r["measure"]: r for r in again.study["ranking"]}
    assert pooled[volume]["n_models"] == pooled[radius]["n_models"] == len(kept)
    families = {f["family"]: f for f in again.study["families"]}
    assert volume not in {r["measure"] for r in families["cnn"]["ranking"]}
    # The other measures' rankings are those of the run without volumes.
    before = {r["measure"]: r for r in first.study["ranking"]}
    for name, row in before.items():
        assert pooled[name]["tau"] == row["tau"]
    report = (tmp_path / "report.md").read_text()
    assert "The basin log-volume was measured by annealing" in report
    assert "Not measured on CNNs on the 8x8 digits" in report
    loaded = ExperimentResult.from_json(tmp_path / "summary.json")
    assert loaded.study["basin_volumes"] == json.loads(json.dumps(found))


def test_an_experiment_without_annealed_volumes_refuses_their_cutoffs(tmp_path):
    from flatgen.experiments import run_experiment

    with pytest.raises(ValueError, match="measures no annealed basin volume"):
        run_experiment(
            _moons_spec(), tmp_path, quick=True, verbose=0, annealed_cutoffs=[0.5]
        )
    assert not (tmp_path / "steps").exists()


def test_the_learning_coefficient_takes_its_family_s_steps():
    from flatgen.experiments.specs import get_spec

    measure, preset = MEASURES["llc"], get_spec("study").full
    seeds = {"directions": 3}
    assert measure.per_family
    mlp = measure.settings(preset, seeds, family="mlp")
    cnn = measure.settings(preset, seeds, family="cnn")
    assert mlp["llc"]["n_steps"] == preset["llc_steps"] == 2000
    assert cnn["llc"]["n_steps"] == preset["cnn_llc_steps"] == 1000
    assert mlp["seed"] == cnn["seed"] == 3
    # Experiments whose presets name no chains take no step.
    assert measure.settings(get_spec("swissroll").full, seeds) is None


def test_an_unmixed_learning_coefficient_is_flagged_and_ranked_apart():
    result = ExperimentResult(experiment="study", settings={}, seeds={}, versions={})
    result.study["models"] = [
        {"name": name, "measures": {}, "flags": {}} for name in ("a", "b")
    ]
    report = MEASURES["llc"].report
    record = {"value": 3.0, "std_error": 0.1, "rhat": 1.02, "converged": True}
    report(result, type("M", (), {"name": "a"}), record)
    report(
        result,
        type("M", (), {"name": "b"}),
        {**record, "value": 7.0, "rhat": 1.4, "converged": False},
    )
    a, b = result.study["models"]
    assert a["measures"] == {
        "local_learning_coefficient": 3.0,
        "local_learning_coefficient_mixed": 3.0,
    }
    assert a["flags"] == {}
    assert b["measures"]["local_learning_coefficient"] == 7.0
    assert math.isnan(b["measures"]["local_learning_coefficient_mixed"])
    assert b["flags"] == {
        "local_learning_coefficient": "chains did not mix, split R-hat 1.40"
    }
    assert result.study["learning_coefficients"]["b"]["rhat"] == 1.4
    # Mixed chains that went below the minimum's loss are not trusted
    # either, and the flag says why (from the analyzer's warnings).
    result.study["models"].append({"name": "c", "measures": {}, "flags": {}})
    warned = "The estimate is negative (-2): the chains found losses below"
    report(
        result,
        type("M", (), {"name": "c"}),
        {**record, "value": -2.0, "converged": False, "warnings": [warned]},
    )
    c = result.study["models"][2]
    assert math.isnan(c["measures"]["local_learning_coefficient_mixed"])
    assert c["flags"] == {
        "local_learning_coefficient": "chains went below the minimum's loss"
    }
    assert result.study["learning_coefficients"]["c"]["warnings"] == [warned]
    assert result.study["learning_coefficients"]["c"]["step_halvings"] is None


def test_the_report_counts_the_models_whose_step_was_halved():
    from flatgen.experiments._report import _llc_text

    study = {
        "models": [
            {"name": name, "family": family}
            for name, family in (("a", "mlp"), ("b", "mlp"), ("c", "cnn"))
        ],
        "learning_coefficients": {
            "a": {"converged": True, "step_halvings": 0},
            "b": {"converged": True, "step_halvings": 5},
            # A record cached before the back-off existed.
            "c": {"converged": False},
        },
    }
    labels = {"mlp": "MLPs", "cnn": "CNNs"}
    text = " ".join(_llc_text(study, labels))
    assert "on 2 of 2 MLPs; 0 of 1 CNNs" in text
    assert "halved until the chains ran through" in text
    assert "on 1 of 2 MLPs (5 halvings)" in text
    assert "CNNs (" not in text
    study["learning_coefficients"]["a"]["step_halvings"] = 4
    assert "on 2 of 2 MLPs (4-5 halvings)" in " ".join(_llc_text(study, labels))
    study["learning_coefficients"]["a"]["step_halvings"] = 0
    study["learning_coefficients"]["b"]["step_halvings"] = 0
    text = " ".join(_llc_text(study, labels))
    assert "halved" not in text and "no halving" not in text  # c's is unknown
    study["learning_coefficients"]["c"]["step_halvings"] = 0
    assert "ran through on every model (no halving)" in " ".join(
        _llc_text(study, labels)
    )


def test_the_study_refuses_an_unknown_family(tmp_path):
    from flatgen.experiments import run_experiment

    with pytest.raises(ValueError, match="`family` must be one of"):
        run_experiment("study", tmp_path, quick=True, verbose=0, family="rnn")
    assert not (tmp_path / "steps").exists()


def test_granulated_taus_never_group_models_of_two_families():
    from flatgen.experiments._ranking import granulated_taus

    # Along a the measure follows the gap in family x and runs against it
    # in family y; grouped together the four models would give tau 0.
    params = [{"a": a, "family": f} for f in ("x", "y") for a in (0, 1)]
    gaps = np.array([0.0, 1.0, 0.2, 0.8])
    measure = np.array([0.0, 1.0, 1.0, 0.0])
    assert granulated_taus(measure, gaps, params) == {"a": 0.0}
    assert granulated_taus(measure[:2], gaps[:2], params[:2]) == {"a": 1.0}
    assert granulated_taus(measure[2:], gaps[2:], params[2:]) == {"a": -1.0}


def test_family_disagreements_part_only_disjoint_intervals():
    from flatgen.experiments._ranking import family_disagreements

    def row(measure, tau, low, high):
        return {"measure": measure, "tau": tau, "tau_ci": [low, high]}

    found = family_disagreements(
        {
            "mlp": [
                row("m1", 0.8, 0.6, 0.9),
                row("m2", 0.5, 0.3, 0.7),
                row("m0", 0.1, 0.0, 0.2),
            ],
            "cnn": [
                row("m2", 0.4, 0.2, 0.6),
                row("m1", -0.2, -0.5, 0.1),
                row("m0", None, None, None),
            ],
        }
    )
    # Larger spread first; no tau in a family (too few values) last.
    assert [r["measure"] for r in found] == ["m1", "m2", "m0"]
    assert [r["disagree"] for r in found] == [True, False, False]
    assert found[2]["spread"] is None
    assert found[0]["spread"] == pytest.approx(1.0)
    assert found[0]["taus"]["cnn"]["rank"] == 2 and found[0]["taus"]["mlp"]["rank"] == 1


def test_kendall_tau_and_granulated_taus_against_hand_counts():
    from flatgen.experiments._ranking import granulated_taus, rank_measures

    rng = np.random.default_rng(0)
    x, gap = rng.normal(size=15), rng.normal(size=15)
    pairs = [(i, j) for i in range(15) for j in range(i + 1, 15)]
    concordant = sum(np.sign(x[i] - x[j]) == np.sign(gap[i] - gap[j]) for i, j in pairs)
    expected = (2 * concordant - len(pairs)) / len(pairs)  # no ties: tau-a = tau-b
    params = [{"seed": i} for i in range(15)]
    (row,) = rank_measures({"m": x}, gap, params, n_bootstrap=200, seed=0)
    assert row["tau"] == pytest.approx(expected, abs=1e-12)
    assert row["tau_ci"][0] <= row["tau"] <= row["tau_ci"][1]
    # A 2 x 2 grid (two seeds each): the measure follows the gap along a and
    # runs against it along b.
    grid = [{"a": a, "b": b, "seed": s} for a in (0, 1) for b in (0, 1) for s in (0, 1)]
    gaps = np.array([p["a"] + 2 * p["b"] + 0.1 * p["seed"] for p in grid])
    measure = np.array([p["a"] - 2 * p["b"] + 0.1 * p["seed"] for p in grid])
    taus = granulated_taus(measure, gaps, grid)
    # Each group (the other axis fixed) holds 4 models, 2 values x 2 seeds:
    # along b the 2 same-value pairs agree (seed), the 4 others disagree.
    assert taus["b"] == pytest.approx(-1 / 3) and taus["a"] == pytest.approx(1.0)


def test_non_finite_measure_values_are_left_out_by_one_rule():
    from flatgen.experiments._ranking import rank_measures

    rng = np.random.default_rng(1)
    x, gap = rng.normal(size=12), rng.normal(size=12)
    params = [{"seed": i} for i in range(12)]
    (full,) = rank_measures({"m": x[3:]}, gap[3:], params[3:], n_bootstrap=50)
    holes = x.copy()
    holes[:3] = [np.nan, np.inf, -np.inf]
    (row,) = rank_measures({"m": holes}, gap, params, n_bootstrap=50)
    # NaN and +-inf alike: those models are out of this measure's tau.
    assert row["n_models"] == 9 and row["tau"] == pytest.approx(full["tau"])


@pytest.mark.parametrize(
    "change, match",
    [
        ({"values": {"m": np.zeros(5)}}, r"values\['m'\] has shape \(5,\)"),
        ({"gaps": np.r_[np.zeros(5), np.nan]}, r"gaps must be finite: models \[5\]"),
        ({"gaps": np.zeros((2, 3))}, "gaps must be a 1-D array"),
        ({"params": [{}] * 5}, "params must be a list with one dict per model"),
        ({"values": {}}, "values must be a non-empty dict"),
        ({"values": {"m": ["a"] * 6}}, r"values\['m'\] must hold numbers"),
        ({"n_bootstrap": 0}, "n_bootstrap must be an integer >= 1"),
        ({"confidence": 1.0}, r"confidence must be in \(0, 1\)"),
    ],
)
def test_rank_measures_refuses_inconsistent_inputs(change, match):
    from flatgen.experiments._ranking import rank_measures

    args = {
        "values": {"m": np.arange(6.0)},
        "gaps": np.arange(6.0),
        "params": [{"seed": i} for i in range(6)],
        "n_bootstrap": 10,
        "confidence": 0.95,
    }
    args.update(change)
    with pytest.raises(ValueError, match=match):
        rank_measures(
            args["values"],
            args["gaps"],
            args["params"],
            n_bootstrap=args["n_bootstrap"],
            confidence=args["confidence"],
        )


def test_study_fits_its_networks_together_and_resumes(tiny_study_run, tmp_path):
    from flatgen.experiments import run_experiment

    out, first = tiny_study_run
    fits = [s for s in first.steps["computed"] if s.startswith("fit")]
    assert fits == ["fit together 4 from net beta=0 8x2 lr=0.01 seed=0"]
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    again = run_experiment(tiny_study(), tmp_path, quick=True, verbose=0, family="mlp")
    # One batched fit, four zoo and four learning-coefficient steps.
    assert again.steps["computed"] == [] and len(again.steps["reused"]) == 9
    assert numbers(read(tmp_path)) == numbers(first.to_dict())


@pytest.mark.slow
def test_the_coefficient_joins_the_zoo_whichever_reports_first(
    tiny_study_run, tmp_path
):
    from flatgen.experiments import run_experiment

    out, first = tiny_study_run
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    spec = replace(tiny_study(), measures=("llc", "zoo"))
    again = run_experiment(spec, tmp_path, quick=True, verbose=0, family="mlp")
    assert again.steps["computed"] == []
    assert numbers(read(tmp_path)) == numbers(first.to_dict())


def test_batches_are_capped(monkeypatch):
    from flatgen.experiments import _experiment
    from flatgen.experiments._spec import ExperimentData, Model

    monkeypatch.setattr(_experiment, "MAX_BATCH", 3)
    X, y = np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1])
    data = ExperimentData(X, y, X, y)
    models = [
        Model(
            f"net {i}",
            _experiment.clone(_moons_net({"max_iter": 5}, {"network": i}, data, "cpu")),
            {},
        )
        for i in range(7)
    ]
    steps, batches = _experiment._fit_steps(models, data, batched=True)
    assert [len(members) for _, members in batches] == [3, 3]
    assert len(steps) == 3  # two batches of 3 and one single fit


def test_volumes_set_by_a_few_rays_are_flagged_in_summary_and_report():
    from flatgen.experiments._report import format_summary, render_report
    from flatgen.experiments._results import Flatness, ModelScore
    from flatgen.landscape._volume import rests_on_few_rays

    # The rule VolumeEstimator warns by: at least 20 rays, ESS below 10 %.
    assert rests_on_few_rays(1.9, 20) and not rests_on_few_rays(2.0, 20)
    assert not rests_on_few_rays(0.0, 19)

    def flatness(name, ess):
        return Flatness(
            name=name,
            poison_factor=0.0,
            base_loss=1e-3,
            cutoffs=[0.2, 0.5],
            log10_volume=[-100.0, -90.0],
            log10_volume_ci=[[-101.0, -99.0], [-91.0, -89.0]],
            mean_log_radius=[0.0, 0.0],
            median_radius=[1.0, 1.0],
            top_eigenvalue=1.0,
            hessian_trace=None,
            n_dims=10,
            effective_sample_size=ess,
        )

    result = ExperimentResult(
        experiment="swissroll",
        settings={"n_directions": 1000, "cutoffs": [0.2, 0.5]},
        seeds={},
        versions={},
        models=[
            ModelScore(name, "PoisonedMLPClassifier", 0.0, 1.0, 0.9, 0.1)
            for name in ("trusted", "few rays")
        ],
        flatness=[
            flatness("trusted", [400.0, 300.0]),
            flatness("few rays", [1.0, 250.0]),
        ],
        figures={"volume_vs_gap": "volume_vs_gap.png"},
    )
    summary = format_summary(result, "out").splitlines()
    volumes = summary[summary.index(next(x for x in summary if "log10 basin" in x)) :]
    trusted = next(line for line in volumes if line.startswith("trusted "))
    few = next(line for line in volumes if line.startswith("few rays "))
    assert trusted.split()[1:3] == ["-100.0", "-90.0"]
    assert few.split()[2:4] == ["-100.0*", "-90.0"]
    assert any(line.startswith("* set by a few rays") for line in summary)
    report = render_report(result)
    assert report.count("**set by 1.0 of 1000 rays**") == 1
    assert "set by 400" not in report and "set by 250" not in report


@pytest.mark.slow
def test_annealed_volumes_of_the_extremes_reach_summary_report_and_console(tmp_path):
    from flatgen.experiments import ExperimentResult, run_experiment
    from flatgen.experiments._report import format_summary

    annealed = {
        "n_runs": 2,
        "n_chains": 4,
        "n_steps": 4,
        "n_leapfrog": 3,
        "stone_spread": 2.0,
    }
    base = _moons_spec(
        measures=("flatness", "annealed_volume"), figures=("volume_vs_gap",)
    )
    spec = replace(base, quick={**base.quick, "annealed": annealed})
    kwargs = {"quick": True, "n_directions": 4, "max_iter": 100, "verbose": 0}
    result = run_experiment(
        spec, tmp_path, random_state=3, annealed_cutoffs=[0.5], **kwargs
    )
    assert result.settings["annealed_cutoffs"] == [0.5]
    assert sorted(result.annealed_volumes) == ["net beta=0", "net beta=0.3"]
    record = result.annealed_volumes["net beta=0"]
    assert record["cutoffs"] == [0.5] and len(record["run_log10_volumes"][0]) == 2
    # Each run's R-hat is kept; the largest is the one the warning reads.
    assert len(record["run_rhats"][0]) == 2
    assert record["rhat"][0] == max(record["run_rhats"][0])
    assert record["basin"] == "star"  # the rays' set, said in the report
    # Where the path started, its whitening and the cap ball's volume.
    assert record["start"] == ["cap ball"] and record["metric"] == ["adaptive"]
    assert record["log10_volume"][0] < record["log10_cap_volume"]
    assert 0 <= record["cap_share"][0] <= 1
    low, high = record["log10_volume_ci"][0]
    assert low <= record["log10_volume"][0] <= high
    report = (tmp_path / "report.md").read_text()
    assert "AnnealedVolumeEstimator" in report and "max hysteresis" in report
    runs = ", ".join(f"{v:.2f}" for v in record["run_rhats"][0])
    assert f"{record['rhat'][0]:.3f} ({runs})" in report
    assert "star-shaped basin, as the rays" in report
    assert "cap ball, adaptive whitening" in report
    assert f"cap ball: {record['log10_cap_volume']:.1f}" in report
    assert "sublevel set of the loss was measured" not in report
    assert "log10 V by annealing" in format_summary(result, tmp_path)
    loaded = ExperimentResult.from_json(tmp_path / "summary.json")
    assert loaded.annealed_volumes == result.annealed_volumes
    # The shipped presets leave the cutoffs empty: the step measures nothing.
    plain = run_experiment(base, tmp_path / "plain", random_state=3, **kwargs)
    assert plain.annealed_volumes == {}
    # The annealed estimates get a panel of their own beside the rays' (on
    # one axis they would lie far above the rays' view).
    from PIL import Image

    width, height = Image.open(tmp_path / "volume_vs_gap.png").size
    plain_width, plain_height = Image.open(
        tmp_path / "plain" / "volume_vs_gap.png"
    ).size
    assert width / height > 2 > 1.6 > plain_width / plain_height


def test_the_swiss_roll_anneals_at_its_preset_cutoff_unless_left_out():
    from flatgen.experiments._experiment import make_settings
    from flatgen.experiments.specs import get_spec

    spec = get_spec("swissroll")

    def cutoffs(quick, given):
        settings = make_settings(spec, quick, None, None, None, given)
        return settings["annealed_cutoffs"]

    assert cutoffs(False, None) == [0.5]  # the full run measures it
    assert cutoffs(True, None) == []  # --quick stays quick
    assert cutoffs(False, []) == [] and cutoffs(False, ()) == []
    assert cutoffs(True, [1.0, 0.5, 1.0]) == [0.5, 1.0]
    assert get_spec("study").full["annealed_cutoffs"] == []


@pytest.mark.parametrize(
    "spec, cutoffs, match",
    [
        ("swissroll", [0.5, -1.0], "finite, positive cross-entropies"),
        ("swissroll", ["a"], "finite, positive cross-entropies"),
        ("digits", [0.5, -1.0], "finite, positive cross-entropies"),
        ("study", [0.0], "finite, positive cross-entropies"),
        ("study", [float("nan")], "finite, positive cross-entropies"),
    ],
)
def test_bad_annealed_cutoffs_are_refused_before_any_work(
    spec, cutoffs, match, tmp_path
):
    from flatgen.experiments import run_experiment

    with pytest.raises(ValueError, match=match):
        run_experiment(spec, tmp_path, quick=True, verbose=0, annealed_cutoffs=cutoffs)
    assert not (tmp_path / "steps").exists()
