"""Epoch-granular schedules: pure functions of the epoch number."""

from __future__ import annotations

import math


def sigmoid_rampup(epoch: float, rampup_epochs: float) -> float:
    """exp(-5 (1 - x)^2) with x = epoch / rampup_epochs clipped to [0, 1].

    0 for epoch <= 0 and 1 for epoch >= rampup_epochs. A ramp-up length <= 0 means
    no ramp-up: 1 for every epoch.
    """
    if rampup_epochs <= 0:
        return 1.0
    if epoch <= 0:
        return 0.0
    phase = 1.0 - min(epoch / rampup_epochs, 1.0)
    return float(math.exp(-5.0 * phase * phase))


def linear_decay(epoch: float, base_lr: float, decay_start: float, decay_end: float) -> float:
    """base_lr until decay_start, then linearly to 0 at decay_end (and 0 after)."""
    if epoch <= decay_start:
        return float(base_lr)
    if epoch >= decay_end:
        return 0.0
    return float(base_lr * (decay_end - epoch) / (decay_end - decay_start))
