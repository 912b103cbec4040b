"""The per-backend training and evaluation steps of MeanTeacher, chosen once.

As Keras picks its trainer when it is imported, `BackendSteps` is the step class of
the active backend, and `MeanTeacher` inherits from it:

    tensorflow   lcmt_tf/steps/tensorflow_steps.py   GradientTape
    jax          lcmt_tf/steps/jax_steps.py          stateless jax.value_and_grad
    torch        lcmt_tf/steps/torch_steps.py        backward() on the variables

All three call the same backend-agnostic pieces of the model (`compute_losses`,
`update_metrics`, `evaluation_metrics`, `moving_average`: lcmt_tf.semi_supervised), so
the loss math exists once. Any other backend gets `UnsupportedBackendSteps`, whose fit
and evaluate fail with one clear message.
"""

from __future__ import annotations

import contextlib

import keras

SUPPORTED_BACKENDS = ("tensorflow", "jax", "torch")


class UnsupportedBackendSteps:
    """Steps for a backend MeanTeacher has no train_step for: both steps refuse."""

    def _refuse(self):
        raise NotImplementedError(
            f"MeanTeacher trains and evaluates on the {', '.join(SUPPORTED_BACKENDS)} "
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

    def fix_random_streams(self) -> int:
        return 0

    def keeping_state_on_failure(self):
        return contextlib.nullcontext()


def backend_refusal(config, backend: str) -> str | None:
    """Why a run with `config` (a TrainConfig) cannot run on `backend`, as one line
    naming the flag, or None. Checked before anything starts (lcmt_tf.train.run)."""
    if backend not in SUPPORTED_BACKENDS:
        return (
            f"KERAS_BACKEND={backend}: lcmt_tf trains on the "
            f"{', '.join(SUPPORTED_BACKENDS)} backends"
        )
    if backend != "torch":
        return None
    if config.distribute != "none" or config.num_cpu_devices:
        return (
            f"--distribute={config.distribute}: on the torch backend lcmt_tf trains on one "
            "device (data-parallel training needs KERAS_BACKEND=tensorflow or jax)"
        )
    if config.steps_per_execution > 1:
        return (
            f"--steps_per_execution={config.steps_per_execution}: Keras' torch trainer runs "
            "one step per call; leave it at 1 on the torch backend"
        )
    if config.jit_compile:
        return (
            "--jit_compile: on the torch backend lcmt_tf's step runs eagerly (torch.compile "
            "of it is not supported); leave --jit_compile out"
        )
    return None


def steps_for_backend(backend: str) -> type:
    """The step class for a Keras backend name."""
    if backend == "tensorflow":
        from lcmt_tf.steps.tensorflow_steps import TensorFlowSteps

        return TensorFlowSteps
    if backend == "jax":
        from lcmt_tf.steps.jax_steps import JaxSteps

        return JaxSteps
    if backend == "torch":
        from lcmt_tf.steps.torch_steps import TorchSteps

        return TorchSteps
    return UnsupportedBackendSteps


BackendSteps = steps_for_backend(keras.backend.backend())
