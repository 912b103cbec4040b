"""Faults a long run meets: kills, bad input, NaN, collapse. Real subprocesses.

The kill-and-resume and NaN runs train on the suite's backend (KERAS_BACKEND), so each
suite checks its own; the others check the command line once, in the TensorFlow suite
(tensorflow_only) or in the JAX suite (jax_only)."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from conftest import NO_STARTUP_CHECK, ROOT, TRAIN_SCRIPT, train

# Small batches make an epoch 81 steps long, so that a kill lands inside one. LC starts in
# the second epoch with epsilon measured as a quantile; the kill lands in the third, so the
# resumed run must take that epsilon (and the best error so far) from its training state.
DETERMINISTIC = [
    "--dataset=digits",
    "--width=0.5",
    "--epochs=3",
    "--labeled_batch_size=8",
    "--unlabeled_batch_size=16",
    "--eval_every=2",
    "--lc_weight=1",
    "--lc_start_epoch=1",
    "--lc_rampup_epochs=1",
    "--lc_epsilon_quantile=0.2",
    "--lr_decay_epochs=2",
    "--deterministic",
    "--verbose=0",
    NO_STARTUP_CHECK,
]


def state_arrays(model_dir):
    with np.load(os.path.join(model_dir, "training_state.npz")) as archive:
        return {key: archive[key] for key in archive.files}


def next_epoch(model_dir):
    try:
        return int(state_arrays(model_dir)["next_epoch"])
    except (OSError, KeyError, ValueError):
        return 0


def results(model_dir):
    with open(os.path.join(model_dir, "results.json")) as file:
        return json.load(file)


@pytest.mark.slow_on_tensorflow
def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    backend = keras.backend.backend()
    backend_env = {"KERAS_BACKEND": backend}
    reference = tmp_path / "reference"
    completed = train(*DETERMINISTIC, f"--model_dir={reference}", env=backend_env)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert results(reference)["backend"] == backend

    interrupted = tmp_path / "interrupted"
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **backend_env}
    process = subprocess.Popen(
        [sys.executable, TRAIN_SCRIPT, *DETERMINISTIC, f"--model_dir={interrupted}"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while next_epoch(interrupted) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    # The event: epoch 2's state is on disk, so the third epoch is under way.
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = next_epoch(interrupted)
    assert killed_at == 2 and not (interrupted / "results.json").exists()

    resumed = train(*DETERMINISTIC, f"--model_dir={interrupted}", env=backend_env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final, expected = results(interrupted), results(reference)
    assert final["resumed_from_epoch"] == killed_at and final["epochs_run"] == 3
    for key in (
        "student_test_error",
        "teacher_test_error",
        "teacher_best_test_error",
        "lc_epsilon",
    ):
        assert final[key] == expected[key], key
    assert final["lc_epsilon"] != 1.0  # measured, not the default
    # Every epoch's row once, with the values of the uninterrupted run.
    history, expected_history = (
        (directory / "history.csv").read_text() for directory in (interrupted, reference)
    )
    assert history == expected_history and history.count("\n") == 4  # header + 3 epochs
    reference_state, resumed_state = state_arrays(reference), state_arrays(interrupted)
    assert reference_state.keys() == resumed_state.keys()
    for key in reference_state:
        np.testing.assert_array_equal(resumed_state[key], reference_state[key], err_msg=key)


KILL_DURING_WRITE = """
import os, signal, sys
import numpy as np
import keras
from lcmt_tf import Augmentation, MeanTeacher, digits_net
from lcmt_tf.run_dir.checkpoint import save_training_state

model = MeanTeacher(digits_net(width=0.25), Augmentation([0.5], [0.25]))
model.compile(optimizer="sgd")
model.optimizer.build(model.trainable_variables)
path = sys.argv[1]
save_training_state(model, path, epoch=1)
real_savez = np.savez

def savez_then_die(file, **arrays):
    file.write(b"PK-partial")  # a partial archive, then the process is killed
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)

np.savez = savez_then_die
save_training_state(model, path, epoch=2)
"""


@pytest.mark.tensorflow_only
def test_sigkill_during_checkpoint_write_keeps_the_previous_copy(tmp_path):
    path = tmp_path / "training_state.npz"
    completed = subprocess.run(
        [sys.executable, "-c", KILL_DURING_WRITE, str(path)],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )
    assert completed.returncode == -signal.SIGKILL
    assert int(state_arrays(tmp_path)["next_epoch"]) == 1


@pytest.mark.slow_on_tensorflow
def test_nan_loss_stops_with_reason_and_keeps_the_last_good_checkpoint(tmp_path):
    # lambda1 = 0 in epoch 1, then astronomically large: the loss overflows in epoch 2.
    # On JAX the guard runs in Keras' asynchronous callback threads.
    backend = keras.backend.backend()
    model_dir = tmp_path / "run"
    completed = train(
        "--dataset=digits",
        "--width=0.5",
        "--epochs=4",
        "--consistency_weight=1e38",
        "--verbose=0",
        f"--model_dir={model_dir}",
        env={"KERAS_BACKEND": backend},
    )
    assert completed.returncode == 1
    assert "non-finite loss" in completed.stderr
    final = results(model_dir)
    assert final["stop_reason"].startswith("non-finite loss") and not final["completed"]
    assert final["epochs_run"] == 1 and next_epoch(model_dir) == 1
    assert all(np.all(np.isfinite(v)) for v in state_arrays(model_dir).values())


@pytest.mark.slow
@pytest.mark.jax_only  # backend-independent: checked once
def test_divergence_in_the_first_epoch_reports_no_error_rather_than_the_diverged_weights(
    tmp_path,
):
    # No epoch ended well, so there is no state to fall back to: results.json must not
    # report the error of NaN weights (which argmax scores as 90 %) as the run's result.
    model_dir = tmp_path / "run"
    completed = train(
        "--dataset=digits",
        "--width=0.5",
        "--epochs=2",
        "--consistency_weight=1e38",
        "--consistency_rampup_epochs=0",
        "--verbose=0",
        f"--model_dir={model_dir}",
    )
    assert completed.returncode == 1
    assert "no error measured: no good state to evaluate" in completed.stdout
    final = results(model_dir)
    assert final["epochs_run"] == 0 and final["stop_reason"].startswith("non-finite loss")
    assert final["teacher_test_error"] is None and final["student_test_error"] is None
    assert final["teacher_best_test_error"] is None


@pytest.mark.jax_only  # backend-independent: checked once
def test_collapse_is_detected_logged_and_stops_the_run(tmp_path):
    model_dir = tmp_path / "run"
    completed = train(
        "--dataset=digits",
        "--width=0.5",
        "--epochs=8",
        "--lc_weight=1000",
        "--lc_epsilon=10000",
        "--lc_start_epoch=1",
        "--lc_rampup_epochs=0",
        "--stop_on_collapse",
        "--verbose=0",
        f"--model_dir={model_dir}",
    )
    assert completed.returncode == 1
    assert "feature distribution collapse" in completed.stderr
    final = results(model_dir)
    assert "collapse" in final["stop_reason"] and final["epochs_run"] < 8


# Each kind of mistake once through the command line: the contract is one line on stderr,
# exit status 2 and nothing written. Every message is checked in-process in test_train.py.
CLI_BAD_INPUTS = [
    (["--no_such_flag=1"], "no_such_flag"),
    (["--lc_epslon=3"], "lc_epslon"),
    (["--flagfile=flags/no_such_file.txt"], "no_such_file.txt"),
    (["--epochs=abc"], "epochs"),
    (["--lc_epsilon=0"], "--lc_epsilon must be > 0"),
    (["--num_labels=55"], "--num_labels=55 is not divisible by the 10 classes"),
    (["--dataset=folder:{corrupt}"], "1.png: corrupt or truncated"),
    (["--dataset=cifar10", "--data_dir={tmp}"], "cifar10 is not available"),
]


@pytest.mark.jax_only  # the command line, backend-independent: checked once
@pytest.mark.parametrize(
    "args,message", CLI_BAD_INPUTS, ids=[" ".join(a) for a, _ in CLI_BAD_INPUTS]
)
def test_bad_input_gives_one_line_and_exit_status_2(args, message, bad_inputs, tmp_path):
    args = [arg.format(**bad_inputs) for arg in args]
    completed = train(*args, "--verbose=0", f"--model_dir={tmp_path / 'run'}")
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr
    last_line = completed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("train.py: error: ") and message in last_line, last_line
    assert not (tmp_path / "run").exists() or not os.listdir(tmp_path / "run")


@pytest.mark.slow
@pytest.mark.jax_only  # backend-independent: checked once
def test_model_dir_with_another_configuration_is_refused_on_the_command_line(tmp_path):
    model_dir = tmp_path / "run"
    base = [
        "--dataset=digits",
        "--width=0.25",
        "--epochs=1",
        "--verbose=0",
        f"--model_dir={model_dir}",
    ]
    assert train(*base).returncode == 0
    refused = train(*base, "--lr=0.1")
    assert refused.returncode == 2
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"train.py: error: --model_dir={model_dir} holds a run with a different configuration "
            "(lr: 0.05 -> 0.1)"
        )
    )


@pytest.mark.slow
@pytest.mark.tensorflow_only
def test_unwritable_model_dir(tmp_path):
    if os.geteuid() == 0:
        target = "/proc/lcmt_run"  # root may write anywhere but here
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = str(locked / "run")
    completed = train("--dataset=digits", "--epochs=1", f"--model_dir={target}")
    assert (
        completed.returncode == 2 and "is not writable" in completed.stderr.strip().splitlines()[-1]
    )
