"""Nearest-rank percentiles and the NaN-ignoring mean (DESIGN.md "Percentiles")."""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Iterable, Sequence

import numpy as np

PERCENTILE_LABELS = ("min", "1%", "5%", "10%", "25%", "50%", "75%", "90%", "95%", "99%", "99.9%", "max")


def nearest_rank(values: Iterable[float] | np.ndarray, labels: Sequence[str] = PERCENTILE_LABELS) -> list[float]:
    """Nearest-rank percentiles: the value of rank ceil(p/100 * N) (1-based) of
    the sorted non-NaN values; `min`/`max` are exact; NaN when there are none.

    The rank is computed in exact arithmetic (99.9% of 1000 is rank 999, not
    1000 as float rounding would give).
    """
    a = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
    nan = np.isnan(a)
    if nan.any():
        a = a[~nan]
    n = a.size
    if n == 0:
        return [math.nan] * len(labels)
    idx = [rank_index(label, n) for label in labels]
    part = np.partition(a, sorted(set(idx)))  # a copy: the caller's array is left alone
    return [float(part[i]) for i in idx]


def rank_index(label: str, n: int) -> int:
    """The 0-based index of a percentile label's nearest rank among n sorted values."""
    if label == "min":
        return 0
    if label == "max":
        return n - 1
    p = Fraction(str(label).rstrip("%"))
    rank = math.ceil(p * n / 100)
    return min(max(rank, 1), n) - 1


def nan_mean(values: np.ndarray) -> float:
    """The mean of the non-NaN values; NaN when there are none."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan
