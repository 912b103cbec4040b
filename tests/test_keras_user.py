"""A Keras user's first hour with MeanTeacher, on the suite's backend: loading after
`import lcmt_tf` in a new process, defaults that train Mean Teacher, Keras' own
callbacks without `mode`, an exact BackupAndRestore resume, the teacher as a plain
inference model, and one clear error for each mistake a user makes first."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import lcmt_tf
from lcmt_tf.data import LabeledBatches, SemiSupervisedBatches, load_dataset
from lcmt_tf.data.split import stratified_label_split
from lcmt_tf.errors import UserInputError
from lcmt_tf.schedules import sigmoid_rampup

from conftest import ROOT, FixedBatches, random_batch

BACKEND = keras.backend.backend()


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    labeled, unlabeled = stratified_label_split(data.y_train, 50, 10, seed=0)
    return data, labeled, unlabeled


def batches_of(digits):
    data, labeled, unlabeled = digits
    return SemiSupervisedBatches(data.x_train, data.y_train, labeled, unlabeled, 32, 128, seed=0)


def test_batches(digits):
    data = digits[0]
    return LabeledBatches(data.x_test, data.y_test, 500)


def new_model(digits, **kwargs):
    """What the getting-started page builds: a student and an augmentation only."""
    keras.utils.set_random_seed(0)
    mean, std = digits[0].channel_mean_std()
    model = lcmt_tf.MeanTeacher(
        lcmt_tf.digits_net(width=0.25), lcmt_tf.Augmentation(mean, std, max_translation=1), **kwargs
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    return model


def python(code: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def saved_model(digits, tmp_path_factory):
    """A model trained for an epoch and saved as .keras, with its test predictions."""
    model = new_model(digits)
    model.fit(batches_of(digits), epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("saved") / "mt.keras"
    model.save(path)
    images = digits[0].x_test[:20]
    np.save(path.with_suffix(".npy"), images)
    return path, model.predict(images, verbose=0)


LOAD = """
{imports}
model = keras.models.load_model({path!r})
images = np.load({images!r})
np.save({output!r}, model.predict(images, verbose=0))
print(type(model).__name__, model.optimizer.__class__.__name__)
"""


@pytest.mark.parametrize(
    "imports",
    [
        "import lcmt_tf\nimport keras\nimport numpy as np",
        pytest.param(
            "import keras\nimport numpy as np\nimport lcmt_tf", marks=pytest.mark.tensorflow_only
        ),
        pytest.param(
            "import lcmt_tf.data\nimport keras\nimport numpy as np",
            marks=pytest.mark.tensorflow_only,
        ),
    ],
    ids=["lcmt_tf-then-keras", "keras-then-lcmt_tf", "a-submodule-first"],
)
def test_load_model_works_after_import_lcmt_tf_in_a_fresh_process(saved_model, imports, tmp_path):
    path, predictions = saved_model
    output = tmp_path / "predictions.npy"
    code = LOAD.format(
        imports=imports, path=str(path), images=str(path.with_suffix(".npy")), output=str(output)
    )
    completed = python(code)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.split()[-2:] == ["MeanTeacher", "SGD"]
    np.testing.assert_allclose(np.load(output), predictions, rtol=1e-5, atol=1e-5)


@pytest.mark.tensorflow_only  # the import itself: the same on every backend
def test_import_lcmt_tf_starts_no_backend():
    completed = python(
        "import sys, lcmt_tf\nprint(sorted({'keras', 'tensorflow', 'jax'} & set(sys.modules)))"
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "[]"


def test_a_default_built_model_trains_mean_teacher_with_the_papers_rampup(digits):
    """Only a student and an augmentation: λ1 follows the paper's ramp-up (0 in the
    first epoch, as the ramp starts from 0, then rising), LC stays off, and the
    consistency term moves the student: with ConsistencyRampup(0) the same seeds give
    the same first epoch and another second."""
    default = new_model(digits)
    history = default.fit(batches_of(digits), epochs=2, verbose=0).history
    expected = [100.0 * sigmoid_rampup(epoch, 5) for epoch in range(2)]
    np.testing.assert_allclose(history["consistency_weight"], expected, rtol=1e-6)
    assert history["consistency_weight"][1] > 4.0
    assert all(value > 0 for value in history["consistency"])  # the term itself, measured
    assert history["lc_weight"] == [0.0, 0.0]
    without = new_model(digits)
    control = without.fit(
        batches_of(digits), epochs=2, verbose=0, callbacks=[lcmt_tf.ConsistencyRampup(0)]
    ).history
    assert control["consistency_weight"] == [0.0, 0.0]
    assert control["ce"][0] == pytest.approx(history["ce"][0], rel=1e-6)  # same first epoch
    difference = max(
        np.abs(a - b).max()
        for a, b in zip(default.student.get_weights(), without.student.get_weights())
    )
    assert difference > 1e-4  # the consistency term trained the student in epoch 2


@pytest.mark.slow_on_jax
def test_keras_callbacks_watch_the_teacher_without_mode(digits, tmp_path):
    model = new_model(digits)
    history = model.fit(
        batches_of(digits),
        epochs=3,
        validation_data=test_batches(digits),
        verbose=0,
        callbacks=[
            keras.callbacks.ModelCheckpoint(
                str(tmp_path / "best.keras"), monitor="val_teacher_accuracy", save_best_only=True
            ),
            keras.callbacks.EarlyStopping(patience=5),  # monitor="val_loss": the teacher's CE
            keras.callbacks.ReduceLROnPlateau(monitor="val_teacher_accuracy", patience=5),
        ],
    ).history
    assert len(history["val_loss"]) == 3 and all(np.isfinite(history["val_loss"]))
    best = keras.models.load_model(tmp_path / "best.keras")
    evaluated = best.evaluate(test_batches(digits), return_dict=True, verbose=0)
    assert evaluated["teacher_accuracy"] == pytest.approx(max(history["val_teacher_accuracy"]))
    # evaluate's list is what metrics_names names, in that order.
    assert model.metrics_names == ["loss", "student_accuracy", "teacher_accuracy"]
    values = model.evaluate(test_batches(digits), verbose=0)
    as_dict = model.evaluate(test_batches(digits), verbose=0, return_dict=True)
    assert values == pytest.approx([as_dict[name] for name in model.metrics_names])
    data = digits[0]
    teacher_logits = model.predict(data.x_test, verbose=0)
    expected_loss = keras.ops.convert_to_numpy(
        keras.losses.sparse_categorical_crossentropy(data.y_test, teacher_logits, from_logits=True)
    ).mean()
    assert as_dict["loss"] == pytest.approx(float(expected_loss), rel=1e-4)


class StopAt(keras.callbacks.Callback):
    """Raises at the start of epoch `epoch`, as a killed process would stop."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


@pytest.mark.slow_on_jax
def test_backup_and_restore_resumes_exactly(digits, tmp_path):
    uninterrupted = new_model(digits)
    uninterrupted.fit(batches_of(digits), epochs=4, verbose=0)
    backup = str(tmp_path / "backup")
    interrupted = new_model(digits)
    with pytest.raises(RuntimeError, match="interrupted"):
        interrupted.fit(
            batches_of(digits),
            epochs=4,
            verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(backup), StopAt(2)],
        )
    resumed = new_model(digits)  # a new process would build it again, the same way
    keras.utils.set_random_seed(123)  # and its global seed would not matter
    history = resumed.fit(
        batches_of(digits),
        epochs=4,
        verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(backup)],
    ).history
    assert len(history["loss"]) == 2  # epochs 3 and 4
    for network in ("student", "teacher"):
        for mine, reference in zip(
            getattr(resumed, network).get_weights(), getattr(uninterrupted, network).get_weights()
        ):
            np.testing.assert_allclose(mine, reference, rtol=0, atol=1e-5, err_msg=network)


@pytest.mark.slow_on_jax
def test_the_teacher_as_an_inference_model_takes_raw_images(digits, tmp_path):
    model = new_model(digits)
    model.fit(batches_of(digits), epochs=1, verbose=0)
    images = digits[0].x_test[:30]
    inference = model.inference_model()  # the teacher, normalization included
    np.testing.assert_allclose(
        inference.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-4, atol=1e-4
    )
    probabilities = model.inference_model(output="probabilities")(images)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(probabilities).sum(axis=1), 1.0, rtol=1e-5
    )
    features = model.inference_model("student", "features")(images)
    assert tuple(features.shape) == (30, model.student.outputs[0].shape[-1])
    inference.save(tmp_path / "teacher.keras")
    reloaded = keras.models.load_model(tmp_path / "teacher.keras")
    np.testing.assert_allclose(
        reloaded.predict(images, verbose=0),
        inference.predict(images, verbose=0),
        rtol=1e-6,
        atol=1e-6,
    )


class OneTensorStudent(keras.Model):
    """A subclassed student that returns logits only (checked at its first step)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.flatten = keras.layers.Flatten()
        self.dense = keras.layers.Dense(10)

    def call(self, images):
        return self.dense(self.flatten(images))


class NoConfigStudent(OneTensorStudent):
    """A subclassed student whose constructor argument is not in its config."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units


def functional_one_output():
    inputs = keras.Input((8, 8, 1))
    return keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))


def images_only_batches():
    images = random_batch()["labeled_images"]
    return FixedBatches([images])


def tuple_training_batch():
    batch = random_batch()
    return FixedBatches([((batch["labeled_images"], batch["labels"]), batch["unlabeled_images"])])


def compiled(model):
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    return model


def small(**kwargs):
    model = lcmt_tf.MeanTeacher(
        lcmt_tf.digits_net(width=0.25), lcmt_tf.Augmentation([0.5], [0.25]), **kwargs
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    return model


def arrays():
    batch = random_batch(num_labeled=12)
    return batch["labeled_images"], batch["labels"]


MISTAKES = {
    "functional student with one output": (
        lambda digits: lcmt_tf.MeanTeacher(
            functional_one_output(), lcmt_tf.Augmentation([0.5], [0.25])
        ),
        r"the student must return \[features, logits\].*it returns a tensor of shape \(None, 10\)",
    ),
    "subclassed student with one output": (
        lambda digits: compiled(
            lcmt_tf.MeanTeacher(OneTensorStudent(), lcmt_tf.Augmentation([0.5], [0.25]))
        ).fit(FixedBatches([random_batch()]), verbose=0),
        r"the student must return \[features, logits\]",
    ),
    "subclassed student without a config": (
        lambda digits: lcmt_tf.MeanTeacher(NoConfigStudent(3), lcmt_tf.Augmentation([0.5], [0.25])),
        r"the teacher is a copy of the student made by keras.models.clone_model.*NoConfigStudent "
        r"cannot be rebuilt from its config",
    ),
    "fit on arrays": (
        lambda digits: small().fit(*arrays(), verbose=0),
        r"MeanTeacher.fit takes semi-supervised batches.*got arrays x and y",
    ),
    "evaluate without labels": (
        lambda digits: small().evaluate(arrays()[0], verbose=0),
        r"evaluate needs labels: evaluate\(images, labels\); got images only",
    ),
    "evaluate on batches of images only": (
        lambda digits: small().evaluate(images_only_batches(), verbose=0),
        r"evaluate needs labels",
    ),
    "evaluate on the training batches": (
        lambda digits: small().evaluate(batches_of(digits), verbose=0),
        r"evaluate takes \(images, labels\) batches .*not training batches",
    ),
    "a 3-channel mean for 1-channel images": (
        lambda digits: lcmt_tf.MeanTeacher(
            lcmt_tf.digits_net(width=0.25), lcmt_tf.Augmentation([0.5] * 3, [0.25] * 3)
        ),
        r"the student takes images with 1 channel\(s\), the augmentation normalizes 3",
    ),
    "images with the wrong channel count": (
        lambda digits: small().predict(np.zeros((2, 8, 8, 3), "uint8"), verbose=0),
        r"the images have 3 channel\(s\), the augmentation normalizes 1",
    ),
    "compile with a loss": (
        lambda digits: small().compile(optimizer="sgd", loss="mse"),
        r"MeanTeacher.compile takes no loss: the model computes its own loss",
    ),
    "compile with metrics": (
        lambda digits: small().compile(optimizer="sgd", metrics=["accuracy"]),
        r"MeanTeacher.compile takes no metrics",
    ),
    "class_weight": (
        lambda digits: small().fit(batches_of(digits), class_weight={0: 2.0}, verbose=0),
        r"class_weight is not supported",
    ),
    "ema_decay out of range": (
        lambda digits: small(ema_decay=1.5),
        r"ema_decay must be in \[0, 1\], not 1.5",
    ),
    "negative epsilon": (
        lambda digits: small(lc_epsilon=-1),
        r"lc_epsilon must be a finite number > 0, not -1",
    ),
    "negative consistency weight": (
        lambda digits: lcmt_tf.ConsistencyRampup(-5),
        r"ConsistencyRampup: max_weight must be a finite number >= 0, not -5",
    ),
    "the weight as a constructor argument": (
        lambda digits: small(consistency_weight=30.0),
        r"consistency_weight is not a constructor argument: its schedule callback "
        r"\(ConsistencyRampup\) sets it",
    ),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_first_mistake_is_one_clear_line(digits, mistake):
    call, message = MISTAKES[mistake]
    with pytest.raises(UserInputError, match=message) as raised:
        call(digits)
    assert "\n" not in str(raised.value).strip().split("\n\n")[0]


@pytest.mark.slow_on_jax
def test_tuple_batches_from_tf_data_zip_train_like_dicts():
    batch = random_batch()
    losses = []
    for batches in (FixedBatches([batch]), tuple_training_batch()):
        keras.utils.set_random_seed(0)
        model = small()
        history = model.fit(
            batches, epochs=1, verbose=0, callbacks=[lcmt_tf.ConsistencyRampup(1.0, 0)]
        ).history
        losses.append(history["loss"][0])
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


class TwoOutputStudent(OneTensorStudent):
    """A subclassed student with the [features, logits] contract."""

    def call(self, images):
        features = self.flatten(images)
        return [features, self.dense(features)]


def test_a_subclassed_student_trains_with_a_teacher_that_starts_as_its_copy():
    keras.utils.set_random_seed(0)
    model = compiled(lcmt_tf.MeanTeacher(TwoOutputStudent(), lcmt_tf.Augmentation([0.5], [0.25])))
    batches = FixedBatches([random_batch(seed=seed) for seed in range(3)])
    model._build_networks(batches, lambda batch: batch)  # what fit does first
    for teacher, student in zip(model.teacher.weights, model.student.weights):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(teacher), keras.ops.convert_to_numpy(student)
        )
    assert model.teacher.trainable_weights == [] and model.ema_pairs
    model.fit(batches, epochs=2, verbose=0, callbacks=[lcmt_tf.ConsistencyRampup(1.0, 0)])
    assert len(model.trainable_variables) == len(model.student.trainable_variables)
    teacher, student = (keras.ops.convert_to_numpy(v) for v in model.ema_pairs[0])
    assert 0 < np.abs(teacher - student).max()  # the EMA lags the student


def test_after_a_failed_fit_or_evaluate_the_model_still_predicts():
    model = small()
    images = random_batch()["labeled_images"]
    before = model.predict(images, verbose=0)
    with pytest.raises(UserInputError):
        model.fit(FixedBatches([images]), verbose=0)  # images only: fails at the first step
    with pytest.raises(UserInputError):
        model.evaluate(images_only_batches(), verbose=0)
    np.testing.assert_array_equal(model.predict(images, verbose=0), before)
    history = model.fit(FixedBatches([random_batch()]), verbose=0).history  # and trains
    assert np.isfinite(history["loss"][0])
