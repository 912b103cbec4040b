"""Confirmation-bias diagnostics: against hand-counted cases and against a direct,
loop-by-loop NumPy computation on a small model's own features and predictions."""

import keras
import numpy as np
import pytest

from lcmt_tf.callbacks import ConfirmationBiasMonitor
from lcmt_tf.diagnostics import NAMES, confirmation_bias, mean_squared_distances

from conftest import FixedBatches, random_batch, small_mean_teacher


def test_a_hand_counted_pool():
    # Five images on a line (1-d features): 0, 0.1, 0.2 are one cluster, 5 and 5.1 another.
    features = np.array([[0.0], [0.1], [0.2], [5.0], [5.1]])
    labels = np.array([0, 0, 0, 1, 1])
    predictions = np.array([0, 1, 1, 1, 0])  # images 1, 2 and 4 are wrong
    epsilon = 0.05  # squared distances 0.01 and 0.04 within a cluster, 23+ across
    result = confirmation_bias(features, predictions, labels, epsilon, np.array([0, 0, 1, 1, 0]))
    assert result["unlabeled_teacher_error"] == pytest.approx(60.0)
    # Image 1 (true 0, predicted 1): neighbours 0 (right, class 0) and 2 (predicted 1).
    # Image 2 (true 0, predicted 1): neighbours 0 (d = 0.04) and 1 (predicted 1).
    # Image 4 (true 1, predicted 0): neighbour 3 (right, class 1).
    assert result["misclassified_neighbors_same_wrong"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert result["misclassified_neighbors_true_class"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert result["misclassified_isolated"] == 0.0
    # Before, images 2 and 4 were wrong: none was fixed, image 1 was broken.
    assert result["unlabeled_fixed"] == 0.0  # no image went from wrong to right
    assert result["unlabeled_broken"] == 1.0  # image 1: right (0) then wrong (1)
    # Pairs i != j within epsilon: (0,1), (1,2), (0,2), (3,4), each twice, of 20.
    assert result["unlabeled_neighbor_fraction"] == pytest.approx(8 / 20)
    without_previous = confirmation_bias(features, predictions, labels, epsilon)
    assert np.isnan(without_previous["unlabeled_fixed"])


def test_misclassified_images_without_neighbours_are_counted_apart():
    features = np.array([[0.0], [10.0], [20.0]])
    result = confirmation_bias(features, np.array([1, 1, 0]), np.array([0, 1, 1]), epsilon=1.0)
    assert result["misclassified_isolated"] == 1.0
    assert np.isnan(result["misclassified_neighbors_same_wrong"])
    assert result["unlabeled_neighbor_fraction"] == 0.0


def test_distances_are_the_mean_squared_difference():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(7, 5)) + 100.0  # far from the origin: centering matters
    expected = np.mean((features[:, None, :] - features[None, :, :]) ** 2, axis=-1)
    np.testing.assert_allclose(mean_squared_distances(features), expected, atol=1e-9)


def direct_diagnostics(features, predictions, labels, epsilon, previous):
    """The same quantities, written loop by loop from their definitions."""
    n = len(labels)
    same, true, isolated, wrong_count = [], [], 0, 0
    neighbor_pairs, pairs = 0, []
    for i in range(n):
        neighbours = []
        for j in range(n):
            if i == j:
                continue
            distance = float(np.mean((features[i] - features[j]) ** 2))
            pairs.append(distance)
            if distance <= epsilon:
                neighbours.append(j)
                neighbor_pairs += 1
        if predictions[i] != labels[i]:
            wrong_count += 1
            if not neighbours:
                isolated += 1
                continue
            same.append(sum(predictions[j] == predictions[i] for j in neighbours) / len(neighbours))
            true.append(
                sum(labels[j] == labels[i] and predictions[j] == labels[j] for j in neighbours)
                / len(neighbours)
            )
    return {
        "unlabeled_teacher_error": 100.0 * wrong_count / n,
        "unlabeled_fixed": sum(p != y and q == y for p, q, y in zip(previous, predictions, labels)),
        "unlabeled_broken": sum(
            p == y and q != y for p, q, y in zip(previous, predictions, labels)
        ),
        "misclassified_neighbors_same_wrong": np.mean(same),
        "misclassified_neighbors_true_class": np.mean(true),
        "misclassified_isolated": isolated / wrong_count,
        "unlabeled_neighbor_fraction": neighbor_pairs / (n * (n - 1)),
        "unlabeled_distance_p50": np.quantile(pairs, 0.5),
    }


def test_the_monitor_measures_the_models_own_features_and_predictions():
    model = small_mean_teacher(lc_epsilon=0.05)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (40, 8, 8, 1), dtype="uint8")
    labels = rng.integers(0, 10, 40).astype("int32")
    monitor = ConfirmationBiasMonitor(images, labels, evaluate_at=[1, 2])
    monitor.set_model(model)
    previous = rng.integers(0, 10, 40)
    monitor.previous_predictions = previous
    history = model.fit(
        FixedBatches([random_batch()]), epochs=1, verbose=0, callbacks=[monitor]
    ).history
    # The direct computation: the student's features and the teacher's classes.
    normalized = model.augmentation(images, training=False)
    features = keras.ops.convert_to_numpy(model.student(normalized, training=False)[0])
    predictions = np.argmax(
        keras.ops.convert_to_numpy(model.teacher(normalized, training=False)[1]), axis=-1
    )
    expected = direct_diagnostics(features, predictions, labels, 0.05, previous)
    assert set(NAMES) <= set(history)
    for name, value in expected.items():
        assert history[name][0] == pytest.approx(value, rel=1e-4, abs=1e-6), name
    np.testing.assert_array_equal(monitor.previous_predictions, predictions)
    assert monitor.get_state()["previous_predictions"].shape == (40,)


def deterministic_mean_teacher(lc_weight=0.0, **kwargs):
    """A MeanTeacher whose step has no randomness (no dropout, no translation)."""
    from lcmt_tf import Augmentation, MeanTeacher, from_backbone

    keras.utils.set_random_seed(0)
    backbone = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(16)])
    student = from_backbone(backbone, num_classes=10, feature_dim=8, input_shape=(8, 8, 1))
    model = MeanTeacher(student, Augmentation([0.5], [0.25], max_translation=0), **kwargs)
    model.lc_weight.assign(lc_weight)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    return model


def test_a_mean_teacher_model_measures_lc_without_training_on_it():
    batch = random_batch(num_labeled=4, num_unlabeled=12, seed=2)
    plain = deterministic_mean_teacher(use_local_clustering=False)
    with_lc = deterministic_mean_teacher(lc_weight=1.0)
    with_lc.set_weights(plain.get_weights())  # the same networks
    images = np.concatenate([batch["labeled_images"], batch["unlabeled_images"]])
    features = keras.ops.convert_to_numpy(
        plain.student(plain.augmentation(images, training=False), training=True)[0]
    )
    median = float(np.median(mean_squared_distances(features)))
    for model in (plain, with_lc):  # an epsilon that selects about half the pairs
        model.lc_epsilon.assign(median)
    _, measured, _ = plain.compute_losses(batch)
    _, trained, _ = with_lc.compute_losses(batch)
    for name in ("lc", "lc_neighbor_fraction", "lc_epsilon", "lc_distance_p50"):
        assert float(measured[name]) == pytest.approx(float(trained[name]), rel=1e-5), name
    assert 0.0 < float(measured["lc_neighbor_fraction"]) < 1.0 and float(measured["lc"]) > 0
    plain.optimizer.build(plain.trainable_variables)
    with_lc.optimizer.build(with_lc.trainable_variables)
    assert plain.loss_term_gradient_norms(batch, ["lc"])["lc"][1] == 0.0  # measured only
    assert with_lc.loss_term_gradient_norms(batch, ["lc"])["lc"][1] > 0.0  # the control


def test_pseudo_labels_count_only_confident_predictions_at_the_threshold_edge():
    from lcmt_tf.diagnostics import pseudo_labels

    probabilities = np.array([[0.95, 0.05], [0.2, 0.8], [0.05, 0.95], [0.5, 0.5]])
    labels = np.array([0, 0, 0, 1])
    # Kept: rows 0 and 2 (exactly at tau); row 2's pseudo-label (1) is wrong.
    assert pseudo_labels(probabilities, labels, 0.95) == {
        "pseudo_label_error": 50.0,
        "pseudo_label_mask_rate": 0.5,
    }
    none = pseudo_labels(probabilities, labels, 0.99)
    assert none["pseudo_label_mask_rate"] == 0 and np.isnan(none["pseudo_label_error"])
    every = pseudo_labels(probabilities, labels, 0.0)
    assert every == {"pseudo_label_error": 75.0, "pseudo_label_mask_rate": 1.0}
