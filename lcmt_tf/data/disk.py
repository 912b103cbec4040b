"""Decoded images on disk, read as needed: unlabeled pools larger than memory.

A pool is one NumPy `.npy` file of uint8 images (N, H, W, C), written row by row as
the images are decoded (`NpyWriter`) and read back by `DiskImages`: indexing it with the
rows of a batch reads those rows only, with one positioned read (`os.pread`) each. NumPy's
own format, so `np.load(path, mmap_mode="r")` reads it too.

Reads go through the page cache but are not mapped into the process, so its resident
memory stays what it holds: a memory map would count every page it touched (and the
kernel maps the pages around each one too) until it is unmapped. Measured, reading random
batches of 96x96 images: the map's resident memory grew past 1.6 GB while positioned
reads stayed at 40 MB, and were faster.

The rows of a batch are first read by the calling thread from the page cache only
(`RWF_NOWAIT`, Linux); the rows that are not cached are then read by a few threads at
once (`READ_THREADS`; the reads release the GIL), so that they wait on the disk together
rather than one after another. Measured on the 2-core machine (benchmarks/disk_pipeline.py):
threads for every read made cached batches four times slower (the threads contend for the
GIL), hence the split. Where `RWF_NOWAIT` does not exist, one thread reads every row.

`ImagePool` puts a few image arrays end to end (the labeled images, then the unlabeled
ones) without copying them: the training pool that `SemiSupervisedBatches` indexes.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Sequence

import numpy as np

BLOCK_BYTES = 16 * 2**20  # of uint8 images a blockwise computation reads at a time
READ_THREADS = 8  # positioned reads of one batch in flight at once
PARALLEL_FROM = 16  # uncached rows: fewer are read by the calling thread alone
NOWAIT = getattr(os, "RWF_NOWAIT", None)  # Linux: read only what the page cache holds

_readers: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None


def _reader_threads() -> concurrent.futures.ThreadPoolExecutor:
    """The process's reading threads, made on first use (and again in a forked child,
    which inherits the pool but not its threads)."""
    global _readers
    if _readers is None or _readers[0] != os.getpid():
        _readers = (os.getpid(), concurrent.futures.ThreadPoolExecutor(READ_THREADS, "lcmt-read"))
    return _readers[1]


class DiskImages:
    """A read-only uint8 image array (N, H, W, C) in a `.npy` file.

    `images[rows]` (an int, a slice or an array of indices) returns a NumPy array of
    those rows, read from the file; `len`, `shape`, `dtype` and `ndim` are the
    array's. `np.asarray(images)` reads everything: use it for small arrays only.
    Pickles as its path (each process opens the file itself).
    """

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(version)
            if read_header is None:
                raise ValueError(f"{path}: .npy format {version} is not read here")
            shape, fortran_order, dtype = read_header(file)
            self.offset = file.tell()
        if fortran_order or dtype != np.uint8 or len(shape) != 4:
            raise ValueError(f"{path} is not a C-ordered uint8 (N, H, W, C) array")
        self.shape = tuple(int(size) for size in shape)
        self.dtype = np.dtype(np.uint8)
        self.row_bytes = int(np.prod(self.shape[1:]))
        expected = self.offset + self.shape[0] * self.row_bytes
        if os.path.getsize(path) < expected:
            raise ValueError(f"{path} is cut off ({os.path.getsize(path)} of {expected} bytes)")
        self._descriptor = None

    @property
    def ndim(self) -> int:
        return 4

    def __len__(self) -> int:
        return self.shape[0]

    def _file(self) -> int:
        if self._descriptor is None:
            self._descriptor = os.open(self.path, os.O_RDONLY)
        return self._descriptor

    def _read_into(self, buffer: np.ndarray, first: int, flags: int = 0) -> bool:
        """Fills the uint8 array `buffer` with the rows from row `first` on, in one
        positioned read; False when `flags` has RWF_NOWAIT and they are not (all) in
        the page cache."""
        try:
            count = os.preadv(
                self._file(), [memoryview(buffer)], self.offset + first * self.row_bytes, flags
            )
        except BlockingIOError:
            return False
        if count != buffer.nbytes and not flags:
            raise OSError(f"{self.path}: short read at row {first}")
        return count == buffer.nbytes

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, (int, np.integer)):
            return self[np.array([rows])][0]
        if isinstance(rows, slice):
            first, stop, step = rows.indices(len(self))
            if step == 1:  # one read
                block = np.empty((max(stop - first, 0), *self.shape[1:]), np.uint8)
                if len(block):
                    self._read_into(block, first)
                return block
            rows = np.arange(first, stop, step)
        rows = np.asarray(rows, np.int64)
        rows = np.where(rows < 0, rows + len(self), rows)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows out of range 0..{len(self) - 1}")
        result = np.empty((len(rows), self.row_bytes), np.uint8)
        wanted = rows.tolist()

        def read(positions):
            for position in positions:
                self._read_into(result[position], wanted[position])

        self._file()  # opened once, before any thread reads
        if NOWAIT is None:
            missed = list(range(len(wanted)))
        else:  # what the page cache holds, at once; the rest is missed
            missed = [
                position
                for position, row in enumerate(wanted)
                if not self._read_into(result[position], row, NOWAIT)
            ]
        if NOWAIT is None or len(missed) < PARALLEL_FROM:
            read(missed)
        else:  # each thread a share of the missed rows; their errors are raised here
            shares = np.array_split(np.asarray(missed), READ_THREADS)
            list(_reader_threads().map(read, [share.tolist() for share in shares]))
        return result.reshape(len(rows), *self.shape[1:])

    def __array__(self, dtype=None, copy=None):
        values = self[:]
        return values if dtype is None else values.astype(dtype)

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])

    def __del__(self):
        if getattr(self, "_descriptor", None) is not None:
            os.close(self._descriptor)

    def __repr__(self) -> str:
        return f"DiskImages({self.path!r}, shape={self.shape})"


class ImagePool:
    """Image arrays end to end, indexable as one without copying them: `pool[rows]`
    reads each row from the array that holds it, in the order asked."""

    def __init__(self, parts: Sequence):
        self.parts = [part for part in parts if len(part)]
        if not self.parts:
            raise ValueError("an ImagePool needs at least one non-empty array")
        shapes = {tuple(part.shape[1:]) for part in self.parts}
        if len(shapes) > 1:
            raise ValueError(f"the arrays of an ImagePool have different image shapes {shapes}")
        self.starts = np.cumsum([0] + [len(part) for part in self.parts])
        self.shape = (int(self.starts[-1]), *shapes.pop())
        self.dtype = np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, slice):
            rows = np.arange(len(self))[rows]
        rows = np.asarray(rows)
        if rows.ndim == 0:
            return self[rows[None]][0]
        rows = np.where(rows < 0, rows + len(self), rows)
        result = np.empty((len(rows), *self.shape[1:]), self.dtype)
        part_of = np.searchsorted(self.starts, rows, side="right") - 1
        for index, part in enumerate(self.parts):
            mine = part_of == index
            if mine.any():
                result[mine] = part[rows[mine] - self.starts[index]]
        return result

    def __array__(self, dtype=None, copy=None):
        values = self[:]
        return values if dtype is None else values.astype(dtype)


NPY_HEADER_BYTES = 128  # the header of the files NpyWriter writes, padding included


class NpyWriter:
    """Writes a uint8 (N, H, W, C) `.npy` file in order, a block of rows at a time,
    without holding it in memory. With `count` None, N is what was written: the header
    has a fixed length (the .npy format pads it with spaces) and is written again on
    `close()`; otherwise `close()` checks that `count` rows were written."""

    def __init__(self, path: str, image_shape: tuple[int, ...], count: int | None = None):
        self.path, self.image_shape = path, tuple(int(size) for size in image_shape)
        self.count, self.written = count, 0
        self.file = open(path, "wb")
        self._write_header(count or 0)

    def _write_header(self, count: int) -> None:
        shape = (count, *self.image_shape)
        header = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}"
        header = header.ljust(NPY_HEADER_BYTES - 10 - 1) + "\n"  # magic 6, version 2, size 2
        if len(header) + 10 != NPY_HEADER_BYTES:
            raise ValueError(f"a .npy header for {shape} does not fit {NPY_HEADER_BYTES} bytes")
        self.file.seek(0)
        self.file.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little"))
        self.file.write(header.encode("latin1"))

    def write(self, rows: np.ndarray) -> None:
        if tuple(rows.shape[1:]) != self.image_shape or rows.dtype != np.uint8:
            raise ValueError(
                f"rows of {rows.shape} {rows.dtype} do not fit images of {self.image_shape} uint8"
            )
        self.file.write(np.ascontiguousarray(rows).tobytes())
        self.written += len(rows)

    def close(self) -> None:
        if self.count is None:
            self._write_header(self.written)
        self.file.close()
        if self.count is not None and self.written != self.count:
            raise ValueError(f"{self.path}: {self.written} of {self.count} rows written")


def channel_mean_std(
    parts: Sequence, block_rows: int | None = None
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (in [0, 1] units) over every image of `parts`, a block
    of rows at a time (exact integer sums in float64; by default blocks of BLOCK_BYTES
    of images), so an array on disk is never read whole."""
    count, total, squares = 0, 0.0, 0.0
    for part in parts:
        rows = block_rows or max(1, BLOCK_BYTES // int(np.prod(part.shape[1:])))
        for start in range(0, len(part), rows):
            block = np.asarray(part[start : start + rows])
            count += block.shape[0] * block.shape[1] * block.shape[2]
            total = total + block.sum(axis=(0, 1, 2), dtype=np.float64)
            squares = squares + np.square(block, dtype=np.uint32).sum(
                axis=(0, 1, 2), dtype=np.float64
            )
    mean = total / count / 255.0
    std = np.sqrt(np.maximum(squares / count / 255.0**2 - mean**2, 0.0))
    return np.asarray(mean).tolist(), np.maximum(std, 1e-3).tolist()
