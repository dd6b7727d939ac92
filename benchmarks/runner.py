"""Runs a plan: each block's processes up, every cell measured ``repeats`` times with the upstream's evidence, down.

A failure (the sidecar will not start, a scenario raises) is recorded on the cells it affects and the run goes on,
so a broken mode still leaves the other modes' numbers and a report that says what broke.
"""

from __future__ import annotations

import contextlib

from benchmarks.evidence import Evidence, UpstreamMonitor
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
                progress.skipped(cell, repeats, reason)
                records.append(record(cell, [], Evidence(), reason))
            block.leave()
            continue
        try:
            records += await _run_block(block, endpoints, monitor, repeats, progress)
        finally:
            block.leave()
    return records


async def _run_block(block: Block, endpoints: dict[str, Endpoint], monitor: UpstreamMonitor, repeats: int,
                     progress: LiveProgress) -> list[dict]:
    samples: dict[Cell, list[Sample]] = {cell: [] for cell in block.cells}
    evidence: dict[Cell, Evidence] = {cell: Evidence() for cell in block.cells}
    errors: dict[Cell, str] = {}
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
                try:
                    standing = await monitor.settled_clients()
                    await measurement.warm()
                    before = await monitor.counters()
                    async with monitor.watch() as peak:
                        sample = await measurement.measure()
                    # The block's owner holds what stands at the upstream (all but the monitor's connection);
                    # another mode holds only what it added.
                    held = peak.value - (1 if cell.mode == block.owner else standing)
                    seen = Evidence.between(before, await monitor.counters(), max(0, held))
                except Exception as exc:  # noqa: BLE001
                    errors[cell] = _short(exc)
                    progress.skipped(cell, repeats - len(samples[cell]), errors[cell])
                    continue
                samples[cell].append(sample)
                evidence[cell] = evidence[cell].add(seen)
                progress.measured(cell, sample, seen)
    return [record(cell, samples[cell], evidence[cell], errors.get(cell)) for cell in block.cells]


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
