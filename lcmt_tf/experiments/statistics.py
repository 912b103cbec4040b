"""The statistics of an experiment table: mean and sample standard deviation over
seeds, and the paired difference of two methods with its t confidence interval."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for fewer than 2 values)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return math.nan, math.nan
    std = float(values.std(ddof=1)) if values.size > 1 else math.nan
    return float(values.mean()), std


def paired_difference(
    treated: Sequence[float], control: Sequence[float], confidence: float = 0.95
) -> dict[str, object]:
    """treated − control, seed by seed: the differences, their mean and the
    two-sided Student-t confidence interval of the mean (n − 1 degrees of freedom;
    NaN bounds for fewer than 2 pairs)."""
    differences = np.asarray(treated, dtype=float) - np.asarray(control, dtype=float)
    mean, std = mean_std(differences)
    n = differences.size
    if n > 1:
        half_width = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
        interval = [mean - half_width, mean + half_width]
    else:
        interval = [math.nan, math.nan]
    return {"differences": differences.tolist(), "mean": mean, "ci": interval, "n": int(n)}
