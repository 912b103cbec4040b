"""run(config): data + model -> fit with callbacks -> metrics, checkpoints, results.

Files in config.model_dir (lcmt_tf.run_dir):
    config.json              the resolved configuration
    labeled_indices.json     training-set indices of the labeled images
    dataset.json             class names, image shape, what the run evaluates on
    training_state.npz       full state after the last completed epoch (for resume)
    history.csv              per-epoch values, a row per epoch
    tensorboard/             per-epoch scalars
    model.keras              the final model (MeanTeacher or FixMatch: student + teacher)
    results.json             final test (and validation) errors, epochs run, wall time,
                             why it stopped, and the software and device it ran on
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import keras

from lcmt_tf.builders import (
    RunCallbacks,
    build_callbacks,
    build_model,
    configure_backend,
    diagnostics_pool,
    evaluation_batches,
)
from lcmt_tf.callbacks import evaluation_epochs
from lcmt_tf.config import TrainConfig
from lcmt_tf.data.training_data import evaluation_set, load_training_data
from lcmt_tf.diagnostics import without_nan
from lcmt_tf.distribute import Distribution, check_batch_split, start_distribution
from lcmt_tf.errors import UserInputError
from lcmt_tf.provenance import software
from lcmt_tf.run_dir.checkpoint import load_training_state
from lcmt_tf.run_dir.fork import copy_history, fork_state_path
from lcmt_tf.run_dir.layout import CONFIG_FILE, HISTORY_FILE, STATE_FILE
from lcmt_tf.run_dir.lifecycle import (
    check_run_directory,
    finished_results,
    start_run_directory,
    write_final_files,
)
from lcmt_tf.run_dir.lock import holding
from lcmt_tf.sanity import check_loss_terms
from lcmt_tf.semi_supervised import SemiSupervisedModel, error_names, errors_from_accuracies
from lcmt_tf.steps import backend_refusal


def best_error_note(split: str) -> str:
    """What results.json says of the best teacher error over the run's evaluations."""
    selection = (
        "selected on the test set, as the authors' code does: for comparison with papers "
        "that report it, not this run's result (teacher_test_error)"
        if split == "test"
        else "selected on the validation split, not on the test set; the run's result is "
        "teacher_test_error"
    )
    return (
        f"lowest teacher {split} error over the run's evaluations (every --eval_every epochs "
        f"and at the end): {selection}"
    )


def run(config: TrainConfig, callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict[str, Any]:
    """Trains (or resumes) the run described by `config`; returns the results dict
    (what results.json holds).

    Args:
        config: the run's settings (`TrainConfig`; `lcmt_tf.train_config` builds one
            from a flag file).
        callbacks: Keras callbacks of your own (EarlyStopping, ModelCheckpoint,
            CSVLogger, a tracker's), run after lcmt_tf's own, with the epoch's logs
            complete: losses, `val_student_accuracy`, `val_teacher_accuracy` and the
            errors of EvaluationErrors at every evaluation. Their state is not part of
            the run's resumable state, and under --distribute=multi_worker every
            process runs them. The run's schedule sets the learning rate at the start
            of every epoch (--lr, decaying linearly over the last --lr_decay_epochs),
            so a callback that changes it (ReduceLROnPlateau) is undone one epoch
            later: use such a callback in your own `fit`, without `LinearLRDecay`.

    Example:
        results = lcmt_tf.run(
            lcmt_tf.train_config(["--flagfile=digits", "--epochs=20", "--model_dir=runs/d"]),
            callbacks=[keras.callbacks.EarlyStopping("val_teacher_accuracy")],
        )
    """
    config.validate()
    refusal = backend_refusal(config, keras.backend.backend())
    if refusal:
        raise UserInputError(refusal)
    check_run_directory(config)  # the mistakes a user can fix, before anything starts
    distribution = start_distribution(config)  # before the data starts a runtime
    # One owner at a time: the chief holds the directory's lock until the run ends.
    with holding(config.model_dir, distribution.is_chief):
        resuming = check_run_directory(config)
        finished = finished_results(config) if resuming else None
        if finished is not None:
            logging.info(
                "%s is a finished run (%d epochs): nothing to train, nothing changed.",
                config.model_dir,
                finished["epochs_run"],
            )
            return {**finished, "already_finished": True}
        return _train(config, distribution, resuming, list(callbacks))


def fork(
    source: str, config: TrainConfig, callbacks: Sequence[keras.callbacks.Callback] = ()
) -> dict[str, Any]:
    """The paper's protocol in-process: trains `config` (an MT + LC configuration)
    from the Mean Teacher run `source` at `config.lc_start_epoch`, as `--fork_from`
    does, and returns the results dict.

    Args:
        source: a run directory that kept its training state after the LC start epoch
            (`--keep_epochs`, or a run that stopped exactly there); every setting that
            shapes the epochs before the fork must agree (`lcmt_tf.run_dir.fork`).
        config: the forked run's settings; its `model_dir` is where it trains.
        callbacks: your own Keras callbacks, as for `run`.

    Example:
        mt = lcmt_tf.train_config(["--flagfile=digits_mt", "--keep_epochs=60",
                                   "--model_dir=runs/mt"])
        lcmt_tf.run(mt)
        results = lcmt_tf.fork("runs/mt", lcmt_tf.train_config(
            ["--flagfile=digits", "--model_dir=runs/mtlc"]))
    """
    return run(dataclasses.replace(config, fork_from=str(source)), callbacks)


def _train(
    config: TrainConfig, distribution: Distribution, resuming: bool, user_callbacks: list
) -> dict[str, Any]:
    dataset, labeled, unlabeled, batches = load_training_data(config, distribution.process_share)
    monitored = dataset.monitored_split
    evaluations = {
        split: evaluation_batches(dataset, distribution, split)
        for split in (monitored, "test")
        if len(dataset.split(split)[1])
    }
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
            check_loss_terms(
                model,
                batches.batch(0),
                config.consistency_weight,
                config.lc_weight,
                config.unlabeled_weight,  # checked where the model has that term
            )
        # The diagnostics run the model in this process alone: on one device only.
        diagnostics = diagnostics_pool(config, batches) if distribution.engine is None else None
        callbacks = build_callbacks(
            config, batches, monitored, distribution.is_chief, user_callbacks, diagnostics
        )
        # Everything above only reads; from here on the chief writes the run directory.
        initial_epoch = start_run_directory(
            config,
            model,
            dataset,
            labeled,
            restore_from,
            callbacks.ordered(),
            distribution.is_chief,
        )
        if not distribution.all_equal(initial_epoch):
            raise UserInputError(
                f"the processes would resume {config.model_dir} at different epochs (this one "
                f"at {initial_epoch + 1}): every process must see the same --model_dir, on a "
                "shared file system"
            )
        if forking:
            # The source's state holds its own ε; the fork's is this configuration's
            # (the LC settings are what a fork may change).
            model.lc_epsilon.assign(config.lc_epsilon)
        if forking and distribution.is_chief:
            copy_history(config.fork_from, config.model_dir, HISTORY_FILE)
            logging.info("Forked from %s after epoch %d.", config.fork_from, initial_epoch)
        start = time.time()
        epochs_run = initial_epoch
        if initial_epoch < config.epochs:
            try:
                history = model.fit(
                    batches,
                    epochs=config.epochs,
                    initial_epoch=initial_epoch,
                    validation_data=evaluations[monitored],
                    validation_freq=evaluation_epochs(config.eval_every, config.epochs),
                    callbacks=callbacks.ordered(),
                    verbose=progress_verbosity(config.verbose),
                )
            except BaseException:
                # Stopped (a signal, an error): Keras skips on_train_end, which writes out
                # and closes TensorBoard's event files; the epochs they logged are kept.
                for board in callbacks.tensorboard:
                    board.on_train_end()
                raise
            epochs_run = initial_epoch + len(history.epoch)
        results = final_results(
            config,
            model,
            callbacks,
            evaluations,
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


def progress_verbosity(verbose: int) -> int:
    """Keras' verbose for fit: the progress bar (1) becomes one line per epoch (2) when
    the output is not a terminal, so that a log file gets a line an epoch, not a line
    for every redraw of the bar."""
    import sys

    if verbose == 1 and not sys.stdout.isatty():
        return 2
    return verbose


def final_results(
    config: TrainConfig,
    model: SemiSupervisedModel,
    callbacks: RunCallbacks,
    evaluations: dict,
    *,
    epochs_run: int,
    initial_epoch: int,
    wall_time_s: float,
    split_sizes: tuple[int, int],
    distribution: Distribution,
) -> dict[str, Any]:
    """Evaluates the final state (after a non-finite loss, the last good one: not the
    diverged weights) on the monitored split and, once, on the test set; returns what
    results.json holds: the final errors, and apart from them, labelled, the best
    teacher error over the run's evaluations."""
    stop_reason = callbacks.stop_reason()
    diverged = callbacks.non_finite.stop_reason is not None
    evaluation = callbacks.evaluation
    state_path = os.path.join(config.model_dir, STATE_FILE)
    final = {name: None for split in {"test", *evaluations} for name in error_names(split)}
    if diverged and not os.path.exists(state_path):  # the first epoch: no weights to evaluate
        epochs_run = 0
    else:
        if diverged:
            epochs_run = load_training_state(model, state_path)
        for split, split_batches in evaluations.items():
            accuracies = model.evaluate(split_batches, verbose=0, return_dict=True)
            final.update(errors_from_accuracies(accuracies, split))
        evaluation.record(
            {name: final[name] for name in error_names(evaluation.split)}, int(epochs_run)
        )
    monitor = callbacks.confirmation_bias
    best = f"teacher_best_{evaluation.split}_error"
    results = {
        **final,
        best: evaluation.best_teacher_error,
        f"{best}_epoch": evaluation.best_epoch,
        f"{best}_note": best_error_note(evaluation.split),
        "epochs_run": int(epochs_run),
        "completed": stop_reason is None and epochs_run >= config.epochs,
        "stop_reason": stop_reason,
        "collapse": callbacks.collapse.summary(int(epochs_run)),
        "resumed_from_epoch": int(initial_epoch),
        "wall_time_s": round(wall_time_s, 3),
        "backend": keras.backend.backend(),
        "replicas": int(distribution.replicas),
        "processes": int(distribution.process_count),
        "num_labeled": int(split_sizes[0]),
        "num_unlabeled": int(split_sizes[1]),
        "evaluation_set": evaluation_set(config),
        # The ε of the last step: the model's variable, the one place it lives.
        "lc_epsilon": float(keras.ops.convert_to_numpy(model.lc_epsilon)),
        "confirmation_bias": None
        if monitor is None or monitor.last_result is None
        else {
            **without_nan(monitor.last_result),
            "images": int(len(monitor.labels)),
            "note": "at the last evaluation, over a fixed sample of the unlabeled images "
            "whose labels are known (never trained on); lcmt_tf.diagnostics",
        },
        "config": config.to_dict(),
        "software": software(),
    }
    return results


if __name__ == "__main__":
    print(
        "python -m lcmt_tf.train: error: lcmt_tf.train is the library module that runs a "
        "training (run(config)); the command is `lcmt train` (or `python -m lcmt_tf train`)",
        file=sys.stderr,
    )
    sys.exit(2)
