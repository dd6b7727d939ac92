"""Idle clients: what each connected but silent client costs in memory, through the sidecar and directly.

A generator process raises its open-file limit and connects ``clients`` clients, each sending AUTH (RESP2) and
waiting for its +OK, 200 at a time; then they all sit idle while the parent reads the memory of the process behind
the endpoint (the sidecar's resident set, all its processes; twemproxy's) and the upstream's own figures (INFO
``used_memory``, and its resident set when it runs here), then they disconnect. The readings before connecting are
subtracted and divided by the number of clients. The latency columns of these records are the connect + AUTH time of
each client, and the throughput is clients connected per second.
"""

from __future__ import annotations

import asyncio
import time

from benchmarks import generator
from benchmarks.cpu import tree_rss_kb
from benchmarks.raw import connect, encode, read_reply
from benchmarks.stack import Endpoint
from benchmarks.stats import Sample

AT_ONCE = 200
SETTLE = 0.5  # s after the last connect before reading memory: allocations of the connect burst settle
TIMEOUT = 120.0


# -- in a generator process ------------------------------------------------------------------------------------------

async def connect_idle(host: str, port: int, password: str | None, username: str | None, clients: int) -> dict:
    limit = generator.raise_nofile()
    if limit < clients + 100:
        raise RuntimeError(f"open-file limit {limit} is too low for {clients} clients (raise the hard limit)")
    held: list = []
    generator.STATE["idle"] = held
    latencies: list[float] = []
    errors = 0
    gate = asyncio.Semaphore(AT_ONCE)

    async def one() -> None:
        nonlocal errors
        async with gate:
            started = time.perf_counter()
            try:
                held.append(await connect(host, port, password, username))
            except (OSError, RuntimeError, asyncio.IncompleteReadError):
                errors += 1
                return
            latencies.append(time.perf_counter() - started)

    with generator.window() as win:
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(clients))), TIMEOUT)
    return {"latencies": latencies, "errors": errors, **win}


async def check_idle() -> int:
    """How many of the held clients still answer a PING (a sidecar that dropped them would show here)."""
    alive = 0
    for reader, writer in generator.STATE.get("idle", []):
        writer.write(encode("PING"))
    for reader, writer in generator.STATE.get("idle", []):
        try:
            if (await asyncio.wait_for(read_reply(reader), 10)).startswith(b"+PONG"):
                alive += 1
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass
    return alive


async def close_idle() -> None:
    for _, writer in generator.STATE.pop("idle", []):
        writer.close()
    await asyncio.sleep(0)


# -- in the parent ---------------------------------------------------------------------------------------------------

async def upstream_memory(upstream: Endpoint) -> int:
    reader, writer = await connect(upstream.host, upstream.port, upstream.password, upstream.username)
    try:
        writer.write(encode("INFO", "memory"))
        text = (await read_reply(reader)).decode(errors="replace")
    finally:
        writer.close()
    for line in text.splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    raise RuntimeError("no used_memory in the upstream's INFO")


class IdleClients:
    """One cell: ``clients`` idle, authenticated clients held on ``endpoint`` while memory is read."""

    def __init__(self, endpoint: Endpoint, upstream: Endpoint, upstream_pid: int | None, clients: int) -> None:
        self.endpoint = endpoint
        self.upstream = upstream
        self.upstream_pid = upstream_pid
        self.clients = clients
        self.pool = generator.pool()

    async def __aenter__(self) -> "IdleClients":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.call(0, "benchmarks.scenarios.idle:close_idle")

    async def warm(self) -> None:
        # a few clients first: the sidecar has checked the password upstream once and cached it before the reading
        await self._hold(min(10, self.clients))
        await self.pool.call(0, "benchmarks.scenarios.idle:close_idle")
        await asyncio.sleep(0.2)

    async def _hold(self, clients: int) -> dict:
        e = self.endpoint
        return await self.pool.call(0, "benchmarks.scenarios.idle:connect_idle", TIMEOUT + 30, host=e.host,
                                    port=e.port, password=e.password, username=e.username, clients=clients)

    async def measure(self) -> Sample:
        proxy_pid = self.endpoint.pid
        await asyncio.sleep(0.2)
        before = (tree_rss_kb(proxy_pid), tree_rss_kb(self.upstream_pid), await upstream_memory(self.upstream))
        try:
            result = await self._hold(self.clients)
            await asyncio.sleep(SETTLE)
            after = (tree_rss_kb(proxy_pid), tree_rss_kb(self.upstream_pid), await upstream_memory(self.upstream))
            alive = await self.pool.call(0, "benchmarks.scenarios.idle:check_idle")
        finally:
            await self.pool.call(0, "benchmarks.scenarios.idle:close_idle")
        held = max(1, len(result["latencies"]))

        def per_client(i: int, scale: float = 1.0) -> float | None:
            if before[i] is None or after[i] is None:
                return None
            return (after[i] - before[i]) * scale / held

        sample = Sample.from_latencies(result["latencies"], result["wall_s"], result["errors"] + (held - alive))
        return sample.with_extra(clients=float(held), alive=float(alive),
                                 proxy_rss_kb_per_client=per_client(0),
                                 upstream_rss_kb_per_client=per_client(1),
                                 upstream_used_memory_kb_per_client=per_client(2, 1 / 1024),
                                 **generator.generator_fields([result]))
