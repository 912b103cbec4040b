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

    def loss_term_gradient_norms(self, data, names) -> dict[str, tuple[float, float, float]]:
        """{term: (value, |d term / d student|, |d term / d teacher|)} over one batch, eagerly;
        the batch-norm statistics and random states it touches are restored."""
        students = [variable.value for variable in self.trainable_variables]
        teachers = [teacher.value for teacher, _ in self.ema_pairs]
        saved = [variable.numpy() for variable in self.non_trainable_variables]
        try:
            with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
                tape.watch(students + teachers)
                _, terms, _ = self.compute_losses(data)
            norms = {}
            for name in names:
                gradients = tape.gradient(
                    terms[name],
                    students + teachers,
                    unconnected_gradients=tf.UnconnectedGradients.ZERO,
                )
                norms[name] = (
                    float(terms[name]),
                    float(tf.linalg.global_norm(gradients[: len(students)])),
                    float(tf.linalg.global_norm(gradients[len(students) :])),
                )
            return norms
        finally:
            for variable, value in zip(self.non_trainable_variables, saved):
                variable.assign(value)
