"""SGD as the authors' PyTorch code runs it, for `--weight_decay_mode=coupled`.

Keras' SGD differs from `torch.optim.SGD(params, lr, momentum, weight_decay,
nesterov=True)` in two ways: its weight decay is decoupled (w <- w - lr * wd * w,
outside the momentum), and its momentum buffer accumulates lr * gradient, so a change of
learning rate reaches the update only gradually. `CoupledWeightDecaySGD` follows PyTorch
in both. It works on every backend (Keras calls `update_step` from `apply` and from
`stateless_apply`), and under a LossScaleOptimizer the decay is added to the unscaled
gradient.
"""

from __future__ import annotations

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
