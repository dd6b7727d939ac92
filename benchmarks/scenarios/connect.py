"""Connect-per-request, the legacy pattern the sidecar exists for, and the persistent-connection ideal beside it.

Every request builds a fresh redis-py client from the URL with the library's defaults (redis-py 8: RESP3, so HELLO 3
AUTH, then CLIENT MAINT_NOTIFICATIONS and two CLIENT SETINFO), runs its commands and closes the connection, as the
chatroom does for every event. Workloads:
  chat   SADD + SMEMBERS, the chatroom's join (the article's ``who_is_online`` set)
  get    one GET, the single-command request of a typical legacy web app
The ideal is the same workload on persistent connections (one per concurrent worker), opened before measuring.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from benchmarks.scenarios import NothingToStart
from benchmarks.stack import Endpoint
from benchmarks.stats import Sample

KEY = "bench:who_is_online"
GET_KEY = "bench:greeting"
MEMBERS = 64  # the set stays small, so SMEMBERS costs the same all run long
SOCKET_TIMEOUT = 10.0  # a hung request becomes an error instead of a hung run
HANG_GRACE = 30.0


async def chat(client: Redis, i: int) -> None:
    await client.sadd(KEY, f"user-{i % MEMBERS}")
    await client.smembers(KEY)


async def get(client: Redis, i: int) -> None:
    await client.get(GET_KEY)


WORKLOADS: dict[str, Callable[[Redis, int], Awaitable[None]]] = {"chat": chat, "get": get}


async def closed_loop(concurrency: int, seconds: float, max_requests: int,
                      request: Callable[[int], Awaitable[None]]) -> Sample:
    """``concurrency`` workers issue requests back to back until the time or the request count runs out."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = loop.time() + seconds

    async def worker() -> None:
        nonlocal issued, errors
        while issued < max_requests and loop.time() < deadline:
            i = issued
            issued += 1
            started = time.perf_counter()
            try:
                await request(i)
            except (RedisError, OSError, asyncio.TimeoutError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), seconds + HANG_GRACE)
    return Sample.from_latencies(latencies, time.perf_counter() - started, errors)


class ConnectPerRequest(NothingToStart):
    """A fresh client per request: connect, handshake, the workload, close."""

    def __init__(self, endpoint: Endpoint, workload: str, protocol: int, concurrency: int, seconds: float,
                 max_requests: int) -> None:
        self.endpoint = endpoint
        self.workload = WORKLOADS[workload]
        self.protocol = protocol
        self.concurrency = concurrency
        self.seconds = seconds
        self.max_requests = max_requests

    async def request(self, i: int) -> None:
        client = Redis.from_url(self.endpoint.url, protocol=self.protocol, socket_timeout=SOCKET_TIMEOUT,
                                **self.endpoint.client_kwargs())
        try:
            await self.workload(client, i)
        finally:
            await client.aclose()

    async def warm(self) -> None:
        await closed_loop(self.concurrency, self.seconds, self.concurrency, self.request)

    async def measure(self) -> Sample:
        return await closed_loop(self.concurrency, self.seconds, self.max_requests, self.request)


class Persistent(ConnectPerRequest):
    """The ideal: the same workload on connections opened beforehand (a pool as large as the concurrency).

    The pool lives for one repeat only, so it never counts among the connections of the cells measured after it.
    """

    async def request(self, i: int) -> None:
        await self.workload(self.client, i)

    async def warm(self) -> None:
        self.client = Redis.from_url(self.endpoint.url, protocol=self.protocol, socket_timeout=SOCKET_TIMEOUT,
                                     max_connections=self.concurrency, **self.endpoint.client_kwargs())
        await asyncio.gather(*(self.client.ping() for _ in range(self.concurrency)))

    async def measure(self) -> Sample:
        try:
            return await super().measure()
        finally:
            await self.client.aclose()
