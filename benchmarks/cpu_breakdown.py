"""Where the float32 training step's time goes on a CPU (TensorFlow backend only).

    python benchmarks/cpu_breakdown.py --repeats=5 --output=breakdown.json

Times the compute of one Mean Teacher step -- student forward + backward and teacher
forward in training mode on 160 images -- for conv_large and for copies of it with
layers swapped out (same weights, same convolutions):

    conv_only        batch normalization and dropout replaced by identities
    no_dropout       dropout replaced by identities
    no_batch_norm    batch normalization replaced by identities
    keras            conv_large as lcmt_tf builds it (Keras BatchNormalization)
    fused_batch_norm Keras BatchNormalization computed by TensorFlow's fused kernel
                     (FusedBatchNormV3) in training mode; same outputs (the moving
                     variance takes the unbiased batch variance, n/(n-1) larger)

The last variant is a diagnostic only: lcmt_tf keeps its model in backend-agnostic
Keras layers. First it measures what the machine can do in float32 (the fastest of
`--repeats` runs of a 4096^3 matmul and of conv_large's 128->128 3x3 convolution on
160 32x32 images), the ceiling for the step's convolutions. Prints a table;
`--output` writes a JSON list.
"""

from __future__ import annotations

import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_BACKEND"] = "tensorflow"

from absl import app, flags  # noqa: E402

flags.DEFINE_float("width", 1.0, "conv_large channel multiplier")
flags.DEFINE_integer("repeats", 5, "timed steps per variant after one warm-up step")
flags.DEFINE_list(
    "variants",
    ["conv_only", "no_dropout", "no_batch_norm", "keras", "fused_batch_norm"],
    "which variants to time",
)
flags.DEFINE_string("output", "", "write the records as JSON here")
FLAGS = flags.FLAGS

IMAGES = 160


def fused_batch_norm_class():
    import keras
    import tensorflow as tf

    class FusedBatchNormalization(keras.layers.BatchNormalization):
        def call(self, inputs, training=None, mask=None):
            if not training:
                return super().call(inputs, training=training)
            outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
                x=inputs,
                scale=self.gamma.value,
                offset=self.beta.value,
                mean=tf.zeros_like(self.moving_mean.value),
                variance=tf.ones_like(self.moving_variance.value),
                epsilon=self.epsilon,
                exponential_avg_factor=1.0,
                data_format="NHWC",
                is_training=True,
            )
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (1 - self.momentum)
            )
            return outputs

    return FusedBatchNormalization


def variant(model, name: str):
    """A copy of `model` with layers swapped as the variant says, weights copied."""
    import keras

    fused = fused_batch_norm_class()

    class Passthrough(keras.layers.Layer):  # takes the call arguments of what it replaces
        def call(self, inputs, training=None, mask=None):
            return inputs

    def swap(layer):
        is_batch_norm = isinstance(layer, keras.layers.BatchNormalization)
        is_dropout = isinstance(layer, keras.layers.Dropout)
        if (is_batch_norm and name in ("conv_only", "no_batch_norm")) or (
            is_dropout and name in ("conv_only", "no_dropout")
        ):
            return Passthrough(name=layer.name)
        if is_batch_norm and name == "fused_batch_norm":
            return fused.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=swap)
    for source, target in zip(model.layers, copy.layers):
        if target.weights and len(target.weights) == len(source.weights):
            target.set_weights(source.get_weights())
    return copy


def time_variant(name: str) -> dict:
    import keras
    import tensorflow as tf

    from lcmt_tf import conv_large

    keras.utils.set_random_seed(0)
    reference = conv_large(10, (32, 32, 3), width=FLAGS.width)
    student, teacher = variant(reference, name), variant(reference, name)
    images = tf.random.normal((IMAGES, 32, 32, 3), seed=0)

    @tf.function
    def step():
        _, teacher_logits = teacher(images, training=True)
        with tf.GradientTape() as tape:
            _, logits = student(images, training=True)
            loss = tf.reduce_mean(tf.square(tf.nn.softmax(logits) - tf.nn.softmax(teacher_logits)))
        return tape.gradient(loss, student.trainable_variables)

    [gradient.numpy() for gradient in step()]
    seconds = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        [gradient.numpy() for gradient in step()]
        seconds.append(time.perf_counter() - start)
    return {
        "variant": name,
        "width": FLAGS.width,
        "images": IMAGES,
        "median_ms": round(1000 * statistics.median(seconds), 1),
        "min_ms": round(1000 * min(seconds), 1),
        "times_ms": [round(1000 * s, 1) for s in seconds],
    }


def peak_rates() -> list[dict]:
    import tensorflow as tf

    matrix = tf.random.normal((4096, 4096), seed=0)
    images = tf.random.normal((IMAGES, 32, 32, 128), seed=1)
    kernel = tf.random.normal((3, 3, 128, 128), seed=2)
    cases = (
        ("matmul_4096", tf.function(lambda: tf.matmul(matrix, matrix)), 2 * 4096**3),
        (
            "conv3x3_128",
            tf.function(lambda: tf.nn.conv2d(images, kernel, 1, "SAME")),
            2 * IMAGES * 32 * 32 * 9 * 128 * 128,
        ),
    )
    records = []
    for name, function, flop in cases:
        function().numpy()
        fastest = float("inf")
        for _ in range(FLAGS.repeats):
            start = time.perf_counter()
            function().numpy()
            fastest = min(fastest, time.perf_counter() - start)
        records.append({"variant": name, "float32_gflop_per_s": round(flop / fastest / 1e9, 1)})
        print(
            f"{name:17s} {records[-1]['float32_gflop_per_s']:8.1f} GFLOP/s (float32, fastest)",
            flush=True,
        )
    return records


def main(argv):
    del argv
    records = peak_rates()
    for name in FLAGS.variants:
        records.append(time_variant(name))
        record = records[-1]
        print(
            f"{name:17s} median {record['median_ms']:8.1f} ms  fastest {record['min_ms']:8.1f} ms",
            flush=True,
        )
    if FLAGS.output:
        with open(FLAGS.output, "w") as file:
            json.dump(records, file, indent=2)


if __name__ == "__main__":
    app.run(main)
