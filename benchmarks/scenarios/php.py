"""PHP-FPM's pattern with phpredis: every request builds a client, connects, authenticates, runs a GET and closes.

One ``php`` process runs the requests back to back (php_requests.php), timing each from ``new Redis()`` to
``close()`` with hrtime, so PHP's own start-up, which an FPM worker pays once, is not charged to any request. Modes:
direct (the upstream across the WAN), proxied (the sidecar on the app host) and persistent (one client opened
before the clock starts, the ideal), at RTT 0 and 2 ms, each beside the upstream's own INFO counters. phpredis
speaks RESP2 and logs in with AUTH. Not run with ``--tls`` (the loop connects in plain TCP).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from functools import partial
from pathlib import Path

from benchmarks import plan
from benchmarks.config import BenchConfig
from benchmarks.scenarios import NothingToStart
from benchmarks.scenarios.connect import GET_KEY, HANG_GRACE
from benchmarks.stack import Endpoint, Stack
from benchmarks.stats import Sample

SCRIPT = Path(__file__).with_name("php_requests.php")
RTTS_MS = (0.0, 2.0)
WORKLOAD = "php-get"  # in the connect-per-request tables beside redis-py's workloads
WARM_REQUESTS = 5


def phpredis_version() -> str | None:
    """'phpredis 5.3.7, PHP 8.2.x', or None when php or its redis extension is missing."""
    php = shutil.which("php")
    if not php:
        return None
    found = subprocess.run([php, "-r", "echo phpversion('redis') ?: '', ' ', PHP_VERSION;"], capture_output=True,
                           text=True, timeout=30)
    redis_version, _, php_version = found.stdout.partition(" ")
    return f"phpredis {redis_version}, PHP {php_version}" if found.returncode == 0 and redis_version else None


class PhpRequests(NothingToStart):
    """Sequential PHP requests against one endpoint, each a fresh phpredis client unless ``persistent``."""

    def __init__(self, endpoint: Endpoint, persistent: bool, seconds: float, max_requests: int) -> None:
        self.endpoint = endpoint
        self.mode = "persistent" if persistent else "connect"
        self.seconds = seconds
        self.max_requests = max_requests

    async def _run(self, requests: int) -> Sample:
        env = {**os.environ, "REDIS_HOST": self.endpoint.host, "REDIS_PORT": str(self.endpoint.port),
               "REDIS_PASSWORD": self.endpoint.password or "", "REDIS_USER": self.endpoint.username or "",
               "REDIS_KEY": GET_KEY}
        proc = await asyncio.create_subprocess_exec(
            "php", str(SCRIPT), self.mode, str(requests), str(self.seconds), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.seconds + HANG_GRACE)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"php exited with {proc.returncode}: {err.decode(errors='replace').strip()[:300]}")
        result = json.loads(out)
        return Sample.from_latencies([us / 1e6 for us in result["latencies_us"]], result["seconds"],
                                     result["errors"])

    async def warm(self) -> None:
        await self._run(WARM_REQUESTS)

    async def measure(self) -> Sample:
        return await self._run(self.max_requests)


def blocks(config: BenchConfig, stack: Stack) -> list[plan.Block]:
    """One block per RTT, its three modes side by side; none without phpredis, or with TLS to the upstream."""
    client = phpredis_version()
    if client is None or stack.upstream is None or stack.upstream.endpoint.tls:
        return []
    return [plan.Block(f"RTT {rtt:g} ms: PHP connect-per-request", rtt, partial(plan._with_sidecar, stack, rtt),
                       stack.stop_sidecar, [_cell(config, mode, rtt, client) for mode in
                                            ("direct", "proxied", "persistent")], "proxied")
            for rtt in RTTS_MS]


def _cell(config: BenchConfig, mode: str, rtt: float, client: str) -> plan.Cell:
    return plan.Cell("connect-per-request", mode, rtt,
                     {"workload": WORKLOAD, "protocol": 2, "concurrency": 1, "client": client},
                     partial(PhpRequests, persistent=mode == "persistent", seconds=config.seconds,
                             max_requests=config.max_requests))
