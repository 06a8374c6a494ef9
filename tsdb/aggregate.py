"""Windowed statistics shared by the backends: stat names, mergeable partials, quantiles.

count, sum, mean, min and max are computed from partial aggregates `(n, total, low, high)`
that merge across rows, roll-up periods and raw remainders alike; quantiles need the values
themselves. A quantile is written `pNN` (`p50`, `p95`, `p99.9`).

>>> parse_stat("p95"), parse_stat("mean")
(0.95, None)
>>> Partial.of(1.0).merge(Partial.of(3.0)).value("mean")
2.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BASIC_STATS = ("count", "sum", "mean", "min", "max")


def parse_stat(stat: str) -> float | None:
    """The quantile a `pNN` stat asks for, None for a basic stat; ValueError for anything else."""
    if stat in BASIC_STATS:
        return None
    if stat.startswith("p"):
        try:
            q = float(stat[1:]) / 100.0
        except ValueError:
            q = math.nan
        if 0.0 <= q <= 1.0:
            return q
    raise ValueError(f"unknown stat {stat!r}; expected one of {BASIC_STATS} or pNN (e.g. p95)")


@dataclass(frozen=True, slots=True)
class Partial:
    """A mergeable summary of some values: how many, their sum, min and max."""

    n: int
    total: float
    low: float
    high: float

    @staticmethod
    def of(value: float) -> Partial:
        return Partial(1, value, value, value)

    def merge(self, other: Partial) -> Partial:
        return Partial(
            self.n + other.n,
            self.total + other.total,
            min(self.low, other.low),
            max(self.high, other.high),
        )

    def value(self, stat: str) -> float:
        if stat == "count":
            return float(self.n)
        if stat == "sum":
            return float(self.total)
        if stat == "mean":
            return self.total / self.n
        if stat == "min":
            return float(self.low)
        if stat == "max":
            return float(self.high)
        raise ValueError(f"{stat!r} is not a basic stat")


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolation quantile of sorted values (numpy's default method)."""
    position = (len(values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def check_window(start: float, end: float, step: float) -> None:
    """Reject windows no backend can answer sensibly."""
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"step must be a positive number of seconds, got {step}")
    if math.isnan(start) or math.isnan(end):
        raise ValueError("start and end must be numbers")
