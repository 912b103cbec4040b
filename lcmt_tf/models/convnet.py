"""ConvNets with standard batch normalization: conv_large and the small digits_net.

Each builder returns a functional `keras.Model` mapping normalized images to
`[features, logits]`: `features` is the representation z = g(x) on which Local
Clustering acts, `logits` = h(z).
"""

from __future__ import annotations

import keras
from keras import layers

# PyTorch's BatchNorm2d defaults (momentum 0.1, eps 1e-5).
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


def conv_bn_lrelu(x, filters: int, kernel_size: int, padding: str, name: str):
    """Convolution (no bias) -> batch normalization -> LeakyReLU(0.1)."""
    x = layers.Conv2D(filters, kernel_size, padding=padding, use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=f"{name}_bn")(x)
    return layers.LeakyReLU(negative_slope=0.1, name=f"{name}_lrelu")(x)


def scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def stage(
    x, count: int, channels: int, width: float, dropout: float, name: str, block=conv_bn_lrelu
):
    """count x block(3x3, same) -> max-pool 2 -> dropout."""
    for index in range(count):
        x = block(x, scaled(channels, width), 3, "same", f"{name}_{index}")
    x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    return layers.Dropout(dropout, name=f"{name}_dropout")(x)


def conv_large_features(inputs, width: float, dropout: float, block=conv_bn_lrelu):
    """The 13-layer ConvNet's feature extractor g: images -> z, with `block` as each
    convolution layer (convolution, normalization, LeakyReLU)."""
    x = stage(inputs, 3, 128, width, dropout, "block1", block)
    x = stage(x, 3, 256, width, dropout, "block2", block)
    x = block(x, scaled(512, width), 3, "valid", "block3_0")
    x = block(x, scaled(256, width), 1, "valid", "block3_1")
    x = block(x, scaled(128, width), 1, "valid", "block3_2")
    return layers.GlobalAveragePooling2D(name="features")(x)


def conv_large(
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    width: float = 1.0,
    dropout: float = 0.5,
    name: str = "conv_large",
) -> keras.Model:
    """The 13-layer ConvNet of the Pi-model / Mean Teacher papers.

    3 x conv3x3(128) -> maxpool 2 -> dropout -> 3 x conv3x3(256) -> maxpool 2 ->
    dropout -> conv3x3(512, valid) -> conv1x1(256) -> conv1x1(128) -> global average
    pool = z (128-d at width 1) -> dense(num_classes). Every conv is followed by batch
    normalization and LeakyReLU(0.1). About 3.1 M parameters at width 1; `width`
    scales every channel count.
    """
    inputs = keras.Input(shape=input_shape, name="images")
    features = conv_large_features(inputs, width, dropout)
    logits = layers.Dense(num_classes, name="logits")(features)
    return keras.Model(inputs, [features, logits], name=name)


def digits_net(
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (8, 8, 1),
    width: float = 1.0,
    dropout: float = 0.2,
    name: str = "digits_net",
) -> keras.Model:
    """A small ConvNet for 8x8 grayscale digits, same contract as `conv_large`.

    2 x conv3x3(32) -> maxpool 2 -> dropout -> 2 x conv3x3(64) -> conv1x1(64) ->
    global average pool = z (64-d at width 1) -> dense(num_classes).
    """
    inputs = keras.Input(shape=input_shape, name="images")
    x = stage(inputs, 2, 32, width, dropout, "block1")
    for index in range(2):
        x = conv_bn_lrelu(x, scaled(64, width), 3, "same", f"block2_{index}")
    x = conv_bn_lrelu(x, scaled(64, width), 1, "valid", "block2_2")
    features = layers.GlobalAveragePooling2D(name="features")(x)
    logits = layers.Dense(num_classes, name="logits")(features)
    return keras.Model(inputs, [features, logits], name=name)
