"""The labeled subset: num_labels / num_classes images per class, chosen by a seed."""

from __future__ import annotations

import numpy as np

from lcmt_tf.errors import UserInputError


def stratified_label_split(
    labels: np.ndarray, num_labels: int, num_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (labeled_indices, unlabeled_indices), both sorted and disjoint.

    Each class contributes num_labels / num_classes images, drawn without replacement
    with NumPy's PCG64 generator seeded by `seed` (the same on every machine). The
    unlabeled set is every other training image.
    """
    if num_labels % num_classes:
        raise UserInputError(
            f"--num_labels={num_labels} is not divisible by the {num_classes} classes; "
            f"use a multiple of {num_classes}"
        )
    per_class = num_labels // num_classes
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(num_classes):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class + 1:
            raise UserInputError(
                f"--num_labels={num_labels} needs {per_class} labeled images of class "
                f"{label} plus unlabeled ones, but it has {len(members)} images"
            )
        chosen.append(rng.choice(members, size=per_class, replace=False))
    labeled = np.sort(np.concatenate(chosen))
    unlabeled = np.setdiff1d(np.arange(len(labels)), labeled)
    return labeled, unlabeled
