"""lcmt_tf: Local Clustering with Mean Teacher for semi-supervised learning, in Keras 3."""

from lcmt_tf.augment import Augmentation
from lcmt_tf.callbacks import (
    ConsistencyRampup,
    LocalClusteringSchedule,
    PeriodicEvaluation,
    linear_lr_decay,
)
from lcmt_tf.losses import local_clustering, local_clustering_loss, softmax_mse
from lcmt_tf.mean_teacher import MeanTeacher
from lcmt_tf.models import conv_large, digits_net
from lcmt_tf.schedules import linear_decay, sigmoid_rampup

__version__ = "0.1.0"

__all__ = [
    "Augmentation",
    "ConsistencyRampup",
    "LocalClusteringSchedule",
    "MeanTeacher",
    "PeriodicEvaluation",
    "conv_large",
    "digits_net",
    "linear_decay",
    "linear_lr_decay",
    "local_clustering",
    "local_clustering_loss",
    "sigmoid_rampup",
    "softmax_mse",
]
