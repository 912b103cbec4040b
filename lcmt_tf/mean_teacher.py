"""MeanTeacher: a `keras.Model` that trains a student with an EMA teacher and
Local Clustering, driven by `model.fit`.

Batch structure for `fit` (from a `tf.data.Dataset` or a `keras.utils.PyDataset`):
a dict with

    "labeled_images":   (n_l, H, W, C) uint8 (or float in [0, 255]) images
    "labels":           (n_l,) integer class indices
    "unlabeled_images": (n_u, H, W, C) images of the same shape

`evaluate` takes the usual `(images, labels)` batches and reports the student's and
the teacher's accuracy; `predict` (and `model(images)`) returns the teacher's logits.

The loss math (`_forward`) is backend-agnostic `keras.ops`; only `train_step`
differs per backend: a GradientTape on TensorFlow, a stateless `jax.value_and_grad`
on JAX.
"""

from __future__ import annotations

import keras
from keras import ops

from lcmt_tf.augment import Augmentation
from lcmt_tf.losses import feature_spread, local_clustering, softmax_mse

BATCH_KEYS = ("labeled_images", "labels", "unlabeled_images")

# Per-epoch averages reported by train_step, in display order.
_TRAIN_MEANS = (
    "loss",
    "ce",
    "consistency",
    "lc",
    "lc_neighbor_fraction",
    "feature_spread",
    "lambda1",
    "lambda2",
)


@keras.saving.register_keras_serializable(package="lcmt_tf")
class MeanTeacher(keras.Model):
    """Mean Teacher with Local Clustering (Chen et al.).

    Args:
        student: a model mapping normalized images to `[features, logits]`.
        augmentation: an `Augmentation` layer (normalization + random augmentation).
        ema_decay: alpha in teacher = alpha * teacher + (1 - alpha) * student, applied
            after every optimizer step.
        consistency_weight, lc_weight, lc_epsilon: initial values of lambda1, lambda2
            and epsilon. They are backend variables (`self.consistency_weight`, ...)
            that callbacks assign during fit without retracing the compiled step.
        use_local_clustering: False skips the LC computation entirely (plain Mean
            Teacher); lc and lc_neighbor_fraction are then reported as 0.
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.use_local_clustering = bool(use_local_clustering)
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
        self.consistency_weight = self._scalar_variable(consistency_weight, "lambda1")
        self.lc_weight = self._scalar_variable(lc_weight, "lambda2")
        self.lc_epsilon = self._scalar_variable(lc_epsilon, "lc_epsilon")
        self._mean_trackers = {
            name: keras.metrics.Mean(name=name) for name in _TRAIN_MEANS
        }
        self.student_accuracy = keras.metrics.SparseCategoricalAccuracy(
            name="student_accuracy"
        )
        self.teacher_accuracy = keras.metrics.SparseCategoricalAccuracy(
            name="teacher_accuracy"
        )
        self.built = True

    def _scalar_variable(self, value, name):
        return self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(float(value)),
            trainable=False,
            name=name,
        )

    # ----------------------------------------------------------------- metrics
    @property
    def metrics(self):
        return [*self._mean_trackers.values(), self.student_accuracy, self.teacher_accuracy]

    def _ema_pairs(self):
        """(teacher variable, student variable) for every trainable student weight."""
        return [
            (teacher_variable, student_variable)
            for teacher_variable, student_variable in zip(
                self.teacher.weights, self.student.weights
            )
            if student_variable.trainable
        ]

    # ------------------------------------------------------ backend-agnostic math
    def _forward(self, data):
        """One training forward pass: returns (loss, terms) for the batch `data`."""
        labeled_images, labels, unlabeled_images = (data[key] for key in BATCH_KEYS)
        num_labeled = ops.shape(labeled_images)[0]
        images = ops.concatenate(
            [ops.cast(labeled_images, "float32"), ops.cast(unlabeled_images, "float32")],
            axis=0,
        )
        student_images = self.augmentation(images, training=True)
        teacher_images = self.augmentation(images, training=True)
        student_features, student_logits = self.student(student_images, training=True)
        _, teacher_logits = self.teacher(teacher_images, training=True)
        teacher_logits = ops.stop_gradient(teacher_logits)

        labeled_logits = ops.cast(student_logits[:num_labeled], "float32")
        ce = ops.mean(
            keras.losses.sparse_categorical_crossentropy(
                labels, labeled_logits, from_logits=True
            )
        )
        consistency = softmax_mse(student_logits, teacher_logits)
        if self.use_local_clustering:
            lc, neighbor_fraction = local_clustering(
                student_features[:num_labeled],
                student_features[num_labeled:],
                self.lc_epsilon,
            )
        else:  # plain Mean Teacher: the pairwise distances are not computed at all
            lc = neighbor_fraction = ops.zeros((), "float32")
        loss = ce + self.consistency_weight * consistency + self.lc_weight * lc
        terms = {
            "loss": loss,
            "ce": ce,
            "consistency": consistency,
            "lc": lc,
            "lc_neighbor_fraction": neighbor_fraction,
            "feature_spread": feature_spread(student_features),
            "labels": labels,
            "student_labeled_logits": labeled_logits,
            "teacher_labeled_logits": teacher_logits[:num_labeled],
        }
        return loss, terms

    def _update_metrics(self, terms):
        values = {
            **terms,
            "lambda1": self.consistency_weight,
            "lambda2": self.lc_weight,
        }
        for name, tracker in self._mean_trackers.items():
            tracker.update_state(values[name])
        self.student_accuracy.update_state(terms["labels"], terms["student_labeled_logits"])
        self.teacher_accuracy.update_state(terms["labels"], terms["teacher_labeled_logits"])
        return {metric.name: metric.result() for metric in self.metrics}

    def _ema_value(self, teacher_value, student_value):
        alpha = self.ema_decay
        return alpha * teacher_value + (1.0 - alpha) * student_value

    # ------------------------------------------------------------- train step
    def train_step(self, *args):
        if keras.backend.backend() == "jax":
            return self._jax_train_step(*args)
        if keras.backend.backend() == "tensorflow":
            return self._tensorflow_train_step(*args)
        raise NotImplementedError(
            f"MeanTeacher.train_step supports the tensorflow and jax backends, "
            f"not {keras.backend.backend()!r}."
        )

    def _tensorflow_train_step(self, data):
        import tensorflow as tf

        trainable_variables = self.student.trainable_variables
        # Watch only the student: the teacher's forward pass is then not recorded.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([variable.value for variable in trainable_variables])
            loss, terms = self._forward(data)
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, trainable_variables)
        self.optimizer.apply(gradients, trainable_variables)
        for teacher_variable, student_variable in self._ema_pairs():
            teacher_variable.assign(self._ema_value(teacher_variable, student_variable))
        return self._update_metrics(terms)

    def _jax_train_step(self, state, data):
        import jax

        (
            trainable_values,
            non_trainable_values,
            optimizer_values,
            metrics_values,
        ) = state
        trainable_variables = self.trainable_variables
        non_trainable_variables = self.non_trainable_variables

        def loss_fn(trainable, non_trainable):
            mapping = [*zip(trainable_variables, trainable), *zip(non_trainable_variables, non_trainable)]
            with keras.StatelessScope(state_mapping=mapping) as scope:
                loss, terms = self._forward(data)
                scaled_loss = self.optimizer.scale_loss(loss)
            updated = [
                _current_value(scope, variable, value)
                for variable, value in zip(non_trainable_variables, non_trainable)
            ]
            return scaled_loss, (terms, updated)

        (_, (terms, non_trainable_values)), gradients = jax.value_and_grad(
            loss_fn, has_aux=True
        )(trainable_values, non_trainable_values)
        trainable_values, optimizer_values = self.optimizer.stateless_apply(
            optimizer_values, gradients, trainable_values
        )

        # EMA: the teacher's weights live among the non-trainable variables.
        position = {id(variable): index for index, variable in enumerate(non_trainable_variables)}
        trainable_position = {id(variable): index for index, variable in enumerate(trainable_variables)}
        non_trainable_values = list(non_trainable_values)
        for teacher_variable, student_variable in self._ema_pairs():
            teacher_index = position[id(teacher_variable)]
            student_value = trainable_values[trainable_position[id(student_variable)]]
            non_trainable_values[teacher_index] = self._ema_value(
                non_trainable_values[teacher_index], student_value
            )

        mapping = [*zip(self.metrics_variables, metrics_values), *zip(non_trainable_variables, non_trainable_values)]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            logs = self._update_metrics(terms)
        metrics_values = [
            _current_value(scope, variable, value)
            for variable, value in zip(self.metrics_variables, metrics_values)
        ]
        state = (trainable_values, non_trainable_values, optimizer_values, metrics_values)
        return logs, state

    # ------------------------------------------------------ evaluate / predict
    def call(self, images, training=False):
        """The teacher's logits for raw images (uint8 or float in [0, 255])."""
        _, logits = self.teacher(self.augmentation(images, training=False), training=training)
        return logits

    def _evaluate_batch(self, data):
        images, labels = data[0], data[1]
        normalized = self.augmentation(images, training=False)
        _, student_logits = self.student(normalized, training=False)
        _, teacher_logits = self.teacher(normalized, training=False)
        self.student_accuracy.update_state(labels, student_logits)
        self.teacher_accuracy.update_state(labels, teacher_logits)
        return {
            "student_accuracy": self.student_accuracy.result(),
            "teacher_accuracy": self.teacher_accuracy.result(),
        }

    def test_step(self, *args):
        if keras.backend.backend() != "jax":
            return self._evaluate_batch(*args)
        state, data = args
        trainable_values, non_trainable_values, metrics_values = state
        mapping = [
            *zip(self.trainable_variables, trainable_values),
            *zip(self.non_trainable_variables, non_trainable_values),
            *zip(self.metrics_variables, metrics_values),
        ]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            logs = self._evaluate_batch(data)
        metrics_values = [
            _current_value(scope, variable, value)
            for variable, value in zip(self.metrics_variables, metrics_values)
        ]
        return logs, (trainable_values, non_trainable_values, metrics_values)

    # ----------------------------------------------------------- serialization
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
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        config["augmentation"] = keras.saving.deserialize_keras_object(config["augmentation"])
        return cls(**config)


def _current_value(scope, variable, default):
    value = scope.get_current_value(variable)
    return default if value is None else value
