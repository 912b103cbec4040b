"""MeanTeacher: a `keras.Model` that trains a student with an EMA teacher and
Local Clustering, driven by `model.fit`.

Batch structure for `fit` (from a `tf.data.Dataset` or a `keras.utils.PyDataset`):
a dict with

    "labeled_images":   (n_l, H, W, C) uint8 (or float in [0, 255]) images
    "labels":           (n_l,) integer class indices
    "unlabeled_images": (n_u, H, W, C) images of the same shape

`evaluate` takes the usual `(images, labels)` batches and reports the student's and
the teacher's accuracy; `predict` (and `model(images)`) returns the teacher's logits.

This file holds what is the same on every backend: the losses of a step
(`compute_losses`), the metrics, and the EMA rule. The steps that differ per backend
(a GradientTape on TensorFlow, stateless `jax.value_and_grad` on JAX) are in
`lcmt_tf/steps/`, chosen once when this module is imported.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
from keras import ops

from lcmt_tf.augment import Augmentation
from lcmt_tf.config import FORWARD_PASSES
from lcmt_tf.losses import (
    distance_quantiles,
    feature_spread,
    lc_distances,
    local_clustering_of_distances,
    softmax_mse,
)
from lcmt_tf.steps import BackendSteps

BATCH_KEYS = ("labeled_images", "labels", "unlabeled_images")

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
    "consistency_weight",
    "lc_weight",
)
# Reported too when Local Clustering is computed: epsilon, and quantiles of the pair
# distances its mask d <= epsilon acts on (lc_distance_p10 = 10 % quantile, ...).
LC_DISTANCE_QUANTILES = {"lc_distance_p10": 0.1, "lc_distance_p50": 0.5, "lc_distance_p90": 0.9}
LC_TERMS = ("lc_epsilon", *LC_DISTANCE_QUANTILES)


class LabeledLogits(NamedTuple):
    """What the accuracy metrics of a training step need: the labeled images'
    labels and the student's and teacher's logits for them."""

    labels: object
    student: object
    teacher: object


NETWORKS = ("student", "teacher")


def error_names(split: str = "test") -> tuple[str, str]:
    """The names of the student's and the teacher's error on `split` ("test" or
    "validation"): `student_<split>_error`, `teacher_<split>_error`."""
    return tuple(f"{network}_{split}_error" for network in NETWORKS)


def errors_from_accuracies(evaluation: dict, split: str = "test") -> dict[str, float]:
    """Student and teacher error (percent) on `split` from MeanTeacher.evaluate's dict
    (`student_accuracy`, `teacher_accuracy`), under `error_names(split)`."""
    return {
        name: 100.0 * (1.0 - float(evaluation[f"{network}_accuracy"]))
        for name, network in zip(error_names(split), NETWORKS)
    }


@keras.saving.register_keras_serializable(package="lcmt_tf")
class MeanTeacher(BackendSteps, keras.Model):
    """Mean Teacher with Local Clustering (Chen et al.).

    Args:
        student: a model mapping normalized images to `[features, logits]`.
        augmentation: an `Augmentation` layer (normalization + random augmentation).
        ema_decay: alpha in teacher = alpha * teacher + (1 - alpha) * student, applied
            after every optimizer step.
        consistency_weight: initial value of lambda1, the consistency cost's weight.
            Like the next two, a backend variable of the model
            (`model.consistency_weight`) that callbacks assign during fit without
            retracing the compiled step.
        lc_weight: initial value of lambda2, the LC loss's weight.
        lc_epsilon: initial value of epsilon, the LC neighbourhood radius (mean squared
            feature distance).
        use_local_clustering: False leaves LC out of the loss (plain Mean Teacher).
        measure_local_clustering: with `use_local_clustering` False, still measure what
            LC would see (its value, neighbour fraction, epsilon and distance
            quantiles, on features with no gradient), so that a Mean Teacher run shows
            the distances an MT + LC run forked from it starts with; False skips the
            computation entirely (lc and lc_neighbor_fraction are then reported as 0,
            and the LC_TERMS not at all).
        lc_epsilon_batch_quantile: an extension, not in the paper: with q in (0, 1), ε
            is the q-quantile of each step's LC pair distances, so it follows the
            features' scale (`lc_epsilon_for`); 0 keeps `lc_epsilon`.
        lc_epsilon_batch_momentum: with a batch quantile, m in [0, 1): ε is a moving
            average of the quantiles over steps, starting from `lc_epsilon`.
        lc_self_pairs: count the i = j pairs of the unlabeled block as neighbours, as
            the authors' code does (see `local_clustering_of_distances`).
        forward_passes: "joint" runs each network once over the labeled and unlabeled
            images together; "separate" runs it once per group, as the authors' code
            does, so that batch statistics are per group.
        **kwargs: `keras.Model` arguments (`name`, ...).

    Example:
        ```python
        model = MeanTeacher(lcmt_tf.digits_net(), lcmt_tf.Augmentation(mean, std))
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
        model.fit(batches, epochs=100, callbacks=[lcmt_tf.ConsistencyRampup(30, 5)])
        teacher_logits = model.predict(images)
        ```
    """

    def __init__(
        self,
        student: keras.Model,
        augmentation: Augmentation,
        ema_decay: float = 0.99,
        consistency_weight: float = 0.0,
        lc_weight: float = 0.0,
        lc_epsilon: float = 1.0,
        use_local_clustering: bool = True,
        forward_passes: str = "joint",
        measure_local_clustering: bool = True,
        lc_epsilon_batch_quantile: float = 0.0,
        lc_epsilon_batch_momentum: float = 0.0,
        lc_self_pairs: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if forward_passes not in FORWARD_PASSES:
            raise ValueError(
                f"forward_passes must be one of {FORWARD_PASSES}, not {forward_passes!r}"
            )
        self.forward_passes = forward_passes
        self.use_local_clustering = bool(use_local_clustering)
        self.measure_local_clustering = bool(measure_local_clustering)
        self.lc_epsilon_batch_quantile = float(lc_epsilon_batch_quantile)
        self.lc_epsilon_batch_momentum = float(lc_epsilon_batch_momentum)
        self.lc_self_pairs = bool(lc_self_pairs)
        self.student = student
        self.augmentation = augmentation
        self.ema_decay = float(ema_decay)
        self.teacher = keras.models.clone_model(student)
        self.teacher.set_weights(student.get_weights())
        # The teacher's layers stay trainable, so that its batch normalization uses
        # batch statistics in training mode; its variables are marked non-trainable,
        # so no optimizer or gradient ever touches them: only the EMA does.
        for variable in self.teacher.weights:
            variable.trainable = False
        self.consistency_weight = self._scalar_variable(consistency_weight, "consistency_weight")
        self.lc_weight = self._scalar_variable(lc_weight, "lc_weight")
        # The step may assign ε (lc_epsilon_batch_quantile): every replica computes the
        # same value from the global batch's distances, and the first one's is kept.
        self.lc_epsilon = self._scalar_variable(
            lc_epsilon, "lc_epsilon", aggregation="only_first_replica"
        )
        logged = LOSS_TERMS + (LC_TERMS if self.computes_local_clustering else ())
        self._term_trackers = {name: keras.metrics.Mean(name=name) for name in logged}
        self.student_accuracy = keras.metrics.SparseCategoricalAccuracy(name="student_accuracy")
        self.teacher_accuracy = keras.metrics.SparseCategoricalAccuracy(name="teacher_accuracy")
        self._ema_positions = None
        self.built = True

    def _scalar_variable(self, value, name, aggregation="none"):
        return self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(float(value)),
            trainable=False,
            name=name,
            aggregation=aggregation,
        )

    @property
    def computes_local_clustering(self) -> bool:
        """Whether a step computes LC's distances: in the loss, or measured only."""
        return self.use_local_clustering or self.measure_local_clustering

    @property
    def metrics(self):
        return [*self._term_trackers.values(), self.student_accuracy, self.teacher_accuracy]

    @property
    def ema_pairs(self) -> list:
        """(teacher variable, student variable) for every trainable student weight:
        the pairs the EMA updates after every optimizer step."""
        return [
            (teacher_variable, student_variable)
            for teacher_variable, student_variable in zip(
                self.teacher.weights, self.student.weights
            )
            if student_variable.trainable
        ]

    @property
    def ema_positions(self) -> tuple[tuple[int, int], ...]:
        """`ema_pairs` as (index in non_trainable_variables, index in
        trainable_variables), for steps that work on lists of values; built once."""
        if self._ema_positions is None:
            teacher_index = {id(v): i for i, v in enumerate(self.non_trainable_variables)}
            student_index = {id(v): i for i, v in enumerate(self.trainable_variables)}
            self._ema_positions = tuple(
                (teacher_index[id(teacher)], student_index[id(student)])
                for teacher, student in self.ema_pairs
            )
        return self._ema_positions

    def moving_average(self, teacher_value, student_value, applied=None):
        """The EMA rule: alpha * teacher + (1 - alpha) * student, or the teacher
        unchanged where `applied` (see `step_applied`) is false."""
        alpha = self.ema_decay
        average = alpha * teacher_value + (1.0 - alpha) * student_value
        return average if applied is None else ops.where(applied, average, teacher_value)

    def step_applied(self, gradients):
        """Whether the optimizer applies these gradients: a scalar boolean under a
        LossScaleOptimizer (float16), which skips steps with non-finite gradients and
        lowers its scale; None (always) otherwise. The teacher skips with it."""
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            return self.optimizer.check_finite(gradients)
        return None

    def network_outputs(self, network, images, num_labeled, training=True):
        """`[features, logits]` of `network` over a batch whose first `num_labeled`
        images are the labeled ones: one pass, or one per group (forward_passes)."""
        if self.forward_passes == "joint":
            return network(images, training=training)
        labeled = network(images[:num_labeled], training=training)
        unlabeled = network(images[num_labeled:], training=training)
        return [ops.concatenate([a, b], axis=0) for a, b in zip(labeled, unlabeled)]

    def _joined_images(self, data):
        labeled_images, _, unlabeled_images = (data[key] for key in BATCH_KEYS)
        images = ops.concatenate(
            [ops.cast(labeled_images, "float32"), ops.cast(unlabeled_images, "float32")],
            axis=0,
        )
        return images, ops.shape(labeled_images)[0]

    def global_lc_distances(self, features, num_labeled):
        """`lc_distances` of a batch's features (labeled first), over the global batch
        when training data-parallel (lcmt_tf.distribute)."""
        return lc_distances(
            self.gather_replicas(features[:num_labeled]),
            self.gather_replicas(features[num_labeled:]),
        )

    def lc_pair_distances(self, data):
        """The distances LC's mask acts on for the batch dict `data`, as the training
        step computes them (augmentation, student in training mode, forward_passes),
        flattened; it updates batch-norm statistics and random states like a step."""
        images, num_labeled = self._joined_images(data)
        features, _ = self.network_outputs(
            self.student, self.augmentation(images, training=True), num_labeled
        )
        blocks = self.global_lc_distances(features, num_labeled)
        return ops.concatenate([ops.reshape(block, (-1,)) for block in blocks])

    def lc_epsilon_for(self, distances):
        """The ε of this step: the `lc_epsilon` variable, or with
        `lc_epsilon_batch_quantile` = q the q-quantile of this step's pair distances
        (no gradient), averaged over steps with `lc_epsilon_batch_momentum` = m
        (ε = m ε_previous + (1 - m) quantile); then the variable is assigned the ε used,
        so it is logged, checkpointed and followed from step to step."""
        if not self.lc_epsilon_batch_quantile:
            return self.lc_epsilon
        (quantile,) = distance_quantiles(
            distances, [self.lc_epsilon_batch_quantile], self.lc_self_pairs
        )
        previous = ops.convert_to_tensor(self.lc_epsilon, "float32")
        momentum = self.lc_epsilon_batch_momentum
        epsilon = momentum * previous + (1.0 - momentum) * quantile if momentum else quantile
        # A batch whose pairs all coincide (distance 0) keeps the previous ε.
        epsilon = ops.where(epsilon > 0, epsilon, previous)
        self.lc_epsilon.assign(epsilon)
        return epsilon

    def local_clustering_terms(self, student_features, num_labeled):
        """(lc, neighbor_fraction, the LC_TERMS) of a step. With `use_local_clustering`
        the LC loss of the student's features; with only `measure_local_clustering`
        the same numbers on features with no gradient (out of the loss); otherwise
        nothing is computed (zeros, no LC_TERMS)."""
        if not self.computes_local_clustering:
            zero = ops.zeros((), "float32")
            return zero, zero, {}
        features = (
            student_features if self.use_local_clustering else ops.stop_gradient(student_features)
        )
        distances = self.global_lc_distances(features, num_labeled)
        epsilon = self.lc_epsilon_for(distances)
        lc, neighbor_fraction = local_clustering_of_distances(
            distances, epsilon, self.lc_self_pairs
        )
        quantiles = distance_quantiles(
            distances, list(LC_DISTANCE_QUANTILES.values()), self.lc_self_pairs
        )
        terms = {
            "lc_epsilon": ops.convert_to_tensor(epsilon, "float32"),
            **dict(zip(LC_DISTANCE_QUANTILES, quantiles)),
        }
        return lc, neighbor_fraction, terms

    def compute_losses(self, data):
        """One training forward pass over the batch dict `data`.

        Returns:
            (loss, terms, labeled_logits): the scalar loss
                CE + lambda1 * consistency + lambda2 * LC; `terms`, a dict with a scalar
                for every name in LOSS_TERMS (and LC_TERMS with Local Clustering); and
                the `LabeledLogits` for the accuracies.
        """
        labels = data["labels"]
        images, num_labeled = self._joined_images(data)
        student_images = self.augmentation(images, training=True)
        teacher_images = self.augmentation(images, training=True)
        student_features, student_logits = self.network_outputs(
            self.student, student_images, num_labeled
        )
        _, teacher_logits = self.network_outputs(self.teacher, teacher_images, num_labeled)
        teacher_logits = ops.stop_gradient(teacher_logits)

        labeled_logits = ops.cast(student_logits[:num_labeled], "float32")
        ce = ops.mean(
            keras.losses.sparse_categorical_crossentropy(labels, labeled_logits, from_logits=True)
        )
        consistency = softmax_mse(student_logits, teacher_logits)
        lc, neighbor_fraction, lc_terms = self.local_clustering_terms(student_features, num_labeled)
        loss = ce + self.consistency_weight * consistency
        if self.use_local_clustering:
            loss = loss + self.lc_weight * lc
        terms = {
            "loss": loss,
            "ce": ce,
            "consistency": consistency,
            "lc": lc,
            "lc_neighbor_fraction": neighbor_fraction,
            "feature_spread": feature_spread(student_features),
            "consistency_weight": ops.convert_to_tensor(self.consistency_weight),
            "lc_weight": ops.convert_to_tensor(self.lc_weight),
            **lc_terms,
        }
        return loss, terms, LabeledLogits(labels, labeled_logits, teacher_logits[:num_labeled])

    def update_metrics(self, terms: dict, labeled_logits: LabeledLogits) -> dict:
        """Adds one step to the epoch's averages and accuracies; returns the logs."""
        for name, tracker in self._term_trackers.items():
            tracker.update_state(terms[name])
        self.student_accuracy.update_state(labeled_logits.labels, labeled_logits.student)
        self.teacher_accuracy.update_state(labeled_logits.labels, labeled_logits.teacher)
        return {metric.name: metric.result() for metric in self.metrics}

    def evaluation_metrics(self, data) -> dict:
        """evaluate's step: student and teacher accuracy on `(images, labels)` or
        `(images, labels, sample_weights)` (weight 0: padding, not counted)."""
        images, labels = data[0], data[1]
        weights = data[2] if len(data) > 2 else None
        normalized = self.augmentation(images, training=False)
        _, student_logits = self.student(normalized, training=False)
        _, teacher_logits = self.teacher(normalized, training=False)
        self.student_accuracy.update_state(labels, student_logits, sample_weight=weights)
        self.teacher_accuracy.update_state(labels, teacher_logits, sample_weight=weights)
        return {
            "student_accuracy": self.student_accuracy.result(),
            "teacher_accuracy": self.teacher_accuracy.result(),
        }

    def fit(self, x=None, y=None, **kwargs):
        """`keras.Model.fit`, with two additions.

        For batches that serve one epoch at a time (`SemiSupervisedBatches`, which have
        an `epoch_callback`), fit adds that callback when `callbacks` lacks it, so every
        epoch (from `initial_epoch` on, as when resuming) gets its own seeded order, and
        leaves `shuffle` off: the order is already shuffled, reproducibly. `shuffle=True`
        passed for them is refused.

        Without a progress bar of your own in `callbacks`, the bar is `ConciseProgbar`:
        the loss terms and accuracies, not every logged value (the history has them all).
        """
        from lcmt_tf.callbacks import ConciseProgbar  # callbacks import this module

        callbacks = list(kwargs.get("callbacks") or [])
        if hasattr(x, "epoch_callback"):
            if kwargs.get("shuffle") is True:
                raise ValueError(
                    "SemiSupervisedBatches order every epoch by their seed: leave `shuffle` "
                    "out (or pass shuffle=False); Keras' shuffle would reorder the steps "
                    "with Python's global random state"
                )
            kwargs["shuffle"] = False
            x.epoch = kwargs.get("initial_epoch", 0)  # before any batch is read
            if not any(getattr(callback, "batches", None) is x for callback in callbacks):
                callbacks.insert(0, x.epoch_callback())
        if not any(isinstance(callback, keras.callbacks.ProgbarLogger) for callback in callbacks):
            callbacks.append(ConciseProgbar())
        kwargs["callbacks"] = callbacks
        return super().fit(x, y, **kwargs)

    def call(self, images, training=False):
        """The teacher's logits for raw images (uint8 or float in [0, 255])."""
        _, logits = self.teacher(self.augmentation(images, training=False), training=training)
        return logits

    def get_config(self):
        return {
            **super().get_config(),
            "student": keras.saving.serialize_keras_object(self.student),
            "augmentation": keras.saving.serialize_keras_object(self.augmentation),
            "ema_decay": self.ema_decay,
            "consistency_weight": float(ops.convert_to_numpy(self.consistency_weight)),
            "lc_weight": float(ops.convert_to_numpy(self.lc_weight)),
            "lc_epsilon": float(ops.convert_to_numpy(self.lc_epsilon)),
            "use_local_clustering": self.use_local_clustering,
            "measure_local_clustering": self.measure_local_clustering,
            "lc_epsilon_batch_quantile": self.lc_epsilon_batch_quantile,
            "lc_epsilon_batch_momentum": self.lc_epsilon_batch_momentum,
            "lc_self_pairs": self.lc_self_pairs,
            "forward_passes": self.forward_passes,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        config["augmentation"] = keras.saving.deserialize_keras_object(config["augmentation"])
        return cls(**config)
