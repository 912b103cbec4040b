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

    With `process_share` = (i, n), every batch is the i-th of n equal slices of the
    global batch: what process i of a multi-process JAX run feeds
    (`lcmt_tf.distribute.Distribution`).

    An epoch is one pass over the unlabeled images in a seeded random order
    (remainder dropped). The labeled images are an endless stream of seeded
    reshuffles of the labeled set, cycled across epochs.

    Keras does not tell a PyDataset which epoch it serves: `MeanTeacher.fit` adds the
    `epoch_callback()` (it sets `epoch` at the start of every epoch, before the other
    callbacks) and leaves Keras' shuffle off (the order is already shuffled here,
    reproducibly). With another model, pass both yourself. PyDataset's own
    `on_epoch_begin` hook is not enough: it runs after the callbacks' `on_epoch_begin`
    (which measure on this epoch's batches) and is not told the epoch number.
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
        process_share: tuple[int, int] = (0, 1),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.process_share = _checked_share(process_share, labeled_batch_size, unlabeled_batch_size)
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
        return self.batch(step, self.process_share)

    def batch(self, step: int, share: tuple[int, int] = (0, 1)) -> dict[str, np.ndarray]:
        """The `share` = (i, n) slice of global batch `step` of this epoch; by default
        the whole global batch, whatever this process feeds to fit."""
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(step)
        labeled, unlabeled = (_share(rows, share) for rows in self.batch_indices(step))
        return {
            "labeled_images": self.images[labeled],
            "labels": self.labels[labeled],
            "unlabeled_images": self.images[unlabeled],
        }

    def global_batches(self) -> "GlobalBatches":
        """The whole global batches of the current epoch, indexable like this data set
        (what every process measures on, whatever share it feeds to fit)."""
        return GlobalBatches(self)

    def epoch_callback(self) -> keras.callbacks.Callback:
        """A callback that keeps `epoch` equal to fit's epoch, also when resuming."""
        return _SyncEpoch(self)


class _SyncEpoch(keras.callbacks.Callback):
    def __init__(self, batches: SemiSupervisedBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.epoch = epoch


class GlobalBatches:
    """`batches[step]` is global batch `step` of the epoch `batches` is at."""

    def __init__(self, batches: SemiSupervisedBatches):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, step: int) -> dict[str, np.ndarray]:
        return self.batches.batch(step)


class LabeledBatches(keras.utils.PyDataset):
    """(images, labels) batches in order, the last one possibly smaller.

    For data-parallel evaluation on JAX, where every batch must split evenly across
    `pad_multiple` devices, batches are (images, labels, sample weights): the last one
    padded with weight-0 copies of its first image. With `process_share` = (i, n) each
    batch is the i-th of n equal slices (process i of a multi-process run).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        pad_multiple: int = 1,
        process_share: tuple[int, int] = (0, 1),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.pad_multiple = int(pad_multiple)
        self.process_share = process_share
        if self.pad_multiple % process_share[1] or batch_size % self.pad_multiple:
            raise ValueError(
                f"batch_size {batch_size} and pad_multiple {pad_multiple} must split into "
                f"{process_share[1]} process shares"
            )

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, index: int):
        window = slice(index * self.batch_size, (index + 1) * self.batch_size)
        images, labels = self.images[window], self.labels[window]
        if self.pad_multiple == 1:
            return images, labels
        rows = np.arange(-(-len(images) // self.pad_multiple) * self.pad_multiple)
        weights = (rows < len(images)).astype("float32")
        rows = np.where(rows < len(images), rows, 0)
        mine = _share(np.arange(len(rows)), self.process_share)
        return images[rows[mine]], labels[rows[mine]], weights[mine]


def _checked_share(share: tuple[int, int], *batch_sizes: int) -> tuple[int, int]:
    index, count = share
    if not 0 <= index < count or any(size % count for size in batch_sizes):
        raise ValueError(f"process share {share} does not split batches of {batch_sizes}")
    return int(index), int(count)


def _share(rows: np.ndarray, share: tuple[int, int]) -> np.ndarray:
    """The `share` = (i, n) slice of `rows`: the i-th of n equal parts."""
    index, count = share
    size = len(rows) // count
    return rows[index * size : (index + 1) * size]
