"""Crash-safe run state: every file is written to a temporary name and renamed.

Keras' BackupAndRestore saves weights and optimizer state, but not the state of the
random generators (augmentation, dropout), and it writes in place. A resumed run
must replay exactly what an uninterrupted run does, and a kill during a write must
leave the previous copy readable, so `ResumeCheckpoint` saves every model variable
(seed-generator states included) and every optimizer variable in one .npz file,
written to a temporary name and renamed over the previous one.
"""

from __future__ import annotations

import os
import shutil
import zipfile

import keras
import numpy as np

from lcmt_tf.errors import UserInputError
from lcmt_tf.files import atomic_write
from lcmt_tf.run_dir.layout import saved_epoch, snapshot_path, snapshot_paths


def _state_variables(model: keras.Model) -> list:
    return [*model.variables, *model.optimizer.variables]


def _callback_key(callback, name: str) -> str:
    return f"callback/{type(callback).__name__}/{name}"


def _stateful(callbacks) -> list:
    """The callbacks whose state is saved: those with get_state/set_state."""
    return [callback for callback in callbacks if hasattr(callback, "get_state")]


def save_training_state(model: keras.Model, path: str, epoch: int, callbacks=()) -> None:
    """Saves every model and optimizer variable, the next epoch and the state of those
    `callbacks` that have one (their `get_state()`) to `path` (.npz)."""
    arrays = {
        f"v{index:05d}": keras.ops.convert_to_numpy(variable)
        for index, variable in enumerate(_state_variables(model))
    }
    arrays["next_epoch"] = np.array(epoch)
    for callback in _stateful(callbacks):
        for name, value in callback.get_state().items():
            arrays[_callback_key(callback, name)] = np.asarray(value)

    def write(temporary):
        with open(temporary, "wb") as file:
            np.savez(file, **arrays)

    atomic_write(path, write)


def load_training_state(model: keras.Model, path: str, callbacks=()) -> int:
    """Restores what save_training_state wrote (the callbacks' states through their
    `set_state()`); returns the epoch to continue at."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    variables = _state_variables(model)
    try:
        return _restore(model, path, variables, callbacks)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise UserInputError(
            f"cannot read the training state {path} ({error}); {_advice(path)}"
        ) from None


def _advice(path: str) -> str:
    """What to do about a damaged training state: its last good copy, if one exists."""
    model_dir = os.path.dirname(path)
    good = [(saved_epoch(snapshot), snapshot) for snapshot in snapshot_paths(model_dir)]
    good = [(epoch, snapshot) for epoch, snapshot in good if epoch is not None and snapshot != path]
    if good:
        epoch, snapshot = max(good)
        return (
            f"the last good copy is {snapshot} (after epoch {epoch}): copy it over {path} "
            "and rerun to resume from there, or use --overwrite to start anew"
        )
    return "no other copy exists: use --overwrite to start anew (the old files move aside)"


def _restore(model, path: str, variables, callbacks) -> int:
    with np.load(path) as archive:
        saved = sum(1 for key in archive.files if key.startswith("v"))
        if saved != len(variables):
            raise ValueError(f"it holds {saved} variables, the model has {len(variables)}")
        for index, variable in enumerate(variables):
            variable.assign(archive[f"v{index:05d}"])
        for callback in _stateful(callbacks):
            prefix = _callback_key(callback, "")
            callback.set_state(
                {
                    key[len(prefix) :]: archive[key]
                    for key in archive.files
                    if key.startswith(prefix)
                }
            )
        return int(archive["next_epoch"])


class ResumeCheckpoint(keras.callbacks.Callback):
    """Saves the full training state at the end of every epoch that ended well, with
    the state of those `callbacks` that have one (get_state/set_state).

    An epoch cut short by another callback (a NaN loss, a collapse) is not saved, so
    the file always holds the last good state. After each epoch in `keep_epochs`
    (counted from 1), the same state is also kept in its own file, `snapshot_path`,
    which later epochs do not overwrite: runs fork from it (--fork_from).
    """

    def __init__(self, path: str, callbacks=(), keep_epochs=()):
        super().__init__()
        self.path = path
        self.callbacks = _stateful(callbacks)
        self.keep_epochs = frozenset(int(epoch) for epoch in keep_epochs)

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training:
            return
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            return
        save_training_state(self.model, self.path, epoch + 1, self.callbacks)
        if epoch + 1 in self.keep_epochs:  # the same file, not a second serialization
            snapshot = snapshot_path(os.path.dirname(self.path), epoch + 1)
            atomic_write(snapshot, lambda temporary: shutil.copyfile(self.path, temporary))
