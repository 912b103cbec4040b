"""FixMatch as a Keras model (lcmt_tf.fixmatch) and its strong view
(lcmt_tf.augment.StrongAugmentation), on both backends: every loss term moves the
student and none the EMA model, the step stays compiled on JAX, the EMA model copies
the student's batch statistics, and a saved model comes back with its settings."""

import keras
import numpy as np
import pytest

import lcmt_tf
from lcmt_tf import Augmentation, FixMatch, LocalClusteringSchedule, StrongAugmentation, digits_net
from lcmt_tf.errors import UserInputError


def batch(seed=0, labeled=8, unlabeled=24):
    rng = np.random.default_rng(seed)
    return {
        "labeled_images": rng.integers(0, 256, (labeled, 8, 8, 1)).astype("uint8"),
        "labels": rng.integers(0, 10, (labeled,)),
        "unlabeled_images": rng.integers(0, 256, (unlabeled, 8, 8, 1)).astype("uint8"),
    }


class Batches(keras.utils.PyDataset):
    def __len__(self):
        return 3

    def __getitem__(self, index):
        return batch(index)


def fixmatch(**kwargs):
    model = FixMatch(digits_net(width=0.25), Augmentation([0.5], [0.25], seed=0), **kwargs)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        jit_compile=keras.backend.backend() == "jax",
    )
    return model


def test_every_fixmatch_term_moves_the_student_and_none_the_ema_model():
    model = fixmatch(threshold=0.95)
    norms = lcmt_tf.check_loss_terms(model, batch(), lc_weight=1.0, unlabeled_weight=1.0)
    assert set(norms) == {"ce", "unlabeled", "lc"}
    for name, (_, student, teacher) in norms.items():
        assert student > 0 and teacher == 0, name
    assert model.threshold == 0.95  # the check counted every pseudo-label, then restored tau


@pytest.mark.slow_on_jax
def test_fit_logs_the_fixmatch_terms_and_the_ema_model_copies_batch_statistics():
    model = fixmatch(threshold=0.0)  # every pseudo-label counts: mask rate 1
    schedule = LocalClusteringSchedule(1, 1, 0)
    history = model.fit(Batches(), epochs=2, verbose=0, callbacks=[schedule])
    logs = history.history
    assert logs["mask_rate"] == [1.0, 1.0] and logs["unlabeled_weight"] == [1.0, 1.0]
    assert logs["lc_weight"] == [0.0, 1.0] and all(value > 0 for value in logs["unlabeled"])
    if keras.backend.backend() == "jax":
        assert model.jit_compile is True  # RandAugment's layers did not turn XLA off
    assert model.statistics_pairs  # digits_net's batch normalization
    for teacher, student in model.statistics_pairs:
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(teacher), keras.ops.convert_to_numpy(student)
        )


@pytest.mark.slow_on_jax
def test_a_saved_fixmatch_loads_with_its_settings_and_predicts_the_same(tmp_path):
    model = fixmatch(threshold=0.7)
    model.fit(Batches(), epochs=1, verbose=0)
    images = batch(5)["labeled_images"]
    path = tmp_path / "fixmatch.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is FixMatch and loaded.threshold == 0.7 and loaded.ema_decay == 0.999
    assert loaded.strong_augmentation.get_config() == model.strong_augmentation.get_config()
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0))


@pytest.mark.slow_on_jax
def test_the_strong_view_is_seeded_per_image_and_only_when_training():
    images = batch(1, unlabeled=64)["unlabeled_images"]
    first = StrongAugmentation([0.5], [0.25], seed=3)
    second = StrongAugmentation([0.5], [0.25], seed=3)
    a, b = (keras.ops.convert_to_numpy(s(images, training=True)) for s in (first, second))
    np.testing.assert_array_equal(a, b)  # the same seed, the same draws
    normalized = (images.astype("float32") / 255.0 - 0.5) / 0.25
    np.testing.assert_allclose(keras.ops.convert_to_numpy(first(images)), normalized, atol=1e-6)
    changed = np.abs(a - normalized).reshape(len(images), -1).max(axis=1) > 0
    assert changed.all()  # Cutout alone changes every image
    # Every image draws its own operations: the per-image draw has both shapes.
    transformation = first.rand_augment.get_random_transformation(images.astype("float32"))
    assert tuple(transformation["layer_idxes"].shape) == (64, 2)


def test_wrong_fixmatch_arguments_are_refused_with_one_line():
    with pytest.raises(UserInputError, match="threshold must be in"):
        fixmatch(threshold=1.5)
    with pytest.raises(UserInputError, match="another mean and std"):
        fixmatch(strong_augmentation=StrongAugmentation([0.4], [0.25]))
    with pytest.raises(UserInputError, match="unlabeled_weight is not a constructor"):
        fixmatch(unlabeled_weight=2.0)
    with pytest.raises(UserInputError, match="cutout must be in"):
        StrongAugmentation([0.5], [0.25], cutout=1.0)


@pytest.mark.tensorflow_only  # the command line, backend-independent: checked once
def test_the_command_line_trains_fixmatch_forks_fixmatch_lc_and_evaluates_it(tmp_path):
    import csv
    import json
    import os
    import subprocess
    import sys

    from conftest import ROOT, train

    quick = ["--width=0.5", "--epochs=3", "--eval_every=1", "--verbose=2"]
    cosine = ["--lr_schedule=cosine", "--lr_schedule_steps=30", "--lr_decay_epochs=0"]
    source = tmp_path / "fixmatch"
    completed = train(
        "--flagfile=flags/digits_fixmatch.txt", *quick, *cosine, "--keep_epochs=2",
        f"--model_dir={source}",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.load(open(source / "results.json"))
    assert results["config"]["method"] == "fixmatch" and results["completed"]
    pseudo = results["confirmation_bias"]
    assert 0 <= pseudo["pseudo_label_mask_rate"] <= 1
    rows = list(csv.DictReader(open(source / "history.csv")))
    assert {"unlabeled", "mask_rate", "pseudo_label_error", "pseudo_label_mask_rate"} <= set(
        rows[0]
    )
    # The cosine rate at the end of each epoch, from the step count alone.
    steps = results["num_unlabeled"] // 128
    for epoch, row in enumerate(rows, start=1):
        expected = 0.05 * np.cos(7 * np.pi * min(epoch * steps, 30) / (16 * 30))
        assert float(row["learning_rate"]) == pytest.approx(expected, rel=1e-5)
    assert all(float(row["lc_weight"]) == 0 for row in rows)

    twin = tmp_path / "fixmatch_lc"
    completed = train(
        "--flagfile=flags/digits_fixmatch_lc.txt", *quick, *cosine, "--lc_start_epoch=2",
        "--lc_rampup_epochs=0", f"--fork_from={source}", f"--model_dir={twin}",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    forked = list(csv.DictReader(open(twin / "history.csv")))
    assert [row["loss"] for row in forked[:2]] == [row["loss"] for row in rows[:2]]
    assert float(forked[2]["lc_weight"]) == 10 and float(forked[2]["lc"]) > 0

    evaluated = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "evaluate.py"), f"--model_dir={twin}"],
        cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads(evaluated.stdout)
    final = json.load(open(twin / "results.json"))
    assert report["teacher_test_error"] == pytest.approx(final["teacher_test_error"])
