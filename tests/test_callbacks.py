"""Callbacks whose behaviour is not covered through fit elsewhere: the epsilon
measurement, the history file and the states a resume restores."""

import csv

import keras
import numpy as np
import pytest

from lcmt_tf.callbacks import (
    CollapseMonitor,
    EvaluationErrors,
    HistoryCSV,
    LocalClusteringSchedule,
    evaluation_epochs,
    measure_lc_distances,
)
from lcmt_tf.run_dir.checkpoint import load_training_state, save_training_state

from conftest import FixedBatches, random_batch, small_mean_teacher


@pytest.mark.slow_on_jax
def test_measuring_distances_leaves_the_model_as_it_was():
    model = small_mean_teacher(lc_weight=1.0)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    batches = [random_batch(num_unlabeled=8, seed=seed) for seed in range(2)]
    before = [keras.ops.convert_to_numpy(v) for v in model.variables]
    first = measure_lc_distances(model, batches)
    second = measure_lc_distances(model, batches)  # same random draws: the state was restored
    assert first.shape == (2 * (4 * 8 + 8 * 8),) and np.all(first >= 0)
    np.testing.assert_array_equal(first, second)
    for variable, value in zip(model.variables, before):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)


def test_epsilon_from_a_quantile_is_measured_once_at_the_start_epoch():
    model = small_mean_teacher(lc_epsilon=123.0)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    batches = FixedBatches([random_batch(num_unlabeled=8, seed=seed) for seed in range(3)])
    schedule = LocalClusteringSchedule(
        1.0,
        start_epoch=2,
        rampup_epochs=0,
        epsilon_quantile=0.25,
        distance_batches=batches,
    )
    measured = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            measured.append(float(keras.ops.convert_to_numpy(self.model.lc_epsilon)))
            if epoch == 2:  # what the schedule measured, measured again the same way
                expected = np.quantile(
                    measure_lc_distances(self.model, [batches[i] for i in range(3)]), 0.25
                )
                assert measured[-1] == pytest.approx(expected, rel=1e-6)

    history = model.fit(batches, epochs=4, verbose=0, callbacks=[schedule, Record()]).history
    assert measured[:2] == [123.0, 123.0] and measured[2] == measured[3] != 123.0
    assert schedule.epsilon_measured_at == 2
    assert history["lc_epsilon"] == pytest.approx(measured, rel=1e-6)


def test_callback_states_survive_a_save_and_load(tmp_path):
    model = small_mean_teacher()
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    schedule = LocalClusteringSchedule(1.0, 3, 2, epsilon_quantile=0.2, distance_batches=[])
    schedule.epsilon_measured_at = 3
    model.lc_epsilon.assign(0.0321)  # what the measurement set: a variable of the model
    evaluation = EvaluationErrors("test")
    evaluation.record({"student_test_error": 9.0, "teacher_test_error": 7.5}, epoch=5)
    evaluation.record({"student_test_error": 9.5, "teacher_test_error": 8.0}, epoch=10)
    monitor = CollapseMonitor()
    monitor.reference_spread = 0.75
    save_training_state(model, tmp_path / "state.npz", 4, [schedule, evaluation, monitor])

    model.lc_epsilon.assign(1.0)
    fresh = [
        LocalClusteringSchedule(1.0, 3, 2, epsilon_quantile=0.2, distance_batches=[]),
        EvaluationErrors("test"),
        CollapseMonitor(),
    ]
    assert load_training_state(model, tmp_path / "state.npz", fresh) == 4
    assert fresh[0].epsilon_measured_at == 3
    assert float(keras.ops.convert_to_numpy(model.lc_epsilon)) == pytest.approx(0.0321)
    assert fresh[1].best_teacher_error == 7.5 and fresh[1].best_epoch == 5
    assert fresh[2].reference_spread == 0.75


def read_rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_history_csv_keeps_one_row_per_epoch_across_a_resume(tmp_path):
    path = tmp_path / "history.csv"
    model = small_mean_teacher()
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    batches = FixedBatches([random_batch(seed=0)])
    history = HistoryCSV(str(path), extra_columns=("teacher_test_error",))
    model.fit(batches, epochs=3, verbose=0, callbacks=[history])
    rows = read_rows(path)
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert rows[0]["teacher_test_error"] == "" and float(rows[0]["ce"]) > 0
    # A run killed after writing epoch 3's row but before its checkpoint resumes at 3.
    model.fit(batches, epochs=4, initial_epoch=2, verbose=0, callbacks=[HistoryCSV(str(path))])
    rows = read_rows(path)
    assert [row["epoch"] for row in rows] == ["1", "2", "3", "4"]
    assert list(rows[0]) == ["epoch", *sorted(set(list(rows[0])[1:]))]  # sorted, header kept


def test_evaluation_epochs_are_every_nth_and_the_last():
    assert evaluation_epochs(5, 12) == [5, 10, 12]
    assert evaluation_epochs(5, 10) == [5, 10]
    assert evaluation_epochs(1, 3) == [1, 2, 3]
    assert evaluation_epochs(20, 3) == [3]


def test_evaluation_errors_name_the_split_and_keep_the_best_evaluation():
    errors = EvaluationErrors("validation")
    logs = {"loss": 1.0, "val_student_accuracy": 0.9, "val_teacher_accuracy": 0.75}
    errors.on_epoch_end(4, logs)
    assert logs["student_validation_error"] == pytest.approx(10.0)
    assert logs["teacher_validation_error"] == pytest.approx(25.0)
    errors.on_epoch_end(9, {"loss": 1.0, "val_student_accuracy": 0.5, "val_teacher_accuracy": 0.8})
    unevaluated = {"loss": 1.0}
    errors.on_epoch_end(10, unevaluated)  # an epoch fit did not evaluate: nothing added
    diverged = {"loss": float("nan"), "val_student_accuracy": 1.0, "val_teacher_accuracy": 1.0}
    errors.on_epoch_end(11, diverged)  # a diverged epoch is not an evaluation of the run
    assert unevaluated == {"loss": 1.0} and "teacher_validation_error" not in diverged
    assert (errors.best_teacher_error, errors.best_epoch) == (pytest.approx(20.0), 10)
