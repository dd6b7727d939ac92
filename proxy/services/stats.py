"""Counters the sidecar keeps about itself, and sampled latencies: plain integers on the hot path.

The ops layer turns these into Prometheus series and INFO fields at scrape time; nothing here knows about either.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from dataclasses import dataclass, field

from ..commands.routes import Route


@dataclass(slots=True)
class Stats:
    accepted: int = 0
    rejected: int = 0
    disconnected: int = 0
    commands: int = 0
    auth_ok: int = 0
    auth_failures: int = 0
    auth_rate_limited: int = 0
    leases: int = 0
    output_overflows: int = 0
    protocol_errors: int = 0
    by_route: dict[Route, int] = field(default_factory=dict)
    local: dict[str, int] = field(default_factory=dict)  # commands answered by the sidecar, by name
    reloads_ok: int = 0
    reloads_failed: int = 0

    def count_local(self, label: str) -> None:
        """One command answered locally: an upstream round trip saved."""
        self.local[label] = self.local.get(label, 0) + 1


LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0)


class Latency:
    """A histogram as plain integers: a bisect and two additions per observation, made cumulative at scrape time."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds


class Sampler:
    """Times one forwarded command in ``every`` (0: none): time in the sidecar before it goes upstream, and upstream.

    Sessions call ``due()`` once per forwarded command; only a sampled command pays for clock reads.
    """

    __slots__ = ("every", "seen", "proxy", "upstream", "loop_lag")

    def __init__(self, every: int) -> None:
        self.every = every
        self.seen = 0
        self.proxy = Latency()
        self.upstream = Latency()
        self.loop_lag = Latency()

    def due(self) -> bool:
        if not self.every:
            return False
        self.seen += 1
        if self.seen < self.every:
            return False
        self.seen = 0
        return True

    def observe(self, received: float, sent: float) -> None:
        """A sampled command's reply arrived now: it was read at ``received`` and written upstream at ``sent``."""
        self.upstream.observe(time.perf_counter() - sent)
        self.proxy.observe(sent - received)

    async def watch_loop(self, interval: float = 0.25) -> None:
        """How late the event loop runs a timer: every client waits that long before the sidecar reads it."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(interval)
            self.loop_lag.observe(max(0.0, loop.time() - start - interval))
