"""MeanTeacher's steps on the TensorFlow backend: a GradientTape over the student."""

from __future__ import annotations

import tensorflow as tf


class TensorFlowSteps:
    """train_step(data) -> logs and test_step(data) -> logs, as Keras' TensorFlow
    trainer calls them (inside a tf.function, optionally XLA-compiled)."""

    def train_step(self, data):
        variables = self.trainable_variables
        # Watch only the trainable (student) variables: the teacher's forward pass is
        # then not recorded on the tape.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([variable.value for variable in variables])
            loss, terms, labeled_logits = self.compute_losses(data)
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, variables)
        applied = self.step_applied(gradients)
        self.optimizer.apply(gradients, variables)
        for teacher_variable, student_variable in self.ema_pairs:
            teacher_variable.assign(
                self.moving_average(teacher_variable, student_variable, applied)
            )
        return self.update_metrics(terms, labeled_logits)

    def test_step(self, data):
        return self.evaluation_metrics(data)
