"""MeanTeacher's steps on the TensorFlow backend: a GradientTape over the student."""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf


class TensorFlowSteps:
    """train_step(data) -> logs and test_step(data) -> logs, as Keras' TensorFlow
    trainer calls them (inside a tf.function, optionally XLA-compiled; once per
    replica under a tf.distribute strategy)."""

    def train_step(self, data):
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            draw_per_replica(self)
        variables = self.trainable_variables
        # Watch only the trainable (student) variables: the teacher's forward pass is
        # then not recorded on the tape.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([variable.value for variable in variables])
            loss, terms, labeled_logits = self.compute_losses(data)
            # Data-parallel (lcmt_tf.distribute): the replicas' gradients are summed, so
            # each replica's share of the global mean is its loss / replicas.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled_loss = self.optimizer.scale_loss(loss / replicas if replicas > 1 else loss)
        gradients = tape.gradient(scaled_loss, variables)
        applied = self.step_applied(gradients)
        self.optimizer.apply(gradients, variables)
        for teacher_variable, student_variable in self.ema_pairs:
            teacher_variable.assign(
                self.moving_average(teacher_variable, student_variable, applied)
            )
        for teacher_variable, student_variable in self.statistics_pairs:
            teacher_variable.assign(student_variable)
        return _reducible_logs(self.update_metrics(terms, labeled_logits))

    def test_step(self, data):
        return _reducible_logs(self.evaluation_metrics(data))

    def fix_random_streams(self) -> int:
        """Every random op draws from its generator's state already: nothing to do."""
        return 0

    def keeping_state_on_failure(self):
        """A failed fit or evaluate leaves the variables as they are: nothing to do."""
        return contextlib.nullcontext()

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras workaround (overrides a private Trainer method; no public hook exists):
        # Keras (3.15) first reduces a distributed batch with strategy.reduce, which
        # MultiWorkerMirroredStrategy refuses for a dict or tuple batch
        # (keras-team/keras#20329). A MeanTeacher is built when constructed; once its
        # optimizer is built too (lcmt_tf.builders builds it before fit), there is nothing
        # to build. tests/test_keras_workarounds.py fails when Keras renames the method.
        if self.optimizer is not None and self.optimizer.built:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def gather_replicas(self, values):
        """`values` of every replica, concatenated along the batch (differentiable):
        Local Clustering's pairs span the global batch. Outside data-parallel
        training, `values` itself."""
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return values
        return context.all_gather(values, axis=0)

    def loss_term_gradient_norms(self, data, names) -> dict[str, tuple[float, float, float]]:
        """{term: (value, |d term / d student|, |d term / d teacher|)} over one batch,
        in one graph function (eagerly, the persistent tape's tensors of a large image
        batch took gigabytes that the process kept), in the first replica when training
        data-parallel; the batch-norm statistics and random states it touches are
        restored."""
        saved = [variable.numpy() for variable in self.non_trainable_variables]
        norms_of = tf.function(lambda batch: self._term_gradient_norms(batch, names))
        try:
            strategy = tf.distribute.get_strategy()
            if strategy.num_replicas_in_sync == 1:
                norms = norms_of(data)
            else:
                per_replica = strategy.run(norms_of, args=(data,))
                norms = tf.nest.map_structure(
                    lambda value: strategy.experimental_local_results(value)[0], per_replica
                )
            return {name: tuple(float(v) for v in values) for name, values in norms.items()}
        finally:
            for variable, value in zip(self.non_trainable_variables, saved):
                variable.assign(value)

    def _term_gradient_norms(self, data, names):
        students = [variable.value for variable in self.trainable_variables]
        teachers = [teacher.value for teacher, _ in self.ema_pairs]
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            tape.watch(students + teachers)
            _, terms, _ = self.compute_losses(data)
        norms = {}
        for name in names:
            gradients = tape.gradient(
                terms[name], students + teachers, unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            norms[name] = (
                terms[name],
                tf.linalg.global_norm(gradients[: len(students)]),
                tf.linalg.global_norm(gradients[len(students) :]),
            )
        return norms


class ReplicaSeedGenerator(keras.random.SeedGenerator):
    """A `keras.random.SeedGenerator` whose seeds differ per replica of a tf.distribute
    strategy. Every replica reads the same (mirrored) generator state, so Keras' own
    generator hands each replica the same seed: the i-th image of every replica's slice
    would get the same translation, flip, noise and dropout mask. This one folds the
    replica's id in the sync group into each seed
    (`tf.random.experimental.stateless_fold_in`); with one replica, or outside a
    strategy, it draws exactly what SeedGenerator draws. The state, and so checkpoints
    and resume, are SeedGenerator's."""

    def next(self, ordered=True):
        seed = super().next(ordered=ordered)
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return seed
        return tf.random.experimental.stateless_fold_in(seed, context.replica_id_in_sync_group)


def draw_per_replica(model) -> int:
    """Makes every seed generator of `model`'s layers (augmentation, dropout, noise: of
    the student and the teacher) a `ReplicaSeedGenerator`; returns how many there are.
    Idempotent; the training step calls it when there are several replicas.

    Keras workaround: Keras has no public way to choose the class of a layer's seed
    generator, so the generator's class is changed in place (its state variable, and so
    checkpoints, stay as they are). tests/test_keras_workarounds.py fails when Keras
    stops calling `SeedGenerator.next` for dropout or when this stops changing a draw.
    """
    generators = model.seed_generators()
    for generator in generators:
        if not isinstance(generator, ReplicaSeedGenerator):
            generator.__class__ = ReplicaSeedGenerator
    return len(generators)


def _reducible_logs(logs: dict) -> dict:
    """The step's logs, as Keras can reduce them across workers. Under
    MultiWorkerMirroredStrategy Keras (3.15) averages each log value along axis 0, which
    fails for scalars (tensorflow/tensorflow#72388): there, each becomes a 1-element
    vector, and the average over the replicas is the scalar again."""
    strategy = tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}
