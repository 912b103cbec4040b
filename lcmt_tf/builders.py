"""Builders of a run's parts from its TrainConfig: the backend settings, the optimizer,
the compiled model of its --method (MeanTeacher or FixMatch), the evaluation batches
and the callbacks, in the order `lcmt_tf.train.run` uses them (and the benchmark,
evaluate and the experiments' time projection build the same way)."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable

import keras
import numpy as np

from lcmt_tf.augment import Augmentation, StrongAugmentation
from lcmt_tf.callbacks import (
    CollapseMonitor,
    ConciseProgbar,
    ConfirmationBiasMonitor,
    ConsistencyRampup,
    EvaluationErrors,
    HistoryCSV,
    LinearLRDecay,
    LocalClusteringSchedule,
    LogLearningRate,
    NonFiniteLossGuard,
    UnlabeledWeightSchedule,
    WeightRampup,
    evaluation_epochs,
)
from lcmt_tf.config import METHODS, TrainConfig
from lcmt_tf.data import ImageDataset, LabeledBatches, SemiSupervisedBatches
from lcmt_tf.diagnostics import NAMES as DIAGNOSTICS
from lcmt_tf.diagnostics import PSEUDO_LABEL_NAMES
from lcmt_tf.distribute import Distribution, set_batch_norm_synchronized
from lcmt_tf.errors import UserInputError
from lcmt_tf.fixmatch import FixMatch
from lcmt_tf.mean_teacher import MeanTeacher
from lcmt_tf.models import model_spec
from lcmt_tf.models.convnet_wn import initialize_from_data
from lcmt_tf.models.pretrained import copy_weights, source_model
from lcmt_tf.optimizers import CoupledWeightDecaySGD, FixMatchCosineDecay
from lcmt_tf.run_dir.checkpoint import ResumeCheckpoint
from lcmt_tf.run_dir.layout import HISTORY_FILE, STATE_FILE, TENSORBOARD_DIR
from lcmt_tf.semi_supervised import SemiSupervisedModel, error_names

EVALUATION_BATCH_SIZE = 500


def configure_backend(config: TrainConfig) -> None:
    """Seeds, determinism and the dtype policy, before any model is built."""
    keras.utils.set_random_seed(config.seed)
    if config.deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    if config.deterministic and keras.backend.backend() == "torch":
        import torch

        torch.use_deterministic_algorithms(True)
    policy = {"": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
    keras.config.set_dtype_policy(policy[config.mixed_precision])


def build_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """SGD with the configuration's momentum and weight decay: PyTorch's update with
    coupled L2 (`CoupledWeightDecaySGD`), or Keras' SGD with decoupled decay. Its
    learning rate is --lr (the linear schedule's callback sets it every epoch) or
    FixMatch's cosine decay (`FixMatchCosineDecay`) with --lr_schedule=cosine."""
    learning_rate = (
        FixMatchCosineDecay(config.lr, config.lr_schedule_steps)
        if config.lr_schedule == "cosine"
        else config.lr
    )
    if config.weight_decay_mode == "coupled":
        return CoupledWeightDecaySGD(
            learning_rate=learning_rate,
            momentum=config.momentum,
            nesterov=config.nesterov,
            coupled_weight_decay=config.weight_decay,
        )
    return keras.optimizers.SGD(
        learning_rate=learning_rate,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay or None,
    )


def _mean_teacher(config: TrainConfig, student, augmentation, shared: dict) -> MeanTeacher:
    return MeanTeacher(student, augmentation, **shared)


def _fixmatch(config: TrainConfig, student, augmentation, shared: dict) -> FixMatch:
    strong = StrongAugmentation.matching(
        augmentation,
        num_ops=config.strong_num_ops,
        magnitude=config.strong_magnitude,
        cutout=config.strong_cutout,
    )
    return FixMatch(student, augmentation, strong, threshold=config.fixmatch_threshold, **shared)


@dataclasses.dataclass(frozen=True)
class MethodParts:
    """What one --method adds to a run: its model (from the student, the weak
    augmentation and the settings every method shares), the callback that schedules
    its unlabeled weight (λ1 or λu), and the diagnostics it logs beside
    `lcmt_tf.diagnostics.NAMES`. A new method is one entry of `METHOD_PARTS`."""

    build: Callable[[TrainConfig, keras.Model, Augmentation, dict], SemiSupervisedModel]
    weight_schedule: Callable[[TrainConfig], WeightRampup]
    diagnostics: tuple[str, ...] = ()


METHOD_PARTS = {
    "mean_teacher": MethodParts(
        build=_mean_teacher,
        weight_schedule=lambda config: ConsistencyRampup(
            config.consistency_weight, config.consistency_rampup_epochs
        ),
    ),
    "fixmatch": MethodParts(
        build=_fixmatch,
        weight_schedule=lambda config: UnlabeledWeightSchedule(config.unlabeled_weight, 0),
        diagnostics=PSEUDO_LABEL_NAMES,
    ),
}
assert tuple(METHOD_PARTS) == METHODS, "every --method (config.METHODS) has its parts"


def build_model(
    config: TrainConfig,
    dataset: ImageDataset,
    init_images=None,
    measure_local_clustering: bool = True,
) -> SemiSupervisedModel:
    """The compiled model of --method for this configuration and data: a MeanTeacher,
    or a FixMatch (its strong view from the --strong_* settings).

    With `init_images` (raw training images: a run that starts, not one restored),
    a keras_applications backbone takes --backbone_weights if given, and the student
    starts from --init_from's weights if given, else networks with
    data-dependent initialization (conv_large_wn) are initialized from the images,
    normalized and not augmented; then the teacher is copied from the student. λ1 (λu)
    and λ2 start at 0; the schedule callbacks set them every epoch. A model
    measures LC's distances without training on them unless `measure_local_clustering`
    is False (the benchmark's plain Mean Teacher step).
    """
    spec = model_spec(config.model)
    starting = init_images is not None  # not restored: the weights come from here

    def build_student(backbone_weights: str = ""):
        return spec.build(
            num_classes=dataset.num_classes,
            input_shape=dataset.image_shape,
            width=config.width,
            backbone_weights=backbone_weights,
        )

    if starting and config.backbone_weights and not os.path.isfile(config.backbone_weights):
        raise UserInputError(f"--backbone_weights={config.backbone_weights} does not exist")
    student = build_student(config.backbone_weights if starting else "")
    pretrained = bool(config.init_from) and starting
    if pretrained:
        copied = copy_weights(
            source_model(config.init_from, build_student), student, config.init_from
        )
        logging.info("Started the student from %s (%d layers).", config.init_from, copied)
    if config.sync_batchnorm and keras.backend.backend() == "tensorflow":
        set_batch_norm_synchronized(student, True)  # before the teacher is cloned from it
    mean, std = dataset.channel_mean_std()
    augmentation = Augmentation(
        mean,
        std,
        max_translation=config.translate,
        horizontal_flip=config.hflip,
        noise_stddev=config.input_noise,
        seed=config.seed,
        translate_padding=config.translate_padding,
    )
    if starting and not pretrained:
        initialize_from_data(student, augmentation(init_images, training=False))
    shared = dict(
        ema_decay=config.ema_decay,
        lc_epsilon=config.lc_epsilon,
        use_local_clustering=config.lc_weight > 0,
        forward_passes=config.forward_passes,
        measure_local_clustering=measure_local_clustering,
        lc_epsilon_batch_quantile=config.lc_epsilon_batch_quantile,
        lc_epsilon_batch_momentum=config.lc_epsilon_batch_momentum,
        lc_self_pairs=config.lc_self_pairs,
    )
    model = METHOD_PARTS[config.method].build(config, student, augmentation, shared)
    model.compile(
        optimizer=build_optimizer(config),
        # Keras runs a JAX step without jit op by op, which is many times slower.
        jit_compile=config.jit_compile or keras.backend.backend() == "jax",
        steps_per_execution=config.steps_per_execution,
    )
    # Built here, inside the distribution's scope: fit then has nothing left to build.
    model.optimizer.build(model.trainable_variables)
    return model


def assign_full_weights(model: SemiSupervisedModel, config: TrainConfig) -> None:
    """Sets the model's loss weights (its `WEIGHTS`: λ1 or λu, and λ2) to the values
    the configuration's schedules reach, for a measurement that runs without them."""
    for name in model.WEIGHTS:
        getattr(model, name).assign(getattr(config, name))


def evaluation_batches(
    dataset: ImageDataset, distribution: Distribution, split: str = "test"
) -> LabeledBatches:
    """The batches of the "test" or the "validation" split; under a JAX distribution
    every batch is padded to split evenly across the devices (weight-0 rows), and each
    process feeds its share."""
    images, labels = dataset.split(split)
    if distribution.engine is None or keras.backend.backend() != "jax":
        return LabeledBatches(images, labels, EVALUATION_BATCH_SIZE)
    multiple = distribution.replicas
    batch_size = -(-EVALUATION_BATCH_SIZE // multiple) * multiple
    return LabeledBatches(
        images,
        labels,
        batch_size,
        pad_multiple=multiple,
        process_share=distribution.process_share,
    )


def diagnostics_pool(
    config: TrainConfig, batches: SemiSupervisedBatches
) -> tuple[np.ndarray, np.ndarray] | None:
    """(images, true labels) of the unlabeled images the confirmation-bias diagnostics
    measure: a fixed sample (seeded by --seed) of at most --diagnostics_sample of the
    run's unlabeled images whose labels are known (a benchmark's, or a folder's train/
    images left unlabeled; not unlabeled/). None when off or when there are none."""
    if not config.diagnostics_sample:
        return None
    known = batches.unlabeled_indices[batches.labels[batches.unlabeled_indices] >= 0]
    if not len(known):
        return None
    count = min(config.diagnostics_sample, len(known))
    chosen = np.sort(np.random.default_rng([config.seed, 3]).choice(known, count, replace=False))
    return batches.images[chosen], batches.labels[chosen]


@dataclasses.dataclass
class RunCallbacks:
    """The callbacks of a run, by job; `ordered()` is the list fit takes, in the order
    they must run: the batches learn the epoch before the schedules measure on them;
    guards and the evaluation's errors add to the logs before the user's callbacks
    and before the history, the checkpoint and TensorBoard read them."""

    epoch: keras.callbacks.Callback
    # The method's weight: λ1 (ConsistencyRampup) or FixMatch's λu (UnlabeledWeightSchedule).
    unlabeled: WeightRampup
    local_clustering: LocalClusteringSchedule
    # LinearLRDecay, or with a cosine schedule in the optimizer a callback that logs it.
    learning_rate: LinearLRDecay | LogLearningRate
    non_finite: NonFiniteLossGuard
    collapse: CollapseMonitor
    evaluation: EvaluationErrors
    confirmation_bias: ConfirmationBiasMonitor | None
    progress: ConciseProgbar
    user: list
    # The chief's only: they write the run directory.
    history: HistoryCSV | None = None
    checkpoint: ResumeCheckpoint | None = None
    tensorboard: list = dataclasses.field(default_factory=list)

    def ordered(self) -> list[keras.callbacks.Callback]:
        optional = (self.confirmation_bias,)
        return [
            self.epoch,
            self.unlabeled,
            self.local_clustering,
            self.learning_rate,
            self.non_finite,
            self.collapse,
            self.evaluation,
            *(callback for callback in optional if callback is not None),
            self.progress,
            *self.user,
            *(callback for callback in (self.history, self.checkpoint) if callback is not None),
            *self.tensorboard,
        ]

    def stop_reason(self) -> str | None:
        """Why a guard stopped the run (a non-finite loss, a collapse), or None."""
        return self.non_finite.stop_reason or self.collapse.stop_reason


def build_callbacks(
    config: TrainConfig,
    batches: SemiSupervisedBatches,
    evaluation_split: str,
    is_chief: bool = True,
    user_callbacks=(),
    diagnostics=None,
) -> RunCallbacks:
    """The run's callbacks (`RunCallbacks`). The checkpoint saves the state of every
    callback of the run that has one. Only the chief's bundle has the callbacks that
    write the run directory (every process runs the others: they take part in
    collectives). `user_callbacks`: EarlyStopping, a tracker, ...; `diagnostics`:
    (images, labels) for the ConfirmationBiasMonitor (`diagnostics_pool`), or None."""
    evaluate_at = evaluation_epochs(config.eval_every, config.epochs)
    bundle = RunCallbacks(
        epoch=batches.epoch_callback(),
        unlabeled=METHOD_PARTS[config.method].weight_schedule(config),
        local_clustering=LocalClusteringSchedule(
            config.lc_weight,
            config.lc_start_epoch,
            config.lc_rampup_epochs,
            epsilon_quantile=config.lc_epsilon_quantile,
            distance_batches=batches.global_batches(),
        ),
        learning_rate=LogLearningRate()
        if config.lr_schedule == "cosine"
        else LinearLRDecay(config.lr_decay_start(), config.epochs),
        non_finite=NonFiniteLossGuard(),
        collapse=CollapseMonitor(stop=config.stop_on_collapse),
        evaluation=EvaluationErrors(evaluation_split),
        confirmation_bias=None
        if diagnostics is None
        else ConfirmationBiasMonitor(*diagnostics, evaluate_at),
        progress=ConciseProgbar(),
        user=list(user_callbacks),
    )
    if isinstance(bundle.learning_rate, LinearLRDecay):
        # The optimizer's rate, as build_optimizer set it (a restored state sets the same).
        bundle.learning_rate.base_lr = config.lr
    if not is_chief:
        return bundle
    # The epoch's row before its state: a kill between the two trains that epoch
    # again on resume (its row is replaced), never loses a row.
    bundle.history = HistoryCSV(
        os.path.join(config.model_dir, HISTORY_FILE),
        extra_columns=(
            *error_names(evaluation_split),
            *(
                (*DIAGNOSTICS, *METHOD_PARTS[config.method].diagnostics)
                if diagnostics is not None
                else ()
            ),
        ),
    )
    bundle.checkpoint = ResumeCheckpoint(
        os.path.join(config.model_dir, STATE_FILE), bundle.ordered(), config.kept_epochs()
    )
    bundle.tensorboard = _tensorboard_callbacks(config.model_dir)
    return bundle


def _tensorboard_callbacks(model_dir: str) -> list[keras.callbacks.Callback]:
    try:
        import tensorflow  # noqa: F401  (Keras' TensorBoard callback writes with tf.summary)
    except ImportError:
        logging.warning("TensorFlow is not installed: no TensorBoard logs are written.")
        return []
    return [
        keras.callbacks.TensorBoard(
            log_dir=os.path.join(model_dir, TENSORBOARD_DIR), write_graph=False, profile_batch=0
        )
    ]
