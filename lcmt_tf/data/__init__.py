"""Data: sources (tfds, npz, folder, digits), the labeled split, and batches for fit."""

from lcmt_tf.data.batches import LabeledBatches, SemiSupervisedBatches
from lcmt_tf.data.sources import ImageDataset, load_dataset
from lcmt_tf.data.split import stratified_label_split

__all__ = [
    "ImageDataset",
    "LabeledBatches",
    "SemiSupervisedBatches",
    "load_dataset",
    "stratified_label_split",
]
