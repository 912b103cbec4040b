"""Batches for `fit` and `evaluate`, as keras.utils.PyDataset (any Keras backend).

Images stay uint8 until they reach the device; the compiled step normalizes and
augments them. The order of every epoch is a pure function of (seed, epoch), so a
resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import functools

import keras
import numpy as np


@functools.lru_cache(maxsize=8)
def _permutation(seed: int, stream: int, index: int, size: int) -> np.ndarray:
    """A seeded permutation; stream 0 orders the unlabeled set of an epoch, stream 1
    one cycle of the labeled set."""
    order = np.random.default_rng([seed, stream, index]).permutation(size)
    order.flags.writeable = False
    return order


class SemiSupervisedBatches(keras.utils.PyDataset):
    """The training batches of Mean Teacher: dicts of MeanTeacher.BATCH_KEYS.

    An epoch is one pass over the unlabeled images in a seeded random order
    (remainder dropped). The labeled images are an endless stream of seeded
    reshuffles of the labeled set, cycled across epochs.

    Keras does not tell a PyDataset which epoch it serves, so pass the
    `epoch_callback()` to fit (it sets `epoch` at the start of every epoch) and fit
    with shuffle=False (the order is already shuffled here, reproducibly).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        labeled_indices: np.ndarray,
        unlabeled_indices: np.ndarray,
        labeled_batch_size: int,
        unlabeled_batch_size: int,
        seed: int,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.images = images
        self.labels = labels
        self.labeled_indices = np.asarray(labeled_indices)
        self.unlabeled_indices = np.asarray(unlabeled_indices)
        self.labeled_batch_size = labeled_batch_size
        self.unlabeled_batch_size = unlabeled_batch_size
        self.seed = seed
        self.epoch = 0
        self.steps_per_epoch = len(self.unlabeled_indices) // unlabeled_batch_size

    def __len__(self) -> int:
        return self.steps_per_epoch

    def _labeled_positions(self, step: int) -> np.ndarray:
        """Indices into labeled_indices for a global step (cycling seeded reshuffles)."""
        count = len(self.labeled_indices)
        start = (self.epoch * self.steps_per_epoch + step) * self.labeled_batch_size
        positions = np.arange(start, start + self.labeled_batch_size)
        cycles, offsets = np.divmod(positions, count)
        result = np.empty(len(positions), np.int64)
        for cycle in np.unique(cycles):
            here = cycles == cycle
            result[here] = _permutation(self.seed, 1, int(cycle), count)[offsets[here]]
        return result

    def batch_indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(labeled, unlabeled) training-set indices of batch `step` of this epoch."""
        order = _permutation(self.seed, 0, self.epoch, len(self.unlabeled_indices))
        window = order[step * self.unlabeled_batch_size : (step + 1) * self.unlabeled_batch_size]
        return self.labeled_indices[self._labeled_positions(step)], self.unlabeled_indices[window]

    def __getitem__(self, step: int) -> dict[str, np.ndarray]:
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(step)
        labeled, unlabeled = self.batch_indices(step)
        return {
            "labeled_images": self.images[labeled],
            "labels": self.labels[labeled],
            "unlabeled_images": self.images[unlabeled],
        }

    def epoch_callback(self) -> keras.callbacks.Callback:
        """A callback that keeps `epoch` equal to fit's epoch, also when resuming."""
        batches = self

        class SyncEpoch(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                batches.epoch = epoch

        return SyncEpoch()


class LabeledBatches(keras.utils.PyDataset):
    """(images, labels) batches in order, the last one possibly smaller."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels, self.batch_size = images, labels, batch_size

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, index: int):
        window = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.images[window], self.labels[window]
