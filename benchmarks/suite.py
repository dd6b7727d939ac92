"""One benchmark run end to end: start the parts, run the plan with a live display, write and print the results."""

from __future__ import annotations

import dataclasses
import datetime
import os
import statistics
import time
from pathlib import Path

from redis.asyncio import Redis
from rich.console import Console

from benchmarks import generator, loop, plan, plots, report
from benchmarks.config import BenchConfig
from benchmarks.evidence import UpstreamMonitor
from benchmarks.machine import describe
from benchmarks.progress import LiveProgress, console
from benchmarks.runner import run_plan
from benchmarks.stack import Stack


def run(config: BenchConfig) -> dict:
    """Measure, then write results.json, report.md and the plots into ``config.out``; returns the JSON document."""
    err = console(stderr=True, quiet=config.quiet)
    started, load_before = time.monotonic(), os.getloadavg()[0]
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    err.print("starting the upstream and the WAN relay")
    generator.configure(config.generator_processes)
    generator.raise_nofile()  # twemproxy and the upstream inherit it: the idle-clients scenario holds thousands
    try:
        with Stack(config) as stack:
            blocks = plan.build(config, stack)
            records, server, wan = loop.run(_measure(config, stack, blocks, err))
    finally:
        generator.close()
    meta = {"started": stamp, "duration_s": round(time.monotonic() - started, 1), "machine": describe(server),
            "config": _jsonable(config), "wan_ping_ms": wan,
            "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "sidecar_log_level": config.sidecar_log_level or "the sidecar's default"}
    baseline = report.load_baseline(config.baseline)
    drawn = plots.draw_all(records, config.out)
    report.write(config.out, records, meta, drawn, baseline)
    report.print_tables(console(stderr=False, quiet=config.quiet), records, meta, baseline)
    err.print(f"wrote {config.out / 'results.json'}, {config.out / 'report.md'} and {len(drawn)} plots")
    err.print(f"the run took {meta['duration_s']:.0f} s ({meta['duration_s'] / 60:.1f} minutes)")
    return {"meta": meta, "records": records}


async def _measure(config: BenchConfig, stack: Stack, blocks: list[plan.Block],
                   console: Console) -> tuple[list[dict], str, dict[str, float]]:
    assert stack.upstream
    monitor = UpstreamMonitor(stack.upstream.endpoint)
    try:
        server = await monitor.server()
        wan = await wan_round_trips(stack, sorted({*config.rtts_ms, config.chat_rtt_ms}))
        with LiveProgress(sum(len(b.cells) * (b.repeats or config.repeats) for b in blocks), console) as progress:
            records = await run_plan(blocks, monitor, config.repeats, progress)
    finally:
        await monitor.close()
    return records, server, wan


async def wan_round_trips(stack: Stack, rtts: list[float], pings: int = 15) -> dict[str, float]:
    """What each RTT setting really gives: the median PING round trip on a persistent connection across the WAN."""
    measured = {}
    for rtt in rtts:
        stack.set_rtt(rtt)
        endpoint = stack.direct()
        client = Redis.from_url(endpoint.url, **endpoint.client_kwargs())
        try:
            await client.ping()
            times = []
            for _ in range(pings):
                started = time.perf_counter()
                await client.ping()
                times.append(time.perf_counter() - started)
        finally:
            await client.aclose()
        measured[f"{rtt:g}"] = round(statistics.median(times) * 1e3, 3)
    return measured


def _jsonable(config: BenchConfig) -> dict:
    out = {}
    for key, value in dataclasses.asdict(config).items():
        if key == "upstream_url" and value:
            value = "(given)"  # it may carry a password
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, dict):
            value = {str(k): v for k, v in value.items()}
        out[key] = value
    return out
