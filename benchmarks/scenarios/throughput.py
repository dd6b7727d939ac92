"""redis-benchmark, C and single-threaded, as the load generator: persistent-client throughput and the connection rate.

Persistent clients (``-c 50 -P 1|16``, GET and SET) are where a proxy pays for itself twice over (every byte crosses
it) and gains nothing from saved handshakes: the numbers say what the sidecar costs when apps already behave.

The connection rate (``-k 0``) is the legacy app's pattern at full speed: every request opens a new connection, sends
AUTH, then one GET, and closes. ``-c 50`` is fifty such clients at once, ``-c 1`` one at a time (the latency of a
whole connect + AUTH + GET + close).

Each repeat is one redis-benchmark process, reaped with ``wait4`` so its own CPU (user + system) is known: the
generator's column of the report. A single-threaded generator above 90 % of a core is flagged as the bottleneck.
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil

from benchmarks.cpu import run_with_rusage
from benchmarks.scenarios import NothingToStart
from benchmarks.stack import Endpoint
from benchmarks.stats import Sample

TIMEOUT = 120.0


def available() -> bool:
    return shutil.which("redis-benchmark") is not None


class RedisBenchmark(NothingToStart):
    """One redis-benchmark invocation per repeat: ``-t <test> -c <clients> -P <pipeline> -n <requests> --csv``,
    with ``-k 0`` when ``reconnect`` (a new connection, and its AUTH, for every request)."""

    def __init__(self, endpoint: Endpoint, test: str, clients: int, pipeline: int, requests: int,
                 reconnect: bool = False) -> None:
        self.endpoint = endpoint
        self.test = test
        self.clients = clients
        self.pipeline = pipeline
        self.requests = requests
        self.reconnect = reconnect

    def argv(self, requests: int) -> list[str]:
        return ["redis-benchmark", *self.endpoint.redis_benchmark_args(), "-c", str(self.clients),
                "-P", str(self.pipeline), "-n", str(requests), "-t", self.test, "--csv",
                *(["-k", "0"] if self.reconnect else [])]

    async def warm(self) -> None:
        await self._run(self.argv(max(2 * self.clients * self.pipeline, min(self.requests, 500))))

    async def measure(self) -> Sample:
        finished = await self._run(self.argv(self.requests))
        sample = parse_csv(finished.stdout, self.test, self.requests)
        # Utilisation over the benchmark's own measured period (requests / its requests per second), where all the
        # work is: the process's start (exec, CONFIG GET, connecting the clients) would otherwise dilute it.
        busy = max(sample.seconds, 1e-9)
        return sample.with_extra(commands=float(self.requests),
                                 connections=float(self.requests) if self.reconnect else None,
                                 generator_cpu_s=finished.cpu_s, generator_wall_s=busy, wall_s=busy,
                                 generator_peak_process=min(1.0, finished.cpu_s / busy), generator_processes=1.0,
                                 process_wall_s=finished.wall_s)

    async def _run(self, argv: list[str]):
        finished = await asyncio.to_thread(run_with_rusage, argv, TIMEOUT)
        if finished.returncode != 0:
            raise RuntimeError(f"redis-benchmark exited with {finished.returncode}: {finished.stderr[-500:]}")
        return finished


def parse_csv(text: str, test: str, requests: int) -> Sample:
    """redis-benchmark --csv: a header, then ``"GET","123.45","avg","min","p50","p95","p99","max"`` per test."""
    for row in csv.reader(io.StringIO(text)):
        if row and row[0].upper() == test.upper() and len(row) >= 7:
            rps = float(row[1])
            return Sample(requests, 0, requests / rps if rps else 0.0, float(row[4]), float(row[6]), rps)
    raise RuntimeError(f"no {test} line in redis-benchmark's output: {text[-500:]!r}")
