"""Pretrained starts (--init_from): the student (and so the teacher, its copy) starts
from the weights of a `.keras` model, a `.weights.h5` file, or another run directory's
final student, layer by layer, matched by layer name. A layer that does not fit is one
clear error naming it; nothing is loaded by position.

Fine-tuning a pretrained student with Mean Teacher: a lower learning rate than from
scratch (e.g. --lr=0.01 or below) keeps what was learnt; Local Clustering acts on the
features from its start epoch, so a pretrained z with a different scale needs its own
ε (--lc_epsilon_quantile measures it from the data). Every layer trains; to keep
layers fixed, build the student yourself and set `layer.trainable = False` before
MeanTeacher is made (see the README's Python example).
"""

from __future__ import annotations

import os

import keras

from lcmt_tf.errors import UserInputError


def source_model(path: str, build_like) -> keras.Model:
    """The network whose weights --init_from=PATH names: a run directory's student
    (its model.keras), a .keras model (a MeanTeacher's student, or the model itself),
    or a .weights.h5 file loaded into `build_like()` (a network of this run's shape)."""
    if os.path.isdir(path):
        model_file = os.path.join(path, "model.keras")
        if not os.path.isfile(model_file):
            raise UserInputError(
                f"--init_from={path} is a folder without model.keras: give a finished run "
                "directory, a .keras model or a .weights.h5 file"
            )
        path = model_file
    if not os.path.isfile(path):
        raise UserInputError(f"--init_from={path} does not exist")
    if path.endswith(".weights.h5"):
        model = build_like()
        try:
            model.load_weights(path)
        except (ValueError, OSError, KeyError) as error:
            raise UserInputError(
                f"--init_from={path} does not fit this --model: {str(error).splitlines()[0]}"
            ) from None
        return model
    if not path.endswith(".keras"):
        raise UserInputError(
            f"--init_from={path}: give a .keras model, a .weights.h5 file or a run directory"
        )
    try:
        loaded = keras.models.load_model(path)
    except Exception as error:  # Keras raises many kinds for a file it cannot read
        raise UserInputError(
            f"cannot load --init_from={path} ({type(error).__name__}: {str(error)[:150]})"
        ) from None
    return getattr(loaded, "student", loaded)


def copy_weights(source: keras.Model, target: keras.Model, origin: str) -> int:
    """Copies every weighted layer of `target` from the layer of the same name in
    `source`; returns how many layers were copied. The first layer that is missing
    there, or whose weights differ in number or shape, is a UserInputError."""
    by_name = {layer.name: layer for layer in _weighted_layers(source)}
    copied = 0
    for layer in _weighted_layers(target):
        if layer.name not in by_name:
            raise UserInputError(
                f"--init_from={origin} has no layer {layer.name!r} (the first layer of this "
                f"network it lacks; it has {', '.join(sorted(by_name)[:5])}...)"
            )
        theirs, mine = by_name[layer.name].get_weights(), layer.get_weights()
        shapes = [tuple(w.shape) for w in theirs], [tuple(w.shape) for w in mine]
        if shapes[0] != shapes[1]:
            raise UserInputError(
                f"--init_from={origin}: layer {layer.name!r} has weights of shapes "
                f"{shapes[0]} there and {shapes[1]} here (the first layer that does not fit)"
            )
        layer.set_weights(theirs)
        copied += 1
    return copied


def _weighted_layers(model: keras.Model) -> list:
    """The layers that own weights, nested models flattened."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += _weighted_layers(layer)
        elif layer.weights:
            found.append(layer)
    return found
