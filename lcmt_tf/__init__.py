"""lcmt_tf: Local Clustering with Mean Teacher for semi-supervised learning, in Keras 3.

The public API is imported lazily, so that `import lcmt_tf.config` (the command
line's --dry_run, for example) does not start a deep-learning backend; the classes
`keras.models.load_model` needs are registered as soon as Keras is imported
(lcmt_tf.registration).
"""

import importlib

from lcmt_tf import registration as _registration

__version__ = "0.1.0"

_EXPORTS = {
    "Augmentation": "lcmt_tf.augment",
    "CollapseMonitor": "lcmt_tf.callbacks",
    "ConciseProgbar": "lcmt_tf.callbacks",
    "ConsistencyRampup": "lcmt_tf.callbacks",
    "UnlabeledWeightSchedule": "lcmt_tf.callbacks",
    "WeightRampup": "lcmt_tf.callbacks",
    "LocalClusteringSchedule": "lcmt_tf.callbacks",
    "NonFiniteLossGuard": "lcmt_tf.callbacks",
    "EvaluationErrors": "lcmt_tf.callbacks",
    "evaluation_epochs": "lcmt_tf.callbacks",
    "LinearLRDecay": "lcmt_tf.callbacks",
    "HistoryCSV": "lcmt_tf.callbacks",
    "local_clustering": "lcmt_tf.losses",
    "local_clustering_loss": "lcmt_tf.losses",
    "local_clustering_of_distances": "lcmt_tf.losses",
    "distance_quantiles": "lcmt_tf.losses",
    "softmax_mse": "lcmt_tf.losses",
    "pseudo_label_cross_entropy": "lcmt_tf.losses",
    "MeanTeacher": "lcmt_tf.mean_teacher",
    "FixMatch": "lcmt_tf.fixmatch",
    "StrongAugmentation": "lcmt_tf.augment",
    "PerImageRandAugment": "lcmt_tf.augment",
    "SemiSupervisedModel": "lcmt_tf.semi_supervised",
    "errors_from_accuracies": "lcmt_tf.semi_supervised",
    "conv_large": "lcmt_tf.models.convnet",
    "conv_large_wn": "lcmt_tf.models.convnet_wn",
    "initialize_from_data": "lcmt_tf.models.convnet_wn",
    "CoupledWeightDecaySGD": "lcmt_tf.optimizers",
    "digits_net": "lcmt_tf.models.convnet",
    "linear_decay": "lcmt_tf.schedules",
    "sigmoid_rampup": "lcmt_tf.schedules",
    "TrainConfig": "lcmt_tf.config",
    "train_config": "lcmt_tf.flagfiles",
    "run": "lcmt_tf.train",
    "fork": "lcmt_tf.train",
    "ConfirmationBiasMonitor": "lcmt_tf.callbacks",
    "confirmation_bias": "lcmt_tf.diagnostics",
    "check_loss_terms": "lcmt_tf.sanity",
    "LossWiringError": "lcmt_tf.sanity",
    "from_backbone": "lcmt_tf.models.backbone",
    "wrn_28_2": "lcmt_tf.models.wrn",
    "UserInputError": "lcmt_tf.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lcmt_tf' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])


_registration.install()
