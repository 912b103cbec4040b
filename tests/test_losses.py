import keras
import numpy as np
import pytest
from keras import ops

from lcmt_tf.losses import (
    distance_quantiles,
    feature_spread,
    lc_distances,
    local_clustering,
    local_clustering_loss,
    pseudo_label_cross_entropy,
    softmax_mse,
)

from conftest import backend_gradient


def numpy_local_clustering(z_labeled, z_unlabeled, epsilon, self_pairs=True):
    """Independent float64 reference of eq. (4)-(5), pair by pair; without
    `self_pairs` an image is not its own neighbour."""
    z_labeled = np.asarray(z_labeled, np.float64)
    z_unlabeled = np.asarray(z_unlabeled, np.float64)

    def term(block_a, block_b, same=False):
        numerator, count = 0.0, 0
        for i, a in enumerate(block_a):
            for j, b in enumerate(block_b):
                if same and i == j and not self_pairs:
                    continue
                distance = np.mean((a - b) ** 2)
                if distance <= epsilon:
                    numerator += np.exp(-distance / epsilon) * distance
                    count += 1
        return (numerator / count if count else 0.0), count

    term_lu, count_lu = term(z_labeled, z_unlabeled)
    term_uu, count_uu = term(z_unlabeled, z_unlabeled, same=True)
    pairs = len(z_labeled) * len(z_unlabeled) + len(z_unlabeled) ** 2
    pairs -= 0 if self_pairs else len(z_unlabeled)
    return term_lu + term_uu, (count_lu + count_uu) / pairs


def as_numpy(value):
    return float(ops.convert_to_numpy(value))


@pytest.mark.parametrize("num_labeled,num_unlabeled", [(3, 5), (8, 16), (1, 1)])
@pytest.mark.parametrize("epsilon", [0.5, 2.0, 8.0])
def test_local_clustering_matches_numpy(num_labeled, num_unlabeled, epsilon):
    rng = np.random.default_rng(num_labeled * 100 + int(epsilon * 10))
    z_labeled = rng.normal(size=(num_labeled, 16)).astype("float32") * 1.5
    z_unlabeled = rng.normal(size=(num_unlabeled, 16)).astype("float32") * 1.5
    expected_loss, expected_fraction = numpy_local_clustering(z_labeled, z_unlabeled, epsilon)
    loss, fraction = local_clustering(z_labeled, z_unlabeled, epsilon)
    assert as_numpy(loss) == pytest.approx(expected_loss, rel=1e-5, abs=1e-7)
    assert as_numpy(fraction) == pytest.approx(expected_fraction)
    assert 0.0 < expected_fraction < 1.0 or num_unlabeled == 1 or epsilon == 8.0


def test_no_neighbour_pair_gives_zero_not_nan():
    # Features far apart: only the U-U diagonal (distance 0) is a neighbour pair.
    z_labeled = np.array([[100.0, 0.0]], "float32")
    z_unlabeled = np.array([[0.0, 100.0], [0.0, -100.0]], "float32")
    loss, fraction = local_clustering(z_labeled, z_unlabeled, 1.0)
    assert as_numpy(loss) == 0.0
    assert as_numpy(fraction) == pytest.approx(2 / 6)
    # Every term empty, when even the diagonal is excluded by a labeled-only case.
    loss_lu_only = local_clustering_loss(z_labeled, z_unlabeled[:1], 1.0)
    assert np.isfinite(as_numpy(loss_lu_only)) and as_numpy(loss_lu_only) == 0.0


def test_every_pair_a_neighbour():
    rng = np.random.default_rng(1)
    z_labeled = rng.normal(size=(4, 8)).astype("float32") * 0.1
    z_unlabeled = rng.normal(size=(6, 8)).astype("float32") * 0.1
    expected_loss, expected_fraction = numpy_local_clustering(z_labeled, z_unlabeled, 100.0)
    loss, fraction = local_clustering(z_labeled, z_unlabeled, 100.0)
    assert expected_fraction == 1.0 and as_numpy(fraction) == 1.0
    assert as_numpy(loss) == pytest.approx(expected_loss, rel=1e-5)


def test_distance_exactly_epsilon_is_a_neighbour():
    # d = mean([2^2, 0]) = 2 exactly in float32.
    z_labeled = np.array([[2.0, 0.0]], "float32")
    z_unlabeled = np.array([[0.0, 0.0]], "float32")
    loss, fraction = local_clustering(z_labeled, z_unlabeled, 2.0)
    # L-U term: exp(-1) * 2 / 1; U-U term: the diagonal, 0.
    assert as_numpy(loss) == pytest.approx(2.0 * np.exp(-1.0), rel=1e-6)
    assert as_numpy(fraction) == 1.0


def test_large_norms_identical_vectors_have_zero_distance():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(3, 128)).astype("float32") * 300.0  # norms in the thousands
    z_labeled = base[:2]
    z_unlabeled = np.concatenate([base[:1], base[2:], base[1:2]])
    expected_loss, expected_fraction = numpy_local_clustering(z_labeled, z_unlabeled, 1.0)
    loss, fraction = local_clustering(z_labeled, z_unlabeled, 1.0)
    # Only exact duplicates are neighbours, with distance 0: the loss is exactly 0.
    assert expected_loss == 0.0 and as_numpy(loss) == 0.0
    assert as_numpy(fraction) == pytest.approx(expected_fraction)
    assert expected_fraction == pytest.approx((2 + 3) / (2 * 3 + 3 * 3))


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    num_labeled, num_unlabeled, dim, epsilon = 3, 4, 5, 1.5
    flat = (rng.normal(size=(num_labeled + num_unlabeled, dim)) * 0.9).astype("float64")

    def reference(values):
        return numpy_local_clustering(values[:num_labeled], values[num_labeled:], epsilon)[0]

    def keras_loss(values):
        return local_clustering_loss(values[:num_labeled], values[num_labeled:], epsilon)

    # No pair may sit within the finite-difference step of epsilon (the mask jumps there).
    distances = ((flat[:, None] - flat[None]) ** 2).mean(-1)
    assert np.abs(distances - epsilon).min() > 0.01
    assert 0 < (distances <= epsilon).sum() < distances.size

    gradient = backend_gradient(keras_loss, flat.astype("float32"))
    step = 1e-4
    numeric = np.zeros_like(flat)
    for index in np.ndindex(flat.shape):
        plus, minus = flat.copy(), flat.copy()
        plus[index] += step
        minus[index] -= step
        numeric[index] = (reference(plus) - reference(minus)) / (2 * step)
    np.testing.assert_allclose(gradient, numeric, rtol=2e-3, atol=2e-5)
    assert np.abs(numeric).max() > 1e-2  # the check is not vacuous


def test_softmax_mse_matches_numpy():
    rng = np.random.default_rng(4)
    student = rng.normal(size=(6, 10)).astype("float32")
    teacher = rng.normal(size=(6, 10)).astype("float32")

    def softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    expected = np.mean(
        (softmax(student.astype(np.float64)) - softmax(teacher.astype(np.float64))) ** 2
    )
    assert as_numpy(softmax_mse(student, teacher)) == pytest.approx(expected, rel=1e-5)
    assert as_numpy(softmax_mse(student, student)) == 0.0


def test_softmax_mse_sends_no_gradient_to_teacher():
    rng = np.random.default_rng(5)
    student = rng.normal(size=(4, 3)).astype("float32")
    teacher = rng.normal(size=(4, 3)).astype("float32")
    gradient_teacher = backend_gradient(
        lambda t: softmax_mse(ops.convert_to_tensor(student), t), teacher
    )
    gradient_student = backend_gradient(
        lambda s: softmax_mse(s, ops.convert_to_tensor(teacher)), student
    )
    assert np.all(gradient_teacher == 0.0)
    assert np.abs(gradient_student).max() > 0


def test_feature_spread_is_zero_for_collapsed_features():
    collapsed = np.tile(np.arange(8, dtype="float32"), (5, 1))
    assert as_numpy(feature_spread(collapsed)) == 0.0
    spread = np.random.default_rng(6).normal(size=(500, 8)).astype("float32")
    assert as_numpy(feature_spread(spread)) == pytest.approx(
        np.std(spread, axis=0).mean(), rel=1e-5
    )


def test_bfloat16_features_are_measured_in_float32():
    z = keras.ops.cast(np.array([[1.0, 2.0], [1.0, 2.0]], "float32"), "bfloat16")
    loss, fraction = local_clustering(z[:1], z[1:], 0.5)
    assert ops.convert_to_numpy(loss).dtype == np.float32
    assert as_numpy(fraction) == 1.0


@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_matmul_distances_match_the_float64_differences(offset):
    from lcmt_tf.losses import pairwise_mean_squared_distance

    rng = np.random.default_rng(7)
    a = (rng.normal(size=(20, 128)) * 3 + offset).astype("float32")
    b = (rng.normal(size=(30, 128)) * 3 + offset).astype("float32")
    reference = ((a[:, None].astype(np.float64) - b[None]) ** 2).mean(-1)
    matmul = ops.convert_to_numpy(pairwise_mean_squared_distance(a, b, method="matmul"))
    np.testing.assert_allclose(matmul, reference, rtol=1e-5)
    same = ops.convert_to_numpy(pairwise_mean_squared_distance(b, b, same=True, method="matmul"))
    assert np.all(np.diag(same) == 0.0) and same.min() >= 0.0
    np.testing.assert_allclose(same, ((b[:, None] - b[None]) ** 2).mean(-1), rtol=1e-5, atol=1e-5)


def test_large_batches_use_the_matmul_form_and_keep_the_loss():
    from lcmt_tf import losses

    rng = np.random.default_rng(8)
    z_labeled = rng.normal(size=(64, 128)).astype("float32")
    z_unlabeled = rng.normal(size=(1600, 128)).astype("float32")  # 1600^2 x 128 > the limit
    assert 1600 * 1600 * 128 > losses.DIFFERENCE_LIMIT >= 160 * 128 * 128
    automatic = local_clustering(z_labeled, z_unlabeled, 2.0)
    exact = local_clustering(z_labeled, z_unlabeled, 2.0, method="difference")
    matmul = local_clustering(z_labeled, z_unlabeled, 2.0, method="matmul")
    assert as_numpy(automatic[0]) == as_numpy(matmul[0])
    assert as_numpy(matmul[0]) == pytest.approx(as_numpy(exact[0]), rel=1e-5)
    assert as_numpy(matmul[1]) == pytest.approx(as_numpy(exact[1]), abs=1e-6)


def test_matmul_form_gradient_matches_finite_differences():
    rng = np.random.default_rng(9)
    z_unlabeled = rng.normal(size=(5, 6)).astype(np.float64)
    z_labeled = rng.normal(size=(3, 6))

    def matmul_loss(z):
        return local_clustering(ops.cast(z[:3], "float32"), ops.cast(z[3:], "float32"), 20.0,
                                method="matmul")[0]  # fmt: skip

    point = np.concatenate([z_labeled, z_unlabeled]).astype("float32")
    gradient = backend_gradient(matmul_loss, point)
    step = 1e-3
    numeric = np.zeros_like(point)
    for index in np.ndindex(point.shape):
        shifted = point.astype(np.float64).copy()
        shifted[index] += step
        up = numpy_local_clustering(shifted[:3], shifted[3:], 20.0)[0]
        shifted[index] -= 2 * step
        down = numpy_local_clustering(shifted[:3], shifted[3:], 20.0)[0]
        numeric[index] = (up - down) / (2 * step)
    np.testing.assert_allclose(gradient, numeric, rtol=2e-3, atol=2e-4)
    assert np.abs(numeric).max() > 1e-2  # the check is not vacuous


@pytest.mark.parametrize("epsilon", [0.5, 1.0])
def test_local_clustering_without_self_pairs_matches_numpy(epsilon):
    rng = np.random.default_rng(int(epsilon * 10))
    z_labeled = rng.normal(size=(4, 16)).astype("float32") * 0.5
    z_unlabeled = rng.normal(size=(9, 16)).astype("float32") * 0.5
    expected_loss, expected_fraction = numpy_local_clustering(
        z_labeled, z_unlabeled, epsilon, self_pairs=False
    )
    loss, fraction = local_clustering(z_labeled, z_unlabeled, epsilon, self_pairs=False)
    assert as_numpy(loss) == pytest.approx(expected_loss, rel=1e-5, abs=1e-7)
    assert as_numpy(fraction) == pytest.approx(expected_fraction)
    assert 0.0 < expected_fraction < 1.0
    # The authors' self pairs add n_u to the U-U denominator: a smaller loss.
    with_self, _ = local_clustering(z_labeled, z_unlabeled, epsilon)
    assert as_numpy(with_self) < as_numpy(loss)


@pytest.mark.parametrize("self_pairs", [True, False])
def test_distance_quantiles_are_numpys_over_the_pairs_lc_acts_on(self_pairs):
    rng = np.random.default_rng(5)
    z_labeled = rng.normal(size=(3, 8)).astype("float32")
    z_unlabeled = rng.normal(size=(7, 8)).astype("float32")
    blocks = lc_distances(z_labeled, z_unlabeled)
    lu = np.mean((z_labeled[:, None] - z_unlabeled[None]) ** 2, axis=-1)
    uu = np.mean((z_unlabeled[:, None] - z_unlabeled[None]) ** 2, axis=-1)
    pairs = np.concatenate([lu.ravel(), uu.ravel() if self_pairs else uu[~np.eye(7, dtype=bool)]])
    quantiles = [0.0, 0.05, 0.1, 0.5, 0.9, 1.0]
    values = distance_quantiles(blocks, quantiles, self_pairs=self_pairs)
    for quantile, value in zip(quantiles, values):
        assert as_numpy(value) == pytest.approx(np.quantile(pairs, quantile), rel=1e-5, abs=1e-7)


def numpy_pseudo_label_cross_entropy(strong_logits, weak_logits, threshold):
    """Independent float64 reference of FixMatch's unlabeled term, image by image."""
    total, confident = 0.0, 0
    for strong, weak in zip(
        np.asarray(strong_logits, np.float64), np.asarray(weak_logits, np.float64)
    ):
        weak_probabilities = np.exp(weak - weak.max()) / np.exp(weak - weak.max()).sum()
        if weak_probabilities.max() >= threshold:
            label = int(np.argmax(weak_probabilities))
            log_probabilities = strong - strong.max() - np.log(np.exp(strong - strong.max()).sum())
            total -= log_probabilities[label]
            confident += 1
    count = len(strong_logits)
    return total / count, confident / count


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.95])
def test_pseudo_label_cross_entropy_matches_numpy(threshold):
    random = np.random.default_rng(3)
    strong = random.normal(size=(12, 5)).astype("float32")
    weak = (3 * random.normal(size=(12, 5))).astype("float32")
    loss, mask_rate = pseudo_label_cross_entropy(strong, weak, threshold)
    expected_loss, expected_rate = numpy_pseudo_label_cross_entropy(strong, weak, threshold)
    assert 0 < expected_rate or threshold == 0.95  # the cases are not all empty
    np.testing.assert_allclose(float(loss), expected_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(mask_rate), expected_rate, rtol=1e-6)


def test_pseudo_label_confidence_equal_to_the_threshold_counts_and_none_gives_zero():
    # Equal weak logits: softmax exactly (0.5, 0.5) in any precision, a confidence of
    # exactly 0.5; the tie's pseudo-label is the first class, as np.argmax takes it.
    weak = np.zeros((2, 2), np.float32)
    strong = np.array([[0.0, 1.0], [2.0, 0.0]], np.float32)
    loss, rate = pseudo_label_cross_entropy(strong, weak, 0.5)
    expected, _ = numpy_pseudo_label_cross_entropy(strong, weak, 0.5)
    assert float(rate) == 1.0 and np.isclose(float(loss), expected, rtol=1e-5)
    assert np.isclose(float(pseudo_label_cross_entropy(strong, weak, 0.5001)[1]), 0.0)
    loss, rate = pseudo_label_cross_entropy(strong, weak, 0.99)  # nobody is that sure
    assert float(loss) == 0.0 and float(rate) == 0.0


def test_pseudo_label_gradient_reaches_the_strong_view_only():
    random = np.random.default_rng(4)
    strong = random.normal(size=(6, 4)).astype("float32")
    weak = (4 * random.normal(size=(6, 4))).astype("float32")
    threshold = 0.6

    def of_strong(x):
        return pseudo_label_cross_entropy(x, weak, threshold)[0]

    def of_weak(x):
        return pseudo_label_cross_entropy(strong, x, threshold)[0]

    gradient = backend_gradient(of_strong, strong)
    # Closed form: (softmax(strong) - onehot(pseudo-label)) / n on the confident rows.
    probabilities = np.exp(strong) / np.exp(strong).sum(axis=1, keepdims=True)
    weak_probabilities = np.exp(weak) / np.exp(weak).sum(axis=1, keepdims=True)
    mask = weak_probabilities.max(axis=1) >= threshold
    assert 0 < mask.sum() < len(mask)
    onehot = np.eye(4)[weak_probabilities.argmax(axis=1)]
    expected = (probabilities - onehot) * mask[:, None] / len(strong)
    np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-6)
    assert np.all(backend_gradient(of_weak, weak) == 0)
