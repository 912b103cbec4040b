"""benchmarks/gpu_run.py, the prepared GPU session, as a CPU dry run: every stage with
the small digits_net in place of conv_large, a short budget and a small generated image
folder in place of CIFAR-10, so that the script cannot rot between the sessions that
are lent a GPU."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

BUDGET_S = 120
# Without the suite's shared JAX compilation cache (as on the GPU machine): a JAX child
# that read an executable another process had cached once crashed (SIGSEGV) here.
JAX_ENVIRONMENT = {
    name: value for name, value in os.environ.items() if not name.startswith("JAX_COMPILATION")
}


@pytest.fixture
def packed_images(tmp_path):
    """A CIFAR-10-shaped folder (32x32 RGB, 10 classes, train/ and test/), packed as
    gpu_prepare.sh packs the real one."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    for split, count in (("train", 30), ("test", 3)):
        for label in range(10):
            os.makedirs(folder / split / f"class_{label}")
            for index in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / split / f"class_{label}" / f"{index}.jpg")
    script = os.path.join(ROOT, "benchmarks", "gpu_run.py")
    packed = subprocess.run(
        [sys.executable, script, f"--pack={folder}", f"--out={tmp_path}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert packed.returncode == 0, packed.stderr
    return tmp_path / "cifar10_jpeg.npz"


@pytest.mark.slow
# In the TensorFlow suite, to balance the two: the script's own runs train on JAX.
@pytest.mark.tensorflow_only
def test_gpu_run_measures_then_trains_the_forked_pair_within_its_budget(tmp_path, packed_images):
    out = tmp_path / "out"
    completed = subprocess.run(
        [
            sys.executable, os.path.join(ROOT, "benchmarks", "gpu_run.py"), f"--out={out}",
            f"--budget_s={BUDGET_S}", "--width=0.25", "--model=digits_net",
            f"--dataset=packed:{packed_images}",
            "--bench_steps=2", "--bench_repeats=1", "--bench_warmup=1", "--bench_share=0.55",
                "--bench_steps_per_execution=2",
            "--bench_modes=mtlc",
            "--scale=0.004", "--overhead_s=0", "--train_args=--num_labels=100",
            f"--runs_dir={tmp_path / 'runs'}", "--mixed_precision=",
        ],
        cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "KERAS_BACKEND": "jax"}, timeout=BUDGET_S + 120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    record = json.loads((out / "gpu_run.json").read_text())
    stages = record["stages"]
    # Whatever the budget allowed on this machine: it ends, and every run it stopped
    # stopped cleanly, leaving a state it can resume from.
    assert stages["done"] is True
    assert stages["environment"]["software"]["backend"] == "jax"
    benchmark = stages["benchmark"]
    assert [outcome["command"][-1].split("bench_")[1] for outcome in benchmark] == [
        "2_synthetic.json", "2_pipeline.json"
    ]  # fmt: skip
    measured = [r for outcome in benchmark for r in outcome.get("records", [])]
    for outcome in benchmark:  # each call either measured or was stopped at its share
        assert outcome.get("records") or outcome["stopped_at_budget"], outcome["log_tail"]
    # (on a loaded machine both calls may be stopped at their share: nothing measured)
    assert {r["mode"] for r in measured} <= {"mt", "mtlc"}
    paired = stages["paired_cifar10"]
    schedule = paired["schedule"]
    assert schedule["scale"] == 0.004 and schedule["lc_start_epoch"] == 2
    assert schedule["mt_epochs"] >= schedule["lc_start_epoch"] + schedule["lr_decay_epochs"]
    mean_teacher = paired["mt"]
    assert mean_teacher["exit_status"] in (0, 130), mean_teacher["log_tail"]
    if mean_teacher["exit_status"] == 0:
        assert mean_teacher["results"]["completed"]
        assert paired["mtlc"].get("exit_status") in (0, 130, None), paired["mtlc"]
    if paired["mtlc"].get("exit_status") == 0:
        assert paired["mtlc"]["results"]["resumed_from_epoch"] == schedule["lc_start_epoch"]
    for name in ("mt", "mtlc"):
        run = paired[name]
        if run.get("exit_status") == 130:  # stopped at its budget
            log = "\n".join(run["log_tail"])  # its last lines
            assert "Segmentation fault" not in log
            assert "stopped by SIGINT; rerun the same command to resume" in log
            state = tmp_path / "runs" / name / "training_state.npz"
            if state.exists():  # a completed epoch: readable, the epoch to resume at
                with np.load(state) as archive:
                    assert 1 <= int(archive["next_epoch"]) <= schedule[f"{name}_epochs"]
