"""Numbers from measurements: one repeat's percentiles, and the median and spread over repeats.

Besides latency and throughput a repeat carries ``extra`` figures: what the scenario knows (commands and connections
it made, its generator's CPU, memory readings) and what the runner read around it (the proxy's and the upstream's
CPU). ``cpu_figures`` turns one repeat's into per-command costs; ``summarize`` takes the median of each over repeats.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
from dataclasses import dataclass, field

GENERATOR_BOUND = 0.9  # a generator process busier than this share of a core was the bottleneck itself


@dataclass(frozen=True)
class Sample:
    """One repeat of one measurement."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    throughput_rps: float
    extra: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_latencies(cls, latencies_s: list[float], seconds: float, errors: int = 0) -> "Sample":
        ordered = sorted(latencies_s)
        return cls(len(ordered), errors, seconds, percentile(ordered, 50) * 1e3, percentile(ordered, 99) * 1e3,
                   len(ordered) / seconds if seconds > 0 else 0.0)

    def with_extra(self, **values: float | None) -> "Sample":
        return dataclasses.replace(self, extra={**self.extra, **{k: v for k, v in values.items() if v is not None}})


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


def cpu_figures(sample: Sample, cores: int | None = None) -> dict[str, float]:
    """One repeat's CPU accounting: microseconds of each party's CPU per command (and per client connection where
    the scenario opened one per request), cores each kept busy on average, and whether the generator was the limit.

    The generator is bound when its busiest process used more than 90 % of a core (a process cannot go faster than
    its core), or all its processes together used more than 90 % of the cores they could have had."""
    x = sample.extra
    commands = x.get("commands", float(sample.requests)) or 0.0
    connections = x.get("connections")
    out: dict[str, float] = {}
    for party in ("proxy", "upstream", "generator"):
        cpu = x.get(f"{party}_cpu_s")
        if cpu is None:
            continue
        wall = x.get(f"{party}_wall_s") or x.get("wall_s") or sample.seconds
        if commands:
            out[f"{party}_us_per_command"] = cpu / commands * 1e6
        if connections:
            out[f"{party}_us_per_connection"] = cpu / connections * 1e6
        if wall:
            out[f"{party}_cores"] = cpu / wall
    if x.get("machine_cpu_s") is not None and x.get("window_s"):
        # the whole machine over the runner's window, and what of it none of the three parties accounts for: the
        # benchmark's own process (its upstream monitor), other programs, and a hypervisor's steal
        out["machine_cores"] = x["machine_cpu_s"] / x["window_s"]
        parties = sum(x.get(f"{p}_cpu_s") or 0.0 for p in ("proxy", "upstream", "generator"))
        out["other_cores"] = max(0.0, (x["machine_cpu_s"] - parties) / x["window_s"])
    if "generator_peak_process" in x:
        processes = x.get("generator_processes", 1.0)
        usable = min(processes, float(cores or os.cpu_count() or 1))
        busy = (x["generator_peak_process"] >= GENERATOR_BOUND
                or out.get("generator_cores", 0.0) >= GENERATOR_BOUND * usable)
        out["generator_peak_process"] = x["generator_peak_process"]
        out["generator_processes"] = processes
        out["generator_bound"] = 1.0 if busy else 0.0
    return out


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
        "cpu": summarize_cpu(samples),
        "extra": _medians([s.extra for s in samples]),
    }


def summarize_cpu(samples: list[Sample]) -> dict:
    """Medians over repeats of ``cpu_figures``; ``generator_bound`` is true when any repeat was, with the count."""
    figures = [cpu_figures(s) for s in samples]
    out = _medians(figures)
    if any("generator_bound" in f for f in figures):
        bound = sum(1 for f in figures if f.get("generator_bound"))
        out["generator_bound"] = bound > 0
        out["generator_bound_repeats"] = bound
    return out


def _medians(dicts: list[dict[str, float]]) -> dict[str, float | None]:
    keys = sorted({k for d in dicts for k in d})
    out = {}
    for key in keys:
        value, _ = median_spread([d[key] for d in dicts if key in d])
        out[key] = _rounded(value, 4)
    return out


def _rounded(value: float, digits: int) -> float | None:
    """JSON has no NaN: a missing number is null."""
    return None if value != value else round(value, digits)
