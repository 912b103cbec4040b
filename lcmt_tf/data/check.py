"""`train.py --check_data`: what a run would train on, and what is wrong with it,
before any training: counts per class and split, image size, channel statistics,
and labeled images that also appear in the evaluation set (by content hash)."""

from __future__ import annotations

import hashlib

import numpy as np

from lcmt_tf.config import TrainConfig
from lcmt_tf.errors import UserInputError


def image_hashes(images: np.ndarray) -> list[str]:
    return [hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest() for image in images]


def check_data(config: TrainConfig) -> tuple[str, list[str]]:
    """(a readable summary, the problems found, one line each). Data that cannot be
    read at all raises UserInputError instead."""
    from lcmt_tf.data.split import stratified_label_split
    from lcmt_tf.data.training_data import evaluation_set, load_run_dataset

    dataset = load_run_dataset(config)
    problems = []
    try:
        config.check_against_data(dataset)
    except UserInputError as error:
        problems.append(str(error))
    images, labels = dataset.training_pool()
    labeled = np.arange(len(dataset.y_train))
    if not config.labels_all() and not problems:
        labeled, _ = stratified_label_split(
            labels, config.num_labels, dataset.num_classes, config.label_seed
        )
    is_labeled = np.zeros(len(labels), bool)
    is_labeled[labeled] = True
    mean, std = dataset.channel_mean_std()
    height, width, channels = dataset.image_shape
    validation = bool(len(dataset.y_validation))
    lines = [
        f"data set: {config.dataset}",
        f"images: {height}x{width}, {channels} channel{'s' if channels > 1 else ''}; "
        f"channel mean {np.round(mean, 4).tolist()}, std {np.round(std, 4).tolist()}",
        f"evaluation: {evaluation_set(config)}",
        "",
        f"| class | train | labeled | unlabeled | test |{' validation |' if validation else ''}",
        f"|---|---|---|---|---|{'---|' if validation else ''}",
    ]
    for index, name in enumerate(dataset.class_names):
        members = dataset.y_train == index
        held_out = f" {int((dataset.y_validation == index).sum())} |" if validation else ""
        lines.append(
            f"| {name} | {int(members.sum())} | {int(is_labeled[: len(members)][members].sum())} "
            f"| {int((~is_labeled[: len(members)][members]).sum())} "
            f"| {int((dataset.y_test == index).sum())} |{held_out}"
        )
    if len(dataset.x_unlabeled):
        lines.append(
            f"| (unlabeled/ folder) | — | 0 | {len(dataset.x_unlabeled)} | — |"
            f"{' — |' if validation else ''}"
        )
    lines.append(
        f"| total | {len(dataset.y_train)} | {int(is_labeled.sum())} "
        f"| {int((~is_labeled).sum())} | {len(dataset.y_test)} |"
        f"{f' {len(dataset.y_validation)} |' if validation else ''}"
    )
    evaluation_images = np.concatenate([dataset.x_test, dataset.x_validation])
    test_hashes = set(image_hashes(evaluation_images))
    duplicated = [
        int(index) for index, digest in zip(labeled, image_hashes(images[labeled]))
        if digest in test_hashes
    ]  # fmt: skip
    lines.append("")
    lines.append(f"labeled images also in the evaluation set (same pixels): {len(duplicated)}")
    if duplicated:
        problems.append(
            f"{len(duplicated)} labeled training images also appear in the evaluation set "
            f"(training-pool indices {duplicated[:5]}{' ...' if len(duplicated) > 5 else ''}); "
            "remove them from one of the two"
        )
    lines += ["", *left_out(config, dataset)]
    return "\n".join(lines), problems


def left_out(config: TrainConfig, dataset) -> list[str]:
    """What the data set leaves out of the run, and why, one line each: a folder's
    test classes that train/ lacks and its files that are not images, and classes with
    fewer than MIN_TRAINING_IMAGES training images."""
    from lcmt_tf.data.sources import MIN_TRAINING_IMAGES, source_kind

    notes = []
    if source_kind(config.dataset) == "folder":
        from lcmt_tf.data.folders import folder_listing

        notes += folder_listing(config.dataset.partition(":")[2])["notes"]
    counts = np.bincount(dataset.y_train, minlength=dataset.num_classes)
    for label in np.flatnonzero(counts < MIN_TRAINING_IMAGES):
        notes.append(
            f"class {dataset.class_names[label]} has {counts[label]} training image(s), "
            f"fewer than {MIN_TRAINING_IMAGES}"
        )
    return [f"left out or thin: {note}" for note in notes] or ["left out: nothing"]
