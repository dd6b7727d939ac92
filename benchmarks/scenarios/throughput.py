"""Persistent-client throughput with redis-benchmark: many clients on persistent connections, GET or SET, pipelined.

This is where a proxy pays for itself twice over (every byte crosses it) and gains nothing from saved handshakes, so
it is measured at RTT 0 against twemproxy as well: the numbers say what the sidecar costs when apps already behave.
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil

from benchmarks.scenarios import NothingToStart
from benchmarks.stack import Endpoint
from benchmarks.stats import Sample

TIMEOUT = 60.0


def available() -> bool:
    return shutil.which("redis-benchmark") is not None


class RedisBenchmark(NothingToStart):
    """One redis-benchmark invocation per repeat: ``-t <test> -c <clients> -P <pipeline> -n <requests> --csv``."""

    def __init__(self, endpoint: Endpoint, test: str, clients: int, pipeline: int, requests: int) -> None:
        self.endpoint = endpoint
        self.test = test
        self.clients = clients
        self.pipeline = pipeline
        self.requests = requests

    def argv(self, requests: int) -> list[str]:
        return ["redis-benchmark", *self.endpoint.redis_benchmark_args(), "-c", str(self.clients),
                "-P", str(self.pipeline), "-n", str(requests), "-t", self.test, "--csv"]

    async def warm(self) -> None:
        await self._run(self.argv(2 * self.clients * self.pipeline))

    async def measure(self) -> Sample:
        return parse_csv(await self._run(self.argv(self.requests)), self.test, self.requests)

    async def _run(self, argv: list[str]) -> str:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"redis-benchmark took longer than {TIMEOUT:.0f}s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"redis-benchmark exited with {proc.returncode}: {err.decode(errors='replace')[-500:]}")
        return out.decode(errors="replace")


def parse_csv(text: str, test: str, requests: int) -> Sample:
    """redis-benchmark --csv: a header, then ``"GET","123.45","avg","min","p50","p95","p99","max"`` per test."""
    for row in csv.reader(io.StringIO(text)):
        if row and row[0].upper() == test.upper() and len(row) >= 7:
            rps = float(row[1])
            return Sample(requests, 0, requests / rps if rps else 0.0, float(row[4]), float(row[6]), rps)
    raise RuntimeError(f"no {test} line in redis-benchmark's output: {text[-500:]!r}")
