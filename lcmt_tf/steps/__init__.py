"""The per-backend training and evaluation steps of MeanTeacher, chosen once.

As Keras picks its trainer when it is imported, `BackendSteps` is the step class of
the active backend, and `MeanTeacher` inherits from it:

    tensorflow   lcmt_tf/steps/tensorflow_steps.py   GradientTape
    jax          lcmt_tf/steps/jax_steps.py          stateless jax.value_and_grad

Both call the same backend-agnostic pieces of the model (`compute_losses`,
`update_metrics`, `evaluation_metrics`, `moving_average`: lcmt_tf.semi_supervised), so
the loss math exists once. Any other backend gets `UnsupportedBackendSteps`, whose fit
and evaluate fail with one clear message.
"""

from __future__ import annotations

import contextlib

import keras

SUPPORTED_BACKENDS = ("tensorflow", "jax")


class UnsupportedBackendSteps:
    """Steps for a backend MeanTeacher has no train_step for: both steps refuse."""

    def _refuse(self):
        raise NotImplementedError(
            f"MeanTeacher trains and evaluates on the {' and '.join(SUPPORTED_BACKENDS)} "
            f"backends, not {keras.backend.backend()!r}; set KERAS_BACKEND to one of them"
        )

    def train_step(self, *args):
        self._refuse()

    def test_step(self, *args):
        self._refuse()

    def loss_term_gradient_norms(self, *args):
        self._refuse()

    def gather_replicas(self, values):
        return values

    def keeping_state_on_failure(self):
        return contextlib.nullcontext()


def steps_for_backend(backend: str) -> type:
    """The step class for a Keras backend name."""
    if backend == "tensorflow":
        from lcmt_tf.steps.tensorflow_steps import TensorFlowSteps

        return TensorFlowSteps
    if backend == "jax":
        from lcmt_tf.steps.jax_steps import JaxSteps

        return JaxSteps
    return UnsupportedBackendSteps


BackendSteps = steps_for_backend(keras.backend.backend())
