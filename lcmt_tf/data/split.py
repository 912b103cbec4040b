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
