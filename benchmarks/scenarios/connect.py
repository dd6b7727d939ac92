"""Connect-per-request, the legacy pattern the sidecar exists for, and the persistent-connection ideal beside it.

Every request builds a fresh redis-py client from the URL with the library's defaults (redis-py 8: RESP3, so HELLO 3
AUTH, then CLIENT MAINT_NOTIFICATIONS and two CLIENT SETINFO), runs its commands and closes the connection, as the
chatroom does for every event. Workloads:
  chat   SADD + SMEMBERS, the chatroom's join (the article's ``who_is_online`` set)
  get    one GET, the single-command request of a typical legacy web app
The ideal is the same workload on persistent connections (one per concurrent worker, in the same RESP version),
opened before measuring.

The clients run in the generator's processes (``benchmarks.generator``), split as evenly as the concurrency allows
(concurrency 1 is one process), all starting at the same moment; each process reports its own CPU, so a row whose
generator ran flat out is flagged instead of passing its own queueing off as the sidecar's latency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from benchmarks import generator
from benchmarks.scenarios import NothingToStart
from benchmarks.stack import Endpoint
from benchmarks.stats import Sample

KEY = "bench:who_is_online"
GET_KEY = "bench:greeting"
MEMBERS = 64  # the set stays small, so SMEMBERS costs the same all run long
SOCKET_TIMEOUT = 10.0  # a hung request becomes an error instead of a hung run
HANG_GRACE = 30.0
START_MARGIN = 0.05  # s between sending the calls and the common start: every process is ready by then
COMMANDS = {"chat": 2, "get": 1}


async def chat(client: Redis, i: int) -> None:
    await client.sadd(KEY, f"user-{i % MEMBERS}")
    await client.smembers(KEY)


async def get(client: Redis, i: int) -> None:
    await client.get(GET_KEY)


WORKLOADS: dict[str, Callable[[Redis, int], Awaitable[None]]] = {"chat": chat, "get": get}


async def closed_loop(concurrency: int, seconds: float, max_requests: int,
                      request: Callable[[int], Awaitable[None]]) -> tuple[list[float], int]:
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

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), seconds + HANG_GRACE)
    return latencies, errors


# -- in a generator process ------------------------------------------------------------------------------------------

def _client(url: str, protocol: int, kwargs: dict, **more) -> Redis:
    return Redis.from_url(url, protocol=protocol, socket_timeout=SOCKET_TIMEOUT, **kwargs, **more)


async def run_connect(url: str, kwargs: dict, workload: str, protocol: int, concurrency: int, seconds: float,
                      max_requests: int, start_at: float, persistent: bool = False) -> dict:
    """One process's share: a fresh client per request (or the persistent pool ``open_persistent`` left)."""
    work = WORKLOADS[workload]
    if persistent:
        client = generator.STATE["persistent"]

        async def request(i: int) -> None:
            await work(client, i)
    else:
        async def request(i: int) -> None:
            fresh = _client(url, protocol, kwargs)
            try:
                await work(fresh, i)
            finally:
                await fresh.aclose()

    await generator.wait_until(start_at)
    with generator.window() as win:
        latencies, errors = await closed_loop(concurrency, seconds, max_requests, request)
    return {"latencies": latencies, "errors": errors, **win}


async def open_persistent(url: str, kwargs: dict, protocol: int, concurrency: int) -> None:
    client = _client(url, protocol, kwargs, max_connections=concurrency)
    await asyncio.gather(*(client.ping() for _ in range(concurrency)))
    generator.STATE["persistent"] = client


async def close_persistent() -> None:
    client = generator.STATE.pop("persistent", None)
    if client is not None:
        await client.aclose()


# -- in the parent ---------------------------------------------------------------------------------------------------

def combine(results: list[dict], commands_per_request: int = 1) -> Sample:
    """The processes' shares as one sample: every latency, the window from the first start to the last end."""
    latencies = [v for r in results for v in r["latencies"]]
    fields = generator.generator_fields(results)
    sample = Sample.from_latencies(latencies, fields.get("generator_wall_s", 0.0), sum(r["errors"] for r in results))
    return sample.with_extra(commands=float(sample.requests * commands_per_request), **fields)


class ConnectPerRequest(NothingToStart):
    """A fresh client per request: connect, handshake, the workload, close."""

    persistent = False

    def __init__(self, endpoint: Endpoint, workload: str, protocol: int, concurrency: int, seconds: float,
                 max_requests: int) -> None:
        self.endpoint = endpoint
        self.workload = workload
        self.protocol = protocol
        self.concurrency = concurrency
        self.seconds = seconds
        self.max_requests = max_requests
        self.pool = generator.pool()

    async def _run(self, seconds: float, max_requests: int) -> Sample:
        shares = self.pool.split(self.concurrency)
        start_at = time.monotonic() + START_MARGIN
        calls = [(i, "benchmarks.scenarios.connect:run_connect",
                  {"url": self.endpoint.url, "kwargs": self.endpoint.client_kwargs(), "workload": self.workload,
                   "protocol": self.protocol, "concurrency": share, "seconds": seconds,
                   "max_requests": max(1, round(max_requests * share / self.concurrency)), "start_at": start_at,
                   "persistent": self.persistent})
                 for i, share in enumerate(shares)]
        return combine(await self.pool.call_all(calls, seconds + HANG_GRACE + 10), COMMANDS[self.workload])

    async def warm(self) -> None:
        await self._run(self.seconds, self.concurrency)

    async def measure(self) -> Sample:
        return await self._run(self.seconds, self.max_requests)


class Persistent(ConnectPerRequest):
    """The ideal: the same workload on connections opened beforehand (a pool per process as large as its share).

    The pools live for one repeat only (opened by ``warm``, closed after ``measure``), so they never count among the
    connections of the cells measured after it.
    """

    persistent = True

    async def warm(self) -> None:
        await self.pool.call_all([(i, "benchmarks.scenarios.connect:open_persistent",
                                   {"url": self.endpoint.url, "kwargs": self.endpoint.client_kwargs(),
                                    "protocol": self.protocol, "concurrency": share})
                                  for i, share in enumerate(self.pool.split(self.concurrency))])

    async def measure(self) -> Sample:
        try:
            return await super().measure()
        finally:
            await self.pool.call_all([(i, "benchmarks.scenarios.connect:close_persistent", {})
                                      for i in range(len(self.pool.split(self.concurrency)))])
