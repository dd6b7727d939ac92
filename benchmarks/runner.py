"""Runs a plan: each block's processes up, every cell measured ``repeats`` times with the upstream's evidence and
everyone's CPU, down.

Around each measured stretch (never around the warm-up) the runner reads: the upstream's INFO counters and its CPU
(INFO cpu), the CPU of the proxy process tree behind the cell's endpoint (/proc), and, for the sidecar, its own count
of upstream connections opened; the scenario itself reports what its load generator used. A failure (the sidecar
will not start, a scenario raises) is recorded on the cells it affects and the run goes on, so a broken mode still
leaves the other modes' numbers and a report that says what broke.
"""

from __future__ import annotations

import contextlib
import time

from benchmarks.cpu import cpu_between, machine_busy_seconds, outbound_connections, tree_cpu
from benchmarks.evidence import Evidence, UpstreamMonitor, sidecar_info
from benchmarks.plan import Block, Cell
from benchmarks.progress import LiveProgress
from benchmarks.scenarios import Measurement
from benchmarks.stack import Endpoint
from benchmarks.stats import Sample, summarize


def record(cell: Cell, samples: list[Sample], evidence: Evidence, error: str | None) -> dict:
    """One line of results.json."""
    return {"scenario": cell.scenario, "mode": cell.mode, "rtt_ms": cell.rtt_ms, **cell.params,
            **summarize(samples), "upstream": evidence.as_dict(), "error": error}


async def run_plan(blocks: list[Block], monitor: UpstreamMonitor, repeats: int, progress: LiveProgress) -> list[dict]:
    records: list[dict] = []
    for block in blocks:
        progress.phase(block.title)
        try:
            endpoints = block.enter()
        except Exception as exc:  # noqa: BLE001 - reported on every cell of the block
            reason = f"could not start: {_short(exc)}"
            for cell in block.cells:
                progress.skipped(cell, block.repeats or repeats, reason)
                records.append(record(cell, [], Evidence(), reason))
            block.leave()
            continue
        try:
            records += await _run_block(block, endpoints, monitor, block.repeats or repeats, progress)
        finally:
            block.leave()
    return records


class PoolConnects:
    """The sidecar's own count of upstream connections it opened (INFO sidecar ``upstream_connects``), read just
    before and just after each measured stretch: what it opened in between the stretches is charged to the next."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    @staticmethod
    def applies(endpoint: Endpoint) -> bool:
        return endpoint.mode == "proxied"  # a single-process sidecar: one INFO answers for all of it

    async def read(self, endpoint: Endpoint) -> int | None:
        if not self.applies(endpoint):
            return None
        try:
            return (await sidecar_info(endpoint)).get("upstream_connects")
        except (OSError, RuntimeError):
            return None

    def outside(self, endpoint: Endpoint, before: int | None, after: int | None) -> int:
        if before is None:
            return 0
        opened = before - self.last.get(endpoint.mode, 0)
        self.last[endpoint.mode] = after if after is not None else before
        return max(0, opened)


async def _run_block(block: Block, endpoints: dict[str, Endpoint], monitor: UpstreamMonitor, repeats: int,
                     progress: LiveProgress) -> list[dict]:
    samples: dict[Cell, list[Sample]] = {cell: [] for cell in block.cells}
    evidence: dict[Cell, Evidence] = {cell: Evidence() for cell in block.cells}
    errors: dict[Cell, str] = {}
    connects = PoolConnects()
    async with contextlib.AsyncExitStack() as stack:
        measurements: dict[Cell, Measurement] = {}
        for cell in block.cells:
            try:
                measurements[cell] = await stack.enter_async_context(cell.make(endpoints[cell.mode]))
            except Exception as exc:  # noqa: BLE001
                errors[cell] = f"could not start: {_short(exc)}"
                progress.skipped(cell, repeats, errors[cell])
        for _ in range(repeats):
            for cell, measurement in measurements.items():
                if cell in errors:
                    continue
                endpoint = endpoints[cell.mode]
                try:
                    sample, seen = await _measure_once(measurement, endpoint, monitor, connects)
                except Exception as exc:  # noqa: BLE001
                    errors[cell] = _short(exc)
                    progress.skipped(cell, repeats - len(samples[cell]), errors[cell])
                    continue
                samples[cell].append(sample)
                evidence[cell] = evidence[cell].add(seen)
                progress.measured(cell, sample, seen)
    return [record(cell, samples[cell], evidence[cell], errors.get(cell)) for cell in block.cells]


async def _measure_once(measurement: Measurement, endpoint: Endpoint, monitor: UpstreamMonitor,
                        connects: PoolConnects) -> tuple[Sample, Evidence]:
    # What stands at the upstream before this cell: every proxy's pool and the monitor. A proxy mode's own pool is
    # counted back in; a mode's peak is otherwise what it added.
    standing = await monitor.settled_clients()
    pool = outbound_connections(endpoint.pid, endpoint.port) or 0
    await measurement.warm()
    connects_before = await connects.read(endpoint)
    before = await monitor.counters()
    proxy_before = tree_cpu(endpoint.pid)
    machine_before = machine_busy_seconds()
    started = time.monotonic()
    async with monitor.watch() as peak:
        sample = await measurement.measure()
    window = time.monotonic() - started
    machine_after = machine_busy_seconds()
    proxy_after = tree_cpu(endpoint.pid)
    after = await monitor.counters()
    connects_after = await connects.read(endpoint)
    seen = Evidence.between(before, after, max(0, peak.value - standing + pool))
    seen.pool_connections = pool
    seen.pool_connects = connects.outside(endpoint, connects_before, connects_after)
    upstream_cpu = None if None in (before.cpu_s, after.cpu_s) else after.cpu_s - before.cpu_s  # type: ignore[operator]
    # a scenario that knows when its load really ran (redis-benchmark's own period) gives that as wall_s
    wall = sample.extra.get("wall_s", window)
    machine = None if None in (machine_before, machine_after) else machine_after - machine_before  # type: ignore
    sample = sample.with_extra(proxy_cpu_s=cpu_between(proxy_before, proxy_after), proxy_wall_s=wall,
                               upstream_cpu_s=upstream_cpu, upstream_wall_s=wall, wall_s=wall,
                               machine_cpu_s=machine, window_s=window)
    return sample, seen


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
