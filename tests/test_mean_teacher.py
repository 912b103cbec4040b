import keras
import numpy as np
import pytest

from lcmt_tf import (
    Augmentation,
    ConsistencyRampup,
    LinearLRDecay,
    LocalClusteringSchedule,
    MeanTeacher,
    NonFiniteLossGuard,
    digits_net,
)
from lcmt_tf.schedules import sigmoid_rampup
from lcmt_tf.steps import steps_for_backend

from conftest import (
    FixedBatches,
    constant_weights,
    dtype_policy,
    random_batch,
    small_mean_teacher,
)


def mlp_student(input_shape=(1, 1, 2), num_classes=2):
    inputs = keras.Input(input_shape)
    hidden = keras.layers.Flatten()(inputs)
    hidden = keras.layers.Dense(64, activation="relu")(hidden)
    features = keras.layers.Dense(32, activation="relu")(hidden)
    return keras.Model(inputs, [features, keras.layers.Dense(num_classes)(features)])


class RandomSemiSupervisedBatches(keras.utils.PyDataset):
    """Batches drawn at random from labeled and unlabeled index sets."""

    def __init__(self, images, labels, labeled, unlabeled, steps, seed):
        super().__init__()
        self.images, self.labels = images, labels
        self.labeled, self.unlabeled = labeled, unlabeled
        self.steps, self.rng = steps, np.random.default_rng(seed)

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        labeled = self.rng.choice(self.labeled, 32)
        unlabeled = self.rng.choice(self.unlabeled, 128)
        return {
            "labeled_images": self.images[labeled],
            "labels": self.labels[labeled],
            "unlabeled_images": self.images[unlabeled],
        }


@pytest.mark.slow_on_jax
def test_unlabeled_losses_train_the_teacher(moons_images):
    """300 steps with 2 labels per class: Mean Teacher beats the labeled-only run."""
    images, labels = moons_images
    labeled = np.concatenate([np.flatnonzero(labels == c)[:2] for c in (0, 1)])
    unlabeled = np.setdiff1d(np.arange(len(labels)), labeled)
    accuracies = {}
    for consistency_weight in (0.0, 30.0):
        keras.utils.set_random_seed(0)
        augmentation = Augmentation(
            [0.5, 0.5], [0.25, 0.25], max_translation=0, noise_stddev=0.3, seed=0
        )
        model = MeanTeacher(mlp_student(), augmentation, ema_decay=0.95)
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True))
        batches = RandomSemiSupervisedBatches(images, labels, labeled, unlabeled, steps=50, seed=0)
        model.fit(batches, epochs=6, verbose=0, callbacks=constant_weights(consistency_weight))
        result = model.evaluate(images[unlabeled], labels[unlabeled], return_dict=True, verbose=0)
        accuracies[consistency_weight] = result["teacher_accuracy"]
    assert accuracies[30.0] > 0.85
    assert accuracies[30.0] > accuracies[0.0] + 0.07, accuracies


def test_teacher_is_the_closed_form_exponential_moving_average():
    alpha = 0.8
    model = small_mean_teacher(
        ema_decay=alpha, consistency_weight=1.0, lc_weight=1.0, lc_epsilon=5.0
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    pairs = model.ema_pairs
    initial = [keras.ops.convert_to_numpy(t) for t, _ in pairs]
    assert all(
        np.array_equal(t, keras.ops.convert_to_numpy(s)) for t, (_, s) in zip(initial, pairs)
    )

    recorded = []

    class RecordStudent(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if keras.backend.backend() == "jax":
                model.jax_state_sync()  # JAX keeps the state outside the variables in fit.
            recorded.append([keras.ops.convert_to_numpy(s) for _, s in model.ema_pairs])

    batches = [random_batch(seed=seed) for seed in range(5)]

    model.fit(
        FixedBatches(batches),
        epochs=1,
        verbose=0,
        callbacks=[*constant_weights(1.0, 1.0), RecordStudent()],
    )
    steps = len(recorded)
    assert steps == 5
    for index, (teacher_variable, _) in enumerate(model.ema_pairs):
        expected = alpha**steps * initial[index]
        for step, student_weights in enumerate(recorded, start=1):
            expected = expected + alpha ** (steps - step) * (1 - alpha) * student_weights[index]
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(teacher_variable), expected, rtol=1e-5, atol=1e-6
        )
    # The student really moved, so the check above is not trivially true.
    assert not np.allclose(recorded[-1][0], initial[0])


def test_teacher_batch_norm_statistics_come_from_its_own_passes():
    model = small_mean_teacher(ema_decay=0.5)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    batch = random_batch(seed=1)

    moving = lambda network: [  # noqa: E731
        keras.ops.convert_to_numpy(v)
        for v in network.non_trainable_weights
        if "moving_mean" in v.path
    ]
    before_student, before_teacher = moving(model.student), moving(model.teacher)
    model.fit(FixedBatches([batch]), epochs=1, verbose=0)
    after_student, after_teacher = moving(model.student), moving(model.teacher)
    # Both moved, and the teacher's is not the EMA of the student's.
    assert not np.allclose(after_teacher[0], before_teacher[0])
    assert not np.allclose(after_student[0], before_student[0])
    ema = 0.5 * before_teacher[0] + 0.5 * after_student[0]
    assert not np.allclose(after_teacher[0], ema)
    assert model.teacher.trainable_weights == []
    assert len(model.trainable_variables) == len(model.student.trainable_variables)


def test_metrics_and_callbacks_drive_the_weights():
    model = small_mean_teacher(ema_decay=0.9, lc_epsilon=50.0)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True))
    batches = [random_batch(seed=seed) for seed in range(2)]

    callbacks = [
        ConsistencyRampup(max_weight=100.0, rampup_epochs=3),
        LocalClusteringSchedule(max_weight=10.0, start_epoch=2, rampup_epochs=2),
        LinearLRDecay(decay_start=3, decay_end=5),
    ]
    history = model.fit(FixedBatches(batches), epochs=5, verbose=0, callbacks=callbacks).history
    expected_lambda1 = [100.0 * sigmoid_rampup(epoch, 3) for epoch in range(5)]
    expected_lambda2 = [0.0, 0.0] + [10.0 * sigmoid_rampup(epoch - 2, 2) for epoch in range(2, 5)]
    np.testing.assert_allclose(history["consistency_weight"], expected_lambda1, rtol=1e-6)
    np.testing.assert_allclose(history["lc_weight"], expected_lambda2, rtol=1e-6)
    np.testing.assert_allclose(
        history["learning_rate"], [0.05, 0.05, 0.05, 0.05, 0.05 / 2], rtol=1e-6
    )
    expected_keys = {
        "loss",
        "ce",
        "consistency",
        "lc",
        "lc_neighbor_fraction",
        "feature_spread",
        "student_accuracy",
        "teacher_accuracy",
        "consistency_weight",
        "lc_weight",
    }
    assert expected_keys <= set(history)
    assert float(keras.ops.convert_to_numpy(model.lc_epsilon)) == 50.0
    # loss = ce + lambda1 * consistency + lambda2 * lc, epoch averages of per-step values
    # with constant weights inside an epoch.
    for epoch in range(5):
        combined = (
            history["ce"][epoch]
            + history["consistency_weight"][epoch] * history["consistency"][epoch]
            + history["lc_weight"][epoch] * history["lc"][epoch]
        )
        assert history["loss"][epoch] == pytest.approx(combined, rel=1e-4)


class CountCalls(keras.layers.Layer):
    """Identity layer that counts its calls; inside a compiled step, Python (and so
    the count) runs only while the step is traced."""

    calls = []

    def call(self, inputs):
        CountCalls.calls.append(1)
        return inputs


@pytest.mark.parametrize("jit_compile", [False, True])
def test_changing_weights_does_not_retrace(jit_compile):
    if keras.backend.backend() == "jax" and not jit_compile:
        pytest.skip("without jit, JAX runs the step eagerly: nothing is traced")
    if keras.backend.backend() == "torch":
        pytest.skip("torch runs the step eagerly (--jit_compile is refused there): no trace")
    inputs = keras.Input((8, 8, 1))
    features, logits = digits_net(width=0.25)(CountCalls()(inputs))
    student = keras.Model(inputs, [features, logits])
    model = MeanTeacher(
        student,
        Augmentation([0.5], [0.25], max_translation=1, seed=0),
        ema_decay=0.9,
        lc_epsilon=2.0,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=jit_compile)
    batch = random_batch(num_labeled=4, num_unlabeled=6)
    callbacks = [
        ConsistencyRampup(100.0, 3),
        LocalClusteringSchedule(10.0, start_epoch=1, rampup_epochs=2),
    ]
    CountCalls.calls.clear()
    history = model.fit(
        FixedBatches([batch, batch]), epochs=4, verbose=0, callbacks=callbacks
    ).history
    assert np.all(np.isfinite(history["loss"]))
    # One trace: one student and one teacher pass, over 8 steps of changing weights.
    assert len(CountCalls.calls) == 2


def test_evaluate_predict_and_keras_file_round_trip(tmp_path):
    model = small_mean_teacher(ema_decay=0.7, consistency_weight=3.0, lc_weight=2.0, lc_epsilon=4.0)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    batches = [random_batch(seed=seed) for seed in range(3)]

    model.fit(FixedBatches(batches), epochs=1, verbose=0, callbacks=constant_weights(3.0, 2.0))
    rng = np.random.default_rng(9)
    images = rng.integers(0, 256, (12, 8, 8, 1), dtype="uint8")
    labels = rng.integers(0, 10, 12)
    result = model.evaluate(images, labels, return_dict=True, verbose=0)
    assert set(result) == {"loss", "student_accuracy", "teacher_accuracy"}

    predictions = model.predict(images, verbose=0)
    normalized = model.augmentation(images, training=False)
    _, teacher_logits = model.teacher(normalized, training=False)
    np.testing.assert_allclose(
        predictions, keras.ops.convert_to_numpy(teacher_logits), rtol=1e-5, atol=1e-6
    )
    teacher_correct = np.mean(np.argmax(predictions, 1) == labels)
    assert result["teacher_accuracy"] == pytest.approx(teacher_correct)

    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, MeanTeacher)
    np.testing.assert_array_equal(restored.predict(images, verbose=0), predictions)
    for name in ("consistency_weight", "lc_weight", "lc_epsilon"):
        assert float(keras.ops.convert_to_numpy(getattr(restored, name))) == float(
            keras.ops.convert_to_numpy(getattr(model, name))
        )
    assert restored.ema_decay == 0.7


def test_plain_mean_teacher_can_skip_local_clustering_entirely():
    model = small_mean_teacher(
        lc_weight=5.0, lc_epsilon=100.0, use_local_clustering=False, measure_local_clustering=False
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    loss, terms, _ = model.compute_losses(random_batch())
    assert float(keras.ops.convert_to_numpy(terms["lc"])) == 0.0
    assert float(keras.ops.convert_to_numpy(terms["lc_neighbor_fraction"])) == 0.0
    assert MeanTeacher.from_config(model.get_config()).use_local_clustering is False


@pytest.mark.slow_on_jax
def test_mixed_precision_step_keeps_losses_and_weights_in_float32():
    with dtype_policy("mixed_bfloat16"):
        model = small_mean_teacher(
            ema_decay=0.9, consistency_weight=1.0, lc_weight=1.0, lc_epsilon=5.0
        )
        model.compile(optimizer=keras.optimizers.SGD(0.05))
        features, _ = model.student(model.augmentation(random_batch()["labeled_images"]))
        assert keras.backend.standardize_dtype(features.dtype) == "bfloat16"
        assert all(v.dtype == "float32" for v in model.student.trainable_weights)
        loss, terms, _ = model.compute_losses(random_batch())
        for name in ("loss", "ce", "consistency", "lc"):
            assert keras.backend.standardize_dtype(terms[name].dtype) == "float32", name
        history = model.fit(
            FixedBatches([random_batch(seed=s) for s in range(2)]),
            epochs=1,
            verbose=0,
            callbacks=constant_weights(1.0, 1.0),
        ).history
        assert np.isfinite(history["loss"][0]) and history["lc"][0] > 0


@pytest.mark.tensorflow_only
def test_fit_accepts_a_tf_data_dataset_of_batch_dicts():
    import tensorflow as tf

    batches = [random_batch(seed=seed) for seed in range(3)]
    stacked = {key: np.stack([batch[key] for batch in batches]) for key in batches[0]}
    dataset = tf.data.Dataset.from_tensor_slices(stacked)  # yields one batch dict per element
    keras.utils.set_random_seed(0)
    reference = small_mean_teacher(
        ema_decay=0.9, consistency_weight=1.0, lc_weight=1.0, lc_epsilon=5.0
    )
    reference.compile(optimizer=keras.optimizers.SGD(0.05))
    keras.utils.set_random_seed(0)
    model = small_mean_teacher(ema_decay=0.9, consistency_weight=1.0, lc_weight=1.0, lc_epsilon=5.0)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    constant = constant_weights(1.0, 1.0)
    history_tf = model.fit(dataset, epochs=1, verbose=0, shuffle=False, callbacks=constant).history
    history_py = reference.fit(
        FixedBatches(batches), epochs=1, verbose=0, shuffle=False, callbacks=constant
    ).history
    assert history_tf["ce"][0] > 0 and history_tf["lc"][0] > 0
    # Same seeds, same batches: the two input paths train identically.
    for key in ("loss", "ce", "consistency", "lc"):
        assert history_tf[key][0] == pytest.approx(history_py[key][0], rel=1e-5), key


@pytest.mark.slow_on_jax
def test_steps_per_execution_trains_exactly_like_single_steps():
    """Several steps per compiled call change how often Python runs, not the training."""
    if keras.backend.backend() == "torch":
        pytest.skip("Keras' torch trainer runs one step per call (tests/test_torch.py)")
    batches = FixedBatches([random_batch(seed=seed) for seed in range(6)])
    weights, histories = [], []
    for steps_per_execution in (1, 3):
        keras.utils.set_random_seed(0)
        model = small_mean_teacher(
            ema_decay=0.9, consistency_weight=1.0, lc_weight=1.0, lc_epsilon=5.0
        )
        model.compile(optimizer=keras.optimizers.SGD(0.05), steps_per_execution=steps_per_execution)
        histories.append(
            model.fit(
                batches, epochs=2, verbose=0, shuffle=False, callbacks=constant_weights(1.0, 1.0)
            ).history
        )
        assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 12
        weights.append(model.teacher.get_weights())
    assert histories[0]["lc"][1] > 0
    for key in ("loss", "ce", "consistency", "lc"):
        np.testing.assert_allclose(histories[1][key], histories[0][key], rtol=1e-5, err_msg=key)
    for single, multiple in zip(*weights):
        np.testing.assert_allclose(multiple, single, rtol=1e-5, atol=1e-6)


def test_non_finite_loss_guard_stops_fit_at_the_first_bad_step():
    """Alone with verbose=0 (no other per-step callback) the guard names the first
    non-finite step and stops the run in that epoch, on every backend."""
    model = small_mean_teacher(consistency_weight=1e38)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    guard = NonFiniteLossGuard()
    batches = FixedBatches([random_batch(seed=seed) for seed in range(20)])
    history = model.fit(
        batches, epochs=3, verbose=0, shuffle=False, callbacks=[*constant_weights(1e38), guard]
    ).history
    assert guard.stop_reason is not None and guard.stop_reason.startswith("non-finite loss")
    assert len(history["loss"]) == 1 and not np.isfinite(history["loss"][0])
    assert "at epoch 1, step " in guard.stop_reason
    assert 1 <= int(guard.stop_reason.split("step ")[1]) <= 20


def test_an_unsupported_backend_refuses_training_and_evaluation_alike():
    steps = steps_for_backend("mlx")()
    for step in (steps.train_step, steps.test_step):
        with pytest.raises(
            NotImplementedError, match="trains and evaluates on the tensorflow, jax, torch"
        ):
            step(random_batch())


def test_separate_passes_give_each_group_its_own_batch_statistics():
    """forward_passes="separate" equals two independent calls of the network (batch
    norm over each group); "joint" equals one call over both groups."""
    batch = random_batch(num_labeled=4, num_unlabeled=6, seed=3)
    images = np.concatenate([batch["labeled_images"], batch["unlabeled_images"]]).astype("float32")
    outputs = {}
    for passes in ("joint", "separate"):
        keras.utils.set_random_seed(0)
        student = digits_net(width=0.25, dropout=0.0)
        model = MeanTeacher(student, Augmentation([0.5], [0.25]), forward_passes=passes)
        normalized = model.augmentation(images)
        features, logits = model.network_outputs(student, normalized, 4)
        outputs[passes] = keras.ops.convert_to_numpy(logits)
        if passes == "separate":
            parts = [student(normalized[:4], training=True), student(normalized[4:], training=True)]
            expected = np.concatenate([keras.ops.convert_to_numpy(part[1]) for part in parts])
        else:
            expected = keras.ops.convert_to_numpy(student(normalized, training=True)[1])
        np.testing.assert_allclose(outputs[passes], expected, rtol=1e-5, atol=1e-6)
        assert MeanTeacher.from_config(model.get_config()).forward_passes == passes
    # Same weights: only the batch statistics differ between the two.
    assert np.abs(outputs["joint"] - outputs["separate"]).max() > 1e-3


@pytest.mark.slow_on_jax
def test_lc_distance_quantiles_and_epsilon_are_logged_with_local_clustering_only():
    batch = random_batch(num_labeled=4, num_unlabeled=12, seed=5)
    augmentation = Augmentation([0.5], [0.25], max_translation=0)
    keras.utils.set_random_seed(0)
    model = MeanTeacher(digits_net(width=0.25, dropout=0.0), augmentation, lc_epsilon=0.3)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    # No random augmentation or dropout: the step sees exactly these distances.
    distances = keras.ops.convert_to_numpy(model.lc_pair_distances(batch))
    assert distances.shape == (4 * 12 + 12 * 12,)
    history = model.fit(
        FixedBatches([batch]), epochs=1, verbose=0, callbacks=constant_weights(lc=1.0)
    ).history
    for name, quantile in (
        ("lc_distance_p10", 0.1),
        ("lc_distance_p50", 0.5),
        ("lc_distance_p90", 0.9),
    ):
        assert history[name][0] == pytest.approx(np.quantile(distances, quantile), rel=1e-4), name
    assert history["lc_epsilon"][0] == pytest.approx(0.3)
    plain = small_mean_teacher(use_local_clustering=False, measure_local_clustering=False)
    plain.compile(optimizer=keras.optimizers.SGD(0.05))
    keys = set(plain.fit(FixedBatches([batch]), epochs=1, verbose=0).history)
    assert not keys & {"lc_epsilon", "lc_distance_p10", "lc_distance_p50", "lc_distance_p90"}


def test_a_skipped_float16_step_leaves_the_teacher_alone_too():
    """A LossScaleOptimizer skips a step whose gradients overflow; the EMA must skip it."""
    with dtype_policy("mixed_float16"):
        model = small_mean_teacher(
            ema_decay=0.5, consistency_weight=1.0, lc_weight=1.0, lc_epsilon=5.0
        )
        model.compile(optimizer=keras.optimizers.SGD(0.05))
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        model.optimizer.build(model.trainable_variables)
        for teacher, _ in model.ema_pairs:  # teacher != student, so an EMA step would show
            teacher.assign(keras.ops.convert_to_numpy(teacher) + 0.5)
        student_before = [keras.ops.convert_to_numpy(s) for _, s in model.ema_pairs]
        teacher_before = [keras.ops.convert_to_numpy(t) for t, _ in model.ema_pairs]
        model.optimizer.dynamic_scale.assign(1e38)  # the scaled gradients overflow float16
        model.fit(
            FixedBatches([random_batch(seed=7)]),
            epochs=1,
            verbose=0,
            callbacks=constant_weights(1.0, 1.0),
        )
        assert float(keras.ops.convert_to_numpy(model.optimizer.dynamic_scale)) < 1e38  # skipped
        for (teacher, student), old_student, old_teacher in zip(
            model.ema_pairs, student_before, teacher_before
        ):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(student), old_student)
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(teacher), old_teacher)


@pytest.mark.slow_on_jax
def test_float16_loss_scale_changes_do_not_change_the_updates():
    """A scale that doubles after every step must train like a fixed scale (up to
    float16 rounding: a larger scale keeps more small gradients from underflowing);
    the step has to read the current scale, not the one at tracing time, or the
    updates come out 2, 4, 8 times too small."""
    with dtype_policy("mixed_float16"):
        updates = []
        for growth_steps in (1, 10**6):
            keras.utils.set_random_seed(0)
            model = small_mean_teacher(
                ema_decay=0.5, consistency_weight=1.0, lc_weight=1.0, lc_epsilon=5.0
            )
            optimizer = keras.optimizers.LossScaleOptimizer(
                keras.optimizers.SGD(0.05), initial_scale=2.0, dynamic_growth_steps=growth_steps
            )
            model.compile(optimizer=optimizer)
            before = [keras.ops.convert_to_numpy(v) for v in model.student.trainable_weights]
            model.fit(
                FixedBatches([random_batch(seed=s) for s in range(4)]),
                epochs=1,
                verbose=0,
                callbacks=constant_weights(1.0, 1.0),
            )
            scale = float(keras.ops.convert_to_numpy(model.optimizer.dynamic_scale))
            assert scale == (32.0 if growth_steps == 1 else 2.0)
            after = [keras.ops.convert_to_numpy(v) for v in model.student.trainable_weights]
            updates.append(np.concatenate([(a - b).ravel() for a, b in zip(after, before)]))
        growing, fixed = updates
        assert np.linalg.norm(growing - fixed) < 0.05 * np.linalg.norm(fixed)


def test_an_epsilon_that_follows_the_batch_is_a_moving_average_of_its_distance_quantile():
    from lcmt_tf import Augmentation, from_backbone

    # No dropout, batch norm or random augmentation: the step's features are the
    # student's on the batch, and with a learning rate of 0 they stay the same.
    backbone = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(16)])
    student = from_backbone(backbone, num_classes=10, feature_dim=8, input_shape=(8, 8, 1))
    model = MeanTeacher(
        student,
        Augmentation([0.5], [0.25], max_translation=0),
        lc_epsilon=1.0,
        lc_epsilon_batch_quantile=0.2,
        lc_epsilon_batch_momentum=0.5,
        lc_self_pairs=False,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    batch = random_batch(num_labeled=4, num_unlabeled=12, seed=4)
    images = np.concatenate([batch["labeled_images"], batch["unlabeled_images"]])
    features = keras.ops.convert_to_numpy(
        student(model.augmentation(images, training=False), training=True)[0]
    ).astype(np.float64)
    labeled, unlabeled = features[:4], features[4:]
    lu = np.mean((labeled[:, None] - unlabeled[None]) ** 2, axis=-1)
    uu = np.mean((unlabeled[:, None] - unlabeled[None]) ** 2, axis=-1)
    quantile = np.quantile(np.concatenate([lu.ravel(), uu[~np.eye(12, dtype=bool)]]), 0.2)
    history = model.fit(
        FixedBatches([batch, batch]), epochs=1, verbose=0, callbacks=constant_weights(lc=1.0)
    ).history
    first = 0.5 * 1.0 + 0.5 * quantile
    second = 0.5 * first + 0.5 * quantile
    assert float(keras.ops.convert_to_numpy(model.lc_epsilon)) == pytest.approx(second, rel=1e-4)
    assert history["lc_epsilon"][0] == pytest.approx((first + second) / 2, rel=1e-4)
