"""One MeanTeacher training step on fixed weights and inputs, on the backend in
KERAS_BACKEND; writes loss, gradients and the teacher's update to an .npz file per
network, OUTPUT_DIR/NAME.npz.

    python tests/backend_step.py OUTPUT_DIR digits_net conv_large_wn

Used by tests/test_backends.py, which runs it under TensorFlow, JAX and PyTorch and
compares. The step is compiled where the backend compiles by default (XLA on TensorFlow
and JAX); PyTorch runs it eagerly, as lcmt_tf trains on torch unless --jit_compile.
Augmentation and dropout are off, so the step is a deterministic function.
"""

import os
import sys

import keras
import numpy as np

from lcmt_tf import (
    Augmentation,
    ConsistencyRampup,
    LocalClusteringSchedule,
    MeanTeacher,
    conv_large_wn,
    digits_net,
)

LEARNING_RATE = 1.0  # plain SGD with lr 1: new weights = old weights - gradient

# network, image shape, LC epsilon (set so that some but not all pairs are neighbors)
SETUPS = {
    "digits_net": (lambda: digits_net(width=0.5, dropout=0.0), (8, 8, 1), 0.05),
    "conv_large_wn": (
        lambda: conv_large_wn(width=0.0625, dropout=0.0, input_shape=(16, 16, 3)),
        (16, 16, 3),
        0.0005,
    ),
}


def main(output_path, model_name):
    rng = np.random.default_rng(0)
    build_student, image_shape, epsilon = SETUPS[model_name]
    student = build_student()
    for variable in student.weights:
        shape, name = variable.shape, variable.path
        if "moving_variance" in name or "gamma" in name or "scale" in name:
            value = 1.0 + 0.1 * rng.uniform(size=shape)
        elif "moving_mean" in name:
            value = np.zeros(shape)
        else:
            value = 0.3 * rng.normal(size=shape)
        variable.assign(value.astype("float32"))
    channels = image_shape[-1]
    augmentation = Augmentation(mean=[0.3] * channels, std=[0.4] * channels, max_translation=0)
    model = MeanTeacher(
        student,
        augmentation,
        ema_decay=0.9,
        lc_epsilon=epsilon,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE),
        jit_compile=keras.backend.backend() != "torch",
    )
    batch = {
        "labeled_images": rng.integers(0, 256, (8, *image_shape)).astype("uint8"),
        "labels": rng.integers(0, 10, 8).astype("int32"),
        "unlabeled_images": rng.integers(0, 256, (24, *image_shape)).astype("uint8"),
    }
    # The teacher's forward pass runs on the same weights: perturb it so that the
    # consistency and EMA terms are not trivially zero.
    # (Element-wise: a weight-normalized kernel ignores a common factor.)
    for variable in model.teacher.weights:
        if "kernel" in variable.path:
            noise = 1.0 + 0.2 * rng.uniform(size=variable.shape)
            variable.assign((keras.ops.convert_to_numpy(variable) * noise).astype("float32"))
    before_student = [keras.ops.convert_to_numpy(v) for v in student.trainable_weights]
    before_teacher = [keras.ops.convert_to_numpy(t) for t, _ in model.ema_pairs]

    class OneBatch(keras.utils.PyDataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            return batch

    weights = [ConsistencyRampup(3.0, 0), LocalClusteringSchedule(2.0, 0, 0)]
    history = model.fit(OneBatch(), epochs=1, verbose=0, shuffle=False, callbacks=weights).history
    after_student = [keras.ops.convert_to_numpy(v) for v in student.trainable_weights]
    after_teacher = [keras.ops.convert_to_numpy(t) for t, _ in model.ema_pairs]
    arrays = {
        name: np.array(history[name][0])
        for name in ("loss", "ce", "consistency", "lc", "lc_neighbor_fraction")
    }
    # A difference of float32 weights resolves no finer than one spacing of the weights
    # themselves: each difference carries that resolution for the comparison.
    for index, (old, new) in enumerate(zip(before_student, after_student)):
        arrays[f"gradient_{index}"] = (old - new) / LEARNING_RATE
        arrays[f"resolution_gradient_{index}"] = resolution(old, new) / LEARNING_RATE
    for index, (old, new) in enumerate(zip(before_teacher, after_teacher)):
        arrays[f"teacher_delta_{index}"] = new - old
        arrays[f"resolution_teacher_delta_{index}"] = resolution(old, new)
    np.savez(output_path, **arrays)


def resolution(old, new):
    """Two spacings of the larger float32 weight: the rounding of `new - old`."""
    largest = np.maximum(np.abs(old), np.abs(new)).max()
    return np.array(2 * np.spacing(np.float32(largest)), dtype=np.float64)


if __name__ == "__main__":
    for name in sys.argv[2:]:
        main(os.path.join(sys.argv[1], f"{name}.npz"), name)
