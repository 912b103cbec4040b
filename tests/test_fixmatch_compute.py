"""benchmarks/fixmatch_compute.py on digits_fixmatch, as a subprocess: the projection's
arithmetic against closed forms from the flag files (32 labeled + 2 x 128 unlabeled
views a step, 100 epochs, the _lc twin's 40 epochs after its fork at 60)."""

import json
import math
import os
import subprocess
import sys

from conftest import ROOT

SCRIPT = os.path.join(ROOT, "benchmarks", "fixmatch_compute.py")


def test_the_projection_of_a_fixmatch_setting_follows_from_its_measured_step(tmp_path):
    output = tmp_path / "compute.json"
    finished = subprocess.run(
        [sys.executable, SCRIPT, "--setting=digits_fixmatch", "--steps=1",
         "--sustained_tflops=10,40", f"--output={output}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-2000:]
    record = json.loads(output.read_text())
    assert record["images_per_step"] == 32 + 2 * 128
    flop = 3 * record["forward_flop_per_image"] * 288
    assert math.isclose(record["train_flop_per_step"], flop, rel_tol=1e-12)
    assert record["cpu_s_per_step"] > 0
    runs, per_epoch = record["runs"], record["steps_per_epoch"]
    assert runs["fixmatch"]["steps"] == 100 * per_epoch
    assert runs["fixmatch_lc_after_fork"]["steps"] == (100 - 60) * per_epoch
    for run in runs.values():
        assert math.isclose(run["train_flop"], run["steps"] * flop, rel_tol=1e-12)
        hours = run["gpu_hours_at"]
        assert math.isclose(hours["40_tflops"], run["train_flop"] / 40e12 / 3600, rel_tol=1e-12)
        assert math.isclose(hours["10_tflops"], 4 * hours["40_tflops"], rel_tol=1e-12)
        days = run["steps"] * record["cpu_s_per_step"] / 86400
        assert math.isclose(run["cpu_days_projected"], days, rel_tol=1e-12)
    assert "benchmarks/fixmatch_compute.py --setting=digits_fixmatch" in record["command"]


def test_a_mean_teacher_setting_is_refused_with_one_line_and_status_2():
    finished = subprocess.run(
        [sys.executable, SCRIPT, "--setting=digits"], capture_output=True, text=True, timeout=600
    )
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines()[-1] == (
        "fixmatch_compute.py: error: --setting=digits trains mean_teacher, not fixmatch"
    )
