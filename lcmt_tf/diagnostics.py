"""Confirmation-bias diagnostics: what the paper's mechanism says happens to the
unlabeled images the teacher gets wrong, measured.

Mean Teacher's student learns to agree with its teacher, so an unlabeled image the
teacher misclassifies tends to stay misclassified (confirmation bias). Local
Clustering is meant to pull such an image towards the dense region of its true class
through its neighbours in feature space. Where the unlabeled images' true labels are
known (the benchmarks' unlabeled images are labeled images with their labels hidden;
the labels are never used for training), these functions measure, over the pool or a
fixed sample of it: the teacher's error, the images fixed and broken since the
previous measurement, and for the misclassified ones who their ε-neighbours are (in
the student's features z, with the run's own ε and the distance Local Clustering
uses: the mean over features of the squared difference).

FixMatch's confirmation bias is its pseudo-labels: `pseudo_labels` measures how many
of them the student would keep at its threshold and how many of those are wrong.

Pure NumPy, on features and predictions computed in inference mode.
"""

from __future__ import annotations

import numpy as np

DISTANCE_QUANTILES = {"unlabeled_distance_p10": 0.1, "unlabeled_distance_p50": 0.5,
                      "unlabeled_distance_p90": 0.9}  # fmt: skip
NAMES = (
    "unlabeled_teacher_error",
    "unlabeled_fixed",
    "unlabeled_broken",
    "misclassified_neighbors_same_wrong",
    "misclassified_neighbors_true_class",
    "misclassified_isolated",
    "unlabeled_neighbor_fraction",
    *DISTANCE_QUANTILES,
)

# FixMatch's: the student's pseudo-labels on the same images (`pseudo_labels`).
PSEUDO_LABEL_NAMES = ("pseudo_label_error", "pseudo_label_mask_rate")


def pseudo_labels(
    student_probabilities: np.ndarray, labels: np.ndarray, threshold: float
) -> dict[str, float]:
    """FixMatch's pseudo-labels over n unlabeled images with known labels.

    Args:
        student_probabilities: (n, classes) the student's softmax, in inference mode.
        labels: (n,) the true classes.
        threshold: tau: a pseudo-label (the argmax) counts where its probability is at
            least tau.

    Returns:
        `pseudo_label_mask_rate`, the share of images whose pseudo-label counts, and
        `pseudo_label_error` (%), the share of those whose pseudo-label is wrong (NaN
        when none counts).
    """
    probabilities = np.asarray(student_probabilities, np.float64)
    kept = probabilities.max(axis=1) >= threshold
    wrong = np.argmax(probabilities, axis=1) != np.asarray(labels)
    return {
        "pseudo_label_error": 100.0 * float(np.mean(wrong[kept])) if kept.any() else float("nan"),
        "pseudo_label_mask_rate": float(np.mean(kept)),
    }


def mean_squared_distances(features: np.ndarray) -> np.ndarray:
    """(n, n) d_ij = mean over features of (z_i - z_j)^2, in float64, through one
    matrix product around the mean (exactly 0 on the diagonal)."""
    centered = np.asarray(features, np.float64)
    centered = centered - centered.mean(axis=0, keepdims=True)
    squared = np.sum(centered**2, axis=1)
    distances = squared[:, None] + squared[None, :] - 2.0 * centered @ centered.T
    distances = np.maximum(distances, 0.0) / centered.shape[1]
    np.fill_diagonal(distances, 0.0)
    return distances


def confirmation_bias(
    features: np.ndarray,
    predictions: np.ndarray,
    labels: np.ndarray,
    epsilon: float,
    previous_predictions: np.ndarray | None = None,
) -> dict[str, float]:
    """The diagnostics of one measurement over n unlabeled images with known labels.

    Args:
        features: (n, d) the student's features z, in inference mode.
        predictions: (n,) the teacher's predicted classes.
        labels: (n,) the true classes.
        epsilon: the neighbourhood radius (the run's ε): j is a neighbour of i when
            d_ij <= epsilon, j != i.
        previous_predictions: (n,) the teacher's predictions at the previous
            measurement, or None (then `unlabeled_fixed` and `unlabeled_broken` are NaN).

    Returns:
        `unlabeled_teacher_error` (%); `unlabeled_fixed` and `unlabeled_broken`: images
        wrong then right, and right then wrong, since `previous_predictions`; over the
        misclassified images that have at least one neighbour, the mean share of their
        neighbours that carry the same wrong prediction
        (`misclassified_neighbors_same_wrong`) and that are correctly predicted images
        of their true class (`misclassified_neighbors_true_class`);
        `misclassified_isolated`, the share of misclassified images without a
        neighbour; `unlabeled_neighbor_fraction`, the share of pairs i != j within ε;
        and quantiles of those pairs' distances. Shares are NaN where nothing is
        counted.
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    n = len(labels)
    distances = mean_squared_distances(features)
    off_diagonal = ~np.eye(n, dtype=bool)
    neighbors = (distances <= epsilon) & off_diagonal
    wrong = predictions != labels
    correct = ~wrong
    same_wrong, true_class = [], []
    for i in np.flatnonzero(wrong):
        mine = np.flatnonzero(neighbors[i])
        if not len(mine):
            continue
        same_wrong.append(np.mean(predictions[mine] == predictions[i]))
        true_class.append(np.mean((labels[mine] == labels[i]) & correct[mine]))
    pairs = distances[off_diagonal]
    result = {
        "unlabeled_teacher_error": 100.0 * float(np.mean(wrong)),
        "unlabeled_fixed": float("nan"),
        "unlabeled_broken": float("nan"),
        "misclassified_neighbors_same_wrong": _mean(same_wrong),
        "misclassified_neighbors_true_class": _mean(true_class),
        "misclassified_isolated": (
            1.0 - len(same_wrong) / int(wrong.sum()) if wrong.any() else float("nan")
        ),
        "unlabeled_neighbor_fraction": float(np.mean(pairs <= epsilon)) if n > 1 else 0.0,
    }
    for name, quantile in DISTANCE_QUANTILES.items():
        result[name] = float(np.quantile(pairs, quantile)) if n > 1 else float("nan")
    if previous_predictions is not None:
        was_wrong = np.asarray(previous_predictions) != labels
        result["unlabeled_fixed"] = float(np.sum(was_wrong & correct))
        result["unlabeled_broken"] = float(np.sum(~was_wrong & wrong))
    return result


def without_nan(result: dict) -> dict:
    """`result` with NaN values as None (JSON has no NaN)."""
    return {
        key: None if isinstance(value, float) and np.isnan(value) else value
        for key, value in result.items()
    }


def _mean(values: list) -> float:
    return float(np.mean(values)) if values else float("nan")
