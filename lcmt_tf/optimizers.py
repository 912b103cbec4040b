"""SGD as the authors' PyTorch code runs it, for `--weight_decay_mode=coupled`, and
FixMatch's cosine learning rate, for `--lr_schedule=cosine`.

Keras' SGD differs from `torch.optim.SGD(params, lr, momentum, weight_decay,
nesterov=True)` in two ways: its weight decay is decoupled (w <- w - lr * wd * w,
outside the momentum), and its momentum buffer accumulates lr * gradient, so a change of
learning rate reaches the update only gradually. `CoupledWeightDecaySGD` follows PyTorch
in both. It works on every backend (Keras calls `update_step` from `apply` and from
`stateless_apply`), and under a LossScaleOptimizer the decay is added to the unscaled
gradient.
"""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="lcmt_tf")
class CoupledWeightDecaySGD(keras.optimizers.SGD):
    """torch.optim.SGD's update (dampening 0) for every variable it is applied to:

        d = g + wd * w                   coupled L2: the decay joins the gradient
        b = momentum * b + d             momentum buffer, zero at the start
        w = w - lr * (d + momentum * b)  Nesterov (w - lr * b without it)

    Args:
        learning_rate: as keras.optimizers.SGD (a float or a schedule).
        momentum: as keras.optimizers.SGD.
        nesterov: as keras.optimizers.SGD.
        coupled_weight_decay: wd above (>= 0).
        name: the optimizer's name.
        **kwargs: the other keras.optimizers.Optimizer arguments, except Keras'
            decoupled `weight_decay`.
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        coupled_weight_decay: float = 0.0,
        name: str = "coupled_weight_decay_sgd",
        **kwargs,
    ):
        if kwargs.get("weight_decay"):
            raise ValueError("CoupledWeightDecaySGD takes coupled_weight_decay, not weight_decay")
        kwargs.pop("weight_decay", None)
        super().__init__(
            learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, name=name, **kwargs
        )
        self.coupled_weight_decay = float(coupled_weight_decay)

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        direction = ops.cast(gradient, variable.dtype)
        if self.coupled_weight_decay:
            direction = direction + ops.cast(self.coupled_weight_decay, variable.dtype) * variable
        if self.momentum:
            momentum = ops.cast(self.momentum, variable.dtype)
            # The lookup keras.optimizers.Optimizer's docstring shows for subclasses.
            buffer = self.momentums[self._get_variable_index(variable)]
            self.assign(buffer, momentum * buffer + direction)
            direction = direction + momentum * buffer if self.nesterov else buffer
        self.assign_sub(variable, learning_rate * direction)

    def get_config(self):
        config = super().get_config()
        config.pop("weight_decay", None)
        return {**config, "coupled_weight_decay": self.coupled_weight_decay}


@keras.saving.register_keras_serializable(package="lcmt_tf")
class FixMatchCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """FixMatch's learning rate (Sohn et al. 2020, section 4): at step k,

        lr * cos(7 pi k / (16 K))

    which falls from `lr` to lr * cos(7 pi / 16) ~ 0.2 lr at k = K, never to 0. Keras
    calls it with the optimizer's `iterations`, which the optimizer's state holds, so
    a restored run continues the curve where it stopped.

    Args:
        initial_learning_rate: lr above (> 0).
        decay_steps: K above (>= 1); past it the rate stays at its value at K.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int):
        if not initial_learning_rate > 0:
            raise ValueError(
                f"FixMatchCosineDecay: initial_learning_rate must be > 0, not "
                f"{initial_learning_rate!r}"
            )
        if int(decay_steps) < 1:
            raise ValueError(f"FixMatchCosineDecay: decay_steps must be >= 1, not {decay_steps!r}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)

    def __call__(self, step):
        progress = ops.minimum(ops.cast(step, "float32") / float(self.decay_steps), 1.0)
        return self.initial_learning_rate * ops.cos((7.0 * math.pi / 16.0) * progress)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
        }
