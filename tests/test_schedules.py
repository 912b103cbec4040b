import math

import pytest

from lcmt_tf.schedules import linear_decay, sigmoid_rampup


def test_sigmoid_rampup_known_points():
    assert sigmoid_rampup(1, 5) == pytest.approx(math.exp(-5 * 0.8**2))
    assert sigmoid_rampup(2.5, 5) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(0, 5) == 0.0
    assert sigmoid_rampup(-3, 5) == 0.0
    assert sigmoid_rampup(5, 5) == 1.0
    assert sigmoid_rampup(50, 5) == 1.0
    assert sigmoid_rampup(3, 0) == 1.0


def test_sigmoid_rampup_is_monotone():
    values = [sigmoid_rampup(epoch / 10, 5) for epoch in range(0, 60)]
    assert all(a <= b for a, b in zip(values, values[1:]))


def test_linear_decay_known_points():
    assert linear_decay(0, 0.05, 300, 500) == 0.05
    assert linear_decay(300, 0.05, 300, 500) == 0.05
    assert linear_decay(350, 0.05, 300, 500) == pytest.approx(0.05 * 150 / 200)
    assert linear_decay(499, 0.05, 300, 500) == pytest.approx(0.05 / 200)
    assert linear_decay(500, 0.05, 300, 500) == 0.0
    assert linear_decay(700, 0.05, 300, 500) == 0.0
