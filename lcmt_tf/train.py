"""run(config): data + model -> fit with callbacks -> metrics, checkpoints, results.

Files in config.model_dir:
    config.json              the resolved configuration
    labeled_indices.json     training-set indices of the labeled images
    training_state.npz       full state after the last completed epoch (for resume)
    history.csv              per-epoch values, a row per epoch
    tensorboard/             per-epoch scalars
    model.keras              the final MeanTeacher (student + teacher)
    results.json             final test errors, epochs run, wall time, why it stopped
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from typing import Any

import keras
import numpy as np

from lcmt_tf.augment import Augmentation
from lcmt_tf.callbacks import (
    CollapseMonitor,
    ConsistencyRampup,
    HistoryCSV,
    LocalClusteringSchedule,
    NonFiniteLossGuard,
    PeriodicEvaluation,
    linear_lr_decay,
)
from lcmt_tf.checkpoint import ResumeCheckpoint, load_training_state
from lcmt_tf.config import RESUMABLE_DIFFERENCES, TrainConfig
from lcmt_tf.data import (
    ImageDataset,
    LabeledBatches,
    SemiSupervisedBatches,
    load_dataset,
    stratified_holdout,
    stratified_label_split,
)
from lcmt_tf.distribute import (
    Distribution,
    check_batch_split,
    set_batch_norm_synchronized,
    start_distribution,
)
from lcmt_tf.errors import UserInputError
from lcmt_tf.fork import copy_history, fork_state_path
from lcmt_tf.mean_teacher import MeanTeacher, errors_from_accuracies
from lcmt_tf.models import model_spec
from lcmt_tf.models.convnet_wn import initialize_from_data
from lcmt_tf.optimizers import CoupledWeightDecaySGD
from lcmt_tf.run_files import (
    CONFIG_FILE,
    DATASET_FILE,
    HISTORY_FILE,
    INDICES_FILE,
    MODEL_FILE,
    RESULTS_FILE,
    RUN_FILES,
    STATE_FILE,
    TENSORBOARD_DIR,
    atomic_write,
    atomic_write_json,
    snapshot_paths,
)
from lcmt_tf.sanity import check_loss_terms
from lcmt_tf.steps import SUPPORTED_BACKENDS

EVALUATION_BATCH_SIZE = 500
BEST_ERROR_NOTE = (
    "lowest teacher test error over the run's evaluations (every --eval_every epochs and "
    "at the end): selected on the test set, as the authors' code does; for comparison "
    "with papers that report it, not this run's result (teacher_test_error)"
)


def run(config: TrainConfig) -> dict[str, Any]:
    """Trains (or resumes) the run described by `config`; returns the results dict."""
    config.validate()
    if keras.backend.backend() not in SUPPORTED_BACKENDS:
        raise UserInputError(
            f"KERAS_BACKEND={keras.backend.backend()}: lcmt_tf trains on the "
            f"{' and '.join(SUPPORTED_BACKENDS)} backends"
        )
    resuming = check_run_directory(config)
    distribution = start_distribution(config)  # before the data starts a runtime
    dataset, labeled, unlabeled, batches = load_training_data(config, distribution.process_share)
    test_batches = evaluation_batches(dataset, distribution)
    own_state = os.path.join(config.model_dir, STATE_FILE)
    restore_from = own_state if resuming and os.path.exists(own_state) else None
    forking = bool(config.fork_from) and restore_from is None
    if forking:
        restore_from = fork_state_path(config, CONFIG_FILE, STATE_FILE)
    configure_backend(config)
    with distribution.scope():
        replicas = distribution.replicas
        check_batch_split(replicas, config.labeled_batch_size, config.unlabeled_batch_size)
        # A restored run takes every weight from its training state: no data-dependent init.
        init_images = None if restore_from else batches.batch(0)["labeled_images"]
        model = build_model(config, dataset, init_images)
        if config.sanity_check:
            check_loss_terms(model, batches.batch(0), config.consistency_weight, config.lc_weight)
        callbacks = build_callbacks(config, batches, test_batches, distribution.is_chief)
        # Everything above only reads; from here on the chief writes the run directory.
        initial_epoch = start_run_directory(
            config, model, dataset, labeled, restore_from, callbacks, distribution.is_chief
        )
        if not distribution.all_equal(initial_epoch):
            raise UserInputError(
                f"the processes would resume {config.model_dir} at different epochs (this one "
                f"at {initial_epoch + 1}): every process must see the same --model_dir, on a "
                "shared file system"
            )
        if forking and distribution.is_chief:
            copy_history(config.fork_from, config.model_dir, HISTORY_FILE)
            logging.info("Forked from %s after epoch %d.", config.fork_from, initial_epoch)
        start = time.time()
        epochs_run = initial_epoch
        if initial_epoch < config.epochs:
            history = model.fit(
                batches,
                epochs=config.epochs,
                initial_epoch=initial_epoch,
                shuffle=False,
                callbacks=callbacks,
                verbose=config.verbose,
            )
            epochs_run = initial_epoch + len(history.epoch)
        results = final_results(
            config,
            model,
            callbacks,
            test_batches,
            epochs_run=epochs_run,
            initial_epoch=initial_epoch,
            wall_time_s=time.time() - start,
            split_sizes=(len(labeled), len(unlabeled)),
            distribution=distribution,
        )
    # Outside the strategy's scope: Keras' saving creates a variable, which under
    # MultiWorkerMirroredStrategy would wait for the other workers.
    if distribution.is_chief:
        write_final_files(config, model, results)
    return results


def load_run_dataset(config: TrainConfig) -> ImageDataset:
    """The run's data set; with --validation_fraction, the held-out share of each
    class's labeled training images takes the place of the test set."""
    dataset = load_dataset(
        config.dataset,
        config.data_dir,
        config.download,
        image_size=config.image_size_pair(),
        cache_dir=config.cache_directory(),
    )
    if not config.validation_fraction:
        return dataset
    kept, held_out = stratified_holdout(
        dataset.y_train, config.validation_fraction, config.label_seed
    )
    return dataclasses.replace(
        dataset,
        x_train=dataset.x_train[kept],
        y_train=dataset.y_train[kept],
        x_test=dataset.x_train[held_out],
        y_test=dataset.y_train[held_out],
    )


def evaluation_set(config: TrainConfig) -> str:
    """What the run's test errors are measured on, in words (results.json)."""
    if config.validation_fraction:
        return (
            f"validation split: {config.validation_fraction:g} of each class's labeled "
            f"training images, held out (--label_seed={config.label_seed}); not the test set"
        )
    return "test set"


def load_training_data(config: TrainConfig, process_share: tuple[int, int] = (0, 1)):
    """(dataset, labeled indices, unlabeled indices, SemiSupervisedBatches) of a run,
    after checking the settings against the data. Indices are into the training pool
    (`ImageDataset.training_pool`): the labeled classes' images, then unlabeled/. The
    batches are this process's share of every global batch (`Distribution.process_share`)."""
    dataset = load_run_dataset(config)
    config.check_against_data(dataset)
    images, labels = dataset.training_pool()
    if config.labels_all():
        labeled = np.arange(len(dataset.y_train))
        unlabeled = np.arange(len(dataset.y_train), len(labels))
    else:
        labeled, unlabeled = stratified_label_split(
            labels, config.num_labels, dataset.num_classes, config.label_seed
        )
    batches = SemiSupervisedBatches(
        images,
        labels,
        labeled,
        unlabeled,
        config.labeled_batch_size,
        config.unlabeled_batch_size,
        seed=config.seed,
        process_share=process_share,
    )
    return dataset, labeled, unlabeled, batches


def evaluation_batches(dataset: ImageDataset, distribution: Distribution) -> LabeledBatches:
    """The test (or validation) batches; under a JAX distribution every batch is padded to
    split evenly across the devices (weight-0 rows), and each process feeds its share."""
    if distribution.engine is None or keras.backend.backend() != "jax":
        return LabeledBatches(dataset.x_test, dataset.y_test, EVALUATION_BATCH_SIZE)
    multiple = distribution.replicas
    batch_size = -(-EVALUATION_BATCH_SIZE // multiple) * multiple
    return LabeledBatches(
        dataset.x_test,
        dataset.y_test,
        batch_size,
        pad_multiple=multiple,
        process_share=distribution.process_share,
    )


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in config.items() if key not in RESUMABLE_DIFFERENCES}


def check_run_directory(config: TrainConfig) -> bool:
    """Checks model_dir before anything is written; returns True to resume.

    Refuses a directory that is not writable, or that holds a run with another
    configuration (unless --overwrite).
    """
    model_dir = config.model_dir
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise UserInputError(f"--model_dir={model_dir} is a file, not a directory")
    probe = model_dir if os.path.isdir(model_dir) else os.path.dirname(os.path.abspath(model_dir))
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    try:
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as error:
        raise UserInputError(
            f"--model_dir={model_dir} is not writable ({error.strerror}); choose another directory"
        ) from None
    config_path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(config_path) or config.overwrite:
        return False
    try:
        with open(config_path) as file:
            # Through TrainConfig, so that settings added since it was written compare
            # at their defaults.
            previous = _comparable(TrainConfig.from_dict(json.load(file)).to_dict())
    except (OSError, ValueError, TypeError) as error:
        raise UserInputError(
            f"cannot read {config_path} ({error}); use --overwrite to start anew"
        ) from None
    current = _comparable(config.to_dict())
    differences = sorted(
        key for key in previous.keys() | current.keys() if previous.get(key) != current.get(key)
    )
    if differences:
        shown = ", ".join(
            f"{key}: {previous.get(key)!r} -> {current.get(key)!r}" for key in differences[:3]
        )
        raise UserInputError(
            f"--model_dir={model_dir} holds a run with a different configuration ({shown}); "
            "use another --model_dir, or --overwrite to replace it"
        )
    return True


def configure_backend(config: TrainConfig) -> None:
    """Seeds, determinism and the dtype policy, before any model is built."""
    keras.utils.set_random_seed(config.seed)
    if config.deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    policy = {"": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
    keras.config.set_dtype_policy(policy[config.mixed_precision])


def build_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """SGD with the configuration's momentum and weight decay: PyTorch's update with
    coupled L2 (`CoupledWeightDecaySGD`), or Keras' SGD with decoupled decay."""
    if config.weight_decay_mode == "coupled":
        return CoupledWeightDecaySGD(
            learning_rate=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            coupled_weight_decay=config.weight_decay,
        )
    return keras.optimizers.SGD(
        learning_rate=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay or None,
    )


def build_model(config: TrainConfig, dataset: ImageDataset, init_images=None) -> MeanTeacher:
    """The compiled MeanTeacher for this configuration and data.

    With `init_images` (raw training images), networks with data-dependent
    initialization (conv_large_wn) are initialized from them, normalized and not
    augmented, before the teacher is copied from the student. λ1 and λ2 start at 0;
    the schedule callbacks set them every epoch.
    """
    student = model_spec(config.model).build(
        num_classes=dataset.num_classes, input_shape=dataset.image_shape, width=config.width
    )
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
    if init_images is not None:
        initialize_from_data(student, augmentation(init_images, training=False))
    model = MeanTeacher(
        student,
        augmentation,
        ema_decay=config.ema_decay,
        consistency_weight=0.0,
        lc_weight=0.0,
        lc_epsilon=config.lc_epsilon,
        use_local_clustering=config.lc_weight > 0,
        forward_passes=config.forward_passes,
    )
    model.compile(
        optimizer=build_optimizer(config),
        # Keras runs a JAX step without jit op by op, which is many times slower.
        jit_compile=config.jit_compile or keras.backend.backend() == "jax",
        steps_per_execution=config.steps_per_execution,
    )
    # Built here, inside the distribution's scope: fit then has nothing left to build.
    model.optimizer.build(model.trainable_variables)
    return model


def start_run_directory(
    config: TrainConfig,
    model: MeanTeacher,
    dataset: ImageDataset,
    labeled,
    restore_from: str | None,
    callbacks,
    is_chief: bool = True,
) -> int:
    """Creates (or, with --overwrite, clears) model_dir, restores the training state
    (and the callbacks' states) from `restore_from` (this run's resume file, or the
    state of the run it forks from), and writes the run's metadata; returns the epoch
    to start at. A process other than the chief only restores."""
    model_dir = config.model_dir
    if not is_chief:
        return load_training_state(model, restore_from, callbacks) if restore_from else 0
    os.makedirs(model_dir, exist_ok=True)
    if config.overwrite:
        run_files = [os.path.join(model_dir, name) for name in RUN_FILES]
        for path in [*run_files, *snapshot_paths(model_dir)]:
            if os.path.exists(path):
                os.remove(path)
        shutil.rmtree(os.path.join(model_dir, TENSORBOARD_DIR), ignore_errors=True)
    initial_epoch = 0
    if restore_from:
        initial_epoch = load_training_state(model, restore_from, callbacks)
        logging.info(
            "Restored %s: %s starts at epoch %d.", restore_from, model_dir, initial_epoch + 1
        )
    atomic_write_json(os.path.join(model_dir, CONFIG_FILE), config.to_dict())
    atomic_write_json(os.path.join(model_dir, DATASET_FILE), describe_dataset(config, dataset))
    atomic_write_json(
        os.path.join(model_dir, INDICES_FILE),
        {
            "dataset": config.dataset,
            "label_seed": config.label_seed,
            "labeled_indices": labeled.tolist(),
        },
    )
    return initial_epoch


def describe_dataset(config: TrainConfig, dataset: ImageDataset) -> dict[str, Any]:
    """dataset.json: what evaluate, predict and export need to know of the data."""
    return {
        "dataset": config.dataset,
        "class_names": list(dataset.class_names),
        "image_shape": list(dataset.image_shape),
        "num_train_labeled_classes": int(len(dataset.y_train)),
        "num_unlabeled_folder": int(len(dataset.x_unlabeled)),
        "num_evaluation": int(len(dataset.y_test)),
        "evaluation_set": evaluation_set(config),
    }


def build_callbacks(
    config: TrainConfig, batches: SemiSupervisedBatches, test_batches, is_chief: bool = True
) -> list[keras.callbacks.Callback]:
    """The run's callbacks, in the order they must run: the batches learn the epoch
    before the schedules measure on them; guards and evaluation add to the logs before
    the checkpoint, the history and TensorBoard read them. The checkpoint saves the
    state of every callback that has one. Only the chief's list has the callbacks
    that write files (every process runs the others: they take part in collectives)."""
    callbacks = [
        batches.epoch_callback(),
        ConsistencyRampup(config.consistency_weight, config.consistency_rampup_epochs),
        LocalClusteringSchedule(
            config.lc_weight,
            config.lc_start_epoch,
            config.lc_rampup_epochs,
            config.lc_epsilon,
            epsilon_quantile=config.lc_epsilon_quantile,
            distance_batches=batches.global_batches(),
        ),
        linear_lr_decay(config.lr, config.lr_decay_start(), config.epochs),
        NonFiniteLossGuard(),
        CollapseMonitor(stop=config.stop_on_collapse),
        PeriodicEvaluation(test_batches, config.eval_every, config.epochs),
    ]
    if not is_chief:
        return callbacks
    return [
        *callbacks,
        ResumeCheckpoint(
            os.path.join(config.model_dir, STATE_FILE), callbacks, config.kept_epochs()
        ),
        HistoryCSV(
            os.path.join(config.model_dir, HISTORY_FILE),
            extra_columns=("student_test_error", "teacher_test_error"),
        ),
        *_tensorboard_callbacks(config.model_dir),
    ]


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


def final_results(
    config: TrainConfig,
    model: MeanTeacher,
    callbacks,
    test_batches,
    *,
    epochs_run: int,
    initial_epoch: int,
    wall_time_s: float,
    split_sizes: tuple[int, int],
    distribution: Distribution,
) -> dict[str, Any]:
    """Evaluates the final state (after a non-finite loss, the last good one: not the
    diverged weights); returns what results.json holds: the final errors, and apart
    from them, labelled, the best teacher error over the run's evaluations."""
    stopped_by = next((c for c in callbacks if getattr(c, "stop_reason", None)), None)
    stop_reason = stopped_by.stop_reason if stopped_by else None
    evaluation = next(c for c in callbacks if isinstance(c, PeriodicEvaluation))
    schedule = next(c for c in callbacks if isinstance(c, LocalClusteringSchedule))
    state_path = os.path.join(config.model_dir, STATE_FILE)
    diverged_without_good_state = isinstance(stopped_by, NonFiniteLossGuard) and not (
        os.path.exists(state_path)
    )
    if diverged_without_good_state:  # diverged in the first epoch: no weights to evaluate
        epochs_run = 0
        final = {"student_test_error": None, "teacher_test_error": None}
    else:
        if isinstance(stopped_by, NonFiniteLossGuard):
            epochs_run = load_training_state(model, state_path)
        final = errors_from_accuracies(model.evaluate(test_batches, verbose=0, return_dict=True))
        evaluation.record(final, int(epochs_run))
    results = {
        **final,
        "teacher_best_test_error": evaluation.best_teacher_error,
        "teacher_best_test_error_epoch": evaluation.best_epoch,
        "teacher_best_test_error_note": BEST_ERROR_NOTE,
        "epochs_run": int(epochs_run),
        "completed": stop_reason is None and epochs_run >= config.epochs,
        "stop_reason": stop_reason,
        "resumed_from_epoch": int(initial_epoch),
        "wall_time_s": round(wall_time_s, 3),
        "backend": keras.backend.backend(),
        "replicas": int(distribution.replicas),
        "processes": int(distribution.process_count),
        "num_labeled": int(split_sizes[0]),
        "num_unlabeled": int(split_sizes[1]),
        "evaluation_set": evaluation_set(config),
        "lc_epsilon": schedule.epsilon if config.lc_weight > 0 else None,
        "config": config.to_dict(),
    }
    return results


def write_final_files(config: TrainConfig, model: MeanTeacher, results: dict[str, Any]) -> None:
    """Saves the model of a run that ended well (model.keras) and writes results.json."""
    if results["stop_reason"] is None:
        # Synchronized batch norm is a training setting; the saved model loads anywhere.
        set_batch_norm_synchronized(model, False)
        atomic_write(os.path.join(config.model_dir, MODEL_FILE), model.save)
    atomic_write_json(os.path.join(config.model_dir, RESULTS_FILE), results)
