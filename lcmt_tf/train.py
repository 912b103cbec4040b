"""run(config): data + model -> fit with callbacks -> metrics, checkpoints, results.

Files in config.model_dir (lcmt_tf.run_dir):
    config.json              the resolved configuration
    labeled_indices.json     training-set indices of the labeled images
    dataset.json             class names, image shape, what the run evaluates on
    training_state.npz       full state after the last completed epoch (for resume)
    history.csv              per-epoch values, a row per epoch
    tensorboard/             per-epoch scalars
    model.keras              the final MeanTeacher (student + teacher)
    results.json             final test errors, epochs run, wall time, why it stopped,
                             and the software and device it ran on
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import keras

from lcmt_tf.builders import (
    build_callbacks,
    build_model,
    configure_backend,
    evaluation_batches,
)
from lcmt_tf.callbacks import LocalClusteringSchedule, NonFiniteLossGuard, PeriodicEvaluation
from lcmt_tf.config import TrainConfig
from lcmt_tf.data.training_data import evaluation_set, load_training_data
from lcmt_tf.distribute import Distribution, check_batch_split, start_distribution
from lcmt_tf.errors import UserInputError
from lcmt_tf.mean_teacher import MeanTeacher, errors_from_accuracies
from lcmt_tf.provenance import software
from lcmt_tf.run_dir.checkpoint import load_training_state
from lcmt_tf.run_dir.fork import copy_history, fork_state_path
from lcmt_tf.run_dir.layout import CONFIG_FILE, HISTORY_FILE, STATE_FILE
from lcmt_tf.run_dir.lifecycle import check_run_directory, start_run_directory, write_final_files
from lcmt_tf.run_dir.lock import holding
from lcmt_tf.sanity import check_loss_terms
from lcmt_tf.steps import SUPPORTED_BACKENDS

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
    check_run_directory(config)  # the mistakes a user can fix, before anything starts
    distribution = start_distribution(config)  # before the data starts a runtime
    # One owner at a time: the chief holds the directory's lock until the run ends.
    with holding(config.model_dir, distribution.is_chief):
        return _train(config, distribution, resuming=check_run_directory(config))


def _train(config: TrainConfig, distribution: Distribution, resuming: bool) -> dict[str, Any]:
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
        "software": software(),
    }
    return results
