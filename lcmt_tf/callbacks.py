"""Keras callbacks that drive the schedules of Mean Teacher + Local Clustering.

Each one owns one schedule, sets a backend variable of the model at the start of
every epoch (so the compiled step is never retraced) and puts the value it set into
the epoch's logs, where TensorBoard and the progress bar pick it up.
"""

from __future__ import annotations

import logging
import math

import keras

from lcmt_tf.mean_teacher import errors_from_accuracies
from lcmt_tf.schedules import linear_decay, sigmoid_rampup


class ConsistencyRampup(keras.callbacks.Callback):
    """lambda1 = max_weight * sigmoid_rampup(epoch, rampup_epochs)."""

    def __init__(self, max_weight: float, rampup_epochs: float):
        super().__init__()
        self.max_weight = float(max_weight)
        self.rampup_epochs = float(rampup_epochs)
        self.current = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = self.max_weight * sigmoid_rampup(epoch, self.rampup_epochs)
        self.model.consistency_weight.assign(self.current)


class LocalClusteringSchedule(keras.callbacks.Callback):
    """lambda2 = 0 before start_epoch, then
    max_weight * sigmoid_rampup(epoch - start_epoch, rampup_epochs).

    Also sets epsilon (constant, but a variable so a user schedule can change it).
    """

    def __init__(self, max_weight: float, start_epoch: int, rampup_epochs: float, epsilon: float):
        super().__init__()
        self.max_weight = float(max_weight)
        self.start_epoch = int(start_epoch)
        self.rampup_epochs = float(rampup_epochs)
        self.epsilon = float(epsilon)
        self.current = 0.0

    def weight_at(self, epoch: int) -> float:
        if epoch < self.start_epoch:
            return 0.0
        return self.max_weight * sigmoid_rampup(epoch - self.start_epoch, self.rampup_epochs)

    def on_epoch_begin(self, epoch, logs=None):
        self.current = self.weight_at(epoch)
        self.model.lc_weight.assign(self.current)
        self.model.lc_epsilon.assign(self.epsilon)


def linear_lr_decay(base_lr: float, decay_start: float, decay_end: float):
    """Keras' LearningRateScheduler following `schedules.linear_decay`; it logs
    `learning_rate` every epoch."""
    return keras.callbacks.LearningRateScheduler(
        lambda epoch: linear_decay(epoch, base_lr, decay_start, decay_end)
    )


class PeriodicEvaluation(keras.callbacks.Callback):
    """Evaluates on held-out data every `every` epochs and after the last one, adding
    `student_test_error` and `teacher_test_error` (percent) to the epoch's logs.

    Put it before TensorBoard in the callback list so that the errors are logged.
    """

    def __init__(self, test_data, every: int, total_epochs: int):
        super().__init__()
        self.test_data = test_data
        self.every = int(every)
        self.total_epochs = int(total_epochs)
        self.last_result: dict[str, float] | None = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every and epoch + 1 != self.total_epochs:
            return
        result = self.model.evaluate(self.test_data, verbose=0, return_dict=True)
        self.last_result = errors_from_accuracies(result)
        if logs is not None:
            logs.update(self.last_result)


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training at the first NaN or Inf loss and records why in `stop_reason`.

    Unlike keras.callbacks.TerminateOnNaN it keeps the reason, so the run can write it
    into results.json; ResumeCheckpoint does not save the failed epoch.

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
            logging.error("Stopping: %s; the last good checkpoint is kept.", self.stop_reason)
            self.model.stop_training = True


class CollapseMonitor(keras.callbacks.Callback):
    """Detects the distribution collapse that too large an epsilon or LC weight causes.

    Each epoch it compares the student's feature spread (mean across-batch std of the
    features) with the largest spread seen so far in the run; below `spread_ratio` of it
    the features have collapsed. It logs `feature_spread_ratio` and `collapsed` (0/1)
    for TensorBoard, warns, and with `stop=True` stops training.
    """

    def __init__(self, spread_ratio: float = 0.05, stop: bool = False):
        super().__init__()
        self.spread_ratio = float(spread_ratio)
        self.stop = stop
        self.reference_spread = 0.0
        self.stop_reason: str | None = None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or "feature_spread" not in logs:
            return
        spread = float(logs["feature_spread"])
        self.reference_spread = max(self.reference_spread, spread)
        ratio = spread / self.reference_spread if self.reference_spread > 0 else 1.0
        collapsed = ratio < self.spread_ratio
        logs["feature_spread_ratio"] = ratio
        logs["collapsed"] = float(collapsed)
        if not collapsed:
            return
        message = (
            f"feature distribution collapse at epoch {epoch + 1}: feature spread {spread:.3g} "
            f"is {ratio:.2%} of its peak, LC neighbor fraction "
            f"{float(logs.get('lc_neighbor_fraction', float('nan'))):.3f}; "
            "lower --lc_epsilon or --lc_weight"
        )
        logging.warning(message)
        if self.stop:
            self.stop_reason = message
            self.model.stop_training = True
