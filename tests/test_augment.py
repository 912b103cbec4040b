import keras
import numpy as np
import pytest
from keras import ops

from lcmt_tf.augment import Augmentation, random_translate


def reflect_shift(image, dy, dx, pad):
    """NumPy reference: reflect-pad by `pad`, crop at offset (pad + dy, pad + dx)."""
    padded = np.pad(image, [(pad, pad), (pad, pad), (0, 0)], mode="reflect")
    height, width = image.shape[:2]
    return padded[pad + dy : pad + dy + height, pad + dx : pad + dx + width]


def test_translation_is_an_integer_reflected_shift_and_covers_every_shift():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(1, 6, 7, 2)).astype("float32")
    batch = np.repeat(images, 400, axis=0)
    seed = keras.random.SeedGenerator(1)
    shifted = ops.convert_to_numpy(random_translate(batch, 2, seed))
    candidates = {
        (dy, dx): reflect_shift(images[0], dy, dx, 2) for dy in range(-2, 3) for dx in range(-2, 3)
    }
    seen = set()
    for output in shifted:
        matches = [shift for shift, ref in candidates.items() if np.array_equal(output, ref)]
        assert len(matches) == 1, "every output is exactly one reflected integer shift"
        seen.add(matches[0])
    assert seen == set(candidates)


def test_normalization_and_inference_mode_are_deterministic():
    images = np.arange(2 * 4 * 4 * 3, dtype="uint8").reshape(2, 4, 4, 3)
    layer = Augmentation(
        mean=[0.1, 0.2, 0.3], std=[0.5, 0.25, 2.0], horizontal_flip=True, noise_stddev=0.3
    )
    expected = (images / 255.0 - np.array([0.1, 0.2, 0.3])) / np.array([0.5, 0.25, 2.0])
    np.testing.assert_allclose(ops.convert_to_numpy(layer(images)), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(images, training=False)), expected, rtol=1e-6, atol=1e-6
    )


def test_flip_and_noise_when_training():
    images = np.random.default_rng(2).integers(0, 255, size=(300, 5, 5, 1), dtype="uint8")
    images[:] = images[:1]
    flip = Augmentation(mean=[0.0], std=[1.0], max_translation=0, horizontal_flip=True, seed=3)
    output = ops.convert_to_numpy(flip(images, training=True))
    base = images[0] / 255.0
    is_flipped = np.array([np.allclose(o, base[:, ::-1]) for o in output])
    is_same = np.array([np.allclose(o, base) for o in output])
    assert np.all(is_flipped ^ is_same)
    assert 0.35 < is_flipped.mean() < 0.65

    noise = Augmentation(mean=[0.0], std=[1.0], max_translation=0, noise_stddev=0.2, seed=3)
    residual = ops.convert_to_numpy(noise(images, training=True)) - base
    assert np.std(residual) == pytest.approx(0.2, rel=0.05)


def test_two_calls_draw_independent_augmentations():
    images = np.random.default_rng(4).integers(0, 255, size=(64, 8, 8, 3), dtype="uint8")
    layer = Augmentation(mean=[0.5] * 3, std=[0.25] * 3, horizontal_flip=True, seed=5)
    first = ops.convert_to_numpy(layer(images, training=True))
    second = ops.convert_to_numpy(layer(images, training=True))
    differs = np.array([not np.array_equal(a, b) for a, b in zip(first, second)])
    assert differs.mean() > 0.8


def test_augmentation_config_round_trip():
    layer = Augmentation(
        mean=[0.1], std=[0.2], max_translation=1, horizontal_flip=True, noise_stddev=0.1, seed=7
    )
    clone = Augmentation.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize("padding", ["zero", "reflect"])
def test_translation_pads_the_raw_image_then_normalizes(padding):
    """Zero padding is black in the raw image, i.e. -mean/std after normalization."""
    rng = np.random.default_rng(6)
    raw = rng.integers(1, 256, size=(5, 6, 3)).astype("uint8")
    mean, std = np.array([0.4, 0.5, 0.6]), np.array([0.2, 0.25, 0.3])
    layer = Augmentation(
        list(mean), list(std), max_translation=2, seed=7, translate_padding=padding
    )
    outputs = ops.convert_to_numpy(layer(np.repeat(raw[None], 300, axis=0), training=True))
    numpy_mode = {"zero": "constant", "reflect": "reflect"}[padding]
    padded = np.pad(raw.astype(np.float64), [(2, 2), (2, 2), (0, 0)], mode=numpy_mode)
    candidates = {
        (dy, dx): (padded[2 + dy : 2 + dy + 5, 2 + dx : 2 + dx + 6] / 255.0 - mean) / std
        for dy in range(-2, 3)
        for dx in range(-2, 3)
    }
    seen = set()
    for output in outputs:
        matches = [s for s, c in candidates.items() if np.allclose(output, c, rtol=1e-5, atol=1e-5)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(candidates)
    if padding == "zero":  # a shifted image has black (raw 0) pixels on its border
        assert np.isclose(outputs, (0.0 - mean) / std, atol=1e-5).all(axis=-1).any()
