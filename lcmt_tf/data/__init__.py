"""Data: sources (tfds, npz, folder, digits), the labeled split, and batches for fit."""

from lcmt_tf.data.sources import UNLABELED, ImageDataset, load_dataset, source_kind
from lcmt_tf.data.split import stratified_holdout, stratified_label_split


def __getattr__(name):
    # The batches need Keras; importing them lazily keeps config validation light.
    if name in ("LabeledBatches", "SemiSupervisedBatches"):
        from lcmt_tf.data import batches

        return getattr(batches, name)
    if name in ("DiskImages", "ImagePool"):
        from lcmt_tf.data import disk

        return getattr(disk, name)
    raise AttributeError(f"module 'lcmt_tf.data' has no attribute {name!r}")


__all__ = [
    "UNLABELED",
    "DiskImages",
    "ImagePool",
    "ImageDataset",
    "LabeledBatches",
    "SemiSupervisedBatches",
    "load_dataset",
    "source_kind",
    "stratified_holdout",
    "stratified_label_split",
]
