"""MeanTeacher's steps on the JAX backend: pure functions of the model's state.

During fit and evaluate, Keras' JAX trainer keeps the variables' values outside the
variables and passes them through every step as `state`. Every read and write of a
variable inside a step goes through `stateless`, one helper around
keras.StatelessScope.
"""

from __future__ import annotations

import contextlib

import jax
import keras


def stateless(function, *groups):
    """Calls function() with variables bound to values, without touching the variables.

    Args:
        function: a callable of no arguments that reads and may assign variables.
        *groups: (variables, values) pairs; each variable reads the matching value.

    Returns:
        (function's result, the groups' values afterwards), the latter one list per
        group, in order; a variable that function did not assign keeps its value.
    """
    mapping = [pair for variables, values in groups for pair in zip(variables, values)]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        result = function()
    updated = []
    for variables, values in groups:
        current = [scope.get_current_value(variable) for variable in variables]
        updated.append([old if new is None else new for old, new in zip(values, current)])
    return result, updated


class JaxSteps:
    """train_step(state, data) -> (logs, state) and test_step(state, data) ->
    (logs, state), as Keras' JAX trainer calls them (inside jax.jit)."""

    def train_step(self, state, data):
        trainable_values, non_trainable_values, optimizer_values, metrics_values = state

        def loss_function(trainable_values, non_trainable_values):
            def forward():
                loss, terms, labeled_logits = self.compute_losses(data)
                return self.optimizer.scale_loss(loss), (terms, labeled_logits)

            (scaled_loss, outputs), (_, non_trainable_after, _) = stateless(
                forward,
                (self.trainable_variables, trainable_values),
                (self.non_trainable_variables, non_trainable_values),
                (self.optimizer.variables, optimizer_values),
            )
            return scaled_loss, (outputs, non_trainable_after)

        gradient_function = jax.value_and_grad(loss_function, has_aux=True)
        (_, ((terms, labeled_logits), non_trainable_values)), gradients = gradient_function(
            trainable_values, non_trainable_values
        )
        applied = self.step_applied(gradients)
        trainable_values, optimizer_values = self.optimizer.stateless_apply(
            optimizer_values, gradients, trainable_values
        )
        # The teacher's weights are among the non-trainable values.
        non_trainable_values = list(non_trainable_values)
        for teacher_index, student_index in self.ema_positions:
            non_trainable_values[teacher_index] = self.moving_average(
                non_trainable_values[teacher_index], trainable_values[student_index], applied
            )
        for teacher_index, student_index in self.statistics_positions:
            non_trainable_values[teacher_index] = non_trainable_values[student_index]
        logs, (metrics_values,) = stateless(
            lambda: self.update_metrics(terms, labeled_logits),
            (self.metrics_variables, metrics_values),
        )
        return logs, (trainable_values, non_trainable_values, optimizer_values, metrics_values)

    def loss_term_gradient_norms(self, data, names) -> dict[str, tuple[float, float, float]]:
        """{term: (value, |d term / d student|, |d term / d teacher|)} over one batch, as pure
        functions of the current values (no variable changes), in one compiled function:
        op by op, a data-parallel (multi-process) model would synchronize at every op."""
        import jax.numpy as jnp

        students = list(self.trainable_variables)
        teacher_ids = {id(teacher) for teacher, _ in self.ema_pairs}
        teachers = [v for v in self.non_trainable_variables if id(v) in teacher_ids]
        others = [v for v in self.non_trainable_variables if id(v) not in teacher_ids]

        def term(name, student_values, teacher_values, other_values, data):
            def forward():
                return self.compute_losses(data)[1][name]

            result, _ = stateless(
                forward,
                (students, student_values),
                (teachers, teacher_values),
                (others, other_values),
            )
            return result

        def norm(gradients):
            return jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in gradients))

        @jax.jit
        def all_norms(student_values, teacher_values, other_values, data):
            norms = {}
            for name in names:
                value, (student_gradients, teacher_gradients) = jax.value_and_grad(
                    lambda s, t, name=name: term(name, s, t, other_values, data), argnums=(0, 1)
                )(student_values, teacher_values)
                norms[name] = (value, norm(student_gradients), norm(teacher_gradients))
            return norms

        values = [[v.value for v in group] for group in (students, teachers, others)]
        norms = all_norms(*values, data)
        return {name: tuple(float(v) for v in triple) for name, triple in norms.items()}

    def fix_random_streams(self) -> int:
        """Every random op draws from its generator's state already: nothing to do."""
        return 0

    @contextlib.contextmanager
    def keeping_state_on_failure(self):
        """Inside the block, a fit, evaluate or predict that fails leaves every variable
        with a value. Keras workaround: Keras' JAX trainer detaches the variables'
        values while it runs (`_purge_model_variables`) and reattaches them from the
        last completed step's state; a call that fails before completing a step (a
        mistake found when the step is traced) left them empty (Keras 3.15), so the
        model could not even predict. The values from before the call are put back
        where none was reattached. tests/test_keras_user.py checks a failed fit."""
        variables = [*self.variables, *self.metrics_variables]
        if getattr(self, "optimizer", None) is not None:
            variables += list(self.optimizer.variables)
        before = [(variable, variable._value) for variable in variables]
        try:
            yield
        except BaseException:
            for variable, value in before:
                if variable._value is None and value is not None:
                    variable._value = value
            raise

    def gather_replicas(self, values):
        """Data-parallel JAX steps compute on global (sharded) arrays: nothing to do."""
        return values

    def test_step(self, state, data):
        trainable_values, non_trainable_values, metrics_values = state
        logs, (_, _, metrics_values) = stateless(
            lambda: self.evaluation_metrics(data),
            (self.trainable_variables, trainable_values),
            (self.non_trainable_variables, non_trainable_values),
            (self.metrics_variables, metrics_values),
        )
        return logs, (trainable_values, non_trainable_values, metrics_values)
