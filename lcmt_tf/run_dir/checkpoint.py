"""Crash-safe run state: every file is written to a temporary name and renamed, every
variable is stored under its path (its owner and Keras' `variable.path`) with its shape
and dtype checked on restore, and the callbacks' states under a name per callback.

Keras' BackupAndRestore saves weights and optimizer state (and, through
`SemiSupervisedModel.save_own_variables`, the random generators' states), but it
writes in place and keeps no callback state. A resumed run must replay exactly what an
uninterrupted run does, and a kill during a write must leave the previous copy
readable, so `ResumeCheckpoint` saves every model variable
(seed-generator states included) and every optimizer variable in one .npz file,
written to a temporary name and renamed over the previous one.
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile

import keras
import numpy as np

from lcmt_tf.errors import UserInputError
from lcmt_tf.files import atomic_write
from lcmt_tf.run_dir.layout import saved_epoch, snapshot_path, snapshot_paths

FORMAT_VERSION = 2  # 1: variables by position (v00000...); 2: by path, shape and dtype checked


def state_variables(model: keras.Model) -> dict[str, object]:
    """{key: variable} of everything a training state holds: every variable of the
    model and of its optimizer, keyed by Keras' `variable.path` under the part that
    owns it ("student/", "teacher/", "optimizer/", else "model/": the loss weights,
    the augmentation's and dropout's seed states). The student and the teacher have
    the same layer names, hence the prefixes; a path that still repeats gets "#k"."""
    owners = {}
    for prefix, part in (("student", "student"), ("teacher", "teacher")):
        network = getattr(model, part, None)
        for variable in network.variables if network is not None else ():
            owners.setdefault(id(variable), prefix)
    keyed: dict[str, object] = {}
    for variable in model.variables:
        path = _stable_path(variable.path, model.name)
        _add(keyed, f"{owners.get(id(variable), 'model')}/{path}", variable)
    for variable in model.optimizer.variables:
        _add(keyed, f"optimizer/{_stable_path(variable.path, model.optimizer.name)}", variable)
    return keyed


def _stable_path(path: str, owner_name: str) -> str:
    """`variable.path` without what Keras numbers per process: the owning model's or
    optimizer's own name (mean_teacher_1, sgd_2) and the seed generators' numbers, so
    that a model built twice in one process has the same keys."""
    parts = path.split("/")
    if len(parts) > 1 and parts[0] == owner_name:
        parts = parts[1:]
    return "/".join(re.sub(r"^seed_generator_\d+$", "seed_generator", part) for part in parts)


def _add(keyed: dict, key: str, variable) -> None:
    unique, count = key, 1
    while unique in keyed:
        unique, count = f"{key}#{count}", count + 1
    keyed[unique] = variable


def _callback_keys(callbacks) -> list[tuple[str, object]]:
    """(prefix, callback) of the stateful callbacks: "callback/TYPE/" (TYPE#k for a
    second callback of one type)."""
    seen: dict[str, int] = {}
    keyed = []
    for callback in _stateful(callbacks):
        name = type(callback).__name__
        seen[name] = seen.get(name, 0) + 1
        suffix = "" if seen[name] == 1 else f"#{seen[name] - 1}"
        keyed.append((f"callback/{name}{suffix}/", callback))
    return keyed


def _stateful(callbacks) -> list:
    """The callbacks whose state is saved: those with get_state/set_state."""
    return [callback for callback in callbacks if hasattr(callback, "get_state")]


def save_training_state(model: keras.Model, path: str, epoch: int, callbacks=()) -> None:
    """Saves every model and optimizer variable (`state_variables`), the next epoch and
    the state of those `callbacks` that have one (their `get_state()`) to `path`."""
    arrays = {
        f"variable/{key}": keras.ops.convert_to_numpy(variable)
        for key, variable in state_variables(model).items()
    }
    arrays["next_epoch"] = np.array(epoch)
    arrays["format_version"] = np.array(FORMAT_VERSION)
    for prefix, callback in _callback_keys(callbacks):
        for name, value in callback.get_state().items():
            arrays[prefix + name] = np.asarray(value)

    def write(temporary):
        with open(temporary, "wb") as file:
            np.savez(file, **arrays)

    atomic_write(path, write)


def load_training_state(model: keras.Model, path: str, callbacks=()) -> int:
    """Restores what save_training_state wrote (the callbacks' states through their
    `set_state()`); returns the epoch to continue at. A state that does not match the
    model (a missing or extra variable, another shape or dtype) is refused with one
    line naming the first mismatch: nothing is restored by position."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        return _restore(model, path, callbacks)
    except UserInputError:
        raise
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
            "and rerun the training to resume from there, or train anew (lcmt train "
            "--overwrite moves the old files aside)"
        )
    return "no other copy exists: train anew (lcmt train --overwrite moves the old files aside)"


def _mismatch(path: str, message: str) -> UserInputError:
    return UserInputError(
        f"the training state {path} does not match this model: {message}; it was written "
        "by another network or configuration (resume with the same settings, or train anew "
        "with lcmt train --overwrite)"
    )


def _readable_as(value: np.ndarray, dtype: str) -> bool:
    """Whether a saved array is restored into a variable of `dtype`: the same dtype, or
    integers that `dtype` holds exactly. Seed generators' states are int64 on
    TensorFlow, uint32 on JAX and int32 on torch, so a state written on one backend
    resumes on another (its random streams continue from the same seeds; each backend
    draws its own numbers from them)."""
    target = np.dtype(dtype)
    if value.dtype == target:
        return True
    if value.dtype.kind not in "iu" or target.kind not in "iu":
        return False
    limits = np.iinfo(target)
    return value.size == 0 or (int(value.min()) >= limits.min and int(value.max()) <= limits.max)


def _restore(model, path: str, callbacks) -> int:
    with np.load(path) as archive:
        if "format_version" not in archive.files:
            raise UserInputError(
                f"{path} is a training state in lcmt_tf's first format (variables by "
                "position, which a change of Keras or of the model can silently swap): "
                "resume it with the lcmt_tf version that wrote it, or start anew with "
                "--overwrite"
            )
        version = int(archive["format_version"])
        if version != FORMAT_VERSION:
            raise UserInputError(
                f"{path} is a training state of format {version}; this lcmt_tf reads "
                f"format {FORMAT_VERSION}: resume it with the version that wrote it"
            )
        variables = state_variables(model)
        saved = {key[len("variable/") :] for key in archive.files if key.startswith("variable/")}
        for key, variable in variables.items():  # every check before any assignment
            if key not in saved:
                raise _mismatch(path, f"it has no {key}")
            value = archive[f"variable/{key}"]
            if tuple(value.shape) != tuple(variable.shape):
                raise _mismatch(
                    path, f"{key} is {tuple(value.shape)} there, {tuple(variable.shape)} here"
                )
            if not _readable_as(value, keras.backend.standardize_dtype(variable.dtype)):
                raise _mismatch(path, f"{key} is {value.dtype} there, {variable.dtype} here")
        extra = sorted(saved - set(variables))
        if extra:
            raise _mismatch(path, f"it holds {extra[0]}, which this model does not have")
        for key, variable in variables.items():
            value = archive[f"variable/{key}"]
            variable.assign(value.astype(keras.backend.standardize_dtype(variable.dtype)))
        for prefix, callback in _callback_keys(callbacks):
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
