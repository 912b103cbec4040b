"""Any Keras network as the feature extractor g: `from_backbone` wraps it into the
`[features, logits]` contract, with a linear projection to the feature dimension
Local Clustering acts on. `--model=keras_applications:NAME` builds one from
keras.applications, with random weights or, with --backbone_weights, a local weights
file; `--model=keras_hub:PRESET_DIR` loads a KerasHub backbone with its weights from a
local preset folder. Nothing is downloaded."""

from __future__ import annotations

import os

import keras
from keras import layers

from lcmt_tf.errors import UserInputError


def from_backbone(
    backbone: keras.Model,
    num_classes: int,
    feature_dim: int = 128,
    input_shape: tuple[int, int, int] | None = None,
    name: str | None = None,
) -> keras.Model:
    """images -> backbone -> (global average pooling of a feature map) -> dense
    projection to `feature_dim` = z -> dense(num_classes) = logits.

    Args:
        backbone: a Keras model mapping images to a feature map (N, H', W', C) or a
            vector (N, C), e.g. keras.applications.ResNet50V2(include_top=False,
            weights=None, input_shape=(32, 32, 3)).
        num_classes: classifier outputs.
        feature_dim: size of z, the representation LC pulls together.
        input_shape: the image shape, if the backbone does not fix one.
    """
    shape = input_shape or tuple(backbone.input_shape[1:])
    if None in shape:
        raise ValueError(f"give input_shape: {backbone.name} accepts images of any size")
    inputs = keras.Input(shape=shape, name="images")
    x = backbone(inputs)
    if len(x.shape) == 4:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    elif len(x.shape) != 2:
        raise ValueError(f"{backbone.name} outputs shape {x.shape}: need (N, H, W, C) or (N, C)")
    features = layers.Dense(feature_dim, name="features")(x)
    logits = layers.Dense(num_classes, name="logits")(features)
    return keras.Model(inputs, [features, logits], name=name or f"{backbone.name}_lcmt")


def keras_application(
    num_classes: int,
    input_shape: tuple[int, int, int],
    width: float,
    application: str,
    weights: str | None = None,
) -> keras.Model:
    """keras.applications.APPLICATION(include_top=False) through `from_backbone`, with
    random weights or those of the file `weights` (the backbone without its top, as
    keras.applications' own `weights=` argument takes it; nothing is downloaded);
    --width does not apply."""
    builder = getattr(keras.applications, application, None)
    if not callable(builder):
        raise UserInputError(
            f"--model=keras_applications:{application}: keras.applications has no "
            f"{application!r} (e.g. ResNet50V2, MobileNetV2, EfficientNetB0)"
        )
    if width != 1.0:
        raise UserInputError("--width applies to the built-in networks, not keras_applications")
    try:
        backbone = builder(include_top=False, weights=weights, input_shape=input_shape)
    except (ValueError, OSError, KeyError) as error:
        what = (
            f"--backbone_weights={weights}"
            if weights
            else f"--model=keras_applications:{application}"
        )
        raise UserInputError(f"{what}: {str(error).splitlines()[0][:200]}") from None
    return from_backbone(backbone, num_classes)


def keras_hub_backbone(
    num_classes: int, input_shape: tuple[int, int, int], width: float, preset: str
) -> keras.Model:
    """A KerasHub image backbone with its weights, from the local preset folder `preset`
    (what `Backbone.save_to_preset` writes, or a downloaded preset: config.json,
    model.weights.h5, metadata.json), through `from_backbone`; --width does not apply.
    Needs the keras-hub package; nothing is downloaded."""
    if width != 1.0:
        raise UserInputError("--width applies to the built-in networks, not keras_hub")
    if not os.path.isdir(preset):
        raise UserInputError(
            f"--model=keras_hub:{preset}: not a folder; give a local KerasHub preset folder "
            "(config.json, model.weights.h5), e.g. one saved with Backbone.save_to_preset"
        )
    try:
        import keras_hub
    except ImportError:
        raise UserInputError(
            "--model=keras_hub:... needs the keras-hub package: pip install keras-hub"
        ) from None
    try:
        backbone = keras_hub.models.Backbone.from_preset(preset)
    except (ValueError, OSError, KeyError, TypeError) as error:
        raise UserInputError(
            f"--model=keras_hub:{preset}: {str(error).splitlines()[0][:200]}"
        ) from None
    return from_backbone(backbone, num_classes, input_shape=input_shape)
