"""Numbers from measurements: one repeat's percentiles, and the median and spread over repeats."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One repeat of one measurement."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    throughput_rps: float

    @classmethod
    def from_latencies(cls, latencies_s: list[float], seconds: float, errors: int = 0) -> "Sample":
        ordered = sorted(latencies_s)
        return cls(len(ordered), errors, seconds, percentile(ordered, 50) * 1e3, percentile(ordered, 99) * 1e3,
                   len(ordered) / seconds if seconds > 0 else 0.0)


def percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks; NaN for no data (reported as missing, never as zero)."""
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median_spread(values: list[float]) -> tuple[float, list[float]]:
    """The median over repeats and [min, max] as its spread."""
    clean = [v for v in values if v == v]  # drop NaN
    if not clean:
        return float("nan"), [float("nan"), float("nan")]
    return statistics.median(clean), [min(clean), max(clean)]


def summarize(samples: list[Sample]) -> dict:
    """The fields of a result record that come from the repeats."""
    p50, p50_spread = median_spread([s.p50_ms for s in samples])
    p99, p99_spread = median_spread([s.p99_ms for s in samples])
    rps, rps_spread = median_spread([s.throughput_rps for s in samples])
    return {
        "repeats": len(samples),
        "requests": sum(s.requests for s in samples),
        "errors": sum(s.errors for s in samples),
        "p50_ms": _rounded(p50, 4),
        "p50_ms_spread": [_rounded(v, 4) for v in p50_spread],
        "p99_ms": _rounded(p99, 4),
        "p99_ms_spread": [_rounded(v, 4) for v in p99_spread],
        "throughput_rps": _rounded(rps, 1),
        "throughput_rps_spread": [_rounded(v, 1) for v in rps_spread],
    }


def _rounded(value: float, digits: int) -> float | None:
    """JSON has no NaN: a missing number is null."""
    return None if value != value else round(value, digits)
