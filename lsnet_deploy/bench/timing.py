"""The statistics we report for a list of timed runs (the timing loop is
:func:`lsnet_deploy.bench.harness.measure`)."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["LatencyStats", "summarize"]


@dataclass(frozen=True)
class LatencyStats:
    """Latency of ``runs`` calls in milliseconds; ``trimmed_mean_ms`` drops the lowest and
    highest 20% (ModelBench style)."""

    runs: int
    warmup: int
    min_ms: float
    median_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    trimmed_mean_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(times_ms: list[float], warmup: int = 0) -> LatencyStats:
    """Statistics of timed runs (milliseconds each); ``warmup`` is recorded, not used."""
    if not times_ms:
        raise ValueError("no timed run")
    ordered = sorted(times_ms)
    cut = int(len(ordered) * 0.2)
    trimmed = ordered[cut : len(ordered) - cut] or ordered
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return LatencyStats(
        runs=len(ordered),
        warmup=warmup,
        min_ms=ordered[0],
        median_ms=statistics.median(ordered),
        p90_ms=p90,
        mean_ms=statistics.fmean(ordered),
        std_ms=statistics.pstdev(ordered),
        trimmed_mean_ms=statistics.fmean(trimmed),
    )
