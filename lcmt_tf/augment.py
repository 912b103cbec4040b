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

    def translate_and_flip(self, images):
        """The random translation and flip of raw images, as float32 in [0, 255]."""
        # Translation and flip select pixels exactly, so they commute with the per-pixel
        # normalization; on the raw image a zero border is black, as in the authors' code.
        images = ops.cast(images, "float32")
        images = random_translate(
            images, self.max_translation, self.seed_generator, self.translate_padding
        )
        if self.horizontal_flip:
            images = random_horizontal_flip(images, self.seed_generator)
        return images

    def call(self, images, training=False):
        if not training:
            return self.normalize(images)
        images = self.normalize(self.translate_and_flip(images))
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


class PerImageRandAugment(keras.layers.RandAugment):
    """Keras' RandAugment with the operations drawn for every image, as FixMatch's
    RandAugment does, instead of once for the whole batch (Keras 3.15 draws `num_ops`
    operation indices per call). The operations, their magnitudes (`factor`, drawn per
    image by each operation) and the seeding are Keras'.

    Keras workaround: it overrides RandAugment's `get_random_transformation` and
    `transform_images`, which exchange a dict {"transforms", "layer_idxes"}; no public
    hook chooses the operations. tests/test_fixmatch.py (the strong view's test) fails
    when that changes.
    """

    def get_random_transformation(self, data, training=True, seed=None):
        transformation = super().get_random_transformation(data, training, seed)
        if transformation is None:
            return None
        images = data["images"] if isinstance(data, dict) else data
        transformation["layer_idxes"] = self.backend.random.randint(
            (self.backend.shape(images)[0], self.num_ops),
            0,
            len(self._AUGMENT_LAYERS),
            seed=self._get_seed_generator(self.backend._backend),
        )
        return transformation

    def transform_images(self, images, transformation, training=True):
        images = self.backend.cast(images, self.compute_dtype)
        if not training:
            return images
        chosen = transformation["layer_idxes"]  # (batch, num_ops)
        for step in range(self.num_ops):
            for index, (name, value) in enumerate(transformation["transforms"].items()):
                selected = self.backend.numpy.reshape(chosen[:, step] == index, (-1, 1, 1, 1))
                transformed = getattr(self, name).transform_images(images, value)
                images = self.backend.numpy.where(selected, transformed, images)
        return self.backend.cast(images, self.compute_dtype)


@keras.saving.register_keras_serializable(package="lcmt_tf")
class StrongAugmentation(keras.layers.Layer):
    """FixMatch's strong view: uint8 images -> normalized float32 images.

    With training=True, in this order: the weak view's random translation and flip
    (an `Augmentation` with the same settings and its own seed), `num_ops` random
    operations per image from Keras' RandAugment at `magnitude` (its `factor`), out of
    its eleven: shear, translation, rotation, brightness, colour degeneration,
    contrast, sharpness, posterization, solarization, auto-contrast and equalization
    (`PerImageRandAugment`), then Cutout:
    Keras' RandomErasing replacing one patch per image, each side at most `cutout` of
    the image's, with grey (127.5), then normalization. With training=False:
    normalization only. Every random draw comes from the layers' seed generators,
    which checkpoints save.

    Args:
        mean: per channel, as `Augmentation`.
        std: per channel, as `Augmentation`.
        max_translation: the weak part's, as `Augmentation`.
        horizontal_flip: the weak part's, as `Augmentation`.
        translate_padding: the weak part's, as `Augmentation`.
        num_ops: operations per image (0: none).
        magnitude: RandAugment's factor, in [0, 1].
        cutout: the largest patch side as a share of the image's, in [0, 1) (0: no
            Cutout).
        seed: the seed of the draws (an int, or None for a random one).
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        max_translation: int = 2,
        horizontal_flip: bool = False,
        translate_padding: str = "reflect",
        num_ops: int = 2,
        magnitude: float = 0.5,
        cutout: float = 0.5,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_ops) < 0:
            raise UserInputError(f"StrongAugmentation: num_ops must be >= 0, not {num_ops!r}")
        if not (math.isfinite(float(magnitude)) and 0 <= float(magnitude) <= 1):
            raise UserInputError(
                f"StrongAugmentation: magnitude must be in [0, 1], not {magnitude!r}"
            )
        if not (math.isfinite(float(cutout)) and 0 <= float(cutout) < 1):
            raise UserInputError(f"StrongAugmentation: cutout must be in [0, 1), not {cutout!r}")
        self.num_ops = int(num_ops)
        self.magnitude = float(magnitude)
        self.cutout = float(cutout)
        self.seed = seed
        self.weak = Augmentation(
            mean,
            std,
            max_translation=max_translation,
            horizontal_flip=horizontal_flip,
            translate_padding=translate_padding,
            seed=None if seed is None else seed + 1,
            name="weak_part",
        )
        self.rand_augment = (
            PerImageRandAugment(
                value_range=(0, 255),
                num_ops=self.num_ops,
                factor=self.magnitude,
                seed=None if seed is None else seed + 2,
            )  # no name: RandAugment passes its keyword arguments on to its operations
            if self.num_ops
            else None
        )
        self.erasing = (
            keras.layers.RandomErasing(
                factor=(1.0, 1.0),  # every image (a single float draws the probability)
                scale=(0.0, self.cutout**2),  # RandomErasing takes sqrt of it per side
                fill_value=127.5,
                value_range=(0, 255),
                seed=None if seed is None else seed + 3,
                name="cutout",
            )
            if self.cutout
            else None
        )
        shape = (None, None, None, len(self.weak.mean))
        for layer in (self.rand_augment, self.erasing):
            if layer is not None:
                layer.build(shape)  # shape-free preprocessing: nothing to wait for
        if keras.backend.backend() == "jax":
            # Keras workaround: RandAugment's shear, translation and rotation say they
            # do not support XLA (TensorFlow's ImageProjectiveTransform has no XLA
            # kernel), and one such layer makes Keras run the whole JAX step without
            # jit, many times slower; on JAX they are jax.scipy ops that compile.
            # tests/test_fixmatch.py checks the JAX step stays compiled.
            for layer in self._flatten_layers():
                layer.supports_jit = True
        self.built = True

    @classmethod
    def matching(cls, augmentation: Augmentation, **kwargs) -> "StrongAugmentation":
        """The strong view of `augmentation`'s images: its normalization and weak
        settings, with `kwargs` (num_ops, magnitude, cutout, seed) for the rest."""
        return cls(
            augmentation.mean,
            augmentation.std,
            max_translation=augmentation.max_translation,
            horizontal_flip=augmentation.horizontal_flip,
            translate_padding=augmentation.translate_padding,
            **{"seed": augmentation.seed, **kwargs},
        )

    @property
    def mean(self) -> tuple[float, ...]:
        return self.weak.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.weak.std

    def call(self, images, training=False):
        if not training:
            return self.weak.normalize(images)
        images = self.weak.translate_and_flip(images)
        if self.rand_augment is not None:
            images = ops.clip(self.rand_augment(images, training=True), 0.0, 255.0)
        if self.erasing is not None:
            images = self.erasing(images, training=True)
        return self.weak.normalize(images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "mean": list(self.weak.mean),
            "std": list(self.weak.std),
            "max_translation": self.weak.max_translation,
            "horizontal_flip": self.weak.horizontal_flip,
            "translate_padding": self.weak.translate_padding,
            "num_ops": self.num_ops,
            "magnitude": self.magnitude,
            "cutout": self.cutout,
            "seed": self.seed,
        }
