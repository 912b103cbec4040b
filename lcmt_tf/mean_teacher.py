"""MeanTeacher: a `keras.Model` that trains a student with an EMA teacher and
Local Clustering, driven by `model.fit`.

The batches, the evaluation, the EMA, Local Clustering and the Keras surface are
`SemiSupervisedModel`'s (lcmt_tf/semi_supervised.py); this file adds Mean Teacher's
loss: cross-entropy on the labeled images + lambda1 * consistency (the student's
softmax against the teacher's, on every image, each network on its own augmentation)
+ lambda2 * LC.
"""

from __future__ import annotations

import keras
from keras import ops

from lcmt_tf.losses import feature_spread, prediction_balance, softmax_mse
from lcmt_tf.semi_supervised import (
    BATCH_KEYS,
    EVALUATION_NAMES,
    LC_DISTANCE_QUANTILES,
    LC_TERMS,
    NETWORKS,
    LabeledLogits,
    SemiSupervisedModel,
    error_names,
    errors_from_accuracies,
    log_added,
    training_batch,
)

__all__ = [
    "BATCH_KEYS",
    "EVALUATION_NAMES",
    "LC_DISTANCE_QUANTILES",
    "LC_TERMS",
    "LOSS_TERMS",
    "NETWORKS",
    "MeanTeacher",
    "error_names",
    "errors_from_accuracies",
]

# The per-step values compute_losses returns; fit reports each as its epoch average
# under this name (logs, history, TensorBoard's epoch_<name>). The two weights are
# the values of lambda1 and lambda2 in the step, named after the flags that set
# their maximum.
LOSS_TERMS = (
    "loss",
    "ce",
    "consistency",
    "lc",
    "lc_neighbor_fraction",
    "feature_spread",
    "prediction_balance",
    "consistency_weight",
    "lc_weight",
)


@keras.saving.register_keras_serializable(package="lcmt_tf")
class MeanTeacher(SemiSupervisedModel):
    """Mean Teacher with Local Clustering (Chen et al.).

    Built with a student and an augmentation only, `fit` trains Mean Teacher as the
    paper does: λ1 ramps up to 100 over the first 5 epochs (`ConsistencyRampup()`,
    which fit adds when `callbacks` has no ConsistencyRampup of yours; with the
    paper's ramp, λ1 is 0 in the first epoch and rises from the second). Local
    Clustering joins the loss only with a `LocalClusteringSchedule` callback (λ2 is 0
    otherwise). λ1 and λ2 are backend variables of the model
    (`model.consistency_weight`, `model.lc_weight`) that the callbacks assign at the
    start of every epoch, without retracing the compiled step.

    Args:
        student: a model mapping normalized images to `[features, logits]`.
        augmentation: an `Augmentation` layer (normalization + random augmentation).
        ema_decay: alpha in teacher = alpha * teacher + (1 - alpha) * student, in
            [0, 1], applied after every optimizer step.
        lc_epsilon: epsilon, the LC neighbourhood radius (mean squared feature
            distance), > 0; `model.lc_epsilon` is the one place it lives.
        use_local_clustering: False leaves LC out of the loss (plain Mean Teacher).
        **kwargs: the shared arguments of `SemiSupervisedModel`
            (lcmt_tf.semi_supervised).

    Example:
        ```python
        model = MeanTeacher(lcmt_tf.digits_net(), lcmt_tf.Augmentation(mean, std))
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
        model.fit(batches, epochs=100)  # Mean Teacher with the paper's ramp-up
        teacher_logits = model.predict(images)
        ```
    """

    TERMS = LOSS_TERMS
    WEIGHTS = ("consistency_weight", "lc_weight")
    LOSS_DESCRIPTION = "cross-entropy + λ1 consistency + λ2 Local Clustering"

    def compute_losses(self, data):
        """One training forward pass over the batch dict `data`.

        Returns:
            (loss, terms, labeled_logits): the scalar loss
                CE + lambda1 * consistency + lambda2 * LC; `terms`, a dict with a scalar
                for every name in LOSS_TERMS (and LC_TERMS with Local Clustering); and
                the `LabeledLogits` for the accuracies.
        """
        data = training_batch(data)
        labels = data["labels"]
        images, num_labeled = self.joined_images(data)
        student_images = self.augmentation(images, training=True)
        teacher_images = self.augmentation(images, training=True)
        student_features, student_logits = self.network_outputs(
            self.student, student_images, num_labeled
        )
        _, teacher_logits = self.network_outputs(self.teacher, teacher_images, num_labeled)
        teacher_logits = ops.stop_gradient(teacher_logits)

        labeled_logits = ops.cast(student_logits[:num_labeled], "float32")
        ce = self.cross_entropy(labels, labeled_logits)
        consistency = softmax_mse(student_logits, teacher_logits)
        lc, neighbor_fraction, lc_terms = self.local_clustering_terms(student_features, num_labeled)
        loss = self.with_local_clustering(ce + self.consistency_weight * consistency, lc)
        terms = {
            "loss": loss,
            "ce": ce,
            "consistency": consistency,
            "lc": lc,
            "lc_neighbor_fraction": neighbor_fraction,
            "feature_spread": feature_spread(student_features),
            "prediction_balance": prediction_balance(student_logits),
            "consistency_weight": ops.convert_to_tensor(self.consistency_weight),
            "lc_weight": ops.convert_to_tensor(self.lc_weight),
            **lc_terms,
        }
        return loss, terms, LabeledLogits(labels, labeled_logits, teacher_logits[:num_labeled])

    def default_callbacks(self, callbacks: list) -> list:
        """`ConsistencyRampup()` (the paper's λ1: 100 after 5 epochs) when `callbacks`
        has no ConsistencyRampup."""
        from lcmt_tf.callbacks import ConsistencyRampup  # callbacks import this module

        if any(isinstance(callback, ConsistencyRampup) for callback in callbacks):
            return []
        rampup = ConsistencyRampup()
        log_added(
            rampup,
            f"λ1 ramps up to {rampup.max_weight:g} over {rampup.rampup_epochs:g} epochs (the "
            "paper's); pass ConsistencyRampup(...) to change it, ConsistencyRampup(0) for none",
        )
        return [rampup]
