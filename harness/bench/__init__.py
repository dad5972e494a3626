"""Benchmarks: ``python -m harness.bench NAME`` (the names: ``BENCHES`` in ``__main__``).
Each prints its figures beside a baseline measured in the same run, because the machines are
shared and noisy."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def row(
    label: str, value: float, unit: str, *, baseline: float | None = None, target: str = ""
) -> None:
    """One figure: value, unit, the ratio to the same-run baseline, and the target if any."""
    ratio = f"{value / baseline:6.2f}x baseline" if baseline else " " * 17
    print(f"  {label:<48} {value:>12,.3f} {unit:<6} {ratio}  {target}", flush=True)


def heading(text: str) -> None:
    print(f"\n{text}", flush=True)
