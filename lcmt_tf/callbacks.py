"""Keras callbacks of a Mean Teacher + Local Clustering run, one job each.

The schedules (ConsistencyRampup, LocalClusteringSchedule, LinearLRDecay) set a
backend variable of the model at the start of every epoch, so the compiled step is
never retraced; the step reports the values it used. EvaluationErrors names what
fit's validation measured, ConfirmationBiasMonitor measures what happens to the
unlabeled images the teacher gets wrong, NonFiniteLossGuard and CollapseMonitor watch
the run; HistoryCSV writes its epochs.

Callbacks whose state must survive a resume have `get_state()` and `set_state()`
(dicts of numbers), which `lcmt_tf.run_dir.checkpoint` saves with the training state.
"""

from __future__ import annotations

import csv
import logging
import math

import keras
import numpy as np

from lcmt_tf.diagnostics import confirmation_bias, pseudo_labels
from lcmt_tf.errors import UserInputError
from lcmt_tf.files import atomic_write_csv
from lcmt_tf.schedules import linear_decay, sigmoid_rampup
from lcmt_tf.semi_supervised import errors_from_accuracies


def _check_number(owner: str, name: str, value, minimum: float = 0.0) -> float:
    """`value` as a float, refused with one line unless finite and >= `minimum`."""
    number = float(value)
    if not math.isfinite(number) or number < minimum:
        raise UserInputError(
            f"{owner}: {name} must be a finite number >= {minimum:g}, not {value!r}"
        )
    return number


class WeightRampup(keras.callbacks.Callback):
    """A loss weight of the model (the variable named `WEIGHT`) set at the start of
    every epoch to max_weight * sigmoid_rampup(epoch, rampup_epochs); a subclass names
    the weight and its paper's defaults."""

    WEIGHT = ""

    def __init__(self, max_weight: float, rampup_epochs: float):
        super().__init__()
        owner = type(self).__name__
        self.max_weight = _check_number(owner, "max_weight", max_weight)
        self.rampup_epochs = _check_number(owner, "rampup_epochs", rampup_epochs)
        self.current = 0.0

    def set_model(self, model):
        super().set_model(model)
        if not hasattr(model, self.WEIGHT):
            raise UserInputError(
                f"{type(self).__name__} sets {self.WEIGHT}, which {type(model).__name__} does "
                "not have"
            )

    def on_epoch_begin(self, epoch, logs=None):
        self.current = self.max_weight * sigmoid_rampup(epoch, self.rampup_epochs)
        getattr(self.model, self.WEIGHT).assign(self.current)


class ConsistencyRampup(WeightRampup):
    """lambda1 = max_weight * sigmoid_rampup(epoch, rampup_epochs), set at the start of
    every epoch. The defaults are the paper's (100, ramped up over 5 epochs, section
    V-A), and `MeanTeacher.fit` adds this callback with them when `callbacks` has none;
    `ConsistencyRampup(0)` trains without consistency, `ConsistencyRampup(w, 0)` at a
    constant w.
    """

    WEIGHT = "consistency_weight"

    def __init__(self, max_weight: float = 100.0, rampup_epochs: float = 5):
        super().__init__(max_weight, rampup_epochs)


class UnlabeledWeightSchedule(WeightRampup):
    """FixMatch's lambda_u = max_weight * sigmoid_rampup(epoch, rampup_epochs), set at
    the start of every epoch. The defaults are FixMatch's (1, constant: no ramp-up),
    and `FixMatch.fit` adds this callback with them when `callbacks` has none;
    `UnlabeledWeightSchedule(0)` trains on the labeled images only.
    """

    WEIGHT = "unlabeled_weight"

    def __init__(self, max_weight: float = 1.0, rampup_epochs: float = 0):
        super().__init__(max_weight, rampup_epochs)


class LocalClusteringSchedule(keras.callbacks.Callback):
    """lambda2 = 0 before start_epoch, then
    max_weight * sigmoid_rampup(epoch - start_epoch, rampup_epochs).

    Epsilon is the model's (`MeanTeacher(lc_epsilon=...)`, its variable
    `model.lc_epsilon`). With `epsilon_quantile` = q (an extension, not in the paper)
    this callback sets that variable once, at the start epoch, to the q-quantile of
    the pair distances LC's mask acts on, measured on `distance_batches` (the first
    `measure_batches` batches of that epoch, through the current student as the
    training step runs it); the variable keeps it for the rest of the run, resumes
    included.
    """

    def __init__(
        self,
        max_weight: float,
        start_epoch: int,
        rampup_epochs: float,
        epsilon_quantile: float = 0.0,
        distance_batches=None,
        measure_batches: int = 4,
    ):
        super().__init__()
        owner = "LocalClusteringSchedule"
        self.max_weight = _check_number(owner, "max_weight", max_weight)
        self.start_epoch = int(_check_number(owner, "start_epoch", start_epoch))
        self.rampup_epochs = _check_number(owner, "rampup_epochs", rampup_epochs)
        self.epsilon_quantile = _check_number(owner, "epsilon_quantile", epsilon_quantile)
        if self.epsilon_quantile >= 1:
            raise UserInputError(
                f"{owner}: epsilon_quantile must be in [0, 1), not {epsilon_quantile!r}"
            )
        if self.epsilon_quantile and distance_batches is None:
            raise UserInputError(f"{owner}: epsilon_quantile needs distance_batches to measure on")
        self.distance_batches = distance_batches
        self.measure_batches = int(measure_batches)
        self.epsilon_measured_at: int | None = None  # epoch (0-based) of the measurement
        self.current = 0.0

    def set_model(self, model):
        super().set_model(model)
        if self.max_weight > 0 and not getattr(model, "use_local_clustering", True):
            raise UserInputError(
                "LocalClusteringSchedule: the model was built with use_local_clustering=False, "
                "so its LC weight would change nothing; build it with use_local_clustering=True"
            )

    def weight_at(self, epoch: int) -> float:
        if epoch < self.start_epoch:
            return 0.0
        return self.max_weight * sigmoid_rampup(epoch - self.start_epoch, self.rampup_epochs)

    def on_epoch_begin(self, epoch, logs=None):
        measure = self.epsilon_quantile and self.epsilon_measured_at is None
        if measure and epoch >= self.start_epoch:
            count = min(self.measure_batches, len(self.distance_batches))
            distances = measure_lc_distances(
                self.model, [self.distance_batches[step] for step in range(count)]
            )
            epsilon = float(np.quantile(distances, self.epsilon_quantile))
            self.model.lc_epsilon.assign(epsilon)
            self.epsilon_measured_at = epoch
            logging.info(
                "Local Clustering epsilon = %.6g: the %g-quantile of %d pair distances "
                "at epoch %d.",
                epsilon,
                self.epsilon_quantile,
                distances.size,
                epoch + 1,
            )
        self.current = self.weight_at(epoch)
        self.model.lc_weight.assign(self.current)

    def get_state(self) -> dict[str, float]:
        measured = -1 if self.epsilon_measured_at is None else self.epsilon_measured_at
        return {"epsilon_measured_at": measured}

    def set_state(self, state: dict[str, float]) -> None:
        measured = int(state.get("epsilon_measured_at", -1))
        self.epsilon_measured_at = measured if measured >= 0 else None


def measure_lc_distances(model, batches) -> np.ndarray:
    """All pair distances LC's mask would act on over `batches` (MeanTeacher batch
    dicts), as the training step computes them; the model's non-trainable state
    (batch-norm statistics, random generators) is restored afterwards."""
    saved = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]
    try:
        return np.concatenate(
            [keras.ops.convert_to_numpy(model.lc_pair_distances(batch)) for batch in batches]
        )
    finally:
        for variable, value in zip(model.non_trainable_variables, saved):
            variable.assign(value)


class LinearLRDecay(keras.callbacks.LearningRateScheduler):
    """Keras' LearningRateScheduler for the paper's decay: the optimizer's learning
    rate until `decay_start`, then linearly to 0 at `decay_end`
    (`schedules.linear_decay`, epochs counted from 0); it logs `learning_rate`.

    The base rate is the optimizer's own (`compile(optimizer=SGD(0.05))`), read when
    fit starts; it is part of this callback's state, so a run restored mid-decay
    (`lcmt_tf.run`) decays from the same base.

    Example:
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
        model.fit(batches, epochs=100, callbacks=[LinearLRDecay(75, 100)])
    """

    def __init__(self, decay_start: float, decay_end: float):
        super().__init__(self.rate_at)
        self.decay_start = _check_number("LinearLRDecay", "decay_start", decay_start)
        self.decay_end = _check_number("LinearLRDecay", "decay_end", decay_end)
        if self.decay_end < self.decay_start:
            raise UserInputError(
                f"LinearLRDecay: decay_end ({decay_end}) must not come before decay_start "
                f"({decay_start})"
            )
        self.base_lr: float | None = None

    def rate_at(self, epoch: int) -> float:
        return linear_decay(epoch, self.base_lr, self.decay_start, self.decay_end)

    def on_train_begin(self, logs=None):
        if self.base_lr is not None:
            return
        optimizer = self.model.optimizer
        if isinstance(
            getattr(optimizer, "_learning_rate", None),
            keras.optimizers.schedules.LearningRateSchedule,
        ):
            raise UserInputError(
                "LinearLRDecay sets the learning rate every epoch: give the optimizer a "
                "constant learning rate, not a LearningRateSchedule"
            )
        self.base_lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))

    def get_state(self) -> dict[str, float]:
        return {} if self.base_lr is None else {"base_lr": self.base_lr}

    def set_state(self, state: dict[str, float]) -> None:
        if "base_lr" in state:
            self.base_lr = float(state["base_lr"])


class LogLearningRate(keras.callbacks.Callback):
    """Adds the optimizer's current `learning_rate` to the epoch's logs, as
    LinearLRDecay does, for an optimizer whose rate is a LearningRateSchedule
    (`--lr_schedule=cosine`): the rate at the end of the epoch."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            rate = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))


def evaluation_epochs(every: int, total_epochs: int) -> list[int]:
    """fit's `validation_freq` that evaluates every `every` epochs and after the last
    one: the 1-based epochs, as Keras counts them (also when a fit resumes)."""
    return [epoch for epoch in range(1, total_epochs + 1) if epoch % every == 0] + (
        [total_epochs] if total_epochs % every else []
    )


class EvaluationErrors(keras.callbacks.Callback):
    """Errors, in percent, from the accuracies of fit's validation.

    After an epoch that fit evaluated (`validation_data`, `validation_freq`), it adds
    `student_<split>_error` and `teacher_<split>_error` to the epoch's logs, named
    after the split the validation data is ("test" or "validation"), beside Keras'
    `val_student_accuracy` and `val_teacher_accuracy`. Put it before the callbacks that
    write the logs (history, TensorBoard).

    It also keeps the lowest teacher error over its evaluations and its epoch
    (1-based). Measured on the test set, that is selection on the test set, as the
    authors' code reports: never the run's result.

    Example:
        model.fit(batches, epochs=100, validation_data=test_batches,
                  validation_freq=evaluation_epochs(5, 100),
                  callbacks=[EvaluationErrors("test")])
    """

    def __init__(self, split: str = "test"):
        super().__init__()
        self.split = split
        self.last_result: dict[str, float] | None = None
        self.best_teacher_error: float | None = None
        self.best_epoch: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        if not logs or "val_teacher_accuracy" not in logs:
            return
        if not np.isfinite(float(logs.get("loss", 0.0))):
            return  # the weights diverged in this epoch: not an evaluation of the run
        accuracies = {
            name: logs[f"val_{name}"] for name in ("student_accuracy", "teacher_accuracy")
        }
        self.record(errors_from_accuracies(accuracies, self.split), epoch + 1)
        logs.update(self.last_result)

    def record(self, errors: dict[str, float], epoch: int) -> None:
        """Notes an evaluation (errors_from_accuracies of this split) after `epoch`
        (1-based) epochs."""
        self.last_result = errors
        teacher_error = errors[f"teacher_{self.split}_error"]
        if self.best_teacher_error is None or teacher_error < self.best_teacher_error:
            self.best_teacher_error, self.best_epoch = teacher_error, epoch

    def get_state(self) -> dict[str, float]:
        if self.best_teacher_error is None:
            return {}
        return {"best_teacher_error": self.best_teacher_error, "best_epoch": self.best_epoch}

    def set_state(self, state: dict[str, float]) -> None:
        if state:
            self.best_teacher_error = float(state["best_teacher_error"])
            self.best_epoch = int(state["best_epoch"])


class ConfirmationBiasMonitor(keras.callbacks.Callback):
    """Confirmation-bias diagnostics (`lcmt_tf.diagnostics`) at fit's evaluations.

    After each epoch in `evaluate_at` (1-based: the epochs fit evaluates,
    `evaluation_epochs`) that ended with a finite loss, it runs the student and the
    teacher in inference mode over `images`, unlabeled training images whose true
    `labels` are known (they are never used for training), and adds
    `lcmt_tf.diagnostics.NAMES` to the epoch's logs: the teacher's error on them, the
    images fixed and broken since the previous evaluation (NaN at the first one), and
    who the misclassified images' neighbours are within the run's current ε; for
    FixMatch also `PSEUDO_LABEL_NAMES`, the student's pseudo-labels on them at its
    threshold (the un-augmented image standing in for the weak view). Its state
    (the previous predictions) is saved with the run, so a resumed run measures what an
    uninterrupted one does. Put it before the callbacks that write the logs.

    Example:
        monitor = ConfirmationBiasMonitor(x_pool, hidden_labels, evaluation_epochs(5, 100))
        model.fit(batches, epochs=100, validation_data=..., validation_freq=...,
                  callbacks=[monitor])
    """

    def __init__(self, images, labels, evaluate_at, batch_size: int = 500):
        super().__init__()
        self.images = images
        self.labels = np.asarray(labels)
        self.evaluate_at = frozenset(int(epoch) for epoch in evaluate_at)
        self.batch_size = int(batch_size)
        self.previous_predictions: np.ndarray | None = None
        self.last_result: dict[str, float] | None = None
        self._probe = None

    def measure(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(student features z, teacher predictions, student logits) of `images`, in
        inference mode."""
        if self._probe is None:  # one compiled function over the model's current weights
            self._probe = _DiagnosticsProbe(self.model)
        features, logits, student_logits = self._probe.predict(
            self.images, batch_size=self.batch_size, verbose=0
        )
        return (
            np.asarray(features, np.float32),
            np.argmax(logits, axis=-1),
            np.asarray(student_logits, np.float32),
        )

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 not in self.evaluate_at or logs is None:
            return
        if not np.isfinite(float(logs.get("loss", 0.0))):
            return
        features, predictions, student_logits = self.measure()
        epsilon = float(keras.ops.convert_to_numpy(self.model.lc_epsilon))
        self.last_result = confirmation_bias(
            features, predictions, self.labels, epsilon, self.previous_predictions
        )
        threshold = getattr(self.model, "threshold", None)
        if threshold is not None:  # FixMatch: its pseudo-labels, from the student
            probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(student_logits))
            self.last_result.update(pseudo_labels(probabilities, self.labels, threshold))
        self.previous_predictions = predictions
        logs.update(self.last_result)

    def get_state(self) -> dict:
        if self.previous_predictions is None:
            return {}
        return {"previous_predictions": self.previous_predictions}

    def set_state(self, state: dict) -> None:
        previous = state.get("previous_predictions")
        if previous is not None and len(previous) == len(self.labels):  # the same sample
            self.previous_predictions = np.asarray(previous)


class _DiagnosticsProbe(keras.Model):
    """images -> (the student's features z, the teacher's logits, the student's
    logits), in inference mode, with the model's own (current) weights: what the
    diagnostics predict with."""

    def __init__(self, model):
        super().__init__(name="diagnostics_probe")
        self.semi_supervised = model

    def call(self, images):
        normalized = self.semi_supervised.augmentation(images, training=False)
        features, student_logits = self.semi_supervised.student(normalized, training=False)
        _, teacher_logits = self.semi_supervised.teacher(normalized, training=False)
        return features, teacher_logits, student_logits


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training at the first NaN or Inf loss and records why in `stop_reason`.

    Unlike keras.callbacks.TerminateOnNaN it keeps the reason, so the run can write it
    into results.json; ResumeCheckpoint does not save the failed epoch (the state of the
    last completed epoch, if there is one, stays).

    It is deliberately not marked `async_safe`: on JAX, Keras would hand the step's logs
    to a worker thread while the next compiled step donates (deletes) those buffers.
    Use --steps_per_execution to check less often.
    """

    def __init__(self):
        super().__init__()
        self.stop_reason: str | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.stop_reason is None and loss is not None and not math.isfinite(float(loss)):
            self.stop_reason = (
                f"non-finite loss ({float(loss)}) at epoch {self._epoch + 1}, step {batch + 1}"
            )
            logging.error("Stopping: %s.", self.stop_reason)
            self.model.stop_training = True


class CollapseMonitor(keras.callbacks.Callback):
    """Detects the distribution collapse that too large an epsilon or LC weight causes.

    Two signs, each against its own peak so far in the run: the student's feature
    spread (mean across-batch std of the features) below `spread_ratio` of its peak,
    or the balance of its predictions (`prediction_balance`: the normalized entropy of
    the predicted classes over a batch, 0 when one class takes every image) below
    `balance_ratio` of its peak. It logs `feature_spread_ratio`,
    `prediction_balance_ratio` and `collapsed` (0/1) for TensorBoard, warns, keeps the
    collapsed epochs (`collapsed_epochs`, the run's results name them), and with
    `stop=True` stops training.
    """

    def __init__(self, spread_ratio: float = 0.05, balance_ratio: float = 0.3, stop: bool = False):
        super().__init__()
        self.spread_ratio = float(spread_ratio)
        self.balance_ratio = float(balance_ratio)
        self.stop = stop
        self.reference_spread = 0.0
        self.reference_balance = 0.0
        self.collapsed_epochs: list[int] = []  # 1-based
        self.stop_reason: str | None = None

    def get_state(self) -> dict:
        return {
            "reference_spread": self.reference_spread,
            "reference_balance": self.reference_balance,
            "collapsed_epochs": np.asarray(self.collapsed_epochs, np.int64),
        }

    def set_state(self, state: dict) -> None:
        self.reference_spread = float(state.get("reference_spread", 0.0))
        self.reference_balance = float(state.get("reference_balance", 0.0))
        self.collapsed_epochs = [int(e) for e in np.asarray(state.get("collapsed_epochs", []))]

    def _ratio(self, logs, name: str, reference: str) -> float:
        value = float(logs[name])
        if not math.isfinite(value):
            return 1.0  # a non-finite epoch is the NaN guard's
        setattr(self, reference, max(getattr(self, reference), value))
        peak = getattr(self, reference)
        return value / peak if peak > 0 else 1.0

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or "feature_spread" not in logs:
            return
        signs = []
        spread_ratio = self._ratio(logs, "feature_spread", "reference_spread")
        logs["feature_spread_ratio"] = spread_ratio
        if spread_ratio < self.spread_ratio:
            signs.append(
                f"feature spread {float(logs['feature_spread']):.3g} is {spread_ratio:.2%} of "
                "its peak"
            )
        if "prediction_balance" in logs:
            balance_ratio = self._ratio(logs, "prediction_balance", "reference_balance")
            logs["prediction_balance_ratio"] = balance_ratio
            if balance_ratio < self.balance_ratio:
                signs.append(
                    f"prediction balance {float(logs['prediction_balance']):.3f} is "
                    f"{balance_ratio:.2%} of its peak (most images get one class)"
                )
        logs["collapsed"] = float(bool(signs))
        if not signs:
            return
        self.collapsed_epochs.append(epoch + 1)
        message = (
            f"feature distribution collapse at epoch {epoch + 1}: {'; '.join(signs)}; LC "
            f"neighbor fraction {float(logs.get('lc_neighbor_fraction', float('nan'))):.3f}; "
            "lower --lc_epsilon or --lc_weight"
        )
        logging.warning(message)
        if self.stop:
            self.stop_reason = message
            self.model.stop_training = True

    def summary(self, epochs_run: int) -> dict | None:
        """What results.json says of a collapse after `epochs_run` epochs: None, or the
        first collapsed epoch, how many there were, and whether the last one was."""
        if not self.collapsed_epochs:
            return None
        return {
            "first_epoch": self.collapsed_epochs[0],
            "epochs": len(self.collapsed_epochs),
            "at_the_end": self.collapsed_epochs[-1] == epochs_run,
        }


class HistoryCSV(keras.callbacks.Callback):
    """A row per epoch in a CSV file: `epoch` (1-based) and every value in the epoch's
    logs, in sorted columns (plus `extra_columns`, for values that not every epoch
    logs); a missing value is left empty. The file is rewritten whole, atomically,
    after every epoch, so it is never half-written.

    On a resume it first keeps only the rows of the epochs before the one the run
    starts at (a run killed after writing its row but before saving its checkpoint
    trains that epoch again), so that every epoch appears once; rows that cannot be
    read (a file cut off by a crash elsewhere) are dropped with a warning. Values that
    appear later (a run forked from a run that did not log them) add their column. Put
    it after the callbacks that add to the logs, and before the checkpoint.
    """

    def __init__(self, path: str, extra_columns: tuple[str, ...] = ()):
        super().__init__()
        self.path = path
        self.extra_columns = tuple(extra_columns)
        self.rows: list[dict[str, str]] = []

    def on_train_begin(self, logs=None):
        self.rows, self._first_epoch = [], None

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch is None:
            self._first_epoch = epoch
            self.rows = self._rows_before(epoch + 1)

    def _rows_before(self, epoch: int) -> list[dict[str, str]]:
        try:
            with open(self.path, newline="") as file:
                rows = list(csv.DictReader(file))
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            logging.warning("history %s cannot be read (%s): starting it anew", self.path, error)
            return []
        good = [
            row
            for row in rows
            if str(row.get("epoch", "")).isdigit() and None not in (*row, *row.values())
        ]
        if len(good) < len(rows):
            logging.warning("history %s: dropped %d damaged rows", self.path, len(rows) - len(good))
        return [row for row in good if int(row["epoch"]) < epoch]

    def on_epoch_end(self, epoch, logs=None):
        values = {key: repr(float(value)) for key, value in (logs or {}).items()}
        self.rows.append({**values, "epoch": str(epoch + 1)})
        names = {name for row in self.rows for name in row} | set(self.extra_columns)
        columns = ["epoch", *sorted(names - {"epoch"})]
        atomic_write_csv(self.path, columns, self.rows)


class ConciseProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, showing the few values a person watches: the loss and its terms
    (with FixMatch's mask rate), the accuracies (and validation or test errors when
    evaluated), and ε and the LC neighbour fraction once Local Clustering is on.
    Everything else still goes to the history, history.csv and TensorBoard. Pass it in
    `callbacks` and Keras uses it in place of its own; with verbose=2 it prints one line
    per epoch.

    Example:
        model.fit(batches, epochs=100, callbacks=[ConciseProgbar(), ...])
    """

    SHOWN = (
        "loss", "ce", "consistency", "unlabeled", "mask_rate", "student_accuracy",
        "teacher_accuracy", "val_student_accuracy", "val_teacher_accuracy",
    )  # fmt: skip
    SHOWN_WITH_LC = ("lc", "lc_epsilon", "lc_neighbor_fraction")

    def _shown(self, logs):
        logs = logs or {}
        names = self.SHOWN
        if float(logs.get("lc_weight", 0.0)) > 0:
            names = (*names[:5], *self.SHOWN_WITH_LC, *names[5:])
        return {name: logs[name] for name in names if name in logs}

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, self._shown(logs))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, self._shown(logs))
