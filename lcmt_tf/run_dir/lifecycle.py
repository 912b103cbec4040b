"""A run directory's life: checked before anything is written, started (created,
restored, its metadata written), and closed with the final model and results."""

from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
import time
import zipfile
from typing import Any

from lcmt_tf.config import RESUMABLE_DIFFERENCES, TrainConfig
from lcmt_tf.data import ImageDataset
from lcmt_tf.data.training_data import evaluation_set
from lcmt_tf.distribute import set_batch_norm_synchronized
from lcmt_tf.errors import UserInputError
from lcmt_tf.files import atomic_write, atomic_write_json, remove_temporaries
from lcmt_tf.mean_teacher import MeanTeacher
from lcmt_tf.run_dir.checkpoint import load_training_state
from lcmt_tf.run_dir.layout import (
    CONFIG_FILE,
    DATASET_FILE,
    HISTORY_FILE,
    INDICES_FILE,
    MODEL_CARD_FILE,
    MODEL_FILE,
    RESULTS_FILE,
    RUN_FILES,
    STATE_FILE,
    TENSORBOARD_DIR,
    saved_epoch,
    snapshot_paths,
)
from lcmt_tf.run_dir.model_card import write_model_card


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in config.items() if key not in RESUMABLE_DIFFERENCES}


def check_run_directory(config: TrainConfig) -> bool:
    """Checks model_dir before anything is written; returns True to resume.

    Refuses a directory that is not writable, or that holds a run with another
    configuration (unless --overwrite).
    """
    model_dir = config.model_dir
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise UserInputError(f"--model_dir={model_dir} is a file, not a directory")
    probe = model_dir if os.path.isdir(model_dir) else os.path.dirname(os.path.abspath(model_dir))
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    try:
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as error:
        raise UserInputError(
            f"--model_dir={model_dir} is not writable ({error.strerror}); choose another directory"
        ) from None
    config_path = os.path.join(model_dir, CONFIG_FILE)
    if config.overwrite:
        return False
    if not os.path.exists(config_path):
        found = run_files_in(model_dir)
        if found:
            raise UserInputError(
                f"--model_dir={model_dir} holds a run's files ({', '.join(found[:3])}) but no "
                f"{CONFIG_FILE}, so it cannot be resumed as this run; use another --model_dir, "
                "or --overwrite to move those files aside"
            )
        return False
    try:
        with open(config_path) as file:
            # Through TrainConfig, so that settings added since it was written compare
            # at their defaults.
            previous = _comparable(TrainConfig.from_dict(json.load(file)).to_dict())
    except (OSError, ValueError, TypeError) as error:
        raise UserInputError(
            f"cannot read {config_path} ({error}); use --overwrite to start anew"
        ) from None
    current = _comparable(config.to_dict())
    differences = sorted(
        key for key in previous.keys() | current.keys() if previous.get(key) != current.get(key)
    )
    if differences:
        shown = ", ".join(
            f"{key}: {previous.get(key)!r} -> {current.get(key)!r}" for key in differences[:3]
        )
        raise UserInputError(
            f"--model_dir={model_dir} holds a run with a different configuration ({shown}); "
            "use another --model_dir, or --overwrite to replace it"
        )
    return True


def damaged(path: str, error, finished: bool = True) -> UserInputError:
    """The one line for a damaged run file: named, and what to do; nothing was changed."""
    what = "of the finished run" if finished else "of the run"
    return UserInputError(
        f"{path} {what} is damaged ({error}); nothing was changed: restore it from a copy, "
        "or remove it and rerun to write it again from the run's state, or train anew "
        "(--overwrite moves the old files aside)"
    )


def _read_json(path: str, keys: tuple[str, ...]) -> dict:
    with open(path) as file:
        value = json.load(file)
    if not isinstance(value, dict) or not set(keys) <= set(value):
        raise ValueError(f"it lacks {sorted(set(keys) - set(value or {}))}")
    return value


def _check_history(path: str, epochs: int) -> None:
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    for row in rows:
        if None in row or None in row.values() or not str(row.get("epoch", "")).isdigit():
            raise ValueError(f"row {rows.index(row) + 1} is cut off or garbled")
    if [int(row["epoch"]) for row in rows] != list(range(1, epochs + 1)):
        raise ValueError(f"it does not hold one row for each of the {epochs} epochs")


def finished_results(config: TrainConfig) -> dict[str, Any] | None:
    """The results of the run in model_dir if it has trained every epoch and written
    them (rerunning it changes nothing), after checking that each of its files is
    readable: a damaged one is named (UserInputError), never rewritten. None when the
    run is not finished."""
    model_dir = config.model_dir
    state = os.path.join(model_dir, STATE_FILE)
    results_path = os.path.join(model_dir, RESULTS_FILE)
    if config.overwrite or not os.path.exists(results_path):
        return None
    next_epoch = saved_epoch(state)
    if next_epoch is None or next_epoch < config.epochs:
        return None  # stopped early, or its state is unreadable: the training says so
    checks = [
        (results_path, lambda path: _read_json(path, ("epochs_run", "teacher_test_error"))),
        (
            os.path.join(model_dir, INDICES_FILE),
            lambda path: _read_json(path, ("labeled_indices",)),
        ),
        (os.path.join(model_dir, DATASET_FILE), lambda path: _read_json(path, ("class_names",))),
        (os.path.join(model_dir, HISTORY_FILE), lambda path: _check_history(path, next_epoch)),
        (os.path.join(model_dir, MODEL_FILE), _check_zip),
    ]
    for path, check in checks:
        if path.endswith(MODEL_FILE) and not os.path.exists(path):
            continue  # a run stopped by a guard saves no model
        try:
            check(path)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
            raise damaged(path, error) from None
    return _read_json(results_path, ())


def _check_zip(path: str) -> None:
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
    if bad is not None:
        raise ValueError(f"its member {bad} is corrupt")


def check_metadata(path: str, expected: dict[str, Any]) -> bool:
    """Whether the run file `path` must be written: not when it holds `expected`
    already. A damaged one, or one that holds something else, is named (the run would
    otherwise overwrite a record of what it trained on)."""
    if not os.path.exists(path):
        return True
    try:
        with open(path) as file:
            held = json.load(file)
    except (OSError, ValueError) as error:
        raise damaged(path, error, finished=False) from None
    if not isinstance(held, dict):
        raise damaged(path, "not a JSON object", finished=False)
    expected = json.loads(json.dumps(expected))
    different = sorted(key for key in held.keys() & expected.keys() if held[key] != expected[key])
    if different:
        raise UserInputError(
            f"{path} holds other values ({', '.join(different[:3])}) than this run has: it "
            "was changed, or the data set was; nothing was changed: restore it, or train "
            "anew (--overwrite moves the old files aside)"
        )
    return held.keys() != expected.keys()  # written by a version with other fields


def run_files_in(model_dir: str) -> list[str]:
    """The names of the files and folders lcmt_tf writes that `model_dir` holds."""
    if not os.path.isdir(model_dir):
        return []
    names = [*RUN_FILES, TENSORBOARD_DIR]
    found = [name for name in names if os.path.exists(os.path.join(model_dir, name))]
    return found + [os.path.basename(path) for path in snapshot_paths(model_dir)]


def move_run_aside(model_dir: str) -> str | None:
    """--overwrite: moves what lcmt_tf wrote in `model_dir` (run_files_in) into a new
    folder MODEL_DIR/replaced-YYYYmmdd-HHMMSS/, and returns it (None if there was
    nothing). The user's own files stay where they are; nothing is deleted."""
    found = run_files_in(model_dir)
    if not found:
        return None
    base = aside = os.path.join(model_dir, time.strftime("replaced-%Y%m%d-%H%M%S"))
    suffix = 1
    while os.path.exists(aside):
        aside, suffix = f"{base}.{suffix}", suffix + 1
    os.makedirs(aside)
    for name in found:
        os.replace(os.path.join(model_dir, name), os.path.join(aside, name))
    logging.warning("--overwrite: moved the previous run's %s to %s", ", ".join(found), aside)
    return aside


def start_run_directory(
    config: TrainConfig,
    model: MeanTeacher,
    dataset: ImageDataset,
    labeled,
    restore_from: str | None,
    callbacks,
    is_chief: bool = True,
) -> int:
    """Creates (or, with --overwrite, clears) model_dir, restores the training state
    (and the callbacks' states) from `restore_from` (this run's resume file, or the
    state of the run it forks from), and writes the run's metadata; returns the epoch
    to start at. A process other than the chief only restores."""
    model_dir = config.model_dir
    if not is_chief:
        return load_training_state(model, restore_from, callbacks) if restore_from else 0
    os.makedirs(model_dir, exist_ok=True)
    left = remove_temporaries(model_dir)  # from a process killed mid-write
    if left:
        logging.info("removed %s, left by a stopped run mid-write", ", ".join(left))
    if config.overwrite:
        move_run_aside(model_dir)
    initial_epoch = 0
    if restore_from:
        initial_epoch = load_training_state(model, restore_from, callbacks)
        logging.info(
            "Restored %s: %s starts at epoch %d.", restore_from, model_dir, initial_epoch + 1
        )
    metadata = {
        DATASET_FILE: describe_dataset(config, dataset),
        INDICES_FILE: {
            "dataset": config.dataset,
            "label_seed": config.label_seed,
            "labeled_indices": labeled.tolist(),
        },
    }
    resuming = restore_from == os.path.join(model_dir, STATE_FILE)
    # A resumed run checks what it wrote when it started (before writing anything), and
    # leaves it as it is.
    stale = [
        name
        for name, values in metadata.items()
        if not resuming or check_metadata(os.path.join(model_dir, name), values)
    ]
    atomic_write_json(os.path.join(model_dir, CONFIG_FILE), config.to_dict())
    for name in stale:
        atomic_write_json(os.path.join(model_dir, name), metadata[name])
    return initial_epoch


def describe_dataset(config: TrainConfig, dataset: ImageDataset) -> dict[str, Any]:
    """dataset.json: what evaluate, predict and export need to know of the data."""
    return {
        "dataset": config.dataset,
        "class_names": list(dataset.class_names),
        "image_shape": list(dataset.image_shape),
        "num_train_labeled_classes": int(len(dataset.y_train)),
        "num_unlabeled_folder": int(len(dataset.x_unlabeled)),
        "num_test": int(len(dataset.y_test)),
        "num_validation": int(len(dataset.y_validation)),
        "evaluation_set": evaluation_set(config),
    }


def write_final_files(config: TrainConfig, model: MeanTeacher, results: dict[str, Any]) -> None:
    """Saves the model of a run that ended well (model.keras), writes results.json and
    the run's model card (README.md)."""
    if results["stop_reason"] is None:
        # Synchronized batch norm is a training setting; the saved model loads anywhere.
        set_batch_norm_synchronized(model, False)
        atomic_write(os.path.join(config.model_dir, MODEL_FILE), model.save)
    atomic_write_json(os.path.join(config.model_dir, RESULTS_FILE), results)
    write_run_model_card(config.model_dir, os.path.join(config.model_dir, MODEL_CARD_FILE))


def write_run_model_card(model_dir: str, path: str) -> bool:
    """Writes the model card of the run in `model_dir` at `path` (its results.json and
    dataset.json); False when the run has no results yet."""
    try:
        with open(os.path.join(model_dir, RESULTS_FILE)) as file:
            results = json.load(file)
        with open(os.path.join(model_dir, DATASET_FILE)) as file:
            dataset_info = json.load(file)
    except (OSError, ValueError):
        return False
    name = os.path.basename(os.path.normpath(os.path.abspath(model_dir)))
    write_model_card(
        path, results, dataset_info, f"lcmt_tf run {name} ({results['config']['dataset']})"
    )
    return True
