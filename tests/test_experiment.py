"""scripts/experiment.py table: statistics against scipy, the runs it makes, the table's
numbers against the runs' own results.json, skip/resume on a rerun, and its errors."""

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from lcmt_tf.errors import UserInputError
from lcmt_tf.experiment import parse_seeds
from lcmt_tf.statistics import mean_std, paired_difference

from conftest import ROOT

SCRIPT = os.path.join(ROOT, "scripts", "experiment.py")
# Digits MT and MT+LC, 4 epochs, LC from epoch 2 (the fork point), decay in the last.
SHORT = [
    "--set=epochs=4",
    "--set=lc_start_epoch=2",
    "--set=lc_rampup_epochs=1",
    "--set=lr_decay_epochs=1",
    "--set=width=0.5",
    "--set=eval_every=2",
]


def experiment(*args):
    return subprocess.run(
        [sys.executable, SCRIPT, *args],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_mean_and_sample_std_match_numpy():
    values = [12.5, 11.0, 13.25, 12.0]
    assert mean_std(values) == pytest.approx((np.mean(values), np.std(values, ddof=1)))
    mean, std = mean_std([3.0])
    assert mean == 3.0 and math.isnan(std)


def test_paired_difference_and_its_t_interval_match_scipy():
    treated = np.array([11.2, 12.9, 10.4, 12.2, 11.7])
    control = np.array([12.0, 13.1, 11.9, 12.5, 12.8])
    result = paired_difference(treated, control)
    reference = stats.ttest_rel(treated, control).confidence_interval(0.95)
    assert result["mean"] == pytest.approx(np.mean(treated - control))
    assert result["ci"] == pytest.approx([reference.low, reference.high])
    assert result["differences"] == pytest.approx(list(treated - control))
    single = paired_difference([1.0], [2.0])
    assert single["mean"] == -1.0 and all(math.isnan(bound) for bound in single["ci"])


@pytest.mark.parametrize(
    "text, seeds", [("0-4", [0, 1, 2, 3, 4]), ("3", [3]), ("0,2-3,9", [0, 2, 3, 9])]
)
def test_seed_ranges(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "4-2", "1,1", "-1"])
def test_bad_seed_ranges_are_refused(text):
    with pytest.raises(UserInputError, match="--seeds"):
        parse_seeds(text)


@pytest.mark.parametrize(
    "args, message",
    [
        (["table", "--settings=nope"], "setting 'nope' needs the flag files"),
        (["table", "--settings=digits", "--set=no_such_flag=1"], "no_such_flag"),
        (["table", "--settings=digits", "--set=epochs"], "--set='epochs' must look like KEY=VALUE"),
        (["table", "--settings=digits", "--seeds=x"], "--seeds='x'"),
        (["table"], "--settings is empty"),
        (["plot", "--settings=digits"], "give one command (table)"),
    ],
)
@pytest.mark.tensorflow_only  # the command line's checks do not depend on the backend
def test_mistakes_end_with_one_line_and_exit_2(args, message, tmp_path):
    completed = experiment(*args, f"--root={tmp_path / 'root'}")
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("experiment.py: error: "), lines
    assert message in lines[0]
    assert not (tmp_path / "root").exists()


@pytest.mark.tensorflow_only
def test_plan_lists_the_runs_with_measured_projections_and_runs_nothing(tmp_path):
    root = tmp_path / "table"
    completed = experiment("table", "--settings=digits", "--seeds=3", f"--root={root}", "--fork",
                           "--plan", *SHORT)  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("projected: ")
    # MT trains 4 epochs; the fork trains the 2 after the fork point.
    assert "mt seed 3" in lines[0] and "4 epochs left" in lines[0] and "unknown" not in lines[0]
    assert "mtlc seed 3" in lines[1] and "2 epochs left" in lines[1]
    assert not root.exists()


def results(path):
    with open(path / "results.json") as file:
        return json.load(file)


@pytest.mark.tensorflow_only
def test_forked_table_matches_its_runs_and_a_rerun_only_finishes_what_is_left(tmp_path):
    root = tmp_path / "table"
    args = ["table", "--settings=digits", "--seeds=0-1", f"--root={root}", "--fork", *SHORT]
    completed = experiment(*args, "--parallel=2")
    assert completed.returncode == 0, completed.stdout + completed.stderr

    runs = {(m, s): root / "digits" / m / f"seed_{s}" for m in ("mt", "mtlc") for s in (0, 1)}
    for (method, seed), directory in runs.items():
        config = json.load(open(directory / "config.json"))
        assert (config["seed"], config["label_seed"], config["epochs"]) == (seed, seed, 4)
        assert config["lc_weight"] == (0.0 if method == "mt" else 10.0)
    # The Mean Teacher runs keep the fork point; the MT+LC runs start from it.
    assert all((runs["mt", s] / "training_state_epoch2.npz").exists() for s in (0, 1))
    assert json.load(open(runs["mtlc", 0] / "config.json"))["fork_from"] == str(runs["mt", 0])

    table = json.load(open(root / "table.json"))
    for row in table["rows"]:
        errors = [results(runs[row["method"], s])["teacher_test_error"] for s in (0, 1)]
        students = [results(runs[row["method"], s])["student_test_error"] for s in (0, 1)]
        assert row["seeds"] == [0, 1] and row["teacher_test_errors"] == errors
        assert row["teacher_test_error_mean"] == pytest.approx(np.mean(errors))
        assert row["teacher_test_error_std"] == pytest.approx(np.std(errors, ddof=1))
        assert row["student_test_error_std"] == pytest.approx(np.std(students, ddof=1))
    (paired,) = table["paired"]
    differences = [
        results(runs["mtlc", s])["teacher_test_error"]
        - results(runs["mt", s])["teacher_test_error"]
        for s in (0, 1)
    ]
    assert paired["teacher_differences"] == pytest.approx(differences)
    assert paired["teacher_difference_mean"] == pytest.approx(np.mean(differences))
    with open(root / "table.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(r["method"], float(r["teacher_test_error_mean"])) for r in rows] == [
        (r["method"], pytest.approx(r["teacher_test_error_mean"])) for r in table["rows"]
    ]
    assert "test-set selection" in (root / "table.md").read_text()

    # A run killed before it ended has no results.json: only it runs again.
    os.remove(runs["mtlc", 1] / "results.json")
    finished = {
        key: os.path.getmtime(path / "results.json")
        for key, path in runs.items()
        if key != ("mtlc", 1)
    }
    completed = experiment(*args)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.count("(finished earlier)") == 3
    assert f"resume {runs['mtlc', 1]}" in completed.stdout
    assert {key: os.path.getmtime(runs[key] / "results.json") for key in finished} == finished
    rerun = json.load(open(root / "table.json"))["rows"]
    assert [row["teacher_test_errors"] for row in rerun] == [
        row["teacher_test_errors"] for row in table["rows"]
    ]
