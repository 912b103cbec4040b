"""benchmarks/paired_runs.py: the paired difference of two studies' runs that share
seeds, checked against a closed form, as a subprocess."""

import json
import math
import os
import subprocess
import sys

from conftest import ROOT

SCRIPT = os.path.join(ROOT, "benchmarks", "paired_runs.py")


def write_runs(folder, errors, completed=True):
    for seed, error in errors.items():
        os.makedirs(folder / f"seed_{seed}")
        results = {"teacher_test_error": error, "completed": completed}
        (folder / f"seed_{seed}" / "results.json").write_text(json.dumps(results))


def test_pairs_the_seeds_both_sides_finished_and_gives_the_t_interval(tmp_path):
    write_runs(tmp_path / "a", {10: 5.0, 11: 7.0, 12: 9.0, 13: 1.0})
    write_runs(tmp_path / "b", {10: 4.0, 11: 5.0, 12: 6.0})
    write_runs(tmp_path / "unfinished", {13: 0.0}, completed=False)
    for name in os.listdir(tmp_path / "unfinished"):
        os.rename(tmp_path / "unfinished" / name, tmp_path / "b" / name)
    output = tmp_path / "paired.json"
    finished = subprocess.run(
        [sys.executable, SCRIPT, f"--treated={tmp_path / 'a'}", f"--control={tmp_path / 'b'}",
         f"--output={output}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    record = json.loads(output.read_text())
    # Seed 13 is unfinished on one side, so the pairs are 10-12: differences 1, 2, 3,
    # mean 2, sample std 1, t(0.975, 2 df) = 4.302653.
    assert record["seeds"] == [10, 11, 12]
    assert record["paired"]["differences"] == [1.0, 2.0, 3.0]
    half_width = 4.302653 / math.sqrt(3)
    assert math.isclose(record["paired"]["ci"][0], 2 - half_width, rel_tol=1e-6)
    assert math.isclose(record["paired"]["ci"][1], 2 + half_width, rel_tol=1e-6)
    assert math.isclose(record["methods"]["treated"]["std"], 2.0)
    assert "benchmarks/paired_runs.py" in record["command"]


def test_no_common_seed_is_one_line_and_status_2(tmp_path):
    write_runs(tmp_path / "a", {1: 5.0})
    write_runs(tmp_path / "b", {2: 4.0})
    finished = subprocess.run(
        [sys.executable, SCRIPT, f"--treated={tmp_path / 'a'}", f"--control={tmp_path / 'b'}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines()[-1] == (
        "paired_runs.py: error: no seed finished in both folders"
    )
