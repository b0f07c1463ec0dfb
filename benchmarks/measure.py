"""Timing and summary statistics: wall-clock timers, medians, interleaved (ABAB) schedules."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Samples:
    """Repeated measurements of one quantity."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def spread(self) -> tuple[float, float]:
        return (min(self.values), max(self.values)) if self.values else (float("nan"),) * 2


def timed(action: Callable[[], T]) -> tuple[float, T]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def interleaved(variants: Sequence[str], reps: int) -> list[str]:
    """The order to measure `variants` in: each repetition runs every variant once, the order
    rotated by one per repetition (ABC BCA CAB ...), so a drift in machine load spreads evenly."""
    order: list[str] = []
    for rep in range(reps):
        shift = rep % len(variants)
        order.extend([*variants[shift:], *variants[:shift]])
    return order


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("inf")
