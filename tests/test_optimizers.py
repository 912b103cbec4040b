"""Weight decay, coupled (PyTorch's SGD, the authors' code) and decoupled (Keras' SGD),
against closed forms and NumPy references, on the active backend."""

import keras
import numpy as np
import pytest

from lcmt_tf.builders import build_optimizer
from lcmt_tf.config import TrainConfig
from lcmt_tf.optimizers import CoupledWeightDecaySGD

LR, MOMENTUM, WD = 0.1, 0.9, 0.01


def one_step(mode: str):
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(3, 4)).astype("float32")
    gradient = rng.normal(size=(3, 4)).astype("float32")
    config = TrainConfig(
        lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WD, weight_decay_mode=mode
    )
    variable = keras.Variable(weights)
    build_optimizer(config).apply([keras.ops.convert_to_tensor(gradient)], [variable])
    return weights, gradient, keras.ops.convert_to_numpy(variable)


def test_coupled_step_from_zero_velocity_is_the_closed_form():
    weights, gradient, updated = one_step("coupled")
    expected = weights - LR * (1 + MOMENTUM) * (gradient + WD * weights)
    np.testing.assert_allclose(updated, expected, rtol=1e-6, atol=1e-7)


def test_decoupled_step_from_zero_velocity_is_the_keras_formula():
    weights, gradient, updated = one_step("decoupled")
    # Keras decays first (w <- w - lr * wd * w), then takes the Nesterov step on g alone.
    expected = weights * (1 - LR * WD) - LR * (1 + MOMENTUM) * gradient
    np.testing.assert_allclose(updated, expected, rtol=1e-6, atol=1e-7)
    coupled = weights - LR * (1 + MOMENTUM) * (gradient + WD * weights)
    assert np.abs(expected - coupled).max() > 1e-4  # the two modes really differ


def torch_sgd_reference(weights, gradients, learning_rates, nesterov):
    """torch.optim.SGD(momentum, weight_decay, nesterov, dampening=0), in float64."""
    weights = weights.astype(np.float64)
    buffer = None
    for gradient, learning_rate in zip(gradients, learning_rates):
        direction = gradient + WD * weights
        buffer = direction.copy() if buffer is None else MOMENTUM * buffer + direction
        step = direction + MOMENTUM * buffer if nesterov else buffer
        weights = weights - learning_rate * step
    return weights


@pytest.mark.parametrize("nesterov", [True, False])
def test_coupled_steps_follow_pytorch_through_learning_rate_changes(nesterov):
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(5,)).astype("float32")
    gradients = rng.normal(size=(6, 5)).astype("float32")
    learning_rates = [0.1, 0.1, 0.05, 0.02, 0.02, 0.0]
    optimizer = CoupledWeightDecaySGD(
        0.1, momentum=MOMENTUM, nesterov=nesterov, coupled_weight_decay=WD
    )
    variable = keras.Variable(weights)
    for gradient, learning_rate in zip(gradients, learning_rates):
        optimizer.learning_rate = learning_rate
        optimizer.apply([keras.ops.convert_to_tensor(gradient)], [variable])
    expected = torch_sgd_reference(weights, gradients, learning_rates, nesterov)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected, rtol=1e-5, atol=1e-6)


def test_coupled_decay_trains_like_an_l2_term_in_the_loss():
    """In fit (stateless_apply on JAX): decay wd coupled into the gradient equals the
    loss term wd/2 * |w|^2 on every weight, step for step, with Nesterov momentum."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, 64).astype("int32")
    initial = [rng.normal(size=(6, 3)).astype("float32"), rng.normal(size=(3,)).astype("float32")]
    trained = []
    for decay, l2_term in ((WD, 0.0), (0.0, WD / 2)):
        regularizer = keras.regularizers.L2(l2_term) if l2_term else None
        dense = keras.layers.Dense(3, kernel_regularizer=regularizer, bias_regularizer=regularizer)
        model = keras.Sequential([keras.Input((6,)), dense])
        dense.set_weights(initial)
        model.compile(
            optimizer=CoupledWeightDecaySGD(
                0.1, momentum=MOMENTUM, nesterov=True, coupled_weight_decay=decay
            ),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        trained.append(dense.get_weights())
    for with_decay, with_l2 in zip(*trained):
        np.testing.assert_allclose(with_decay, with_l2, rtol=1e-5, atol=1e-6)
    assert np.abs(trained[0][0] - initial[0]).max() > 1e-2  # it trained


def test_the_optimizer_round_trips_through_its_config():
    optimizer = CoupledWeightDecaySGD(0.05, momentum=0.9, nesterov=True, coupled_weight_decay=1e-4)
    restored = CoupledWeightDecaySGD.from_config(optimizer.get_config())
    assert restored.coupled_weight_decay == 1e-4 and restored.nesterov and restored.momentum == 0.9
    with pytest.raises(ValueError, match="coupled_weight_decay, not weight_decay"):
        CoupledWeightDecaySGD(0.05, weight_decay=1e-4)


def test_fixmatch_cosine_rate_is_the_closed_form_and_resumes_with_the_step():
    config = TrainConfig(lr=0.03, lr_schedule="cosine", lr_schedule_steps=1000)
    optimizer = build_optimizer(config)
    variable = keras.Variable(np.zeros(2, "float32"))
    optimizer.build([variable])
    for step in (0, 1, 500, 1000, 4000):
        optimizer.iterations.assign(step)
        rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        expected = 0.03 * np.cos(7 * np.pi * min(step, 1000) / (16 * 1000))
        np.testing.assert_allclose(rate, expected, rtol=1e-6)
    # The schedule is a function of the optimizer's saved step, so it survives saving.
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    restored.build([variable])
    restored.iterations.assign(500)
    rate = float(keras.ops.convert_to_numpy(restored.learning_rate))
    assert rate == pytest.approx(0.03 * np.cos(7 * np.pi / 32))
