"""After training: which images to label next, which pseudo-labels to trust, and an
audit of the unlabeled pool. Everything is computed from a trained run's teacher and
student in inference mode (`lcmt_tf.inference`), over its own unlabeled images by
default: a folder's unlabeled/ images and the train/ images it left unlabeled, or a
benchmark's unlabeled training images (named by their index in the training pool).

Scores for labeling (higher = label first), `RANKINGS`:
    coverage      the default: greedy k-center in the student's features z (the space
                  Local Clustering acts on): each next image is the one farthest from
                  every labeled image and every image ranked before it, so the top K
                  cover the pool instead of crowding one uncertain region
    isolation     distance in z to the nearest labeled image (no greedy update)
    entropy       the teacher's predictive entropy
    margin        1 - (the teacher's top probability - its second)
    disagreement  total variation between the student's and the teacher's predictions
Distances are LC's: the mean over features of the squared difference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from collections.abc import Sequence

import numpy as np

from lcmt_tf.data.folders import DEFAULT_MAX_IMAGE_PIXELS, image_inputs, read_image
from lcmt_tf.data.training_data import pool_paths
from lcmt_tf.errors import UserInputError
from lcmt_tf.inference import (
    CALIBRATION_BINS,
    TrainedRun,
    expected_calibration_error,
    features,
    features_and_probabilities,
    probabilities,
)

RANKINGS = ("coverage", "isolation", "entropy", "margin", "disagreement")
DEFAULT_RANKING = "coverage"


@dataclasses.dataclass
class Candidates:
    """Unlabeled images of a run and what the networks say of them."""

    names: list[str]  # file paths, or "pool:INDEX" for a benchmark's images
    teacher: np.ndarray  # (N, classes) probabilities
    student: np.ndarray
    features: np.ndarray  # (N, d) the student's z
    true_labels: np.ndarray | None = None  # known for a benchmark's pool (never trained on)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) mean over features of (a_i - b_j)^2, in float64, in blocks of rows."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    out = np.empty((len(a), len(b)))
    b_squared = np.sum(b**2, axis=1)
    for start in range(0, len(a), 2048):
        block = a[start : start + 2048]
        squared = np.sum(block**2, axis=1)[:, None] + b_squared[None] - 2.0 * block @ b.T
        out[start : start + 2048] = np.maximum(squared, 0.0) / a.shape[1]
    return out


def nearest_distance(points: np.ndarray, references: np.ndarray) -> np.ndarray:
    """For each point, the distance to its nearest reference (np.inf without any)."""
    if not len(references):
        return np.full(len(points), np.inf)
    return _squared_distances(points, references).min(axis=1)


def coverage_order(points: np.ndarray, labeled: np.ndarray, count: int) -> list[int]:
    """Greedy k-center: `count` indices of `points`, each the farthest (nearest
    distance to `labeled` and to those chosen before it) from everything covered."""
    nearest = nearest_distance(points, labeled)
    if not np.isfinite(nearest).any():
        nearest = np.full(len(points), np.inf)
    order: list[int] = []
    for _ in range(min(count, len(points))):
        choice = int(np.argmax(np.where(np.isfinite(nearest), nearest, np.inf)))
        order.append(choice)
        nearest = np.minimum(nearest, _squared_distances(points, points[choice : choice + 1])[:, 0])
        nearest[order] = -1.0
    return order


def scores(candidates: Candidates, labeled_features: np.ndarray) -> dict[str, np.ndarray]:
    """Every score of `RANKINGS` but coverage (an order, not a score), per image."""
    teacher = np.clip(candidates.teacher, 1e-12, 1.0)
    top_two = np.sort(candidates.teacher, axis=1)[:, -2:]
    return {
        "entropy": -np.sum(teacher * np.log(teacher), axis=1),
        "margin": 1.0 - (top_two[:, 1] - top_two[:, 0]),
        "disagreement": 0.5 * np.abs(candidates.teacher - candidates.student).sum(axis=1),
        "isolation": nearest_distance(candidates.features, labeled_features),
    }


def rank(candidates: Candidates, labeled_features: np.ndarray, by: str = DEFAULT_RANKING):
    """Rows for the ranking CSV, first to label first: the image, its rank, every score,
    and the teacher's class and probability."""
    if by not in RANKINGS:
        raise UserInputError(f"--by must be one of {', '.join(RANKINGS)}, not {by!r}")
    values = scores(candidates, labeled_features)
    if by == "coverage":
        order = coverage_order(candidates.features, labeled_features, len(candidates.names))
    else:
        order = list(np.argsort(-values[by], kind="stable"))
    rows = []
    for position, index in enumerate(order, start=1):
        rows.append(
            {
                "rank": position,
                "image": candidates.names[index],
                "teacher_class": int(candidates.teacher[index].argmax()),
                "teacher_probability": float(candidates.teacher[index].max()),
                **{name: float(value[index]) for name, value in values.items()},
            }
        )
    return rows


class PoolRows:
    """Rows of an image pool, sliceable a batch at a time without reading the rest (a
    pool on disk is never read whole)."""

    def __init__(self, pool, rows: np.ndarray):
        self.pool, self.rows = pool, np.asarray(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, window: slice) -> np.ndarray:
        return self.pool[self.rows[window]]


def run_candidates(trained: TrainedRun, files: Sequence[str] = ()) -> tuple[Candidates, np.ndarray]:
    """(Candidates, the labeled images' features) of a run: `files` if given (read as
    predict reads them), else the run's own unlabeled training images."""
    data = trained.load_data()
    pool, labels = data.training_pool()
    labeled = trained.labeled_indices()
    labeled_features = features(trained.model, pool[labeled])
    true = None
    if files:
        names = image_inputs(files)
        mode = "L" if trained.image_shape[2] == 1 else "RGB"
        size = trained.image_shape[:2]
        images = np.stack(
            [read_image(path, mode, size, DEFAULT_MAX_IMAGE_PIXELS) for path in names]
        )
    else:
        unlabeled = np.setdiff1d(np.arange(len(labels)), labeled)
        paths = pool_paths(trained.config)
        names = [paths[i] if paths else f"pool:{i}" for i in unlabeled]
        images = PoolRows(pool, unlabeled)
        if (labels[unlabeled] >= 0).all():
            true = labels[unlabeled]
    student_features, student = features_and_probabilities(trained.model, images, "student")
    _, teacher = features_and_probabilities(trained.model, images, "teacher")
    return Candidates(names, teacher, student, student_features, true), labeled_features


def copy_for_labeling(rows: list[dict], count: int, folder: str, class_names: list[str]) -> str:
    """Copies the top `count` images of a ranking (files only) into `folder`, named by
    rank, with `to_label.csv` (rank, copy, original); returns the CSV's path."""
    from lcmt_tf.files import atomic_write_csv

    os.makedirs(folder, exist_ok=True)
    entries = []
    for row in rows[:count]:
        original = row["image"]
        if original.startswith("pool:"):
            raise UserInputError(
                "--copy_to copies image files; this run's images are a benchmark's, named by "
                "their pool index"
            )
        copy = os.path.join(folder, f"{row['rank']:05d}_{os.path.basename(original)}")
        shutil.copyfile(original, copy)
        guess = class_names[row["teacher_class"]]
        entries.append(
            {"rank": row["rank"], "copy": copy, "original": original, "teacher_guess": guess}
        )
    path = os.path.join(folder, "to_label.csv")
    atomic_write_csv(path, ["rank", "copy", "original", "teacher_guess"], entries)
    return path


def pseudo_labels(candidates: Candidates, threshold: float, class_names: list[str]) -> list[dict]:
    """The unlabeled images whose teacher confidence is at least `threshold`, most
    confident first: image, class, probability (and whether it is right, where the
    true labels are known)."""
    confidence = candidates.teacher.max(axis=1)
    predicted = candidates.teacher.argmax(axis=1)
    rows = []
    for index in np.argsort(-confidence, kind="stable"):
        if confidence[index] < threshold:
            break
        row = {
            "image": candidates.names[index],
            "class_name": class_names[predicted[index]],
            "probability": float(confidence[index]),
        }
        if candidates.true_labels is not None:
            row["correct"] = int(predicted[index] == candidates.true_labels[index])
        rows.append(row)
    return rows


def calibration(trained: TrainedRun) -> dict:
    """The teacher's calibration on the run's validation split (or, without one, its
    test set, labelled so): ECE and the reliability diagram's bins."""
    data = trained.load_data()
    split = "validation" if len(data.y_validation) else "test"
    images, labels = data.split(split)
    if not len(labels):
        raise UserInputError(f"{data.name} has no validation or test images to calibrate on")
    probs = probabilities(trained.model, images, "teacher")
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, CALIBRATION_BINS - 1)
    bins = [
        {
            "low": float(edges[b]),
            "high": float(edges[b + 1]),
            "count": int((index == b).sum()),
            "accuracy": float(correct[index == b].mean()) if (index == b).any() else None,
            "confidence": float(confidence[index == b].mean()) if (index == b).any() else None,
        }
        for b in range(CALIBRATION_BINS)
    ]
    return {
        "measured_on": f"{split} split" if split == "validation" else "test set",
        "images": int(len(labels)),
        "expected_calibration_error": expected_calibration_error(probs, labels, CALIBRATION_BINS),
        "bins": bins,
    }


def class_mix(candidates: Candidates, labeled_labels: np.ndarray, num_classes: int) -> dict:
    """The labeled images' class shares against the teacher's predicted class shares
    of the unlabeled ones, and their total variation distance (0: the same mix)."""
    labeled = np.bincount(labeled_labels, minlength=num_classes) / max(len(labeled_labels), 1)
    predicted = np.bincount(candidates.teacher.argmax(axis=1), minlength=num_classes)
    predicted = predicted / max(len(candidates.names), 1)
    return {
        "labeled_shares": labeled.tolist(),
        "unlabeled_predicted_shares": predicted.tolist(),
        "total_variation": float(0.5 * np.abs(labeled - predicted).sum()),
    }


def out_of_class(
    candidates: Candidates, labeled_features: np.ndarray, quantile: float = 0.99
) -> dict:
    """Unlabeled images likely of no labeled class: farther (in z) from every labeled
    image than the `quantile` of the labeled images' distances to their nearest other
    labeled image. Returns the threshold and the flagged images, farthest first."""
    if len(labeled_features) < 2:
        raise UserInputError("the out-of-class audit needs at least two labeled images")
    within = _squared_distances(labeled_features, labeled_features)
    np.fill_diagonal(within, np.inf)
    threshold = float(np.quantile(within.min(axis=1), quantile))
    distance = nearest_distance(candidates.features, labeled_features)
    flagged = np.flatnonzero(distance > threshold)
    flagged = flagged[np.argsort(-distance[flagged], kind="stable")]
    return {
        "quantile": quantile,
        "threshold": threshold,
        "flagged": [
            {"image": candidates.names[i], "nearest_labeled_distance": float(distance[i])}
            for i in flagged
        ],
        "flagged_indices": flagged.tolist(),
    }


def thumbnails(images: np.ndarray, size: int = 8) -> np.ndarray:
    """(N, size*size) grayscale thumbnails in [0, 1] (block means), for near-duplicates."""
    images = np.asarray(images, np.float64).mean(axis=-1) / 255.0
    height, width = images.shape[1:3]
    rows = np.array_split(np.arange(height), size)
    columns = np.array_split(np.arange(width), size)
    cells = [images[:, r][:, :, c].mean(axis=(1, 2)) for r in rows for c in columns]
    return np.stack(cells, axis=1)


def near_duplicates(
    pool_images, pool_names: list[str], test_images: np.ndarray, tolerance: float = 1e-3
) -> list[dict]:
    """Training-pool images that are the same (by hash) or nearly the same (mean squared
    thumbnail difference at most `tolerance`) as a test image: leakage."""
    test_hashes = {}
    for index, image in enumerate(test_images):
        test_hashes.setdefault(
            hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest(), index
        )
    test_thumbs = thumbnails(test_images)
    found = []
    for start in range(0, len(pool_images), 4096):
        block = np.asarray(pool_images[start : start + 4096])
        distances = _squared_distances(thumbnails(block), test_thumbs)
        for offset, image in enumerate(block):
            digest = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
            nearest = int(distances[offset].argmin())
            if digest in test_hashes or distances[offset, nearest] <= tolerance:
                found.append(
                    {
                        "image": pool_names[start + offset],
                        "test_index": int(test_hashes.get(digest, nearest)),
                        "identical": digest in test_hashes,
                        "thumbnail_distance": float(distances[offset, nearest]),
                    }
                )
    return found


def audit(trained: TrainedRun, outlier_quantile: float = 0.99, tolerance: float = 1e-3) -> dict:
    """The audit of a run's unlabeled pool (the `lcmt audit` command): class mix,
    likely out-of-class images and near-duplicates of test images."""
    data = trained.load_data()
    pool, labels = data.training_pool()
    labeled = trained.labeled_indices()
    candidates, labeled_features = run_candidates(trained)
    mix = class_mix(candidates, labels[labeled], data.num_classes)
    outliers = out_of_class(candidates, labeled_features, outlier_quantile)
    paths = pool_paths(trained.config)
    names = paths or [f"pool:{index}" for index in range(len(labels))]
    duplicates = near_duplicates(pool, names, data.x_test, tolerance) if len(data.y_test) else []
    summary = (
        f"{len(candidates.names)} unlabeled images: class mix total variation "
        f"{mix['total_variation']:.3f} from the labeled images'; "
        f"{len(outliers['flagged'])} likely out of every labeled class "
        f"(beyond the {outlier_quantile:g} quantile); {len(duplicates)} training-pool images "
        "the same or nearly the same as a test image"
    )
    return {
        "model_dir": trained.model_dir,
        "unlabeled_images": len(candidates.names),
        "class_names": trained.class_names,
        "class_mix": mix,
        "out_of_class": {k: v for k, v in outliers.items() if k != "flagged_indices"},
        "near_duplicates_of_test_images": duplicates,
        "summary": summary,
    }


def write_audit(report: dict, model_dir: str) -> list[str]:
    """MODEL_DIR/audit.json and audit.md; returns their paths."""
    from lcmt_tf.files import atomic_write_json, atomic_write_text

    mix = report["class_mix"]
    lines = [
        f"# Audit of the unlabeled pool of {report['model_dir']}",
        "",
        report["summary"] + ".",
        "",
        "## Class mix",
        "",
        f"Total variation distance {mix['total_variation']:.3f} (0: the same mix).",
        "",
        "| class | labeled share | predicted share of the unlabeled |",
        "|---|---|---|",
        *(
            f"| {name} | {labeled:.3f} | {predicted:.3f} |"
            for name, labeled, predicted in zip(
                report["class_names"], mix["labeled_shares"], mix["unlabeled_predicted_shares"]
            )
        ),
        "",
        "## Likely out of every labeled class",
        "",
        f"Farther from every labeled image than {report['out_of_class']['threshold']:.4g} "
        f"(the {report['out_of_class']['quantile']:g} quantile of the labeled images' "
        "distances to their nearest other labeled image), farthest first:",
        "",
        *(
            f"- {row['image']} ({row['nearest_labeled_distance']:.4g})"
            for row in report["out_of_class"]["flagged"][:50]
        ),  # fmt: skip
        "",
        "## Same or nearly the same as a test image",
        "",
        *(
            f"- {row['image']} = test image {row['test_index']}"
            f"{' (identical)' if row['identical'] else ''}"
            for row in report["near_duplicates_of_test_images"][:50]
        ),
        "",
    ]
    paths = [os.path.join(model_dir, f"audit.{ending}") for ending in ("json", "md")]
    atomic_write_json(paths[0], report)
    atomic_write_text(paths[1], "\n".join(lines))
    return paths
