"""The files of a run directory, and how they are written: each to a temporary name,
then renamed over the previous copy (atomic on POSIX), so a kill during a write leaves
the previous copy readable.

This module imports no deep-learning backend: the experiment commands and the
configuration checks read run directories without starting one.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from lcmt_tf.errors import UserInputError

CONFIG_FILE = "config.json"
INDICES_FILE = "labeled_indices.json"
DATASET_FILE = "dataset.json"
STATE_FILE = "training_state.npz"
RESULTS_FILE = "results.json"
MODEL_FILE = "model.keras"
TENSORBOARD_DIR = "tensorboard"
HISTORY_FILE = "history.csv"
RUN_FILES = (
    CONFIG_FILE,
    INDICES_FILE,
    DATASET_FILE,
    STATE_FILE,
    RESULTS_FILE,
    MODEL_FILE,
    HISTORY_FILE,
)


def atomic_write(path: str, write) -> None:
    """Calls write(temporary_path), then renames it to `path` (atomic on POSIX)."""
    directory = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    os.close(handle)
    try:
        write(temporary)
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def atomic_write_json(path: str, value: Any) -> None:
    def write(temporary):
        with open(temporary, "w") as file:
            json.dump(value, file, indent=2, sort_keys=True)
            file.write("\n")

    atomic_write(path, write)


def atomic_write_text(path: str, text: str) -> None:
    def write(temporary):
        with open(temporary, "w") as file:
            file.write(text)

    atomic_write(path, write)


def atomic_write_csv(path: str, columns: Sequence[str], rows: Sequence[dict]) -> None:
    """Writes `rows` (dicts) as CSV with `columns`, lists joined by spaces, atomically."""

    def write(temporary):
        with open(temporary, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(columns)
            for row in rows:
                values = (row.get(column) for column in columns)
                writer.writerow(
                    [" ".join(map(str, v)) if isinstance(v, list) else v for v in values]
                )

    atomic_write(path, write)


def saved_epoch(path: str) -> int | None:
    """The epoch a training state file continues at, or None if there is none."""
    try:
        with np.load(path) as archive:
            return int(archive["next_epoch"])
    except (OSError, KeyError, ValueError):
        return None


SNAPSHOT_FILE = "training_state_epoch{}.npz"


def snapshot_path(model_dir: str, epoch: int) -> str:
    """Where a run keeps its training state after `epoch` epochs (--keep_epochs)."""
    return os.path.join(model_dir, SNAPSHOT_FILE.format(int(epoch)))


def snapshot_paths(model_dir: str) -> list[str]:
    """The snapshots a run directory holds."""
    return sorted(glob.glob(os.path.join(model_dir, SNAPSHOT_FILE.format("*"))))


def run_weights(model_dir: str) -> tuple[dict, str]:
    """(config dict, path of the weights) of a trained run: model.keras, or the last
    training state of a run stopped before it saved one. Raises UserInputError (one
    line) if `model_dir` is not a run or holds no weights."""
    config_path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isdir(model_dir):
        raise UserInputError(f"--model_dir={model_dir} does not exist")
    if not os.path.isfile(config_path):
        raise UserInputError(f"--model_dir={model_dir} is not a run directory (no {CONFIG_FILE})")
    try:
        with open(config_path) as file:
            config = json.load(file)
    except (OSError, ValueError) as error:
        raise UserInputError(f"cannot read {config_path} ({error})") from None
    for name in (MODEL_FILE, STATE_FILE):
        if os.path.isfile(os.path.join(model_dir, name)):
            return config, os.path.join(model_dir, name)
    raise UserInputError(
        f"--model_dir={model_dir} holds no model: neither {MODEL_FILE} nor {STATE_FILE} "
        "(the run has not completed an epoch)"
    )
