"""Client faults: clients that vanish at the worst moments leave nothing behind; clients that never read, or flood,
are bounded.

The sidecar runs in this process, on its own event loop in a thread, so the tests can look inside it: after the
faulty clients are gone there is no session, no lease, no lease waiter, no hub membership, no pending upstream reply,
no extra task and no ``Session`` object left at all (``gc``), and the upstream shows only the pools' connections,
none in MULTI, blocked, subscribed or MONITOR.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import struct
import threading
import time
from collections import Counter
from pathlib import Path


from conftest import ACL_USER, UPSTREAM_PASSWORD, busy_connections, sidecar_connections, stall_upstream, wait_until
from proxy import config
from harness.servers import free_port
from proxy.server import Server, new_event_loop
from proxy.client.session import Session
from proxy.upstream.connection import UpstreamConnection
from wire import RawClient

AUTH = [b"AUTH", UPSTREAM_PASSWORD.encode()]
LOOP_TURN_READ = 32 * 256 * 1024  # the most libuv reads from one socket in one event-loop turn (uv__read, uvloop)
ARTIFACTS = Path(__file__).parent / "artifacts"


class InProcessSidecar:
    """A real ``Server`` on a uvloop in a background thread; ``inspect(fn)`` runs ``fn(server)`` on that loop."""

    def __init__(self, upstream_server, **sections) -> None:
        self.port = free_port()
        raw = {"listen": f"127.0.0.1:{self.port}", "shutdown_timeout": 1.0, "log": {"level": "warning"}, **sections,
               "upstream": {"url": upstream_server.url(), **sections.get("upstream", {})}}
        self.server = Server(config.build(raw, environ={}), new_event_loop())
        self.loop = self.server.loop
        self.thread = threading.Thread(target=self._run, name="sidecar-loop", daemon=True)
        self.ready = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self.ready.set()
        self.loop.run_forever()

    def __enter__(self) -> "InProcessSidecar":
        self._level = logging.getLogger("sidecar").level
        logging.getLogger("sidecar").setLevel(logging.ERROR)  # its expected warnings (clients vanishing) are noise here
        self.thread.start()
        assert self.ready.wait(10), "in-process sidecar did not start"
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.server.drain(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        logging.getLogger("sidecar").setLevel(self._level)

    def inspect(self, fn):
        async def run():
            return fn(self.server)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def sample_every(self, interval: float, fn) -> asyncio.Future:
        """Run ``fn(server)`` on the sidecar's loop every ``interval`` seconds until the future is cancelled."""
        async def run():
            while True:
                fn(self.server)
                await asyncio.sleep(interval)
        return asyncio.run_coroutine_threadsafe(run(), self.loop)

    def state(self) -> dict:
        """Everything a vanished client could leave behind, counted on the sidecar's loop."""
        def count(server: Server) -> dict:
            gc.collect()
            rt = server.handle.current
            manager, hub = rt.manager, rt.hub
            objects = gc.get_objects()
            live = [o for o in objects if isinstance(o, Session) and o.handle is server.handle]
            conns = [c for state in manager.states.values() for c in state]
            return {
                "sessions": len(rt.registry),
                "session_objects": len(live),
                # a connection the sidecar counts as closed whose socket is still open
                "closed_but_open": Counter(c.role.value for c in objects if isinstance(c, UpstreamConnection)
                                           and not c.alive and c.transport is not None
                                           and not c.transport.is_closing()),
                "leased": len(manager.leases.lent),
                "lease_waiters": sum(len(w) for w in manager.leases.waiters.values()),
                "hub_members": sum(len(m) for h in hub.hubs.values() for m in h.members.values()),
                "hub_waiting": sum(len(h.fifo) for h in hub.hubs.values()),
                "pending_replies": sum(len(c.pending) + len(c.queued) for c in conns),
                "tasks": Counter(t.get_coro().__qualname__ for t in asyncio.all_tasks(self.loop)
                                 if t is not asyncio.current_task()),
                "upstream": Counter(f"{c.role.value}:{c.state.value}" for c in conns),
            }
        return self.inspect(count)

    def settle(self, baseline: dict, timeout: float = 10.0) -> dict:
        """Wait until nothing of any client is left (what a client's close starts may take a moment)."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.state()
            clean = all(not now[k] for k in ("sessions", "session_objects", "leased", "lease_waiters",
                                              "hub_members", "hub_waiting", "pending_replies", "closed_but_open")) \
                and now["tasks"] == baseline["tasks"]
            if clean or time.monotonic() > deadline:
                return now
            time.sleep(0.1)


def reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a crashed process or a dropped network link does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def connect(port: int, commands: bytes = b"", auth: bool = True) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if auth:
        sock.sendall(b"AUTH " + UPSTREAM_PASSWORD.encode() + b"\r\n")
        assert sock.recv(5) == b"+OK\r\n"
    if commands:
        sock.sendall(commands)
    return sock


def test_clients_vanishing_at_every_stage_leave_nothing_behind(own_upstream):
    """138 clients vanish (RST, FIN, or half-close then close) in the middle of: a half-sent request, a pipeline in
    flight, a request the upstream is stalled on, a transaction with WATCH, a blocking pop, a subscription, a wait for
    a lease, an AUTH being checked upstream, MONITOR, CLIENT TRACKING."""
    up = own_upstream
    with InProcessSidecar(up, pool={"size": 4, "lease_max": 12, "lease_wait": 5.0}) as sc:
        def steady() -> dict | None:  # the pool's start-up connects are done
            first = sc.state()
            time.sleep(0.2)
            return first if sc.state() == first else None
        baseline = wait_until(steady, "the idle sidecar never settled")
        port = sc.port
        socks: list[tuple[str, socket.socket]] = []

        def vanish(kind: str, sock: socket.socket) -> None:
            socks.append((kind, sock))

        for i in range(20):
            s = connect(port, b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$100\r\n" + b"x" * 40)  # half a request
            vanish("half-request", s)
            s = connect(port, b"".join(b"*3\r\n$3\r\nSET\r\n$6\r\npk:%03d\r\n$1\r\nv\r\n"
                                       b"*2\r\n$3\r\nGET\r\n$6\r\npk:%03d\r\n" % (j, j)
                                       for j in range(100)))  # a pipeline in flight
            vanish("pipeline", s)
            s = connect(port, b"WATCH wk:%d\r\nMULTI\r\nSET wk:%d left\r\nINCR wk-count\r\n" % (i, i))
            vanish("transaction", s)
            vanish("subscribed", connect(port, b"SUBSCRIBE ch:%d ch:all\r\nPSUBSCRIBE pat:%d:*\r\n" % (i, i)))
            vanish("auth-checking", connect(port, b"AUTH %s wrong-%d\r\nGET k\r\n" % (ACL_USER.encode(), i),
                                            auth=False))
        for i in range(8):
            vanish("blocked", connect(port, b"BLPOP orphan-q:%d 0\r\n" % i))
        wait_until(lambda: sc.state()["leased"] >= 12, lambda: f"the leases were never all taken: {sc.state()}")
        for i in range(8):  # 8 more than the leases left: these wait for one
            vanish("lease-waiting", connect(port, b"BLPOP orphan-w:%d 0\r\n" % i))
        vanish("monitor", connect(port, b"MONITOR\r\n"))
        vanish("tracking", connect(port, b"HELLO 3\r\nCLIENT TRACKING on\r\nGET tracked\r\n"))
        mid = wait_until(lambda: (st := sc.state())["lease_waiters"] >= 1 and st["hub_members"] >= 20 and st,
                         lambda: f"lease waiters or subscribers missing: {sc.state()}")
        assert mid["leased"] >= 12 and mid["lease_waiters"] >= 1, mid  # the blocked ones really hold leases
        assert mid["hub_members"] >= 20, mid
        stalled = stall_upstream(up, 1.0)  # replies to these are still upstream when their clients go
        for i in range(20):
            vanish("stalled-request", connect(port, b"INCR stalled-count\r\nGET k\r\n"))
        time.sleep(0.1)
        for n, (kind, sock) in enumerate(socks):
            if n % 3 == 0:
                reset(sock)
            elif n % 3 == 1:
                sock.close()
            else:
                sock.shutdown(socket.SHUT_WR)  # half-close first, as `nc` does, then go
                sock.close()
        stalled.join(10)
        after = sc.settle(baseline)
        kinds = Counter(kind for kind, _ in socks)

        # inside the sidecar: nothing of theirs
        for key in ("sessions", "session_objects", "leased", "lease_waiters", "hub_members", "hub_waiting",
                    "pending_replies"):
            assert after[key] == 0, (key, after)
        assert not after["closed_but_open"], after["closed_but_open"]
        assert after["tasks"] == baseline["tasks"], (baseline["tasks"], after["tasks"])
        # upstream: only pool connections, none in MULTI, blocked, subscribed to anything or in MONITOR
        # (the upstream learns of closes and UNSUBSCRIBEs a moment after the sidecar sends them)
        wait_until(lambda: not busy_connections(sidecar_connections(up)),
                   lambda: f"busy upstream connections: {busy_connections(sidecar_connections(up))}")
        view = sidecar_connections(up)
        assert len(view) <= 4 + 12 + 1, [c["flags"] for c in view]  # shared + idle leases + the hub, at most
        direct = up.client()
        wait_until(lambda: direct.pubsub_numsub("ch:0", "ch:all") == [(b"ch:0", 0), (b"ch:all", 0)]
                   and direct.pubsub_numpat() == 0, lambda: f"still subscribed upstream: "
                   f"{direct.pubsub_numsub('ch:0', 'ch:all')}, {direct.pubsub_numpat()} patterns")
        direct.rpush("orphan-q:0", "stays")  # an abandoned BLPOP still blocked upstream would take it
        direct.rpush("orphan-w:0", "stays")
        time.sleep(0.2)
        assert direct.lrange("orphan-q:0", 0, -1) == [b"stays"] and direct.lrange("orphan-w:0", 0, -1) == [b"stays"]
        assert direct.get("wk:0") is None and direct.get("wk-count") is None  # no abandoned transaction ran
        assert int(direct.get("stalled-count") or 0) <= 20
        # and the sidecar serves as before: transactions on fresh leases, every lease back
        with RawClient(port) as c:
            assert c.call(AUTH, [b"WATCH", b"wk:1"], [b"MULTI"], [b"SET", b"wk:1", b"ok"], [b"EXEC"])[-1] == \
                b"*1\r\n+OK\r\n"
            listing = c.call([b"CLIENT", b"LIST"])[0]
            assert listing.count(b"id=") == 1  # the sidecar's CLIENT LIST: this client only
        figures = {"vanished_clients": len(socks), "by_kind": dict(kinds), "left_inside": {
            k: after[k] for k in ("sessions", "session_objects", "leased", "lease_waiters", "hub_members",
                                  "pending_replies")}, "upstream_connections_after": len(view)}
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "reliability_vanishing_clients.json").write_text(json.dumps(figures))
        print("vanishing clients:", figures)


def test_a_client_that_never_reads_is_bounded_then_cut_off(upstream, monkeypatch):
    """Clients that ask for replies and read none. The sidecar stops reading their requests as soon as their output
    backs up, so what it holds for each is bounded by what they had in flight:

    - one sends 1,000 GETs of 16 KB at once (16 MB of replies, over its 8 MB output limit): it is disconnected, and
      the sidecar never held more than the limit plus the replies of one event-loop turn for it;
    - one keeps asking, 16 at a time: it is paused, holds less than the limit, and stays connected (as with Redis's
      hard output limit, a client that stops reading under it keeps what it has).

    Another client is served throughout."""
    limit, value = 8 * 1024 * 1024, 16 * 1024
    upstream.client().set("big", b"x" * value)
    peaks: dict[int, dict] = {}

    def held(session: Session) -> int:
        return (session.transport.get_write_buffer_size() if session.transport else 0) + sum(map(len, session.out)) \
            + sum(len(x.data) for x in session.slots if x.data is not None)

    def peak_of(session: Session) -> dict | None:
        port = int(session.addr.rsplit(":", 1)[1]) if session.addr else 0
        return peaks.get(port)

    flush, pause = Session._flush, Session.pause_reading

    def measured_flush(self: Session) -> None:  # every write to a watched client, measured as it happens
        peak = peak_of(self)
        if peak is not None:
            peak["held"] = max(peak["held"], held(self))
        flush(self)
        if peak is not None:
            if self.transport is not None and not self.closed:
                peak["held"] = max(peak["held"], held(self))
            peak["cut"] = peak["cut"] or self.closed

    def recorded_pause(self: Session) -> None:
        peak = peak_of(self)
        if peak is not None:
            peak["paused"] = True
        pause(self)

    monkeypatch.setattr(Session, "_flush", measured_flush)
    monkeypatch.setattr(Session, "pause_reading", recorded_pause)
    request = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n"

    def watched(port: int) -> tuple[socket.socket, dict]:
        sock = connect(port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        peaks[sock.getsockname()[1]] = peak = {"held": 0, "paused": False, "cut": False}
        return sock, peak

    with InProcessSidecar(upstream, limits={"client_output_buffer": limit}) as sc, RawClient(sc.port) as fine:
        fine.call(AUTH)
        burst, cut = watched(sc.port)
        burst.sendall(request * 1000)  # within limits.max_pipeline (1024): all of it is read and sent upstream
        deadline = time.monotonic() + 20
        while not cut["cut"]:
            assert time.monotonic() < deadline, f"never cut off: {cut}"
            assert fine.call([b"GET", b"big"])[0].startswith(b"$16384\r\n")
            time.sleep(0.01)
        burst.close()
        trickle, stalled = watched(sc.port)
        trickle.setblocking(False)
        for _ in range(200):  # 3,200 GETs asked for, 16 at a time; reads nothing
            try:
                trickle.send(request * 16)
            except BlockingIOError:
                pass
            assert fine.call([b"GET", b"big"])[0].startswith(b"$16384\r\n")
            time.sleep(0.005)
        time.sleep(0.3)
        state = sc.inspect(lambda server: [(s.reading_paused, len(s.slots))
                                           for s in server.handle.current.registry if peak_of(s) is stalled])
        trickle.close()
        overflows = sc.server.handle.current.stats.output_overflows
    assert cut["cut"] and cut["paused"] and overflows == 1, (cut, overflows)
    # the limit is checked once per loop turn, after that turn's replies are written, and in one turn libuv reads up
    # to 32 x 256 KB from an upstream socket: the sidecar holds at most the limit plus that for a client
    assert cut["held"] <= limit + LOOP_TURN_READ + value, cut
    assert stalled["paused"] and not stalled["cut"] and stalled["held"] <= limit, stalled
    assert state and state[0][0], state  # still connected, still not read from
    print(f"clients that never read: a 16 MB burst was cut off (the sidecar held at most {cut['held'] / 1e6:.1f} MB "
          f"for it, limit {limit / 1e6:.1f} MB); a trickle was paused holding {stalled['held'] / 1e6:.1f} MB")


def test_a_client_flooding_pipelined_requests_is_back_pressured(own_upstream):
    """While the upstream is stalled, a client pipelines GETs as fast as it can: the sidecar stops reading from it once
    limits.max_pipeline commands wait (the kernel buffers fill and its sends block) instead of buffering without
    bound; when the upstream comes back every accepted command is answered, in order, and reading resumes."""
    up = own_upstream
    up.client().set("k", "v")
    max_pipeline = 500
    with InProcessSidecar(up, limits={"max_pipeline": max_pipeline}, upstream={"url": up.url(),
                                                                               "reply_timeout": 30.0}) as sc:
        flood = connect(sc.port)
        flood.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        flood.setblocking(False)
        request = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        chunk = request * 2000
        peak = {"waiting": 0, "buffered": 0, "paused": False}

        def sample(server: Server) -> None:
            for s in server.handle.current.registry:
                peak["waiting"] = max(peak["waiting"], len(s.slots))
                peak["buffered"] = max(peak["buffered"], s.parser.buffered)
                peak["paused"] = peak["paused"] or s.reading_paused

        stalled = stall_upstream(up, 2.5)
        sent, start = 0, time.monotonic()
        while time.monotonic() - start < 1.5:  # 1.5 s of flooding during the stall
            try:
                sent += flood.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)
            sc.inspect(sample)
        assert peak["paused"], "the sidecar never stopped reading from the flooding client"
        # bounded: what it accepted is max_pipeline commands plus one read's worth, not what was offered
        assert peak["waiting"] <= max_pipeline + 256 * 1024 // len(request) + 1, peak
        assert peak["buffered"] <= 256 * 1024, peak
        stalled.join(10)
        flood.setblocking(True)
        flood.settimeout(20)
        commands = sent // len(request)
        tail = request[:sent % len(request)]
        if tail:  # finish the last partial command so every reply can be counted
            flood.sendall(request[len(tail):])
            commands += 1
        expected = b"$1\r\nv\r\n" * commands
        got = bytearray()
        while len(got) < len(expected):
            data = flood.recv(1 << 20)
            assert data, f"closed after {len(got)} of {len(expected)} reply bytes"
            got += data
        assert bytes(got) == expected  # every command answered, in order
        flood.sendall(b"PING\r\n")
        assert flood.recv(100) == b"+PONG\r\n"  # and it is read again
        flood.close()
    print(f"flooding client: {sent / 1e6:.1f} MB sent in 1.5 s against a stalled upstream, at most "
          f"{peak['waiting']} commands held (max_pipeline {max_pipeline})")


def test_all_clients_together_are_bounded_by_total_output_buffer(upstream):
    """issue 10.8: replies queued for every client together stay under limits.total_output_buffer: past it, the
    client holding the most (one that asks for far more than it reads) is cut off, and another that stays within
    its share gets every reply."""
    value = b"x" * 64 * 1024
    upstream.client().set("tob:big", value)
    request = b"*2\r\n$3\r\nGET\r\n$7\r\ntob:big\r\n"
    with InProcessSidecar(upstream, limits={"total_output_buffer": 4 * 1024 * 1024}) as sc:
        hog = connect(sc.port)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.sendall(request * 400)  # 25 MB of replies it never reads
        wait_until(lambda: sc.inspect(lambda server: server.handle.current.stats.output_overflows) >= 1,
                   "the client holding the most was never cut off")
        with RawClient(sc.port) as fine:  # a client within its share is served in full meanwhile and after
            fine.call(AUTH)
            fine.send(request * 20)
            assert [fine.read_reply() for _ in range(20)] == [b"$%d\r\n%s\r\n" % (len(value), value)] * 20
        hog.settimeout(10)
        try:  # what the kernel already held for it, then the end: it was closed
            while hog.recv(1 << 20):
                pass
        except OSError:
            pass
        assert sc.inspect(lambda server: server.handle.current.output.total) < 4 * 1024 * 1024
