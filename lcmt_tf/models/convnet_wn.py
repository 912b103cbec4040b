"""The authors' ConvNet: weight-normalized layers with mean-only batch normalization.

`conv_large_wn` is the 13-layer ConvNet as the LC authors' PyTorch code builds it (and
the official Mean Teacher TensorFlow code before it): the topology of `conv_large`, but
every convolution and the final dense layer is weight-normalized (w = g * v / |v| with a
trainable scale g per output; Salimans & Kingma, 2016) and followed by mean-only batch
normalization (subtract the batch mean, or in inference its moving average, then add a
bias) instead of standard batch normalization. Scale and bias start from the data:
`initialize_from_data` runs one batch through the network and sets them so that every
layer's output has zero mean and unit standard deviation on it (0.1 for the logits).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from lcmt_tf.models.convnet import conv_large_features

# PyTorch's running_mean momentum 0.001 in the authors' code, in Keras' convention.
MOVING_MEAN_MOMENTUM = 0.999
NORM_EPSILON = 1e-8  # inside the square roots of the weight norm and of the initialization
LOGITS_INIT_SCALE = 0.1


class WeightNormMeanOnlyBN(keras.layers.Layer):
    """Base of the weight-normalized layers: kernel v, per-output scale g and bias b
    (trainable), and the moving mean of the outputs (not trainable).

    outputs = x * (g v / |v|) - mean + b, where |v| is the norm of each output's slice
    of the kernel, and mean is the per-output mean over the batch (and positions) in
    training, its moving average in inference. Subclasses define the product `*`.
    The normalization runs in float32; the product in the layer's compute dtype.

    While `initializing` is set (by `initialize_from_data`), a call instead scales the
    product to zero mean and standard deviation `init_scale` over the batch, and folds
    that into g and b: g <- g / std, b <- -mean * init_scale / std.
    """

    def __init__(
        self, units: int, init_scale: float = 1.0, momentum: float = MOVING_MEAN_MOMENTUM, **kwargs
    ):
        super().__init__(**kwargs)
        self.units = int(units)
        self.init_scale = float(init_scale)
        self.momentum = float(momentum)
        self.initializing = False

    def kernel_shape(self, input_shape) -> tuple:
        raise NotImplementedError

    def project(self, inputs, kernel):
        raise NotImplementedError

    def build(self, input_shape):
        def weight(name, shape, initializer, trainable=True):
            return self.add_weight(
                shape=shape, initializer=initializer, trainable=trainable, name=name, autocast=False
            )

        self.kernel = weight(
            "kernel", self.kernel_shape(input_shape), keras.initializers.RandomNormal(stddev=0.05)
        )
        self.scale = weight("scale", (self.units,), "ones")
        self.bias = weight("bias", (self.units,), "zeros")
        self.moving_mean = weight("moving_mean", (self.units,), "zeros", trainable=False)

    def normalized_kernel(self):
        """g * v / |v| in float32, the norm over every kernel axis but the last."""
        axes = tuple(range(len(self.kernel.shape) - 1))
        norm = ops.sqrt(ops.sum(ops.square(self.kernel), axis=axes) + NORM_EPSILON)
        return self.kernel * (self.scale / norm)

    def call(self, inputs, training=False):
        kernel = ops.cast(self.normalized_kernel(), self.compute_dtype)
        outputs = ops.cast(self.project(inputs, kernel), "float32")
        axes = tuple(range(len(outputs.shape) - 1))
        if self.initializing:
            outputs = self._initialize(outputs, axes)
        elif training and self.trainable:
            mean = ops.mean(outputs, axis=axes)
            self.moving_mean.assign(self.momentum * self.moving_mean + (1.0 - self.momentum) * mean)
            outputs = outputs - mean + self.bias
        else:
            outputs = outputs - self.moving_mean + self.bias
        return ops.cast(outputs, self.compute_dtype)

    def _initialize(self, outputs, axes):
        mean = ops.mean(outputs, axis=axes)
        centered = outputs - mean
        std = ops.sqrt(ops.mean(ops.square(centered), axis=axes) + NORM_EPSILON)
        inverse_std = self.init_scale / std
        self.scale.assign(self.scale * inverse_std)
        self.bias.assign(-mean * inverse_std)
        return centered * inverse_std

    def compute_output_shape(self, input_shape):
        raise NotImplementedError

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "init_scale": self.init_scale,
            "momentum": self.momentum,
        }


@keras.saving.register_keras_serializable(package="lcmt_tf")
class WeightNormConv2D(WeightNormMeanOnlyBN):
    """A 2D convolution (stride 1) with weight norm and mean-only batch normalization.

    Args:
        units: output channels.
        kernel_size: square kernel side.
        padding: "same" or "valid".
        init_scale, momentum: see WeightNormMeanOnlyBN.
    """

    def __init__(self, units: int, kernel_size: int, padding: str = "same", **kwargs):
        super().__init__(units, **kwargs)
        self.kernel_size = int(kernel_size)
        self.padding = padding

    def kernel_shape(self, input_shape):
        return (self.kernel_size, self.kernel_size, input_shape[-1], self.units)

    def project(self, inputs, kernel):
        return ops.conv(inputs, kernel, strides=1, padding=self.padding)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        if self.padding == "valid":
            shrink = self.kernel_size - 1
            height = None if height is None else height - shrink
            width = None if width is None else width - shrink
        return (batch, height, width, self.units)

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "padding": self.padding}


@keras.saving.register_keras_serializable(package="lcmt_tf")
class WeightNormDense(WeightNormMeanOnlyBN):
    """A dense layer with weight norm and mean-only batch normalization."""

    def kernel_shape(self, input_shape):
        return (input_shape[-1], self.units)

    def project(self, inputs, kernel):
        return ops.matmul(inputs, kernel)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)


def wn_conv_lrelu(x, filters: int, kernel_size: int, padding: str, name: str):
    """Weight-normalized convolution with mean-only batch norm -> LeakyReLU(0.1)."""
    x = WeightNormConv2D(filters, kernel_size, padding=padding, name=f"{name}_conv")(x)
    return layers.LeakyReLU(negative_slope=0.1, name=f"{name}_lrelu")(x)


def conv_large_wn(
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    width: float = 1.0,
    dropout: float = 0.5,
    name: str = "conv_large_wn",
) -> keras.Model:
    """The 13-layer ConvNet with the authors' layers: weight norm + mean-only BN.

    3 x conv3x3(128) -> maxpool 2 -> dropout -> 3 x conv3x3(256) -> maxpool 2 ->
    dropout -> conv3x3(512, valid) -> conv1x1(256) -> conv1x1(128) -> global average
    pool = z (128-d at width 1) -> dense(num_classes); every conv is a WeightNormConv2D
    followed by LeakyReLU(0.1), the dense layer a WeightNormDense. At width 1 with 10
    classes: 3,121,812 trainable parameters (kernels, scales, biases) and 2,058 moving
    means. Call `initialize_from_data` on it before training.
    """
    inputs = keras.Input(shape=input_shape, name="images")
    features = conv_large_features(inputs, width, dropout, block=wn_conv_lrelu)
    logits = WeightNormDense(num_classes, init_scale=LOGITS_INIT_SCALE, name="logits")(features)
    return keras.Model(inputs, [features, logits], name=name)


def _weight_norm_layers(model) -> list[WeightNormMeanOnlyBN]:
    found = []
    for layer in model.layers:
        if isinstance(layer, WeightNormMeanOnlyBN):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found += _weight_norm_layers(layer)
    return found


def initialize_from_data(model: keras.Model, images, training: bool = True) -> int:
    """Data-dependent initialization of every weight-normalized layer of `model`.

    One forward pass over `images` (normalized, as the model takes them): each layer,
    in order, sets its scale and bias so that its output on this batch has zero mean
    and standard deviation `init_scale`, and passes that output on. `training=True`
    keeps dropout on, as in the authors' code. Returns the number of layers it
    initialized; a model without such layers is left untouched (no forward pass).
    """
    targets = _weight_norm_layers(model)
    if not targets:
        return 0
    for layer in targets:
        layer.initializing = True
    try:
        model(images, training=training)
    finally:
        for layer in targets:
            layer.initializing = False
    return len(targets)
