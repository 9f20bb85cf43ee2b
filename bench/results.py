"""One measured quantity, as the table and the JSON file show it."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Row:
    section: str             # engine, commands, peers, daemon, history
    name: str                # what was measured, e.g. "chain N=1,000"
    value: float | None      # None: not measured (see note)
    unit: str                # "ms/step", "s", "MB", "ms", "x"
    baseline: float | None = None   # the same quantity for the bare baseline, same unit
    target: str = ""         # e.g. "<= 0.5 ms/step"
    ok: bool | None = None   # whether the target holds; None: no target
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def at_most(value: float | None, limit: float, unit: str) -> tuple[str, bool | None]:
    """(target text, whether value meets it) for an upper bound."""
    return f"<= {limit:g} {unit}", None if value is None else value <= limit


def at_least(value: float | None, limit: float, unit: str) -> tuple[str, bool | None]:
    """(target text, whether value meets it) for a lower bound."""
    return f">= {limit:g} {unit}", None if value is None else value >= limit


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of fn() in seconds over repeat calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fmt_n(n: int) -> str:
    return f"{n:,}"
