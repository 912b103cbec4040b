import numpy as np
import pytest

from lcmt_tf.models import conv_large, digits_net


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
