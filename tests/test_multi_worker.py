"""--distribute=multi_worker as a user launches it: two scripts/train.py processes on
localhost (free 127.0.0.1 ports chosen here; TF_CONFIG on TensorFlow, the
--coordinator_address/--num_processes/--process_id flags on JAX) train digits together,
both are killed after the chief has saved an epoch, and the same two commands resume the
run to its end. Only the chief writes: one row per epoch in history.csv, TensorBoard
events from the chief's processes only. Each backend runs in subprocesses whatever the
suite's backend, so once (in the TensorFlow suite) is enough."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lcmt_tf.launch import launch_local

from conftest import NO_STARTUP_CHECK, ROOT, TRAIN_SCRIPT, error_lines

EPOCHS = 2
# The start-up loss check is off (conftest.NO_STARTUP_CHECK): the test must stay within a
# minute.
DIGITS = ["--flagfile=flags/digits.txt", "--width=0.5", f"--epochs={EPOCHS}",
          "--lc_start_epoch=1", "--lr_decay_epochs=1", f"--eval_every={EPOCHS}", "--verbose=0",
          NO_STARTUP_CHECK]  # fmt: skip


def launch(backend: str, model_dir, distribute: str = "multi_worker") -> list[subprocess.Popen]:
    """The training processes of one run: two for multi_worker (process 0 is the chief),
    one on two logical CPU devices for mirrored. On JAX the relaunch takes its compiled
    steps from the session's compilation cache (conftest.jax_compilation_cache)."""
    args = [*DIGITS, f"--distribute={distribute}", f"--model_dir={model_dir}"]
    environment = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    pipes = dict(cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if distribute == "mirrored":
        command = [sys.executable, TRAIN_SCRIPT, *args, "--num_cpu_devices=2"]
        return [subprocess.Popen(command, env={**os.environ, **environment,
                                               "KERAS_BACKEND": backend}, **pipes)]  # fmt: skip
    return launch_local(backend, args, 2, env=environment, **pipes)


def kill(processes) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.communicate()


def saved_epoch(model_dir) -> int:
    try:
        with np.load(os.path.join(model_dir, "training_state.npz")) as archive:
            return int(archive["next_epoch"])
    except (OSError, KeyError, ValueError):
        return 0


@pytest.mark.tensorflow_only
@pytest.mark.multi_process
@pytest.mark.parametrize(
    "backend, distribute",
    [("tensorflow", "multi_worker"), ("jax", "multi_worker"), ("tensorflow", "mirrored")],
)
def test_data_parallel_digits_runs_resume_after_every_process_is_killed(
    backend, distribute, tmp_path
):
    model_dir = tmp_path / "run"
    first = launch(backend, model_dir, distribute)
    try:
        deadline = time.time() + 120
        while saved_epoch(model_dir) < 1 and time.time() < deadline:
            assert all(p.poll() is None for p in first), first[0].communicate()[1][-3000:]
            time.sleep(0.05)
        assert 1 <= saved_epoch(model_dir) < EPOCHS, "the chief never saved an epoch"
    finally:
        kill(first)
    chief_pids = {first[0].pid}

    second = launch(backend, model_dir, distribute)
    chief_pids.add(second[0].pid)
    try:
        outputs = [process.communicate(timeout=180) for process in second]
    finally:
        kill(second)
    for process, (_, stderr) in zip(second, outputs):
        assert process.returncode == 0, "\n".join(error_lines(stderr)[-30:])

    results = json.load(open(model_dir / "results.json"))
    assert results["completed"] and results["epochs_run"] == EPOCHS
    assert results["replicas"] == 2
    assert results["processes"] == (2 if distribute == "multi_worker" else 1)
    assert 1 <= results["resumed_from_epoch"] < EPOCHS
    assert results["teacher_test_error"] is not None
    assert (model_dir / "model.keras").exists()
    # Only the chief writes: every epoch once in the history (a worker appending its
    # rows would repeat them), and TensorBoard events only from the chief's processes.
    with open(model_dir / "history.csv", newline="") as file:
        assert [int(row["epoch"]) for row in csv.DictReader(file)] == list(range(1, EPOCHS + 1))
    writers = {
        int(name.split(".")[-3])
        for _, _, names in os.walk(model_dir / "tensorboard")
        for name in names
        if name.startswith("events.out.tfevents")
    }
    assert writers and writers <= chief_pids


@pytest.mark.tensorflow_only
@pytest.mark.parametrize(
    "backend, message",
    [
        ("tensorflow", "--distribute=multi_worker on TensorFlow reads the cluster from "
         "TF_CONFIG, which is not set; see the README's \"Several machines\""),
        ("jax", "--distribute=multi_worker on JAX could not start jax.distributed "
         "(coordinator_address should be defined.); give --coordinator_address, "
         "--num_processes and --process_id (or KERAS_DISTRIBUTION_JOB_ADDRESSES, "
         "KERAS_DISTRIBUTION_NUM_PROCESSES, KERAS_DISTRIBUTION_PROCESS_ID)"),
    ],
)  # fmt: skip
def test_a_multi_worker_run_without_its_cluster_is_one_line_and_writes_nothing(
    backend, message, tmp_path
):
    environment = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    completed = subprocess.run(
        [sys.executable, TRAIN_SCRIPT, "--flagfile=flags/digits.txt",
         "--distribute=multi_worker", f"--model_dir={tmp_path / 'run'}"],
        cwd=ROOT, env={**environment, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 2
    assert error_lines(completed.stderr) == [f"train.py: error: {message}"]
    assert not (tmp_path / "run").exists()
