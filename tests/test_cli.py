"""The flatgen command line: each subcommand in --quick mode, and bad arguments."""

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.io import savemat

from flatgen import cli

# The figures each subcommand writes next to summary.json and report.md.
FIGURES = {
    "swissroll": {
        "decision_boundaries.png",
        "poison_sweep.png",
        "basin_cross_sections.png",
        "volume_vs_gap.png",
        "margins.png",
        "perturbation_clean.gif",
        "perturbation_poisoned.gif",
    },
    "digits": {"poison_sweep.png", "volume_vs_gap.png", "basin_cross_sections.png"},
    "svhn": {"poison_sweep.png", "volume_vs_gap.png", "basin_cross_sections.png"},
}


def write_svhn(folder, n_images=(40, 40, 80), splits=("train", "test", "extra")):
    """Tiny SVHN-format files: colour blobs whose position encodes the label."""
    rng = np.random.RandomState(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in zip(splits, n_images):
        labels = np.arange(n) % 10 + 1  # 10 stands for the digit 0
        X = rng.randint(0, 60, size=(32, 32, 3, n)).astype(np.uint8)
        for i, label in enumerate(labels):
            row = 3 * (label - 1)
            X[row : row + 3, 8:24, :, i] = 255
        savemat(folder / f"{split}_32x32.mat", {"X": X, "y": labels[:, None]})
    return folder


@pytest.fixture(scope="module")
def svhn_dir(tmp_path_factory):
    return write_svhn(tmp_path_factory.mktemp("svhn"))


def run_cli(capsys, *args):
    status = cli.main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def subcommand_args(name, svhn_dir):
    extra = ["--data-dir", str(svhn_dir), "--subset", "30"] if name == "svhn" else []
    return [name, "--quick", "--quiet", "--n-directions", "6", *extra]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["swissroll", "digits", "svhn"])
def test_quick_subcommand_writes_its_folder(name, svhn_dir, tmp_path, capsys):
    out = tmp_path / name
    args = subcommand_args(name, svhn_dir)
    status, stdout, stderr = run_cli(capsys, *args, "--out", str(out))
    assert status == 0, stderr
    files = {p.name for p in out.iterdir() if p.is_file()}
    assert files == FIGURES[name] | {"summary.json", "report.md"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["format"] == "flatgen.experiment"
    assert summary["experiment"] == name
    assert summary["settings"]["quick"] is True
    assert summary["settings"]["n_directions"] == 6
    assert summary["seeds"]["random_state"] == 0
    assert {"python", "flatgen", "torch", "numpy", "scikit-learn"} <= set(
        summary["versions"]
    )
    factors = summary["settings"]["poison_factors"]
    names = [f"net beta={f:g}" for f in factors] + ["SVC (rbf)"]
    assert [m["name"] for m in summary["models"]] == names
    for model in summary["models"]:
        assert 0 <= model["train_accuracy"] <= 1 and 0 <= model["test_accuracy"] <= 1
        gap = model["train_accuracy"] - model["test_accuracy"]
        assert model["generalization_gap"] == pytest.approx(gap)
    assert [f["poison_factor"] for f in summary["flatness"]] == factors
    for row in summary["flatness"]:
        assert row["cutoffs"] == summary["settings"]["cutoffs"]
        assert np.isfinite(row["top_eigenvalue"])
    assert set(summary["figures"].values()) == FIGURES[name]
    assert len(summary["steps"]["computed"]) > 0 and summary["steps"]["reused"] == []
    if name == "swissroll":
        assert [m["name"] for m in summary["margins"]] == [
            "net beta=0",
            f"net beta={factors[-1]:g}",
            "SVC (rbf)",
        ]
        assert all(m["median_margin"] > 0 for m in summary["margins"])
    if name == "svhn":
        assert summary["settings"]["subset"] == 30
        assert summary["settings"]["poison_source"] == "extra"
    # The printed summary: accuracy table and where the files are.
    assert "train acc" in stdout and str(out) in stdout and "SVC (rbf)" in stdout
    report = (out / "report.md").read_text()
    assert all(f"]({figure})" in report for figure in FIGURES[name])


@pytest.mark.slow
def test_same_random_state_same_numbers(tmp_path, capsys):
    def numbers(folder, seed):
        args = ["digits", "--quick", "--quiet", "--n-directions", "4"]
        args += ["--max-iter", "30", "--random-state", str(seed)]
        status, _, err = run_cli(capsys, *args, "--out", str(folder))
        assert status == 0, err
        summary = json.loads((folder / "summary.json").read_text())
        return {k: v for k, v in summary.items() if k not in ("timings", "steps")}

    first = numbers(tmp_path / "a", 3)
    assert numbers(tmp_path / "b", 3) == first
    other = numbers(tmp_path / "c", 4)
    assert other["models"] != first["models"]


@pytest.fixture
def not_a_folder(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize(
    "args, status, message",
    [
        ([], 2, "the following arguments are required: COMMAND"),
        (["fly"], 2, "invalid choice: 'fly'"),
        (["swissroll", "--n-directions", "-5"], 2, "--n-directions: must be a "),
        (["digits", "--max-iter", "0"], 2, "--max-iter: must be a positive integer"),
        (["swissroll", "--n-jobs", "0"], 2, "--n-jobs: must be a positive integer"),
        (["swissroll", "--random-state", "x"], 2, "--random-state: must be an int"),
        (["digits", "--poison-factors", "-1"], 2, "must be a non-negative number"),
        (["svhn", "--quick"], 2, "required: --data-dir"),
        (["svhn", "--data-dir", "{svhn}", "--subset", "-2"], 2, "--subset: must be"),
        (["digits", "--quick", "--out", "{file}/sub"], 1, "Cannot write results to"),
        (["swissroll", "--quick", "--device", "tpu9"], 1, "not a torch device"),
        (["svhn", "--quick", "--data-dir", "{missing}"], 1, "does not exist"),
        (
            ["svhn", "--quick", "--data-dir", "{noextra}", "--subset", "10"],
            1,
            "--poison-source jitter",
        ),
        (["svhn", "--quick", "--data-dir", "{broken}"], 1, "not a readable MATLAB"),
        (["svhn", "--data-dir", "{svhn}", "--subset", "500"], 1, "exceeds the 40"),
        (["swissroll", "--annealed-cutoffs", "0"], 2, "must be a positive number"),
        (["swissroll", "--annealed-cutoffs", "inf"], 2, "must be a positive number"),
        (["digits", "--annealed-cutoffs", "-1"], 2, "must be a positive number"),
        (["study", "--annealed-cutoffs", "nan"], 2, "must be a positive number"),
        (
            ["swissroll", "--no-annealed", "--annealed-cutoffs", "0.5"],
            2,
            "not allowed with argument --no-annealed",
        ),
    ],
)
def test_bad_arguments_one_line_error(
    args, status, message, svhn_dir, not_a_folder, tmp_path, capsys
):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "train_32x32.mat").write_bytes(b"\x00" * 300)
    noextra = write_svhn(tmp_path / "noextra", (20, 20), ("train", "test"))
    paths = {
        "svhn": svhn_dir,
        "file": not_a_folder,
        "missing": tmp_path / "missing",
        "broken": broken,
        "noextra": noextra,
    }
    args = [a.format(**paths) for a in args]
    if args and args[0] in FIGURES and "--out" not in args:
        args += ["--out", str(tmp_path / "o")]
    got, _, stderr = run_cli(capsys, *args)
    assert got == status
    assert message in stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not (tmp_path / "o" / "summary.json").exists()


def test_interrupt_is_one_line_with_resume_hint(monkeypatch, tmp_path, capsys):
    from flatgen import experiments

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiments, "run_digits", interrupted)
    status, _, stderr = run_cli(capsys, "digits", "--out", str(tmp_path))
    assert status == 130
    assert "interrupted" in stderr and "again to resume" in stderr
    assert stderr.count("\n") == 1


@pytest.mark.slow
def test_python_dash_m_flatgen_gives_no_traceback(tmp_path):
    args = ["svhn", "--data-dir", str(tmp_path / "nowhere"), "--quick"]
    done = subprocess.run(
        [sys.executable, "-m", "flatgen", *args, "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("flatgen svhn: error: SVHN folder")


def test_n_jobs_beyond_the_cores_is_capped_in_one_line(monkeypatch, tmp_path, capsys):
    from flatgen import experiments
    from flatgen.experiments._runner import usable_cores

    seen = {}

    def record(out, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt  # stop before any work

    monkeypatch.setattr(experiments, "run_swissroll", record)
    status, _, stderr = run_cli(
        capsys, "swissroll", "--n-jobs", "999", "--out", str(tmp_path)
    )
    assert status == 130
    assert seen["n_jobs"] == usable_cores()
    assert f"--n-jobs 999 is more than the {usable_cores()} usable CPU cores" in stderr


@pytest.mark.parametrize(
    "args, cutoffs",
    [
        ((), None),
        (("--no-annealed",), []),
        (("--annealed-cutoffs", "1", "0.5"), [1, 0.5]),
    ],
)
def test_annealed_cutoffs_default_to_the_preset_and_can_be_left_out(
    args, cutoffs, monkeypatch, tmp_path, capsys
):
    from flatgen import experiments

    seen = {}

    def record(out, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt  # stop before any work

    monkeypatch.setattr(experiments, "run_swissroll", record)
    status, _, _ = run_cli(capsys, "swissroll", *args, "--out", str(tmp_path))
    assert status == 130
    # None takes the preset's (the full run's 0.5); [] measures none.
    assert seen.get("annealed_cutoffs") == cutoffs


def test_interrupt_during_start_up_is_the_same_one_line(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    status, _, stderr = run_cli(capsys, "swissroll")
    assert status == 130
    assert stderr.startswith("flatgen: interrupted") and stderr.count("\n") == 1


def test_command_line_starts_without_importing_torch():
    code = "import sys, flatgen.cli; print('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "False"


def test_debug_shows_the_traceback(monkeypatch, tmp_path, capsys):
    from flatgen import experiments

    def broken(*args, **kwargs):
        raise ValueError("something specific")

    monkeypatch.setattr(experiments, "run_digits", broken)
    status, _, stderr = run_cli(capsys, "digits", "--out", str(tmp_path))
    assert status == 1 and "Traceback" not in stderr
    status, _, stderr = run_cli(capsys, "digits", "--debug", "--out", str(tmp_path))
    assert status == 1
    assert "Traceback" in stderr and "something specific" in stderr
    assert stderr.rstrip().endswith("flatgen digits: error: something specific")
