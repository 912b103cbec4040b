"""Image augmentation that runs inside the compiled training step.

All of it is `keras.ops` on whole batches, so it runs on the accelerator, under XLA,
and on every Keras backend. Randomness comes from a `keras.random.SeedGenerator`
owned by the layer: its state is a variable that checkpoints save and restore.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
from keras import ops

from lcmt_tf.config import TRANSLATE_PADDINGS
from lcmt_tf.errors import UserInputError


def _select_shift(padded, offsets, size: int, axis: int, num_offsets: int):
    """Crop `size` pixels along `axis` of each image, starting at its own offset.

    Every candidate crop is a static slice; the per-image choice is a one-hot weighted
    sum, which is exact (1 * x + 0 * y) and compiles to fused element-wise ops.
    """
    choice = ops.one_hot(offsets, num_offsets, dtype=padded.dtype)  # (B, K)
    result = 0.0
    for offset in range(num_offsets):
        if axis == 1:
            crop = padded[:, offset : offset + size]
        else:
            crop = padded[:, :, offset : offset + size]
        result = result + choice[:, offset, None, None, None] * crop
    return result


def random_translate(images, max_translation: int, seed, padding: str = "reflect"):
    """Translate each image by integers dy, dx drawn uniformly from
    [-max_translation, max_translation], filling the border by reflection
    (d c b | a b c d | c b a, as the Mean Teacher code's RandomTranslateWithReflect) or
    with zeros (as torchvision's RandomCrop(size, padding=max_translation), which the
    LC authors use on raw images: black borders).

    Args:
        images: (B, H, W, C) float tensor.
        max_translation: pixels; 0 returns the images unchanged.
        seed: a `keras.random.SeedGenerator`.
        padding: "reflect" or "zero".
    """
    if max_translation <= 0:
        return images
    batch_size = ops.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    pad = max_translation
    mode = {"reflect": "reflect", "zero": "constant"}[padding]
    padded = ops.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode=mode)
    num_offsets = 2 * pad + 1
    row_offsets = keras.random.randint((batch_size,), 0, num_offsets, seed=seed)
    column_offsets = keras.random.randint((batch_size,), 0, num_offsets, seed=seed)
    rows = _select_shift(padded, row_offsets, height, 1, num_offsets)
    return _select_shift(rows, column_offsets, width, 2, num_offsets)


def random_horizontal_flip(images, seed):
    """Mirror each image left-right with probability 1/2."""
    batch_size = ops.shape(images)[0]
    flip = keras.random.uniform((batch_size, 1, 1, 1), seed=seed) < 0.5
    return ops.where(flip, ops.flip(images, axis=2), images)


@keras.saving.register_keras_serializable(package="lcmt_tf")
class Augmentation(keras.layers.Layer):
    """uint8 images -> normalized float32 images, randomly augmented when training.

    With training=True, in this order: random translation of the raw image (border by
    reflection, or zero: black), random horizontal flip, normalization
    (x / 255 - mean) / std per channel, additive Gaussian noise on the normalized
    image. With training=False: normalization only.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        max_translation: int = 2,
        horizontal_flip: bool = False,
        noise_stddev: float = 0.0,
        seed: int | None = None,
        translate_padding: str = "reflect",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if translate_padding not in TRANSLATE_PADDINGS:
            raise UserInputError(
                f"translate_padding must be one of {TRANSLATE_PADDINGS}, not {translate_padding!r}"
            )
        self.translate_padding = translate_padding
        self.mean = tuple(float(value) for value in mean)
        self.std = tuple(float(value) for value in std)
        if not self.mean or len(self.mean) != len(self.std):
            raise UserInputError(
                f"Augmentation: give one mean and one std per channel; got {len(self.mean)} "
                f"mean and {len(self.std)} std values"
            )
        if not all(math.isfinite(value) and value > 0 for value in self.std):
            raise UserInputError(f"Augmentation: every std must be > 0, not {list(self.std)}")
        if int(max_translation) < 0:
            raise UserInputError(
                f"Augmentation: max_translation must be >= 0 pixels, not {max_translation!r}"
            )
        if not (math.isfinite(float(noise_stddev)) and float(noise_stddev) >= 0):
            raise UserInputError(f"Augmentation: noise_stddev must be >= 0, not {noise_stddev!r}")
        self.max_translation = int(max_translation)
        self.horizontal_flip = bool(horizontal_flip)
        self.noise_stddev = float(noise_stddev)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="augmentation_seed")
        self.built = True

    def check_images(self, images) -> None:
        """One line if `images` are not (N, H, W, C) with one channel per mean and std."""
        shape = tuple(images.shape)
        if len(shape) != 4:
            raise UserInputError(f"images must be a batch (N, H, W, C); got shape {shape}")
        if shape[-1] is not None and shape[-1] != len(self.mean):
            raise UserInputError(
                f"the images have {shape[-1]} channel(s), the augmentation normalizes "
                f"{len(self.mean)} (its mean and std have {len(self.mean)} values)"
            )

    def normalize(self, images):
        """(x / 255 - mean) / std per channel, in float32."""
        images = ops.cast(images, "float32") / 255.0
        return (images - ops.array(self.mean, "float32")) / ops.array(self.std, "float32")

    def call(self, images, training=False):
        if not training:
            return self.normalize(images)
        # Translation and flip select pixels exactly, so they commute with the per-pixel
        # normalization; on the raw image a zero border is black, as in the authors' code.
        images = ops.cast(images, "float32")
        images = random_translate(
            images, self.max_translation, self.seed_generator, self.translate_padding
        )
        if self.horizontal_flip:
            images = random_horizontal_flip(images, self.seed_generator)
        images = self.normalize(images)
        if self.noise_stddev > 0:
            images = images + self.noise_stddev * keras.random.normal(
                ops.shape(images), seed=self.seed_generator
            )
        return images

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "mean": list(self.mean),
            "std": list(self.std),
            "max_translation": self.max_translation,
            "horizontal_flip": self.horizontal_flip,
            "noise_stddev": self.noise_stddev,
            "seed": self.seed,
            "translate_padding": self.translate_padding,
        }
