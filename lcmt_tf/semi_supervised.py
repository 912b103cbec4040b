"""SemiSupervisedModel: what every method of lcmt_tf shares, as a `keras.Model`.

A student network (images -> [features, logits]), its exponential moving average
(the teacher, updated after every optimizer step), Local Clustering on the student's
features, the metrics, the evaluation, and the Keras surface: `compile`, `fit`,
`evaluate`, `predict` and saving, with the checks that turn a wrong call into one
clear error. A method (`MeanTeacher`, `FixMatch`) adds its unlabeled loss in
`compute_losses` and names its logged terms in `TERMS`.

Batch structure for `fit` (a `keras.utils.PyDataset`, a `tf.data.Dataset`, or any
iterable Keras takes): a dict

    "labeled_images":   (n_l, H, W, C) uint8 (or float in [0, 255]) images
    "labels":           (n_l,) integer class indices
    "unlabeled_images": (n_u, H, W, C) images of the same shape

or the tuple `((labeled_images, labels), unlabeled_images)` that
`tf.data.Dataset.zip((labeled, unlabeled))` yields. `evaluate` takes the usual
`(images, labels)` batches (or arrays `x`, `y`) and reports the teacher's
cross-entropy (`loss`) and both networks' accuracy; `predict` (and `model(images)`)
returns the teacher's logits.

The steps that differ per backend (a GradientTape on TensorFlow, stateless
`jax.value_and_grad` on JAX) are in `lcmt_tf/steps/`, chosen once when this module is
imported.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import keras
import numpy as np
from keras import ops

from lcmt_tf.augment import Augmentation
from lcmt_tf.config import FORWARD_PASSES
from lcmt_tf.errors import UserInputError
from lcmt_tf.losses import (
    distance_quantiles,
    lc_distances,
    local_clustering_of_distances,
)
from lcmt_tf.steps import BackendSteps

BATCH_KEYS = ("labeled_images", "labels", "unlabeled_images")
NETWORKS = ("student", "teacher")
# What evaluate reports, in the order its list output has (`metrics_names`): the
# teacher's cross-entropy and both networks' accuracy.
EVALUATION_NAMES = ("loss", "student_accuracy", "teacher_accuracy")
# Reported too when Local Clustering is computed: epsilon, and quantiles of the pair
# distances its mask d <= epsilon acts on (lc_distance_p10 = 10 % quantile, ...).
LC_DISTANCE_QUANTILES = {"lc_distance_p10": 0.1, "lc_distance_p50": 0.5, "lc_distance_p90": 0.9}
LC_TERMS = ("lc_epsilon", *LC_DISTANCE_QUANTILES)
# What a step's schedule callbacks set: constructor arguments of an earlier version.
_SCHEDULED = {
    "consistency_weight": "ConsistencyRampup",
    "lc_weight": "LocalClusteringSchedule",
    "unlabeled_weight": "UnlabeledWeightSchedule",
}


class LabeledLogits(NamedTuple):
    """What the accuracy metrics of a training step need: the labeled images'
    labels and the student's and teacher's logits for them."""

    labels: object
    student: object
    teacher: object


def error_names(split: str = "test") -> tuple[str, str]:
    """The names of the student's and the teacher's error on `split` ("test" or
    "validation"): `student_<split>_error`, `teacher_<split>_error`."""
    return tuple(f"{network}_{split}_error" for network in NETWORKS)


def errors_from_accuracies(evaluation: dict, split: str = "test") -> dict[str, float]:
    """Student and teacher error (percent) on `split` from evaluate's dict
    (`student_accuracy`, `teacher_accuracy`), under `error_names(split)`."""
    return {
        name: 100.0 * (1.0 - float(evaluation[f"{network}_accuracy"]))
        for name, network in zip(error_names(split), NETWORKS)
    }


def _describe(value) -> str:
    """A short description of what a user passed: its type and shapes."""
    if isinstance(value, dict):
        return "a dict of " + ", ".join(f"{key} {_describe(item)}" for key, item in value.items())
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_describe(item) for item in value)
        return f"a {type(value).__name__} of {len(value)} ({inner})"
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"a tensor of shape {tuple(shape)}"
    return type(value).__name__


def student_outputs(outputs, network: str = "student"):
    """(features, logits) of a network's outputs, or one line saying why not."""
    valid = isinstance(outputs, (list, tuple)) and len(outputs) == 2
    if valid:
        features, logits = outputs
        valid = len(features.shape) == 2 and len(logits.shape) == 2
    if not valid:
        raise UserInputError(
            f"the {network} must return [features, logits]: (batch, d) features and "
            f"(batch, classes) logits; it returns {_describe(outputs)} (wrap a classifier "
            "with lcmt_tf.from_backbone, or return both tensors from its call)"
        )
    return features, logits


def training_batch(data) -> dict:
    """A training batch as the dict of BATCH_KEYS (from a dict or a
    `((labeled_images, labels), unlabeled_images)` tuple), or one line saying why not."""
    if isinstance(data, dict):
        if set(BATCH_KEYS) <= set(data):
            return data
        raise UserInputError(
            f"a training batch needs the keys {list(BATCH_KEYS)}; this one has {sorted(data)}"
        )
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and isinstance(data[0], (tuple, list))
        and len(data[0]) == 2
    ):
        (labeled_images, labels), unlabeled_images = data
        return dict(zip(BATCH_KEYS, (labeled_images, labels, unlabeled_images)))
    raise UserInputError(
        f"a training batch is a dict of {list(BATCH_KEYS)} (lcmt_tf.data.SemiSupervisedBatches) "
        f"or a tuple ((labeled_images, labels), unlabeled_images); got {_describe(data)}"
    )


def evaluation_batch(data) -> tuple:
    """(images, labels, sample weights or None) of an evaluation batch, or one line
    saying why it is not one."""
    if isinstance(data, dict):
        raise UserInputError(
            f"evaluate takes (images, labels) batches (lcmt_tf.data.LabeledBatches, or "
            f"evaluate(images, labels)); got a training batch ({sorted(data)})"
        )
    if not isinstance(data, (tuple, list)) or len(data) < 2 or data[1] is None:
        raise UserInputError(
            "evaluate needs labels: (images, labels) batches, evaluate(images, labels) or "
            f"lcmt_tf.data.LabeledBatches; got {_describe(data)} (predict gives the teacher's "
            "logits of images without labels)"
        )
    return data[0], data[1], data[2] if len(data) > 2 else None


def _is_array(value) -> bool:
    return isinstance(value, np.ndarray) or (
        hasattr(value, "shape") and hasattr(value, "dtype") and not hasattr(value, "element_spec")
    )


def in_range(owner: str, name: str, value, low: float, high: float, high_open: bool) -> float:
    number = float(value)
    inside = (
        math.isfinite(number) and low <= number and (number < high if high_open else number <= high)
    )
    if not inside:
        bracket = ")" if high_open else "]"
        raise UserInputError(
            f"{owner}: {name} must be in [{low:g}, {high:g}{bracket}, not {value!r}"
        )
    return number


class SemiSupervisedModel(BackendSteps, keras.Model):
    """The shared part of lcmt_tf's methods (see the module's doc); not used alone.

    Args:
        student: a model mapping normalized images to `[features, logits]`.
        augmentation: an `Augmentation` layer (normalization + random augmentation).
        ema_decay: alpha in teacher = alpha * teacher + (1 - alpha) * student, applied
            after every optimizer step, in [0, 1].
        lc_epsilon: epsilon, the LC neighbourhood radius (mean squared feature
            distance), > 0: a backend variable of the model (`model.lc_epsilon`), the
            one place the run's ε lives (LocalClusteringSchedule's epsilon_quantile
            and lc_epsilon_batch_quantile change it; results read it).
        use_local_clustering: False leaves LC out of the loss.
        measure_local_clustering: with `use_local_clustering` False, still measure what
            LC would see (its value, neighbour fraction, epsilon and distance
            quantiles, on features with no gradient); False skips the computation
            (lc and lc_neighbor_fraction are then reported as 0, and the LC_TERMS
            not at all).
        lc_epsilon_batch_quantile: an extension, not in the paper: with q in (0, 1), ε
            is the q-quantile of each step's LC pair distances (`lc_epsilon_for`);
            0 keeps `lc_epsilon`.
        lc_epsilon_batch_momentum: with a batch quantile, m in [0, 1): ε is a moving
            average of the quantiles over steps, starting from `lc_epsilon`.
        lc_self_pairs: count the i = j pairs of the unlabeled block as neighbours, as
            the authors' code does (see `local_clustering_of_distances`).
        forward_passes: "joint" runs each network once over the labeled and unlabeled
            images together; "separate" runs it once per group, as the authors' code
            does, so that batch statistics are per group.
        **kwargs: `keras.Model` arguments (`name`, ...).
    """

    # The values a step logs (its epoch average under this name in logs, history and
    # TensorBoard); a method names its own.
    TERMS: tuple[str, ...] = ()
    # The loss weights the method's schedule callbacks set, as scalar variables of the
    # model (created first, in this order).
    WEIGHTS: tuple[str, ...] = ("lc_weight",)
    LOSS_DESCRIPTION = ""
    # False: the teacher keeps its own batch-norm statistics (Mean Teacher runs it in
    # training mode). True: after every step they are copied from the student, as the
    # EMA model of FixMatch in USB and TorchSSL copies its buffers.
    TEACHER_COPIES_STATISTICS = False

    def __init__(
        self,
        student: keras.Model,
        augmentation: Augmentation,
        ema_decay: float = 0.99,
        lc_epsilon: float = 1.0,
        use_local_clustering: bool = True,
        forward_passes: str = "joint",
        measure_local_clustering: bool = True,
        lc_epsilon_batch_quantile: float = 0.0,
        lc_epsilon_batch_momentum: float = 0.0,
        lc_self_pairs: bool = True,
        **kwargs,
    ):
        owner = type(self).__name__
        for name, callback in _SCHEDULED.items():
            if name in kwargs:
                raise UserInputError(
                    f"{owner}: {name} is not a constructor argument: its schedule callback "
                    f"({callback}) sets it every epoch; assign model.{name} for a value "
                    "without one"
                )
        super().__init__(**kwargs)
        if forward_passes not in FORWARD_PASSES:
            raise UserInputError(
                f"{owner}: forward_passes must be one of {FORWARD_PASSES}, not {forward_passes!r}"
            )
        if not isinstance(augmentation, Augmentation):
            raise UserInputError(
                f"{owner}: augmentation must be an lcmt_tf.Augmentation (normalization and "
                f"augmentation inside the step), not {type(augmentation).__name__}"
            )
        if not isinstance(student, keras.layers.Layer):
            raise UserInputError(
                f"{owner}: student must be a keras.Model, not {type(student).__name__}"
            )
        self.ema_decay = in_range(owner, "ema_decay", ema_decay, 0.0, 1.0, high_open=False)
        epsilon = float(lc_epsilon)
        if not (math.isfinite(epsilon) and epsilon > 0):
            raise UserInputError(
                f"{owner}: lc_epsilon must be a finite number > 0, not {lc_epsilon!r}"
            )
        self.lc_epsilon_batch_quantile = in_range(
            owner, "lc_epsilon_batch_quantile", lc_epsilon_batch_quantile, 0.0, 1.0, True
        )
        self.lc_epsilon_batch_momentum = in_range(
            owner, "lc_epsilon_batch_momentum", lc_epsilon_batch_momentum, 0.0, 1.0, True
        )
        self.forward_passes = forward_passes
        self.use_local_clustering = bool(use_local_clustering)
        self.measure_local_clustering = bool(measure_local_clustering)
        self.lc_self_pairs = bool(lc_self_pairs)
        _check_student(owner, student, augmentation)
        self.student = student
        self.augmentation = augmentation
        self.teacher = _clone(owner, student)
        self._start_teacher()
        for name in self.WEIGHTS:
            setattr(self, name, self._scalar_variable(0.0, name))
        # The step may assign ε (lc_epsilon_batch_quantile): every replica computes the
        # same value from the global batch's distances, and the first one's is kept.
        self.lc_epsilon = self._scalar_variable(
            epsilon, "lc_epsilon", aggregation="only_first_replica"
        )
        logged = self.TERMS + (LC_TERMS if self.computes_local_clustering else ())
        self._term_trackers = {name: keras.metrics.Mean(name=name) for name in logged}
        self.student_accuracy = keras.metrics.SparseCategoricalAccuracy(name="student_accuracy")
        self.teacher_accuracy = keras.metrics.SparseCategoricalAccuracy(name="teacher_accuracy")
        self._accuracies = _directed_metrics([self.student_accuracy, self.teacher_accuracy])
        self.built = True

    def _start_teacher(self) -> None:
        """The teacher starts as a copy of the student. Its layers stay trainable, so
        that its batch normalization uses batch statistics in training mode; its
        variables are marked non-trainable, so no optimizer or gradient ever touches
        them: only the EMA does."""
        self.teacher.set_weights(self.student.get_weights())
        for variable in self.teacher.weights:
            variable.trainable = False
        self.fix_random_streams()  # a backend's own (lcmt_tf.steps)
        self._ema_positions = None
        self._statistics_positions = None

    def _scalar_variable(self, value, name, aggregation="none"):
        return self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(float(value)),
            trainable=False,
            name=name,
            aggregation=aggregation,
        )

    # -- what a method defines ------------------------------------------------------

    def compute_losses(self, data):
        """One training forward pass over the batch dict `data`: (loss, terms with a
        scalar for every name in TERMS and, with LC, LC_TERMS, LabeledLogits)."""
        raise NotImplementedError

    def default_callbacks(self, callbacks: list) -> list:
        """The callbacks fit adds to the user's `callbacks` (a method's schedule with
        its paper's values, when the user gave none)."""
        return []

    # -- the parts every method uses -------------------------------------------------

    @property
    def computes_local_clustering(self) -> bool:
        """Whether a step computes LC's distances: in the loss, or measured only."""
        return self.use_local_clustering or self.measure_local_clustering

    @property
    def metrics(self):
        return [*self._term_trackers.values(), self._accuracies]

    @property
    def metrics_names(self):
        """What `evaluate` returns, in order (EVALUATION_NAMES); fit's logs name the
        loss terms (`TERMS`) as well."""
        return list(EVALUATION_NAMES)

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

    @property
    def statistics_pairs(self) -> list:
        """(teacher variable, student variable) for every non-trainable student weight
        that is not a random generator's state (batch-norm statistics), when the
        teacher copies them (TEACHER_COPIES_STATISTICS); else none."""
        if not self.TEACHER_COPIES_STATISTICS:
            return []
        seeds = {id(generator.state) for generator in self.seed_generators()}
        return [
            (teacher_variable, student_variable)
            for teacher_variable, student_variable in zip(
                self.teacher.weights, self.student.weights
            )
            if not student_variable.trainable and id(student_variable) not in seeds
        ]

    @property
    def statistics_positions(self) -> tuple[tuple[int, int], ...]:
        """`statistics_pairs` as (teacher, student) indices in non_trainable_variables."""
        if self._statistics_positions is None:
            index = {id(v): i for i, v in enumerate(self.non_trainable_variables)}
            self._statistics_positions = tuple(
                (index[id(teacher)], index[id(student)])
                for teacher, student in self.statistics_pairs
            )
        return self._statistics_positions

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

    def augmentations(self) -> list[keras.layers.Layer]:
        """The model's augmentation layers (a method with a second view adds its own)."""
        return [self.augmentation]

    def seed_generators(self) -> list[keras.random.SeedGenerator]:
        """Every `keras.random.SeedGenerator` held by the augmentations, the student,
        the teacher or the layers nested in them (through their public `layers`, and
        an augmentation's through its layer attributes too: Keras' RandAugment holds
        its operations so), each once, in a fixed order: what draws the step's random
        numbers."""
        found: dict[int, keras.random.SeedGenerator] = {}
        visited: set[int] = set()

        def walk(layer, attributes: bool):
            if id(layer) in visited:
                return
            visited.add(id(layer))
            for value in vars(layer).values():
                if isinstance(value, keras.random.SeedGenerator):
                    found.setdefault(id(value), value)
                elif attributes and isinstance(value, keras.layers.Layer):
                    walk(value, attributes)
            for inner in getattr(layer, "layers", ()):
                walk(inner, attributes)

        first, *others = self.augmentations()
        for layer, attributes in ((first, True), (self.student, False), (self.teacher, False)):
            walk(layer, attributes)
        for layer in others:  # after the networks: a Mean Teacher file keeps its order
            walk(layer, True)
        return list(found.values())

    def grouped_outputs(self, network, groups, training=True):
        """`[features, logits]` of `network` over the image batches `groups`,
        concatenated in their order: one pass over all of them ("joint"), or one per
        group ("separate": batch statistics per group), as `forward_passes` says."""
        name = "student" if network is self.student else "teacher"
        if self.forward_passes == "joint" or len(groups) == 1:
            images = groups[0] if len(groups) == 1 else ops.concatenate(groups, axis=0)
            return student_outputs(network(images, training=training), name)
        outputs = [student_outputs(network(images, training=training), name) for images in groups]
        return [ops.concatenate(parts, axis=0) for parts in zip(*outputs)]

    def network_outputs(self, network, images, num_labeled, training=True):
        """`[features, logits]` of `network` over a batch whose first `num_labeled`
        images are the labeled ones: one pass, or one per group (forward_passes)."""
        if self.forward_passes == "joint":
            return self.grouped_outputs(network, [images], training)
        return self.grouped_outputs(network, [images[:num_labeled], images[num_labeled:]], training)

    def joined_images(self, data):
        """(labeled then unlabeled images as float32, the number of labeled ones)."""
        labeled_images, unlabeled_images = data["labeled_images"], data["unlabeled_images"]
        for images in (labeled_images, unlabeled_images):
            self.augmentation.check_images(images)
        images = ops.concatenate(
            [ops.cast(labeled_images, "float32"), ops.cast(unlabeled_images, "float32")],
            axis=0,
        )
        return images, ops.shape(labeled_images)[0]

    def cross_entropy(self, labels, logits):
        """Mean sparse categorical cross-entropy of logits, in float32."""
        return ops.mean(
            keras.losses.sparse_categorical_crossentropy(
                labels, ops.cast(logits, "float32"), from_logits=True
            )
        )

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
        images, num_labeled = self.joined_images(training_batch(data))
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

    def with_local_clustering(self, loss, lc):
        """`loss` + lambda2 * LC when LC is in the loss, else `loss`."""
        return loss + self.lc_weight * lc if self.use_local_clustering else loss

    def update_metrics(self, terms: dict, labeled_logits: LabeledLogits) -> dict:
        """Adds one step to the epoch's averages and accuracies; returns the logs."""
        for name, tracker in self._term_trackers.items():
            tracker.update_state(terms[name])
        self.student_accuracy.update_state(labeled_logits.labels, labeled_logits.student)
        self.teacher_accuracy.update_state(labeled_logits.labels, labeled_logits.teacher)
        return {
            **{name: tracker.result() for name, tracker in self._term_trackers.items()},
            "student_accuracy": self.student_accuracy.result(),
            "teacher_accuracy": self.teacher_accuracy.result(),
        }

    def evaluation_metrics(self, data) -> dict:
        """evaluate's step on `(images, labels)` or `(images, labels, sample_weights)`
        (weight 0: padding, not counted): the teacher's cross-entropy (`loss`) and both
        networks' accuracy."""
        images, labels, weights = evaluation_batch(data)
        self.augmentation.check_images(images)
        normalized = self.augmentation(images, training=False)
        _, student_logits = student_outputs(self.student(normalized, training=False))
        _, teacher_logits = student_outputs(self.teacher(normalized, training=False), "teacher")
        teacher_logits = ops.cast(teacher_logits, "float32")
        cross_entropy = keras.losses.sparse_categorical_crossentropy(
            labels, teacher_logits, from_logits=True
        )
        loss = self._term_trackers["loss"]
        loss.update_state(cross_entropy, sample_weight=weights)
        self.student_accuracy.update_state(labels, student_logits, sample_weight=weights)
        self.teacher_accuracy.update_state(labels, teacher_logits, sample_weight=weights)
        return {
            "loss": loss.result(),
            "student_accuracy": self.student_accuracy.result(),
            "teacher_accuracy": self.teacher_accuracy.result(),
        }

    # -- the Keras surface -------------------------------------------------------------

    def compile(
        self,
        optimizer="rmsprop",
        loss=None,
        loss_weights=None,
        metrics=None,
        weighted_metrics=None,
        **kwargs,
    ):
        """`keras.Model.compile` with the optimizer (and `jit_compile`,
        `steps_per_execution`, ...): the model computes its own loss and metrics, so
        `loss`, `loss_weights`, `metrics` and `weighted_metrics` are refused."""
        given = [
            name
            for name, value in (
                ("loss", loss),
                ("loss_weights", loss_weights),
                ("metrics", metrics),
                ("weighted_metrics", weighted_metrics),
            )
            if value is not None
        ]
        if given:
            raise UserInputError(
                f"{type(self).__name__}.compile takes no {', '.join(given)}: the model computes "
                f"its own loss ({self.LOSS_DESCRIPTION}) and reports its own metrics (the loss "
                "terms, student_accuracy, teacher_accuracy); pass the optimizer"
            )
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        """What `keras.models.load_model` calls: compile as saved (the optimizer and
        its settings), with the optimizer's variables created for the weights to load."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**{name: value for name, value in config.items() if value is not None})
        self.optimizer.build(self.trainable_variables)

    def fit(self, x=None, y=None, **kwargs):
        """`keras.Model.fit` on semi-supervised batches, with three additions.

        For batches that serve one epoch at a time (`SemiSupervisedBatches`, which have
        an `epoch_callback`), fit adds that callback when `callbacks` lacks it, so every
        epoch (from `initial_epoch` on, as when resuming) gets its own seeded order, and
        leaves `shuffle` off: the order is already shuffled, reproducibly. `shuffle=True`
        passed for them is refused.

        The method's own schedule is added when `callbacks` has none
        (`default_callbacks`; for MeanTeacher, `ConsistencyRampup()` with the paper's
        values).

        Without a progress bar of your own in `callbacks`, the bar is `ConciseProgbar`:
        the loss terms and accuracies, not every logged value (the history has them all).

        Arrays (`fit(x, y)`), `y`, `class_weight`, `sample_weight` and
        `validation_split` are refused: a batch holds labeled and unlabeled images.
        """
        from lcmt_tf.callbacks import ConciseProgbar  # callbacks import this module

        self._check_fit_arguments(x, y, kwargs)
        callbacks = list(kwargs.get("callbacks") or [])
        if hasattr(x, "epoch_callback"):
            if kwargs.get("shuffle") is True:
                raise UserInputError(
                    "SemiSupervisedBatches order every epoch by their seed: leave `shuffle` "
                    "out (or pass shuffle=False); Keras' shuffle would reorder the steps "
                    "with Python's global random state"
                )
            kwargs["shuffle"] = False
            x.epoch = kwargs.get("initial_epoch", 0)  # before any batch is read
            if not any(getattr(callback, "batches", None) is x for callback in callbacks):
                callbacks.insert(0, x.epoch_callback())
        self._build_networks(x, training_batch)
        added = self.default_callbacks(callbacks)
        callbacks = [*callbacks[:1], *added, *callbacks[1:]] if added else callbacks
        if not any(isinstance(callback, keras.callbacks.ProgbarLogger) for callback in callbacks):
            callbacks.append(ConciseProgbar())
        kwargs["callbacks"] = callbacks
        with self.keeping_state_on_failure():
            return super().fit(x, **kwargs)

    def _build_networks(self, x, images_of) -> None:
        """Builds a student (and teacher) that is not built yet (a subclassed network)
        on the first batch of `x`, so that its outputs are checked before Keras traces
        a step (Keras' own automatic build would call the model on a whole batch)."""
        if all(layer.built for layer in (self.student, self.teacher)):
            return
        if isinstance(x, keras.utils.PyDataset):
            batch = x[0]
        elif hasattr(x, "element_spec"):  # a tf.data.Dataset
            batch = next(iter(x.take(1)))
        else:
            return
        images = images_of(batch)["labeled_images"]
        self.augmentation.check_images(images)
        normalized = self.augmentation(ops.cast(images, "float32"), training=False)
        for name in NETWORKS:
            student_outputs(getattr(self, name)(normalized, training=False), name)
        self._start_teacher()  # now that both have weights

    def _check_fit_arguments(self, x, y, kwargs) -> None:
        owner = f"{type(self).__name__}.fit"
        batches = (
            "semi-supervised batches: lcmt_tf.data.SemiSupervisedBatches, or a dataset of "
            f"dicts of {list(BATCH_KEYS)} or of ((labeled_images, labels), unlabeled_images)"
        )
        if y is not None or _is_array(x):
            given = "arrays x and y" if y is not None else f"an array x {_describe(x)}"
            raise UserInputError(f"{owner} takes {batches}; got {given}")
        for name in ("class_weight", "sample_weight"):
            if kwargs.get(name) is not None:
                raise UserInputError(
                    f"{owner}: {name} is not supported: the loss weighs the labeled batch's "
                    "cross-entropy and the unlabeled terms itself (balance classes in the "
                    "labeled split instead)"
                )
        if kwargs.get("validation_split"):
            raise UserInputError(
                f"{owner}: validation_split needs arrays; pass validation_data "
                "(lcmt_tf.data.LabeledBatches of held-out labeled images)"
            )

    def evaluate(
        self,
        x=None,
        y=None,
        batch_size=None,
        verbose="auto",
        sample_weight=None,
        steps=None,
        callbacks=None,
        return_dict=False,
        **kwargs,
    ):
        """`keras.Model.evaluate` on `(images, labels)` batches or arrays: the teacher's
        cross-entropy (`loss`), `student_accuracy` and `teacher_accuracy`; a list in the
        order of `metrics_names`, or a dict with `return_dict=True`."""
        if hasattr(x, "epoch_callback") or isinstance(x, dict):
            raise UserInputError(
                "evaluate takes (images, labels) batches (lcmt_tf.data.LabeledBatches, or "
                "evaluate(images, labels)), not training batches"
            )
        if _is_array(x) and y is None:
            raise UserInputError(
                f"evaluate needs labels: evaluate(images, labels); got images only "
                f"{_describe(x)} (predict gives the teacher's logits without labels)"
            )
        if _is_array(x):
            self.augmentation.check_images(x)
        else:
            self._build_networks(x, lambda batch: {"labeled_images": evaluation_batch(batch)[0]})
        with self.keeping_state_on_failure():
            logs = super().evaluate(
                x,
                y,
                batch_size=batch_size,
                verbose=verbose,
                sample_weight=sample_weight,
                steps=steps,
                callbacks=callbacks,
                return_dict=True,
                **kwargs,
            )
        if return_dict:
            return logs
        return [logs[name] for name in self.metrics_names]

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict`: the teacher's logits for raw images."""
        if _is_array(x):
            self.augmentation.check_images(x)
        with self.keeping_state_on_failure():
            return super().predict(x, *args, **kwargs)

    def call(self, images, training=False):
        """The teacher's logits for raw images (uint8 or float in [0, 255])."""
        self.augmentation.check_images(images)
        normalized = self.augmentation(images, training=False)
        _, logits = student_outputs(self.teacher(normalized, training=training), "teacher")
        return logits

    def inference_model(
        self,
        network: str = "teacher",
        output: str = "logits",
        image_shape: tuple[int, int, int] | None = None,
        input_dtype: str = "uint8",
    ) -> keras.Model:
        """A plain Keras model of one network with the normalization built in (Keras'
        own Rescaling layer): raw images (N, H, W, C) of `input_dtype` in
        [0, 255] -> `output` "logits", "probabilities" or "features". It shares this
        model's current weights; saved (`.save`) or exported, it needs Keras only
        (and lcmt_tf for a network made of lcmt_tf's own layers, conv_large_wn).

        Args:
            network: "teacher" (what `predict` uses) or "student".
            output: "logits", "probabilities" (softmax, float32) or "features" (z).
            image_shape: (H, W, C); needed only when the network does not fix it.
            input_dtype: the dtype of the images it takes.
        """
        if network not in NETWORKS:
            raise UserInputError(f"network must be one of {NETWORKS}, not {network!r}")
        outputs = ("logits", "probabilities", "features")
        if output not in outputs:
            raise UserInputError(f"output must be one of {outputs}, not {output!r}")
        shape = image_shape or _input_shape(self.student)
        if shape is None:
            raise UserInputError(
                "inference_model needs image_shape=(H, W, C): the student does not fix one"
            )
        inputs = keras.Input(shape=tuple(shape), dtype=input_dtype, name="images")
        # (x / 255 - mean) / std as x * scale + offset, per channel.
        scale = [1.0 / (255.0 * std) for std in self.augmentation.std]
        offset = [-mean / std for mean, std in zip(self.augmentation.mean, self.augmentation.std)]
        normalized = keras.layers.Rescaling(scale, offset, dtype="float32", name="normalization")(
            inputs
        )
        features, logits = student_outputs(
            getattr(self, network)(normalized, training=False), network
        )
        if output == "features":
            result = features
        elif output == "probabilities":
            result = keras.layers.Softmax(name="probabilities", dtype="float32")(logits)
        else:
            result = keras.layers.Activation("linear", name="logits", dtype="float32")(logits)
        return keras.Model(inputs, result, name=f"{self.name}_{network}_{output}")

    # -- saving --------------------------------------------------------------------

    def save_own_variables(self, store):
        """The model's own variables (loss weights, ε) and the state of every seed
        generator (`seed_generators`: the augmentation's, dropout's), which Keras'
        layers do not save: so `save_weights`, `BackupAndRestore` and `.keras` files
        resume the random streams exactly."""
        super().save_own_variables(store)
        for index, generator in enumerate(self.seed_generators()):
            store[f"seed_generator_{index}"] = generator.state

    def load_own_variables(self, store):
        names = list(store.keys())
        seeds = [name for name in names if name.startswith("seed_generator_")]
        own = self._trainable_variables + self._non_trainable_variables
        if len(names) - len(seeds) != len(own):
            raise ValueError(
                f"{self.name}: the file holds {len(names) - len(seeds)} of the model's own "
                f"variables, the model has {len(own)}"
            )
        for index, variable in enumerate(own):
            variable.assign(store[f"{index}"])
        generators = self.seed_generators()
        if seeds and len(seeds) != len(generators):
            raise ValueError(
                f"{self.name}: the file holds {len(seeds)} seed generator states, the model "
                f"has {len(generators)}"
            )
        for index, generator in enumerate(generators if seeds else ()):  # older files: none
            generator.state.assign(store[f"seed_generator_{index}"])

    def get_config(self):
        return {
            **super().get_config(),
            "student": keras.saving.serialize_keras_object(self.student),
            "augmentation": keras.saving.serialize_keras_object(self.augmentation),
            "ema_decay": self.ema_decay,
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
        for name in _SCHEDULED:  # written by earlier versions; the weights hold the values
            config.pop(name, None)
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        config["augmentation"] = keras.saving.deserialize_keras_object(config["augmentation"])
        return cls(**config)


def _input_shape(network) -> tuple | None:
    """The (H, W, C) a functional network takes, or None."""
    inputs = getattr(network, "inputs", None)
    if not inputs:
        return None
    shape = tuple(inputs[0].shape[1:])
    return None if None in shape else shape


def _clone(owner: str, student):
    """The teacher: a copy of the student's architecture (keras.models.clone_model)."""
    try:
        return keras.models.clone_model(student)
    except (TypeError, NotImplementedError) as error:
        raise UserInputError(
            f"{owner}: the teacher is a copy of the student made by keras.models.clone_model, "
            f"which needs the student's get_config() and from_config(); {type(student).__name__} "
            f"cannot be rebuilt from its config ({str(error).splitlines()[0]}): define "
            "get_config() to return its constructor arguments, or build it as a functional model"
        ) from None


def _check_student(owner: str, student, augmentation: Augmentation) -> None:
    """A functional student's outputs and its input channels, checked when the model
    is built (any other student is checked at its first step)."""
    outputs = getattr(student, "outputs", None)
    if outputs is not None:  # a functional model's list, one entry per output
        student_outputs(outputs[0] if len(outputs) == 1 else outputs)
    inputs = getattr(student, "inputs", None)
    if inputs:
        channels = inputs[0].shape[-1]
        if channels is not None and channels != len(augmentation.mean):
            raise UserInputError(
                f"{owner}: the student takes images with {channels} channel(s), the "
                f"augmentation normalizes {len(augmentation.mean)} (its mean and std have "
                f"{len(augmentation.mean)} values): give one mean and std per channel"
            )


def _directed_metrics(metrics: list) -> keras.metrics.Metric:
    """The metrics in Keras' MetricsList, whose result is their dict of results. Keras
    workaround: its callbacks (EarlyStopping, ModelCheckpoint, ReduceLROnPlateau)
    infer `mode` from a metric's direction only for metrics inside CompileMetrics or
    MetricsList (Keras 3.15, callbacks/monitor_callback.py), and MetricsList has no
    public name (nor a `result`). tests/test_keras_workarounds.py fails when that
    changes."""
    from keras.src.trainers.compile_utils import MetricsList

    class DirectedMetrics(MetricsList):
        def result(self):
            return self.get_result()

    return DirectedMetrics(metrics, name="accuracies")


def log_added(callback: keras.callbacks.Callback, what: str) -> None:
    """Says once that fit added `callback` (a method's default schedule)."""
    logging.info("fit added %s: %s.", type(callback).__name__, what)
