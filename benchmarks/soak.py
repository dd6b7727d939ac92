"""Soak under faults: many clients write through the sidecar while the upstream is killed, the link stalls or slows;
every reply is checked against the request that asked for it, and every acknowledged write against the upstream.

    python -m benchmarks.soak --minutes 10 --clients 200 --faults kill,stall,slow --every 20

Each client owns its keys and loops over one pipeline: ``SET soak:<run>:<client>:<n> <client>:<n>``, ``GET`` of that
key, ``INCR ctr:<run>:<client>``, ``ECHO <client>:<n>``. The ledger classifies every reply:

- right: ``+OK`` for SET, the client's own value for GET, a counter above the last one for INCR, its echo;
- a clear error: ``-ERR ...`` (or ``-LOADING`` while a restarted upstream reads its data);
- wrong: anything else, above all another client's value (a reply delivered to the wrong client) - never allowed;
- lost: a GET that finds nothing after its SET was acknowledged, or an acknowledged SET missing afterwards;
- hung: no reply within ``deadline`` seconds (``upstream.connect_timeout + upstream.reply_timeout`` plus slack).

Afterwards each acknowledged SET is read back from the upstream, and each counter must satisfy
``acknowledged INCRs <= value <= acknowledged + errored`` (an errored INCR may have run, or not, but nothing runs
twice). The upstream runs with ``appendfsync always``, so what it acknowledged survives a SIGKILL.

The bounded form of each fault is a test (tests/test_reliability_upstream.py); this module is the long run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from proxy.wire.resp import ReplyFramer, encode_command

CLEAR_ERRORS = (b"-ERR ", b"-LOADING ")


@dataclass
class Ledger:
    """What one client saw."""

    client: int
    acked_sets: list[tuple[bytes, bytes]] = field(default_factory=list)
    incr_acked: int = 0
    incr_errored: int = 0
    incr_last: int = 0
    pipelines: int = 0
    replies: int = 0
    errors: Counter = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    hung: int = 0
    disconnects: int = 0
    max_latency: float = 0.0
    error_latency_max: float = 0.0


@dataclass
class Totals:
    clients: int = 0
    pipelines: int = 0
    replies: int = 0
    acked_writes: int = 0
    errors: int = 0
    error_kinds: dict = field(default_factory=dict)
    wrong: int = 0
    lost: int = 0
    hung: int = 0
    disconnects: int = 0
    incr_violations: int = 0
    max_latency_s: float = 0.0
    examples: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.wrong or self.lost or self.hung or self.incr_violations)


def error_kind(frame: bytes) -> str:
    """A short label for an error reply, for the closing figures (the cause, not the details)."""
    text = frame[1:].decode(errors="replace").strip()
    for marker in ("upstream.reply_timeout", "upstream.connect_timeout", "upstream unavailable",
                   "upstream connection lost", "upstream connection closed", "cannot connect to upstream",
                   "no upstream connection free", "LOADING"):
        if marker in text:
            return marker
    return text[:60]


class Conn:
    """A raw RESP connection reading whole reply frames, with a deadline per read."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = ReplyFramer()

    @classmethod
    async def open(cls, port: int, password: str, timeout: float) -> "Conn":
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        conn = cls(reader, writer)
        writer.write(encode_command([b"AUTH", password.encode()]))
        reply = await conn.read(timeout)
        if reply != b"+OK\r\n":
            conn.close()
            raise ConnectionError(f"AUTH through the sidecar failed: {reply!r}")
        return conn

    async def read(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            frame = self.framer.next()
            if frame is not None:
                return frame
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError
            chunk = await asyncio.wait_for(self.reader.read(1 << 16), left)
            if not chunk:
                raise ConnectionError("closed by the sidecar")
            self.framer.feed(chunk)

    def close(self) -> None:
        self.writer.transport.abort()


async def run_client(i: int, run: str, port: int, password: str, stop: asyncio.Event, deadline: float,
                     ledger: Ledger, pause_after_error: float = 0.02) -> None:
    conn: Conn | None = None
    ctr = f"ctr:{run}:{i}".encode()
    n = 0
    while not stop.is_set():
        if conn is None:
            try:
                conn = await Conn.open(port, password, deadline)
            except (OSError, asyncio.TimeoutError, ConnectionError):
                ledger.disconnects += 1
                await asyncio.sleep(0.1)
                continue
        n += 1
        key, value = f"soak:{run}:{i}:{n}".encode(), f"{i}:{n}".encode()
        conn.writer.write(encode_command([b"SET", key, value]) + encode_command([b"GET", key]) +
                          encode_command([b"INCR", ctr]) + encode_command([b"ECHO", value]))
        sent = time.monotonic()
        replies: list[bytes] = []
        try:
            for _ in range(4):
                replies.append(await conn.read(max(0.0, sent + deadline - time.monotonic())))
        except asyncio.TimeoutError:
            ledger.hung += 1
            ledger.wrong.append(f"no reply within {deadline:g}s to pipeline {n} (got {len(replies)} of 4)")
        except (ConnectionError, OSError):
            ledger.disconnects += 1
        latency = time.monotonic() - sent
        ledger.max_latency = max(ledger.max_latency, latency)
        ledger.pipelines += 1
        ledger.replies += len(replies)
        errored = classify(ledger, key, value, replies)
        if len(replies) < 4:  # the rest is unknown: it may have run
            if len(replies) < 3:
                ledger.incr_errored += 1
            conn.close()
            conn = None
        if errored or len(replies) < 4:
            ledger.error_latency_max = max(ledger.error_latency_max, latency)
            await asyncio.sleep(pause_after_error)
    if conn is not None:
        conn.close()


def classify(ledger: Ledger, key: bytes, value: bytes, replies: list[bytes]) -> bool:
    """Check each reply against its request; True if any was an error."""
    errored = False
    set_acked = False
    for idx, frame in enumerate(replies):
        if frame.startswith(CLEAR_ERRORS):
            errored = True
            ledger.errors[error_kind(frame)] += 1
            if idx == 2:
                ledger.incr_errored += 1
            continue
        if idx == 0:
            if frame == b"+OK\r\n":
                set_acked = True
                ledger.acked_sets.append((key, value))
            else:
                ledger.wrong.append(f"SET {key!r}: {frame[:80]!r}")
        elif idx == 1:
            expected = b"$%d\r\n%s\r\n" % (len(value), value)
            if frame == expected:
                continue
            if frame in (b"$-1\r\n", b"_\r\n"):
                if set_acked:
                    ledger.lost.append(f"GET {key!r} found nothing right after its SET was acknowledged")
            else:
                ledger.wrong.append(f"GET {key!r} returned {frame[:80]!r}, not {value!r}")
        elif idx == 2:
            if frame[:1] == b":" and frame.endswith(b"\r\n"):
                got = int(frame[1:-2])
                if got <= ledger.incr_last:
                    ledger.wrong.append(f"INCR went from {ledger.incr_last} to {got}")
                ledger.incr_last = max(ledger.incr_last, got)
                ledger.incr_acked += 1
            else:
                ledger.wrong.append(f"INCR: {frame[:80]!r}")
        elif frame != b"$%d\r\n%s\r\n" % (len(value), value):
            ledger.wrong.append(f"ECHO {value!r} returned {frame[:80]!r}")
    return errored


def verify(ledgers: list[Ledger], run: str, upstream_client) -> Totals:
    """Read every acknowledged write back from the upstream and total the ledgers."""
    totals = Totals(clients=len(ledgers))
    kinds: Counter = Counter()
    for ledger in ledgers:
        totals.pipelines += ledger.pipelines
        totals.replies += ledger.replies
        totals.acked_writes += len(ledger.acked_sets) + ledger.incr_acked
        totals.errors += sum(ledger.errors.values())
        kinds.update(ledger.errors)
        totals.wrong += len(ledger.wrong)
        totals.lost += len(ledger.lost)
        totals.hung += ledger.hung
        totals.disconnects += ledger.disconnects
        totals.max_latency_s = max(totals.max_latency_s, ledger.max_latency)
        totals.examples += (ledger.wrong + ledger.lost)[:2]
        for start in range(0, len(ledger.acked_sets), 500):
            batch = ledger.acked_sets[start:start + 500]
            values = upstream_client.mget([k for k, _ in batch])
            for (k, v), got in zip(batch, values):
                if got != v:
                    totals.lost += 1
                    if len(totals.examples) < 20:
                        totals.examples.append(f"acknowledged SET {k!r}={v!r} is {got!r} upstream")
        value = int(upstream_client.get(f"ctr:{run}:{ledger.client}") or 0)
        if not (ledger.incr_acked <= value <= ledger.incr_acked + ledger.incr_errored) or value < ledger.incr_last:
            totals.incr_violations += 1
            totals.examples.append(f"client {ledger.client}: counter is {value} after {ledger.incr_acked} "
                                   f"acknowledged and {ledger.incr_errored} errored INCRs (last seen "
                                   f"{ledger.incr_last})")
    totals.error_kinds = dict(kinds.most_common())
    totals.max_latency_s = round(totals.max_latency_s, 3)
    totals.examples = totals.examples[:20]
    return totals


class Workload:
    """``clients`` clients looping until ``stop()``; ``finish(upstream_client)`` verifies and returns the totals."""

    def __init__(self, port: int, password: str, clients: int, deadline: float, run: str | None = None) -> None:
        self.port, self.password, self.deadline = port, password, deadline
        self.run = run or f"{os.getpid()}-{random.randrange(1 << 30):x}"
        self.ledgers = [Ledger(i) for i in range(clients)]
        self.stop_event = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        for ledger in self.ledgers:
            self.tasks.append(asyncio.create_task(run_client(
                ledger.client, self.run, self.port, self.password, self.stop_event, self.deadline, ledger)))
            await asyncio.sleep(0.002)  # spread the connects

    async def stop(self) -> None:
        self.stop_event.set()
        done, pending = await asyncio.wait(self.tasks, timeout=self.deadline + 5)
        for task in pending:  # a client stuck past its own deadline is a hang; the ledger already says so
            task.cancel()
        for task in done:
            task.result()  # a bug in the workload itself should not pass silently

    def finish(self, upstream_client) -> Totals:
        return verify(self.ledgers, self.run, upstream_client)

    def acked_so_far(self) -> int:
        return sum(len(x.acked_sets) + x.incr_acked for x in self.ledgers)


# -- the long run ------------------------------------------------------------------------------------------------------

async def soak(args: argparse.Namespace) -> Totals:
    from benchmarks.wan import WanRelayProcess
    from harness.servers import EmbeddedServer, SidecarProcess

    password = "soak-upstream-secret"
    up = EmbeddedServer(password=password, extra_config=["appendonly yes", "appendfsync always"]).start()
    relay = WanRelayProcess(target_port=up.port).start()
    cfg = {"upstream": {"url": f"redis://:{password}@127.0.0.1:{relay.port}/0", "connect_timeout": 1.0,
                        "reply_timeout": args.reply_timeout}, "log": {"level": "warning"}}
    sidecar = SidecarProcess(config=cfg).start()
    deadline = 1.0 + args.reply_timeout + 3.0
    work = Workload(sidecar.port, password, args.clients, deadline)
    faults = [f for f in args.faults.split(",") if f]
    log: list[dict] = []
    try:
        await work.start()
        end = time.monotonic() + args.minutes * 60
        k = 0
        while time.monotonic() < end:
            await asyncio.sleep(min(args.every, max(0.0, end - time.monotonic())))
            if time.monotonic() >= end or not faults:
                break
            fault = faults[k % len(faults)]
            k += 1
            before = work.acked_so_far()
            if fault == "kill":
                up.kill()
                await asyncio.sleep(args.outage)
                up.start()
            elif fault == "stall":
                relay.pause()
                await asyncio.sleep(args.outage + args.reply_timeout)
                relay.resume()
            elif fault == "slow":
                relay.set_delay(250)
                await asyncio.sleep(args.outage * 3)
                relay.set_delay(0)
            log.append({"fault": fault, "at_s": round(time.monotonic() - end + args.minutes * 60, 1),
                        "acked_during_window": work.acked_so_far() - before})
            print(f"[soak] {fault}: done, {work.acked_so_far()} writes acknowledged so far", file=sys.stderr)
        await work.stop()
        totals = work.finish(up.client())
    finally:
        sidecar.stop()
        relay.stop()
        up.stop()
    print(json.dumps({"faults": log, **totals.__dict__}, indent=2))
    return totals


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--faults", default="kill,stall,slow", help="comma-separated, applied in turn: kill, stall, slow")
    p.add_argument("--every", type=float, default=20.0, help="seconds between faults")
    p.add_argument("--outage", type=float, default=1.0, help="seconds a fault lasts (stall: plus the reply timeout)")
    p.add_argument("--reply-timeout", type=float, default=1.5)
    args = p.parse_args(argv)
    return 0 if asyncio.run(soak(args)).ok else 1


if __name__ == "__main__":
    sys.exit(main())
