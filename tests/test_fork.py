"""Forking a run from another run's kept state (--keep_epochs, --fork_from): the paper's
protocol of switching LC on from a Mean Teacher model, equal to training from scratch."""

import csv
import dataclasses
import json
import os

import numpy as np
import pytest

from lcmt_tf.config import TrainConfig
from lcmt_tf.errors import UserInputError
from lcmt_tf.run_dir.fork import check_fork

from conftest import NO_STARTUP_CHECK, error_lines, train

# The subprocess tests run once, in the JAX suite (training on JAX): forking is
# backend-independent file handling; restoring a state on TensorFlow is tested by the
# resume tests.
cli = pytest.mark.jax_only

FORK_EPOCH = 2
COMMON = [
    "--dataset=digits",
    "--model=digits_net",
    "--width=0.5",
    "--num_labels=50",
    "--eval_every=1",
    "--consistency_rampup_epochs=1",
    "--lr_decay_epochs=1",
    "--deterministic",
    "--verbose=0",
    NO_STARTUP_CHECK,
]
# MT+LC from epoch 2; 4 epochs, decaying in the last. Its Mean Teacher pair is shorter.
MTLC = [*COMMON, "--epochs=4", "--lc_weight=1", f"--lc_start_epoch={FORK_EPOCH}",
        "--lc_rampup_epochs=1", "--lc_epsilon=0.5"]  # fmt: skip
MT = [*COMMON, "--epochs=3", "--lc_weight=0", f"--keep_epochs={FORK_EPOCH}"]


def arrays(path):
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def history(model_dir):
    with open(os.path.join(model_dir, "history.csv"), newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def mean_teacher_run(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("mt") / "run"
    completed = train(*MT, f"--model_dir={model_dir}")
    assert completed.returncode == 0, completed.stderr
    return model_dir


@cli
def test_keep_epochs_keeps_the_state_after_that_epoch(mean_teacher_run):
    snapshot = arrays(mean_teacher_run / f"training_state_epoch{FORK_EPOCH}.npz")
    final = arrays(mean_teacher_run / "training_state.npz")
    assert int(snapshot["next_epoch"]) == FORK_EPOCH and int(final["next_epoch"]) == 3
    assert any(not np.array_equal(snapshot[key], final[key]) for key in final if key[0] == "v")


@cli
def test_a_fork_ends_where_the_same_run_from_scratch_ends(mean_teacher_run, tmp_path):
    forked, scratch = tmp_path / "forked", tmp_path / "scratch"
    completed = train(*MTLC, f"--fork_from={mean_teacher_run}", f"--model_dir={forked}")
    assert completed.returncode == 0, completed.stderr
    assert f"Forked from {mean_teacher_run} after epoch {FORK_EPOCH}." in completed.stderr
    completed = train(*MTLC, f"--model_dir={scratch}")
    assert completed.returncode == 0, completed.stderr

    forked_state, scratch_state = (arrays(d / "training_state.npz") for d in (forked, scratch))
    assert sorted(forked_state) == sorted(scratch_state)
    for key in scratch_state:  # every student, teacher and optimizer variable
        np.testing.assert_allclose(forked_state[key], scratch_state[key], atol=1e-6, err_msg=key)

    rows = history(forked)
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]
    source_rows = history(mean_teacher_run)[:FORK_EPOCH]
    assert [{key: row[key] for key in source_rows[0]} for row in rows[:FORK_EPOCH]] == source_rows
    assert float(rows[FORK_EPOCH + 1]["lc_weight"]) == 1.0
    # Mean Teacher measures LC's distances without training on them, so both runs log
    # them at every epoch; and both the confirmation-bias diagnostics at every evaluation.
    for row in [*history(mean_teacher_run), *rows]:
        assert row["lc_distance_p50"] and row["misclassified_neighbors_same_wrong"], row["epoch"]
    assert rows[0]["unlabeled_fixed"] == "nan" and rows[3]["unlabeled_fixed"] != "nan"
    with open(forked / "results.json") as file:
        bias = json.load(file)["confirmation_bias"]
    assert bias["images"] == 1297 and bias["unlabeled_teacher_error"] >= 0


@cli
def test_a_fork_from_a_run_trained_otherwise_is_one_line_and_exit_2(mean_teacher_run, tmp_path):
    completed = train(
        *MTLC, "--seed=5", f"--fork_from={mean_teacher_run}", f"--model_dir={tmp_path / 'f'}"
    )
    assert completed.returncode == 2
    assert error_lines(completed.stderr) == [
        f"train.py: error: --fork_from={mean_teacher_run} trained the first {FORK_EPOCH} "
        "epochs differently (seed: 0 there, 5 here)"
    ]
    assert not (tmp_path / "f").exists()


@cli
def test_a_fork_point_without_a_kept_state_names_the_flag_to_keep_it(mean_teacher_run, tmp_path):
    completed = train(
        *MTLC,
        "--lc_start_epoch=1",
        f"--fork_from={mean_teacher_run}",
        f"--model_dir={tmp_path / 'f'}",
    )
    assert completed.returncode == 2
    assert "train it with --keep_epochs=1" in completed.stderr
    assert len(error_lines(completed.stderr)) == 1


MT_CONFIG = TrainConfig(epochs=30, lr_decay_epochs=10, lc_weight=0.0)
LC_CONFIG = TrainConfig(
    epochs=40, lr_decay_epochs=10, lc_weight=1.0, lc_start_epoch=20, fork_from="runs/mt"
)


def changed(config, **changes):
    return dataclasses.replace(config, **changes)


@pytest.mark.parametrize(
    "source, fork, message",
    [
        (MT_CONFIG, changed(LC_CONFIG, lr=0.1), "lr: 0.05 there, 0.1 here"),
        (MT_CONFIG, changed(LC_CONFIG, lc_start_epoch=25), "learning rate from epoch 20"),
        (MT_CONFIG, changed(LC_CONFIG, lr_decay_epochs=25), "this run decays"),
        (changed(MT_CONFIG, lc_weight=1.0, lc_start_epoch=5), LC_CONFIG, "LC|Local Clustering"),
        (changed(MT_CONFIG, epochs=15, lr_decay_epochs=0), LC_CONFIG, "from epoch 15"),
    ],
)
def test_check_fork_refuses_what_would_make_the_first_epochs_differ(source, fork, message):
    with pytest.raises(UserInputError, match=message):
        check_fork(fork, source)


def test_check_fork_accepts_what_acts_only_after_the_fork_point():
    check_fork(
        dataclasses.replace(LC_CONFIG, lc_epsilon=3.0, lc_epsilon_quantile=0.1, verbose=2),
        dataclasses.replace(MT_CONFIG, keep_epochs="20", model_dir="runs/mt"),
    )
