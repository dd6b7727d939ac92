"""What the upstream itself saw, read from its INFO like the article's dashboard: connections and handshake commands.

Counters (connections received, AUTH/HELLO/... calls) are read before and after each measurement and subtracted;
the peak of connected clients is sampled every few milliseconds while it runs; the runner then takes away the
connections that belong to others (the monitor's own, and the sidecar's pool when another mode is measured).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass

from redis.asyncio import Redis

from benchmarks.stack import Endpoint

HANDSHAKE = ("auth", "hello", "client|setinfo", "client|setname", "select")
SAMPLE_EVERY = 0.01  # often enough to see short-lived connections, rarely enough to cost the client little


@dataclass(frozen=True)
class Counters:
    connections_received: int
    calls: dict[str, int]
    cpu_s: float | None = None  # the upstream's own user + system CPU (INFO cpu), all its threads


@dataclass
class Evidence:
    """The upstream's view of one measurement (or the sum over its repeats)."""

    connections_received: int = 0
    peak_clients: int = 0
    auth_calls: int = 0
    hello_calls: int = 0
    handshake_calls: int = 0  # AUTH + HELLO + CLIENT SETINFO/SETNAME + SELECT
    # the proxy's own upstream connections: held while it ran, and opened (each with one AUTH or HELLO) outside
    # the measured stretches since the previous reading (at start, while warming): the upstream's counters above
    # only see what happened inside them
    pool_connections: int = 0
    pool_connects: int = 0

    @classmethod
    def between(cls, before: Counters, after: Counters, peak_clients: int) -> "Evidence":
        calls = {name: after.calls.get(name, 0) - before.calls.get(name, 0) for name in HANDSHAKE}
        return cls(after.connections_received - before.connections_received, peak_clients,
                   calls["auth"], calls["hello"], sum(calls.values()))

    def add(self, other: "Evidence") -> "Evidence":
        return Evidence(self.connections_received + other.connections_received,
                        max(self.peak_clients, other.peak_clients), self.auth_calls + other.auth_calls,
                        self.hello_calls + other.hello_calls, self.handshake_calls + other.handshake_calls,
                        max(self.pool_connections, other.pool_connections), self.pool_connects + other.pool_connects)

    def as_dict(self) -> dict:
        return asdict(self)


class Peak:
    """The highest ``connected_clients`` seen while sampling (the monitor's own connection included)."""

    def __init__(self) -> None:
        self.value = 0

    def see(self, connected: int) -> None:
        self.value = max(self.value, connected)


class UpstreamMonitor:
    """A persistent, direct (never through the WAN relay) connection to the upstream that reads INFO."""

    def __init__(self, upstream: Endpoint) -> None:
        self.client = Redis(host=upstream.host, port=upstream.port, username=upstream.username,
                            password=upstream.password, protocol=2, ssl=upstream.tls, **upstream.client_kwargs())

    async def counters(self) -> Counters:
        stats = await self.client.info("stats")
        commands = await self.client.info("commandstats")
        cpu = await self.client.info("cpu")
        calls = {name: commands.get(f"cmdstat_{name}", {}).get("calls", 0) for name in HANDSHAKE}
        used = cpu.get("used_cpu_user"), cpu.get("used_cpu_sys")
        return Counters(int(stats["total_connections_received"]), calls,
                        None if None in used else float(used[0]) + float(used[1]))

    async def connected_clients(self) -> int:
        return int((await self.client.info("clients"))["connected_clients"])

    async def settled_clients(self, attempts: int = 10) -> int:
        """Connected clients once the count stops moving (connections closed a moment ago take a moment to go)."""
        last = await self.connected_clients()
        for _ in range(attempts):
            await asyncio.sleep(0.02)
            now = await self.connected_clients()
            if now == last:
                break
            last = now
        return last

    async def server(self) -> str:
        """'valkey 9.1.2' or 'redis 7.0.15'."""
        info = await self.client.info("server")
        if "valkey_version" in info:
            return f"valkey {info['valkey_version']}"
        return f"redis {info['redis_version']}"

    @contextlib.asynccontextmanager
    async def watch(self) -> AsyncIterator[Peak]:
        """Sample connected clients in the background for the duration of the block."""
        peak = Peak()
        peak.see(await self.connected_clients())
        stop = asyncio.Event()

        async def sample() -> None:
            # Never cancelled mid-command: a cancelled redis-py call drops its connection, and the reconnection
            # would show up in the very counters this module reports.
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)
                peak.see(await self.connected_clients())

        task = asyncio.create_task(sample())
        try:
            yield peak
        finally:
            stop.set()
            await task

    async def close(self) -> None:
        await self.client.aclose()



async def sidecar_info(endpoint: Endpoint, workers: int = 1, attempts: int = 24) -> dict[str, int]:
    """The sidecar's own ``INFO sidecar`` counters, summed over its worker processes: with ``--workers`` each
    connection reaches one worker, so connections are opened until every worker (by ``process_id``) has answered."""
    from benchmarks.raw import connect, encode, read_reply

    seen: dict[str, dict[str, int]] = {}
    for _ in range(attempts if workers > 1 else 1):
        reader, writer = await connect(endpoint.host, endpoint.port, endpoint.password, endpoint.username)
        try:
            writer.write(encode("INFO", "sidecar"))
            text = (await read_reply(reader)).decode(errors="replace")
        finally:
            writer.close()
        fields = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep and value.strip().lstrip("-").isdigit():
                fields[key] = int(value)
        seen[str(fields.get("process_id"))] = fields
        if len(seen) >= workers:
            break
    out: dict[str, int] = {"workers_seen": len(seen)}
    for fields in seen.values():
        for key, value in fields.items():
            out[key] = out.get(key, 0) + value
    return out
