"""Networks with the `[features, logits]` contract, and the registry of --model names.

Every network maps normalized images (N, H, W, C) to `[features, logits]`: the
representation z = g(x) on which Local Clustering acts, and h(z). `MODELS` maps each
--model name to its builder and the smallest image side it accepts; this module
imports no deep-learning backend until a network is built, so configuration checks
stay light.

    convnet.py      conv_large (the 13-layer ConvNet) and digits_net, batch-normalized
    convnet_wn.py   conv_large_wn, the authors' variant: weight norm + mean-only batch
                    norm, initialized from the data (`initialize_from_data`)
    wrn.py          wrn_28_2, the Wide ResNet of FixMatch / USB / TorchSSL
    backbone.py     from_backbone: any Keras network as g; keras_applications:NAME and
                    keras_hub:PRESET_DIR
"""

from __future__ import annotations

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Where a network's builder lives, and the smallest height and width of image it
    accepts (its poolings and 'valid' convolutions must leave at least one pixel)."""

    module: str
    builder: str
    min_image_size: int
    options: tuple[tuple[str, str], ...] = ()  # more keyword arguments of the builder

    def build(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int],
        width: float,
        backbone_weights: str = "",
    ):
        """The network; `backbone_weights` (keras_applications only) is a weights file
        of the backbone without its top."""
        function = getattr(importlib.import_module(self.module), self.builder)
        options = dict(self.options)
        if backbone_weights:
            options["weights"] = backbone_weights
        return function(num_classes=num_classes, input_shape=input_shape, width=width, **options)


MODELS = {
    # Two 2x2 poolings, then a 3x3 'valid' convolution: 12 -> 6 -> 3 -> 1 pixel.
    "conv_large": ModelSpec("lcmt_tf.models.convnet", "conv_large", min_image_size=12),
    "conv_large_wn": ModelSpec("lcmt_tf.models.convnet_wn", "conv_large_wn", min_image_size=12),
    # One 2x2 pooling.
    "digits_net": ModelSpec("lcmt_tf.models.convnet", "digits_net", min_image_size=2),
    # Two stride-2 stages: 8 -> 4 -> 2 pixels.
    "wrn_28_2": ModelSpec("lcmt_tf.models.wrn", "wrn_28_2", min_image_size=8),
}
KERAS_APPLICATIONS_PREFIX = "keras_applications:"
KERAS_HUB_PREFIX = "keras_hub:"


def is_model_name(name: str) -> bool:
    """Whether --model=name names a network: a MODELS entry, keras_applications:NAME or
    keras_hub:PRESET_DIR."""
    return name in MODELS or name.startswith((KERAS_APPLICATIONS_PREFIX, KERAS_HUB_PREFIX))


def model_spec(name: str) -> ModelSpec:
    """The ModelSpec of a --model name: a MODELS entry, keras_applications:NAME or
    keras_hub:PRESET_DIR (most of these backbones need 32x32 images at least)."""
    for prefix, builder, option in (
        (KERAS_APPLICATIONS_PREFIX, "keras_application", "application"),
        (KERAS_HUB_PREFIX, "keras_hub_backbone", "preset"),
    ):
        if name.startswith(prefix):
            return ModelSpec(
                "lcmt_tf.models.backbone",
                builder,
                min_image_size=32,
                options=((option, name[len(prefix) :]),),
            )
    return MODELS[name]


_EXPORTS = {
    "conv_large": "lcmt_tf.models.convnet",
    "digits_net": "lcmt_tf.models.convnet",
    "conv_large_wn": "lcmt_tf.models.convnet_wn",
    "initialize_from_data": "lcmt_tf.models.convnet_wn",
    "wrn_28_2": "lcmt_tf.models.wrn",
    "wide_resnet": "lcmt_tf.models.wrn",
    "from_backbone": "lcmt_tf.models.backbone",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lcmt_tf.models' has no attribute {name!r}")
