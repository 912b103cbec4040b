"""WRN-28-2, the Wide ResNet that FixMatch, USB and TorchSSL report their numbers with.

Pre-activation residual blocks (batch norm -> LeakyReLU(0.1) -> 3x3 convolution, twice),
three groups of four blocks at 32, 64 and 128 channels (width 2) with strides 1, 2, 2,
then batch norm -> LeakyReLU -> global average pooling = z (128-d) -> dense. Batch norm
as in those implementations: momentum 0.001 in PyTorch's convention (0.999 in Keras'),
epsilon 1e-3. Same `[features, logits]` contract as the other networks.
"""

from __future__ import annotations

import keras
from keras import layers

from lcmt_tf.models.convnet import scaled

_BN = {"momentum": 0.999, "epsilon": 1e-3}
_INIT = keras.initializers.HeNormal()


def _bn_lrelu(x, name: str):
    x = layers.BatchNormalization(**_BN, name=f"{name}_bn")(x)
    return layers.LeakyReLU(negative_slope=0.1, name=f"{name}_lrelu")(x)


def _conv(x, filters: int, kernel_size: int, stride: int, name: str):
    return layers.Conv2D(filters, kernel_size, strides=stride, padding="same", use_bias=False,
                         kernel_initializer=_INIT, name=name)(x)  # fmt: skip


def residual_block(x, filters: int, stride: int, activate_shortcut: bool, name: str):
    """Pre-activation block. With `activate_shortcut` (the first block, as in FixMatch's
    WRN), the shortcut also starts from the activated input."""
    activated = _bn_lrelu(x, f"{name}_pre")
    shortcut = activated if activate_shortcut else x
    y = _conv(activated, filters, 3, stride, f"{name}_conv1")
    y = _bn_lrelu(y, f"{name}_mid")
    y = _conv(y, filters, 3, 1, f"{name}_conv2")
    if x.shape[-1] != filters or stride != 1:
        shortcut = _conv(activated, filters, 1, stride, f"{name}_shortcut")
    return layers.Add(name=f"{name}_add")([shortcut, y])


def wide_resnet(
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    depth: int = 28,
    widen_factor: int = 2,
    width: float = 1.0,
    name: str | None = None,
) -> keras.Model:
    """WRN-depth-widen_factor; `width` scales every channel count further (CPU tests)."""
    if (depth - 4) % 6:
        raise ValueError(f"a Wide ResNet has depth 6n + 4, not {depth}")
    blocks = (depth - 4) // 6
    channels = [scaled(c, width) for c in (16, 16 * widen_factor, 32 * widen_factor,
                                           64 * widen_factor)]  # fmt: skip
    inputs = keras.Input(shape=input_shape, name="images")
    x = _conv(inputs, channels[0], 3, 1, "stem_conv")
    for group, (filters, stride) in enumerate(zip(channels[1:], (1, 2, 2))):
        for index in range(blocks):
            x = residual_block(
                x,
                filters,
                stride if index == 0 else 1,
                activate_shortcut=group == 0 and index == 0,
                name=f"group{group + 1}_{index}",
            )
    x = _bn_lrelu(x, "head")
    features = layers.GlobalAveragePooling2D(name="features")(x)
    logits = layers.Dense(num_classes, kernel_initializer="glorot_normal", name="logits")(features)
    return keras.Model(inputs, [features, logits], name=name or f"wrn_{depth}_{widen_factor}")


def wrn_28_2(
    num_classes: int = 10, input_shape: tuple[int, int, int] = (32, 32, 3), width: float = 1.0
) -> keras.Model:
    """WRN-28-2: 1,467,610 trainable parameters for 10 classes at width 1 (1,471,226
    weights with the batch norms' moving statistics)."""
    return wide_resnet(num_classes, input_shape, 28, 2, width)
