"""The labeled subset: num_labels / num_classes images per class, chosen by a seed."""

from __future__ import annotations

import numpy as np


def stratified_label_split(
    labels: np.ndarray, num_labels: int, num_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (labeled_indices, unlabeled_indices), both sorted and disjoint.

    Each class contributes num_labels / num_classes images, drawn without replacement
    with NumPy's PCG64 generator seeded by `seed` (the same on every machine). The
    unlabeled set is every other training image. A run's settings are checked against
    its data first (`TrainConfig.check_against_data`); called directly, an impossible
    request raises ValueError.
    """
    if num_labels % num_classes:
        raise ValueError(f"{num_labels} labels do not divide into {num_classes} classes")
    per_class = num_labels // num_classes
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(num_classes):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise ValueError(f"class {label} has {len(members)} images, fewer than {per_class}")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    labeled = np.sort(np.concatenate(chosen))
    unlabeled = np.setdiff1d(np.arange(len(labels)), labeled)
    return labeled, unlabeled


def stratified_holdout(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (kept_indices, held_out_indices), sorted and disjoint: from each class
    round(fraction x its count) images (at least 1, and at least 1 kept), drawn with
    PCG64 seeded by `seed` on its own stream (the labeled split draws on another)."""
    rng = np.random.default_rng([seed, 1])
    held_out = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = min(max(1, int(round(fraction * len(members)))), len(members) - 1)
        held_out.append(rng.choice(members, size=count, replace=False))
    held = np.sort(np.concatenate(held_out)) if held_out else np.zeros(0, np.int64)
    return np.setdiff1d(np.arange(len(labels)), held), held
