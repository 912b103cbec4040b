"""`MeanTeacher.fit` as a Keras user calls it: Keras' defaults, validation_data, and
Keras' own callbacks, with no lcmt_tf callback but the schedules."""

import keras
import numpy as np
import pytest

import lcmt_tf
from lcmt_tf.data import LabeledBatches, SemiSupervisedBatches, load_dataset
from lcmt_tf.data.split import stratified_label_split


class RecordingBatches(SemiSupervisedBatches):
    """Records the epoch each served batch was drawn for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.served: list[tuple[int, int]] = []

    def __getitem__(self, step):
        self.served.append((self.epoch, step))
        return super().__getitem__(step)


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    labeled, unlabeled = stratified_label_split(data.y_train, 50, 10, seed=0)
    return data, labeled, unlabeled


def batches_of(digits, cls=SemiSupervisedBatches):
    data, labeled, unlabeled = digits
    return cls(data.x_train, data.y_train, labeled, unlabeled, 32, 128, seed=0)


def model_of(digits, **kwargs):
    data = digits[0]
    mean, std = data.channel_mean_std()
    model = lcmt_tf.MeanTeacher(
        lcmt_tf.digits_net(width=0.25),
        lcmt_tf.Augmentation(mean, std, max_translation=1, seed=0),
        ema_decay=0.9,
        lc_epsilon=0.1,
        **kwargs,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    return model


@pytest.mark.slow_on_jax
def test_fit_with_keras_defaults_serves_each_epoch_its_own_seeded_order(digits):
    batches = batches_of(digits, RecordingBatches)
    model_of(digits).fit(batches, epochs=2, verbose=0)  # no epoch callback, default shuffle
    steps = len(batches)
    served_epochs = sorted({epoch for epoch, _ in batches.served})
    assert served_epochs == [0, 1]
    # Every step of each epoch, in order, drawn for that epoch (TensorFlow's adapter also
    # reads the first batches once beforehand, to learn their shapes).
    for epoch in (0, 1):
        assert [s for e, s in batches.served if e == epoch][-steps:] == list(range(steps))
    resumed = batches_of(digits, RecordingBatches)
    model_of(digits).fit(resumed, epochs=3, initial_epoch=2, verbose=0)
    assert {epoch for epoch, _ in resumed.served} == {2}  # a resumed fit: its own epoch


def test_fit_refuses_keras_shuffle_for_seeded_batches(digits):
    with pytest.raises(ValueError, match="order every epoch by their seed"):
        model_of(digits).fit(batches_of(digits), epochs=1, shuffle=True, verbose=0)


def user_training(digits, checkpoint_path, csv_path):
    """What a Keras user writes: validation_data and Keras' callbacks, the schedules."""
    keras.utils.set_random_seed(0)
    data = digits[0]
    model = model_of(digits)
    history = model.fit(
        batches_of(digits),
        epochs=4,
        validation_data=LabeledBatches(data.x_test, data.y_test, 500),
        callbacks=[
            lcmt_tf.ConsistencyRampup(max_weight=10, rampup_epochs=2),
            lcmt_tf.LocalClusteringSchedule(max_weight=1, start_epoch=2, rampup_epochs=1),
            # No mode: Keras reads the accuracies' direction from the model's metrics.
            keras.callbacks.EarlyStopping(monitor="val_teacher_accuracy", patience=10),
            keras.callbacks.ModelCheckpoint(
                str(checkpoint_path), monitor="val_teacher_accuracy", save_best_only=True
            ),
            keras.callbacks.ReduceLROnPlateau(monitor="val_teacher_accuracy", patience=10),
            keras.callbacks.CSVLogger(str(csv_path)),
        ],
        verbose=0,
    )  # fmt: skip
    return history.history


@pytest.mark.slow_on_jax
def test_a_keras_users_fit_with_validation_and_keras_callbacks_is_reproducible(digits, tmp_path):
    first = user_training(digits, tmp_path / "best.keras", tmp_path / "log.csv")
    second = user_training(digits, tmp_path / "best2.keras", tmp_path / "log2.csv")
    assert {"val_student_accuracy", "val_teacher_accuracy", "loss"} <= set(first)
    assert len(first["val_teacher_accuracy"]) == 4
    for key in first:
        np.testing.assert_allclose(first[key], second[key], rtol=1e-6, err_msg=key)
    best = keras.models.load_model(tmp_path / "best.keras")
    data = digits[0]
    evaluated = best.evaluate(LabeledBatches(data.x_test, data.y_test, 500), return_dict=True)
    assert evaluated["teacher_accuracy"] == pytest.approx(max(first["val_teacher_accuracy"]))
    assert (tmp_path / "log.csv").read_text().count("\n") == 5  # a header and 4 epochs


@pytest.mark.slow_on_jax
def test_run_takes_the_users_keras_callbacks_with_the_evaluations_in_their_logs(tmp_path):
    config = lcmt_tf.train_config(
        ["--flagfile=digits", "--width=0.25", "--epochs=3", "--eval_every=2",
         "--lc_start_epoch=1", "--lc_rampup_epochs=1", "--lr_decay_epochs=1", "--verbose=0",
         f"--model_dir={tmp_path / 'run'}"]
    )  # fmt: skip
    seen = []
    results = lcmt_tf.run(
        config,
        callbacks=[
            keras.callbacks.ModelCheckpoint(
                str(tmp_path / "best.keras"), monitor="val_teacher_accuracy",
                save_best_only=True, mode="max",
            ),
            keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
            keras.callbacks.EarlyStopping(monitor="val_teacher_accuracy", mode="max", patience=5),
            keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(logs)),
        ],
    )  # fmt: skip
    assert results["completed"] and results["epochs_run"] == 3
    # fit evaluated after epochs 2 and 3 (every 2nd and the last), on the test set.
    assert ["val_teacher_accuracy" in logs for logs in seen] == [False, True, True]
    assert seen[-1]["teacher_test_error"] == pytest.approx(
        100 * (1 - seen[-1]["val_teacher_accuracy"])
    )
    assert results["teacher_test_error"] == pytest.approx(seen[-1]["teacher_test_error"])
    assert (tmp_path / "log.csv").read_text().count("\n") == 4
    best = keras.models.load_model(tmp_path / "best.keras")
    data = load_dataset("digits")
    evaluated = best.evaluate(LabeledBatches(data.x_test, data.y_test, 500), return_dict=True)
    best_accuracy = max(logs["val_teacher_accuracy"] for logs in seen[1:])
    assert evaluated["teacher_accuracy"] == pytest.approx(best_accuracy)
