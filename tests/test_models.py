import keras
import numpy as np
import pytest

from lcmt_tf.models import conv_large, conv_large_wn, digits_net, initialize_from_data
from lcmt_tf.models.convnet_wn import WeightNormConv2D, WeightNormMeanOnlyBN

from conftest import FixedBatches


def test_conv_large_contract_and_size():
    model = conv_large()
    assert 3.0e6 < model.count_params() < 3.2e6
    features, logits = model(np.zeros((2, 32, 32, 3), "float32"), training=False)
    assert tuple(features.shape) == (2, 128)
    assert tuple(logits.shape) == (2, 10)
    convolutions = [
        layer for layer in model.layers if "conv" in layer.name and layer.name.endswith("_conv")
    ]
    norms = [layer for layer in model.layers if layer.name.endswith("_bn")]
    assert len(convolutions) == 9 and len(norms) == 9
    assert convolutions[6].padding == "valid" and convolutions[6].kernel_size == (3, 3)


@pytest.mark.parametrize("width,feature_size", [(0.25, 32), (0.5, 64)])
def test_conv_large_width_scales_channels(width, feature_size):
    model = conv_large(num_classes=7, width=width)
    features, logits = model(np.zeros((1, 32, 32, 3), "float32"))
    assert tuple(features.shape) == (1, feature_size)
    assert tuple(logits.shape) == (1, 7)


def test_digits_net_contract():
    model = digits_net()
    features, logits = model(np.zeros((3, 8, 8, 1), "float32"))
    assert tuple(features.shape) == (3, 64)
    assert tuple(logits.shape) == (3, 10)


def conv_large_parameter_count(num_classes, per_conv_extra, dense_extra):
    """Kernel weights of the 13-layer ConvNet by hand, plus per-output extras."""
    convs = [(3, 3, 128), (3, 128, 128), (3, 128, 128), (3, 128, 256), (3, 256, 256)]
    convs += [(3, 256, 256), (3, 256, 512), (1, 512, 256), (1, 256, 128)]
    total = sum(k * k * c_in * c_out + per_conv_extra * c_out for k, c_in, c_out in convs)
    return total + 128 * num_classes + dense_extra * num_classes


def test_conv_large_wn_parameter_count_matches_its_docstring_and_a_hand_count():
    model = conv_large_wn()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    moving_means = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    # Each layer: kernel, scale g and bias b (trainable), moving mean (not).
    assert trainable == conv_large_parameter_count(10, per_conv_extra=2, dense_extra=2) == 3_121_812
    assert moving_means == conv_large_parameter_count(10, 1, 1) - conv_large_parameter_count(
        10, 0, 0
    )
    assert moving_means == 2_058
    assert "3,121,812 trainable parameters" in conv_large_wn.__doc__
    assert "2,058 moving" in conv_large_wn.__doc__
    features, logits = model(np.zeros((2, 32, 32, 3), "float32"))
    assert tuple(features.shape) == (2, 128) and tuple(logits.shape) == (2, 10)


def numpy_valid_conv(images, kernel):
    """Stride-1 'valid' convolution (cross-correlation), NHWC x HWIO."""
    size = kernel.shape[0]
    height, width = images.shape[1] - size + 1, images.shape[2] - size + 1
    out = np.zeros((images.shape[0], height, width, kernel.shape[-1]))
    for a in range(size):
        for b in range(size):
            out += np.einsum(
                "nhwc,co->nhwo", images[:, a : a + height, b : b + width], kernel[a, b]
            )
    return out


def test_weight_norm_conv_and_its_mean_only_batch_norm_match_numpy():
    rng = np.random.default_rng(0)
    layer = WeightNormConv2D(4, 3, padding="valid")
    layer.build((None, 6, 6, 2))
    scale, bias = rng.uniform(0.5, 2.0, 4), rng.normal(size=4)
    layer.scale.assign(scale.astype("float32"))
    layer.bias.assign(bias.astype("float32"))
    v = keras.ops.convert_to_numpy(layer.kernel).astype(np.float64)
    kernel = v * scale / np.sqrt((v**2).sum(axis=(0, 1, 2)))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.normalized_kernel()), kernel, rtol=1e-5
    )

    moving = np.zeros(4)
    for seed in (1, 2):
        images = np.random.default_rng(seed).normal(1.0, 1.0, (5, 6, 6, 2)).astype("float32")
        products = numpy_valid_conv(images.astype(np.float64), kernel)
        batch_mean = products.mean(axis=(0, 1, 2))
        outputs = keras.ops.convert_to_numpy(layer(images, training=True))
        np.testing.assert_allclose(outputs, products - batch_mean + bias, rtol=1e-4, atol=1e-4)
        moving = 0.999 * moving + 0.001 * batch_mean  # PyTorch momentum 0.001
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(layer.moving_mean), moving, rtol=1e-4, atol=1e-7
        )
    inference = keras.ops.convert_to_numpy(layer(images, training=False))
    np.testing.assert_allclose(inference, products - moving + bias, rtol=1e-4, atol=1e-4)


@pytest.mark.slow_on_jax
def test_data_dependent_init_gives_zero_mean_unit_variance_pre_activations():
    model = conv_large_wn(num_classes=7, width=0.125, dropout=0.0)
    images = np.random.default_rng(3).normal(0.5, 2.0, (24, 32, 32, 3)).astype("float32")
    assert initialize_from_data(model, images) == 10
    layers = [layer for layer in model.layers if isinstance(layer, WeightNormMeanOnlyBN)]
    probe = keras.Model(model.input, [layer.output for layer in layers])
    for layer, output in zip(layers, probe(images, training=False)):
        output = keras.ops.convert_to_numpy(output)
        axes = tuple(range(output.ndim - 1))
        expected_std = 0.1 if layer.name == "logits" else 1.0
        np.testing.assert_allclose(output.mean(axis=axes), 0.0, atol=1e-4 * expected_std + 1e-5)
        np.testing.assert_allclose(output.std(axis=axes), expected_std, rtol=1e-3)
    # Models without weight-normalized layers are left alone.
    assert initialize_from_data(conv_large(width=0.125), images) == 0


def test_conv_large_wn_round_trips_through_a_keras_file(tmp_path):
    model = conv_large_wn(num_classes=3, width=0.125)
    images = np.random.default_rng(4).normal(size=(4, 32, 32, 3)).astype("float32")
    initialize_from_data(model, images)
    model.save(tmp_path / "wn.keras")
    restored = keras.models.load_model(tmp_path / "wn.keras")
    for original, loaded in zip(model(images), restored(images)):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(loaded), keras.ops.convert_to_numpy(original)
        )


def wrn_parameter_count(num_classes=10, depth=28, widen=2):
    """WRN-depth-widen's trainable parameters by hand: 3x3 kernels, 1x1 shortcuts,
    batch-norm scale and offset, the dense head."""
    blocks = (depth - 4) // 6
    widths = [16, 16 * widen, 32 * widen, 64 * widen]
    count = 3 * 3 * 3 * widths[0]  # stem
    channels = widths[0]
    for filters in widths[1:]:
        for index in range(blocks):
            count += 2 * channels  # pre-activation batch norm
            count += 9 * channels * filters + 2 * filters + 9 * filters * filters
            if channels != filters:
                count += channels * filters  # 1x1 shortcut
            channels = filters
    return count + 2 * channels + channels * num_classes + num_classes


@pytest.mark.slow_on_jax
def test_wrn_28_2_size_and_contract():
    from lcmt_tf.models import wrn_28_2

    model = wrn_28_2()
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    assert trainable == wrn_parameter_count() == 1_467_610
    features, logits = model(np.zeros((2, 32, 32, 3), "float32"), training=False)
    assert tuple(features.shape) == (2, 128) and tuple(logits.shape) == (2, 10)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 25 and all(norm.momentum == 0.999 for norm in norms)  # PyTorch 0.001


@pytest.mark.slow
@pytest.mark.tensorflow_only  # backend-independent wrapping; JAX compiles the deep net slowly
def test_from_backbone_wraps_a_keras_application_into_the_contract():
    from lcmt_tf import MeanTeacher
    from lcmt_tf.augment import Augmentation
    from lcmt_tf.models import from_backbone

    backbone = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3), alpha=0.35
    )
    student = from_backbone(backbone, num_classes=5, feature_dim=128)
    features, logits = student(np.zeros((3, 32, 32, 3), "float32"), training=False)
    assert tuple(features.shape) == (3, 128) and tuple(logits.shape) == (3, 5)
    assert student.get_layer("features").kernel.shape == (backbone.output_shape[-1], 128)
    # It trains as a MeanTeacher student: one step changes its weights.
    model = MeanTeacher(student, Augmentation([0.5] * 3, [0.25] * 3))
    model.lc_weight.assign(1.0)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    rng = np.random.default_rng(0)
    batch = {
        "labeled_images": rng.integers(0, 256, (4, 32, 32, 3), dtype="uint8"),
        "labels": np.arange(4, dtype="int32"),
        "unlabeled_images": rng.integers(0, 256, (4, 32, 32, 3), dtype="uint8"),
    }
    before = student.get_layer("features").kernel.numpy().copy()
    model.fit(FixedBatches([batch]), epochs=1, verbose=0, shuffle=False)
    assert not np.allclose(student.get_layer("features").kernel.numpy(), before)


@pytest.mark.tensorflow_only  # name lookup and wrapping: backend-independent, checked once
def test_keras_applications_names_are_checked():
    from lcmt_tf.errors import UserInputError
    from lcmt_tf.models import model_spec

    spec = model_spec("keras_applications:NoSuchNet")
    with pytest.raises(UserInputError, match="keras.applications has no 'NoSuchNet'"):
        spec.build(num_classes=10, input_shape=(32, 32, 3), width=1.0)
    student = model_spec("keras_applications:MobileNetV2").build(10, (32, 32, 3), 1.0)
    assert tuple(student.outputs[0].shape) == (None, 128)


@pytest.mark.tensorflow_only  # loading a weights file: backend-independent, checked once
def test_a_keras_application_starts_from_a_local_backbone_weights_file(tmp_path):
    from lcmt_tf.errors import UserInputError
    from lcmt_tf.models import model_spec

    trained = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    trained.set_weights(
        [np.full(w.shape, 0.01 * i, w.dtype) for i, w in enumerate(trained.get_weights())]
    )
    path = str(tmp_path / "mobilenet_v2_notop.weights.h5")
    trained.save_weights(path)
    spec = model_spec("keras_applications:MobileNetV2")
    student = spec.build(10, (32, 32, 3), 1.0, backbone_weights=path)
    backbone = student.get_layer(trained.name)
    for loaded, saved in zip(backbone.get_weights(), trained.get_weights()):
        np.testing.assert_array_equal(loaded, saved)
    other = keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    other.save_weights(str(tmp_path / "other.weights.h5"))
    with pytest.raises(UserInputError, match="^--backbone_weights=.*other.weights.h5: "):
        spec.build(10, (32, 32, 3), 1.0, backbone_weights=str(tmp_path / "other.weights.h5"))


@pytest.mark.tensorflow_only  # loading a preset: backend-independent, checked once
def test_a_keras_hub_backbone_starts_from_a_local_preset_with_its_weights(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    from lcmt_tf.errors import UserInputError
    from lcmt_tf.models import model_spec

    saved = keras_hub.models.VGGBackbone(
        stackwise_num_repeats=[1, 1], stackwise_num_filters=[8, 16], image_shape=(32, 32, 3)
    )
    saved.set_weights([np.full(w.shape, 0.01 * i, w.dtype) for i, w in enumerate(saved.weights)])
    saved.save_to_preset(str(tmp_path / "vgg_preset"))
    student = model_spec(f"keras_hub:{tmp_path / 'vgg_preset'}").build(10, (32, 32, 3), 1.0)
    features, logits = student(np.zeros((2, 32, 32, 3), "float32"), training=False)
    assert tuple(features.shape) == (2, 128) and tuple(logits.shape) == (2, 10)
    (backbone,) = [layer for layer in student.layers if isinstance(layer, type(saved))]
    for loaded, expected in zip(backbone.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(loaded, expected)
    with pytest.raises(UserInputError, match="not a folder; give a local KerasHub preset"):
        model_spec(f"keras_hub:{tmp_path / 'missing'}").build(10, (32, 32, 3), 1.0)
