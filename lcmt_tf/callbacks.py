"""Keras callbacks that drive the schedules of Mean Teacher + Local Clustering.

Each one owns one schedule, sets a backend variable of the model at the start of
every epoch (so the compiled step is never retraced) and puts the value it set into
the epoch's logs, where TensorBoard and the progress bar pick it up.
"""

from __future__ import annotations

import keras

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

    def __init__(
        self, max_weight: float, start_epoch: int, rampup_epochs: float, epsilon: float
    ):
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
        self.last_result = {
            "student_test_error": 100.0 * (1.0 - float(result["student_accuracy"])),
            "teacher_test_error": 100.0 * (1.0 - float(result["teacher_accuracy"])),
        }
        if logs is not None:
            logs.update(self.last_result)
