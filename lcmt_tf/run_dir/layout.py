"""The files of a run directory: their names, the snapshots of its training state,
and where a trained run's weights are (written atomically with lcmt_tf.files).

This module imports no deep-learning backend: the experiment commands and the
configuration checks read run directories without starting one.
"""

from __future__ import annotations

import glob
import json
import os
import zipfile

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
MODEL_CARD_FILE = "README.md"
RUN_FILES = (
    CONFIG_FILE,
    INDICES_FILE,
    DATASET_FILE,
    STATE_FILE,
    RESULTS_FILE,
    MODEL_FILE,
    HISTORY_FILE,
    MODEL_CARD_FILE,
)


def saved_epoch(path: str) -> int | None:
    """The epoch a training state file continues at, or None if there is none."""
    try:
        with np.load(path) as archive:
            return int(archive["next_epoch"])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None  # none, or damaged: not a state to continue from


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
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise UserInputError(f"--model_dir={model_dir} is a file; it names a run directory")
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
