"""Head-of-line blocking by one big reply: small GETs' latency while another client fetches a 100k-element set.

Twenty clients each send a GET every ``period`` ms on their own persistent connection (an open-loop schedule: each
latency runs from the moment the GET was due, so a GET held back behind a stall counts the whole wait, and a stall
cannot hide by slowing the clients down; the GETs that fell due while a client waited count as sent at their due time
and answered with the one it was waiting for, their least possible latency). In one process of the generator. With
``big_reply`` a second process fetches ``SMEMBERS`` of a ``elements``-member set back to back on a connection of its own
all the while (it reads the reply's bytes without building 100k objects: it is not the one measured). The same GETs
without the big-reply client give the baseline, in the same repeat; the report's "extra p99" is the difference.

Both use RESP2 and raw sockets (AUTH, then commands), so the generator costs a few microseconds per GET.
"""

from __future__ import annotations

import asyncio
import time

from benchmarks import generator
from benchmarks.raw import connect, encode, read_reply
from benchmarks.stack import Endpoint
from benchmarks.stats import Sample

BIG_KEY = "bench:big-set"
GET_KEY = "bench:greeting"
TIMEOUT = 30.0


# -- in a generator process ------------------------------------------------------------------------------------------

async def big_reply_start(host: str, port: int, password: str | None, username: str | None, key: str) -> dict:
    """Start fetching SMEMBERS back to back in the background; returns once the first whole reply arrived."""
    reader, writer = await connect(host, port, password, username)
    command = encode("SMEMBERS", key)
    writer.write(command)
    first = await read_reply(reader)  # parsed once: from then on only its length is read
    size = len(first)
    state = {"replies": 1, "seconds": [], "stop": False}

    async def loop() -> None:
        try:
            while not state["stop"]:
                started = time.perf_counter()
                writer.write(command)
                await reader.readexactly(size)
                state["seconds"].append(time.perf_counter() - started)
                state["replies"] += 1
        finally:
            writer.close()

    state["task"] = asyncio.create_task(loop())
    generator.STATE["big_reply"] = state
    return {"bytes": size}


async def big_reply_stop() -> dict:
    state = generator.STATE.pop("big_reply")
    state["stop"] = True
    await asyncio.wait_for(state["task"], TIMEOUT)
    times = sorted(state["seconds"])
    return {"replies": len(times), "median_ms": times[len(times) // 2] * 1e3 if times else None}


async def paced_gets(host: str, port: int, password: str | None, username: str | None, clients: int,
                     period_ms: float, seconds: float) -> dict:
    """``clients`` connections, each a GET every ``period_ms`` (open loop: latency counts from when it was due)."""
    conns = await asyncio.gather(*(connect(host, port, password, username) for _ in range(clients)))
    command = encode("GET", GET_KEY)
    period = period_ms / 1000
    latencies: list[float] = []
    missed = [0]

    async def client(index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, start: float) -> None:
        due = start + period * index / clients  # spread the clients over the period
        end = start + seconds
        while due < end:
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            writer.write(command)
            await read_reply(reader)
            now = time.perf_counter()
            latencies.append(now - due)
            due += period
            # GETs that fell due while this one waited were not sent (one request at a time per connection): each
            # counts what it waited at least, and the schedule resumes at the next one not yet due
            while due < min(now, end):
                latencies.append(now - due)
                missed[0] += 1
                due += period

    try:
        with generator.window() as win:
            start = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(client(i, r, w, start) for i, (r, w) in enumerate(conns))),
                                   seconds + TIMEOUT)
    finally:
        for _, w in conns:
            w.close()
    return {"latencies": latencies, "errors": 0, "missed": missed[0], **win}


# -- in the parent ---------------------------------------------------------------------------------------------------

async def ensure_big_set(upstream: Endpoint, elements: int) -> None:
    """The set of ``elements`` members on the upstream itself (written once, kept for the run)."""
    reader, writer = await connect(upstream.host, upstream.port, upstream.password, upstream.username)
    try:
        writer.write(encode("SCARD", BIG_KEY))
        if int((await read_reply(reader))[1:-2]) == elements:
            return
        writer.write(encode("DEL", BIG_KEY))
        await read_reply(reader)
        batch = 1000
        for first in range(0, elements, batch):
            members = [f"member:{i:07d}" for i in range(first, min(first + batch, elements))]
            writer.write(encode("SADD", BIG_KEY, *members))
            await read_reply(reader)
        writer.write(encode("SET", GET_KEY, "hello"))
        await read_reply(reader)
    finally:
        writer.close()


class BigReply:
    """One cell: the paced GETs, with or without the big-reply client beside them."""

    def __init__(self, endpoint: Endpoint, upstream: Endpoint, big_reply: bool, elements: int, clients: int,
                 period_ms: float, seconds: float) -> None:
        self.endpoint = endpoint
        self.upstream = upstream
        self.big_reply = big_reply
        self.elements = elements
        self.clients = clients
        self.period_ms = period_ms
        self.seconds = seconds
        self.pool = generator.pool()

    async def __aenter__(self) -> "BigReply":
        await ensure_big_set(self.upstream, self.elements)
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def _where(self) -> dict:
        e = self.endpoint
        return {"host": e.host, "port": e.port, "password": e.password, "username": e.username}

    async def _run(self, seconds: float) -> Sample:
        big = None
        if self.big_reply:  # in the other process, so its reading never delays the GETs' process
            await self.pool.call(1 % self.pool.processes, "benchmarks.scenarios.bigreply:big_reply_start",
                                 key=BIG_KEY, **self._where())
        try:
            result = await self.pool.call(0, "benchmarks.scenarios.bigreply:paced_gets", clients=self.clients,
                                          period_ms=self.period_ms, seconds=seconds, **self._where())
        finally:
            if self.big_reply:
                big = await self.pool.call(1 % self.pool.processes, "benchmarks.scenarios.bigreply:big_reply_stop")
        fields = generator.generator_fields([result])
        sample = Sample.from_latencies(result["latencies"], result["wall_s"], result["errors"])
        return sample.with_extra(commands=float(sample.requests - result["missed"]), **fields,
                                 missed_gets=float(result["missed"]),
                                 big_replies=float(big["replies"]) if big else None,
                                 big_reply_ms=big["median_ms"] if big else None)

    async def warm(self) -> None:
        await self._run(min(0.2, self.seconds))

    async def measure(self) -> Sample:
        return await self._run(self.seconds)
