"""Loss functions of Mean Teacher + Local Clustering, written in `keras.ops`.

Every function here is pure and backend-agnostic, so the same code runs inside the
TensorFlow and the JAX `train_step`. Distances and reductions are computed in float32
whatever the compute dtype of the network.
"""

from __future__ import annotations

import math

from keras import ops

# Above this many elements of the (n, m, d) difference tensor (64 MiB in float32; the
# paper's batch, 32 + 128 images of 128-d features, needs 2.6 M), distances are formed
# through one matrix product instead, in O(n m) memory.
DIFFERENCE_LIMIT = 2**24
DISTANCE_METHODS = ("auto", "difference", "matmul")


def pairwise_mean_squared_distance(a, b, same: bool = False, method: str = "auto"):
    """d_ij = mean over features of (a_i - b_j)^2.

    Args:
        a: (n, d) features.
        b: (m, d) features.
        same: a and b are the same features (the U-U block): the diagonal is 0.
        method: "difference" forms a_i - b_j before squaring, in O(n m d) memory, so
            identical vectors give exactly 0 at any norm. "matmul" expands
            |a_i - c|^2 + |b_j - c|^2 - 2 (a_i - c).(b_j - c) around the mean c of b,
            through one matrix product in O(n m) memory, clamped at 0, with an exact 0
            diagonal when `same`; it is accurate to float32 rounding relative to the
            features' spread, not exact for duplicates. "auto": difference up to
            DIFFERENCE_LIMIT elements of n x m x d (any batch of the paper's size),
            matmul above it.

    Returns:
        (n, m) float32 distances.
    """
    if method not in DISTANCE_METHODS:
        raise ValueError(f"method must be one of {DISTANCE_METHODS}, not {method!r}")
    a = ops.cast(a, "float32")
    b = ops.cast(b, "float32")
    n, dimensions = a.shape
    m = b.shape[0]
    static = None not in (n, m, dimensions)
    if method == "difference" or (
        method == "auto" and (not static or n * m * dimensions <= DIFFERENCE_LIMIT)
    ):
        difference = ops.expand_dims(a, 1) - ops.expand_dims(b, 0)
        return ops.mean(ops.square(difference), axis=-1)
    # Distances do not depend on the origin: centering keeps the expansion's
    # cancellation relative to the spread of the features, not to their norms.
    center = ops.stop_gradient(ops.mean(b, axis=0, keepdims=True))
    a, b = a - center, b - center
    squared = (
        ops.sum(ops.square(a), axis=-1, keepdims=True)
        + ops.expand_dims(ops.sum(ops.square(b), axis=-1), 0)
        - 2.0 * ops.matmul(a, ops.transpose(b))
    )
    distances = ops.maximum(squared, 0.0) / float(dimensions)
    if same:
        distances = distances * (1.0 - ops.eye(m, dtype="float32"))
    return distances


def _neighbor_term(distances, epsilon, exclude_diagonal: bool = False):
    """Eq. (4)-(5) for one block of pairs: sum(m * exp(-d/eps) * d) / sum(m).

    Returns (term, neighbor_count). The mask m = [d <= eps] carries no gradient; the
    term is 0 (not NaN) when the block has no neighbor pair. With `exclude_diagonal`
    (a square block of a set with itself) the i = j pairs are not neighbours.
    """
    mask = ops.cast(distances <= epsilon, "float32")
    if exclude_diagonal:
        mask = mask * (1.0 - ops.eye(ops.shape(distances)[0], dtype="float32"))
    mask = ops.stop_gradient(mask)
    weights = ops.exp(-distances / epsilon)
    neighbor_count = ops.sum(mask)
    weighted_sum = ops.sum(mask * weights * distances)
    term = ops.where(neighbor_count > 0, weighted_sum / ops.maximum(neighbor_count, 1.0), 0.0)
    return term, neighbor_count


def lc_distances(z_labeled, z_unlabeled, method: str = "auto"):
    """The pairs Local Clustering acts on, eq. (4): (labeled-unlabeled distances
    (n_l, n_u), unlabeled-unlabeled distances (n_u, n_u), the i = j pairs included).
    `method`: see `pairwise_mean_squared_distance`."""
    return (
        pairwise_mean_squared_distance(z_labeled, z_unlabeled, method=method),
        pairwise_mean_squared_distance(z_unlabeled, z_unlabeled, same=True, method=method),
    )


def local_clustering_of_distances(distances, epsilon, self_pairs: bool = True):
    """`local_clustering` on the blocks `lc_distances` returns.

    `self_pairs`: the i = j pairs of the unlabeled-unlabeled block count as neighbour
    pairs, as in the authors' code. Their distance is 0, so each adds 1 to the
    denominator sum(m) and nothing to the numerator: they scale the U-U term down by
    sum(m) / (sum(m) + n_u), most when few pairs of different images are within ε.
    False: only pairs of two different images count (and the neighbour fraction is
    over those pairs).
    """
    epsilon = ops.cast(epsilon, "float32")
    labeled_unlabeled, unlabeled_unlabeled = distances
    term_lu, count_lu = _neighbor_term(labeled_unlabeled, epsilon)
    term_uu, count_uu = _neighbor_term(
        unlabeled_unlabeled, epsilon, exclude_diagonal=not self_pairs
    )
    total_pairs = ops.cast(ops.size(labeled_unlabeled) + ops.size(unlabeled_unlabeled), "float32")
    if not self_pairs:
        total_pairs = total_pairs - ops.cast(ops.shape(unlabeled_unlabeled)[0], "float32")
    neighbor_fraction = ops.stop_gradient((count_lu + count_uu) / total_pairs)
    return term_lu + term_uu, neighbor_fraction


def local_clustering(
    z_labeled, z_unlabeled, epsilon, method: str = "auto", self_pairs: bool = True
):
    """Local Clustering loss and the share of pairs within epsilon.

    Args:
        z_labeled: (n_l, d) features of the labeled images.
        z_unlabeled: (n_u, d) features of the unlabeled images.
        epsilon: neighborhood radius (float or scalar tensor/variable), > 0.
        method: how distances are formed (`pairwise_mean_squared_distance`).
        self_pairs: count the i = j pairs of the U-U block, as the authors' code does
            (`local_clustering_of_distances`).

    Returns:
        (loss, neighbor_fraction): loss = term(L, U) + term(U, U) as in eq. (5), where
            the U-U block includes the i = j pairs unless `self_pairs` is False;
            neighbor_fraction = neighbor pairs / all pairs over those two blocks
            (labeled-labeled pairs are not used).
    """
    distances = lc_distances(z_labeled, z_unlabeled, method)
    return local_clustering_of_distances(distances, epsilon, self_pairs)


def distance_quantiles(distances, quantiles, self_pairs: bool = True) -> list:
    """Quantiles (linear interpolation, NumPy's default) of the pair distances Local
    Clustering acts on: the blocks `lc_distances` returns, with or without the i = j
    pairs of the unlabeled-unlabeled block (`self_pairs`). No gradient. The
    distribution the neighbor mask d <= epsilon acts on, and what an ε that follows the
    features (`--lc_epsilon_batch_quantile`) is set to.

    Args:
        distances: (labeled-unlabeled (n_l, n_u), unlabeled-unlabeled (n_u, n_u)).
        quantiles: values in [0, 1].
        self_pairs: whether the n_u zero distances of the U-U diagonal count.

    Returns:
        A float32 scalar per quantile.
    """
    labeled_unlabeled, unlabeled_unlabeled = (ops.stop_gradient(d) for d in distances)
    count = ops.size(labeled_unlabeled) + ops.size(unlabeled_unlabeled)
    if not self_pairs:  # the diagonal sorts last, past every position read below
        size = ops.shape(unlabeled_unlabeled)[0]
        unlabeled_unlabeled = ops.where(
            ops.eye(size, dtype="bool"), float("inf"), unlabeled_unlabeled
        )
        count = count - size
    ordered = ops.sort(
        ops.concatenate(
            [ops.reshape(labeled_unlabeled, (-1,)), ops.reshape(unlabeled_unlabeled, (-1,))]
        )
    )
    last = ops.cast(count - 1, "float32")
    values = []
    for quantile in quantiles:
        position = float(quantile) * last
        low = ops.floor(position)
        high = ops.minimum(low + 1.0, last)
        fraction = position - low
        below, above = (ops.take(ordered, ops.cast(i, "int32")) for i in (low, high))
        values.append(below * (1.0 - fraction) + above * fraction)
    return values


def local_clustering_loss(z_labeled, z_unlabeled, epsilon):
    """The paper's Local Clustering loss, eq. (4)-(5), as a scalar.

    See `local_clustering` for the exact semantics; this returns only the loss.

    Args:
        z_labeled: (n_l, d) features of the labeled images.
        z_unlabeled: (n_u, d) features of the unlabeled images.
        epsilon: neighborhood radius, > 0.

    Returns:
        The scalar loss.

    Example:
        ```python
        z_l, z_u = keras.random.normal((32, 128)), keras.random.normal((128, 128))
        loss = local_clustering_loss(z_l, z_u, epsilon=2.0)
        ```
    """
    loss, _ = local_clustering(z_labeled, z_unlabeled, epsilon)
    return loss


def softmax_mse(student_logits, teacher_logits):
    """Consistency cost: mean over batch and classes of (softmax(s) - softmax(t))^2.

    Args:
        student_logits: (n, k).
        teacher_logits: (n, k); no gradient flows into it.

    Returns:
        The scalar cost, in float32.
    """
    student_probabilities = ops.softmax(ops.cast(student_logits, "float32"), axis=-1)
    teacher_probabilities = ops.stop_gradient(
        ops.softmax(ops.cast(teacher_logits, "float32"), axis=-1)
    )
    return ops.mean(ops.square(student_probabilities - teacher_probabilities))


def pseudo_label_cross_entropy(strong_logits, weak_logits, threshold: float):
    """FixMatch's unlabeled term: the cross-entropy of the strong view's logits against
    the hard pseudo-label argmax softmax(weak), counted where that softmax's maximum is
    at least `threshold` (tau) and averaged over every unlabeled image, confident or not
    (Sohn et al. 2020, eq. 4).

    Args:
        strong_logits: (n, k) logits of the strongly augmented views.
        weak_logits: (n, k) logits of the weakly augmented views; no gradient flows into
            them (the pseudo-label is a target).
        threshold: tau in [0, 1]; a confidence equal to tau counts.

    Returns:
        (loss, mask_rate): the scalar term and the share of images whose pseudo-label
        was confident enough to count, both float32; 0 (not NaN) when none was.
    """
    weak = ops.stop_gradient(ops.softmax(ops.cast(weak_logits, "float32"), axis=-1))
    confidence = ops.max(weak, axis=-1)
    mask = ops.cast(confidence >= threshold, "float32")
    pseudo_labels = ops.argmax(weak, axis=-1)
    strong = ops.cast(strong_logits, "float32")
    cross_entropy = ops.sparse_categorical_crossentropy(pseudo_labels, strong, from_logits=True)
    return ops.mean(cross_entropy * mask), ops.mean(mask)


def prediction_balance(logits):
    """The normalized entropy of the predicted classes over a batch, in [0, 1]: 1 when
    every class is predicted equally often, 0 when one class takes every image (the
    collapse too large an LC weight causes). No gradient.

    Args:
        logits: (n, k), k >= 2.
    """
    logits = ops.stop_gradient(ops.cast(logits, "float32"))
    classes = logits.shape[-1]
    shares = ops.mean(ops.one_hot(ops.argmax(logits, axis=-1), classes), axis=0)
    entropy = -ops.sum(shares * ops.log(ops.maximum(shares, 1e-12)))
    return entropy / math.log(classes)


def feature_spread(features):
    """Mean over feature dimensions of the across-batch standard deviation.

    A collapse of the feature distribution (every image mapped to one point, which the
    paper reports for too large epsilon or LC weight) drives this towards 0.
    """
    features = ops.cast(features, "float32")
    return ops.mean(ops.std(features, axis=0))
