"""The data of a run: its data set (with the validation split held out), the labeled
and unlabeled indices into its training pool, and the batches `fit` reads."""

from __future__ import annotations

import dataclasses

import numpy as np

from lcmt_tf.config import TrainConfig, source_kind
from lcmt_tf.data.batches import SemiSupervisedBatches
from lcmt_tf.data.sources import ImageDataset, load_dataset
from lcmt_tf.data.split import stratified_holdout, stratified_label_split


def load_run_dataset(config: TrainConfig) -> ImageDataset:
    """The run's data set; with --validation_fraction, the held-out share of each
    class's labeled training images is its validation split (`x_validation`), out of
    the training pool."""
    dataset = load_dataset(
        config.dataset,
        config.data_dir,
        config.download,
        image_size=config.image_size_pair(),
        cache_dir=config.cache_directory(),
        max_image_pixels=config.max_image_pixels,
    )
    if not config.validation_fraction:
        return dataset
    kept, held_out = stratified_holdout(
        dataset.y_train, config.validation_fraction, config.label_seed
    )
    return dataclasses.replace(
        dataset,
        x_train=dataset.x_train[kept],
        y_train=dataset.y_train[kept],
        x_validation=dataset.x_train[held_out],
        y_validation=dataset.y_train[held_out],
    )


def evaluation_set(config: TrainConfig) -> str:
    """What the run evaluates on while it trains, in words (results.json)."""
    if config.validation_fraction:
        return (
            f"validation split: {config.validation_fraction:g} of each class's labeled "
            f"training images, held out (--label_seed={config.label_seed}); the test set "
            "is evaluated once, at the end"
        )
    return "test set"


def load_training_data(
    config: TrainConfig, process_share: tuple[int, int] = (0, 1)
) -> tuple[ImageDataset, np.ndarray, np.ndarray, SemiSupervisedBatches]:
    """(dataset, labeled indices, unlabeled indices, SemiSupervisedBatches) of a run,
    after checking the settings against the data. Indices are into the training pool
    (`ImageDataset.training_pool`): the labeled classes' images, then unlabeled/. The
    batches are this process's share of every global batch (`Distribution.process_share`)."""
    dataset = load_run_dataset(config)
    config.check_against_data(dataset)
    images, labels = dataset.training_pool()
    if config.labels_all():
        labeled = np.arange(len(dataset.y_train))
        unlabeled = np.arange(len(dataset.y_train), len(labels))
    else:
        labeled, unlabeled = stratified_label_split(
            labels, config.num_labels, dataset.num_classes, config.label_seed
        )
    batches = SemiSupervisedBatches(
        images,
        labels,
        labeled,
        unlabeled,
        config.labeled_batch_size,
        config.unlabeled_batch_size,
        seed=config.seed,
        process_share=process_share,
    )
    return dataset, labeled, unlabeled, batches


def pool_paths(config: TrainConfig) -> list[str] | None:
    """The image file of each image of a folder run's training pool, in pool order
    (its train/ images, less the validation split, then unlabeled/); None for the
    other sources, whose images have no files."""
    if source_kind(config.dataset) != "folder":
        return None
    from lcmt_tf.data.folders import folder_listing

    listing = folder_listing(config.dataset.partition(":")[2])
    train = [path for path, _ in listing["train"]]
    if config.validation_fraction:
        labels = np.asarray([label for _, label in listing["train"]], np.int32)
        kept, _ = stratified_holdout(labels, config.validation_fraction, config.label_seed)
        train = [train[index] for index in kept]
    return train + [path for path, _ in listing.get("unlabeled", [])]
