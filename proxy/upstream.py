"""Upstream connections and the pools that hold them.

An ``UpstreamConnection`` authenticates once (HELLO or AUTH sent first and alone, then SELECT), then carries
pipelined commands from many clients: each command's ``Sink`` waits in a FIFO and receives its reply's exact bytes.
Writes are coalesced into one ``transport.write`` per event-loop turn.

Pools are keyed by ``PoolKey`` (credential, db, protocol): a RESP3 client's reply bytes can only come from a RESP3
connection, a db-3 command only from a connection that selected db 3, and an ACL user's command only from a
connection authenticated as that user. ``SharedPool`` multiplexes; ``LeasePool`` lends a connection to one client for
a transaction, a blocking call, or a whole session.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol

import hiredis

from .wire import resp
from .config import UpstreamConfig

log = logging.getLogger("sidecar.upstream")


@dataclass(frozen=True)
class Credential:
    """Who a connection authenticates as upstream. The password never appears in repr or logs."""

    username: str | None
    password: str | None = field(repr=False, default=None)

    @property
    def user(self) -> str:
        return self.username or "default"


@dataclass(frozen=True)
class PoolKey:
    cred: Credential
    db: int
    proto: int


class Sink(Protocol):
    """Receives the bytes of exactly one reply (or a Redis-style error made by the sidecar)."""

    blocking: bool

    def deliver(self, frame: bytes) -> None: ...


class UpstreamError(Exception):
    """The upstream cannot serve a command now; ``str()`` is the ``-ERR`` text the client sees."""


@dataclass
class ServerInfo:
    """What the upstream said about itself in its HELLO reply; the sidecar's local HELLO answers with it."""

    server: str = "redis"
    version: str = "7.0.0"
    mode: str = "standalone"
    role: str = "master"
    modules: list = field(default_factory=list)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_hello(frame: bytes) -> ServerInfo:
    reader = hiredis.Reader()
    reader.feed(frame)
    value = reader.gets()
    if isinstance(value, list):  # RESP2 flat array
        value = dict(zip(value[::2], value[1::2]))
    info = {_text(k): v for k, v in value.items()}
    # a module is a map in RESP3 and a flat array in RESP2: keep maps, so either protocol can be answered
    modules = [m if isinstance(m, dict) else dict(zip(m[::2], m[1::2])) for m in info.get("modules") or []]
    return ServerInfo(server=_text(info.get("server", "redis")), version=_text(info.get("version", "7.0.0")),
                      mode=_text(info.get("mode", "standalone")), role=_text(info.get("role", "master")),
                      modules=modules)


class Waiter:
    """A sink the sidecar itself waits on (handshake replies, credential checks)."""

    blocking = False

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[bytes] = loop.create_future()

    def deliver(self, frame: bytes) -> None:
        if not self.future.done():
            self.future.set_result(frame)


CONNECTING, READY, CLOSED = "connecting", "ready", "closed"
VERIFY_CONCURRENCY = 8  # passthrough credential checks running at once


class UpstreamConnection(asyncio.Protocol):
    """One authenticated upstream socket carrying many clients' pipelined commands, replies routed by order."""

    def __init__(self, manager: "UpstreamManager", key: PoolKey, purpose: str) -> None:
        self.manager = manager
        self.key = key
        self.purpose = purpose  # "shared", "lease", "pubsub", "verify"
        self.loop = manager.loop
        self.state = CONNECTING
        self.pending: deque[Sink] = deque()
        self.queued: list[tuple[bytes, Sink]] = []
        self.wbuf: list[bytes] = []
        self.flush_scheduled = False
        self.transport: asyncio.Transport | None = None
        self.framer = resp.ReplyFramer()
        self.last_activity = time.monotonic()
        self.push_handler: Callable[[bytes], None] | None = None  # frames that answer no command (pub/sub)
        self.on_state: Callable[["UpstreamConnection"], None] | None = None
        self.close_reason = ""
        self.ready = self.loop.create_future()
        self.ready.add_done_callback(lambda f: f.exception())  # a failure is reported to sinks, never unhandled

    # -- state ------------------------------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.state != CLOSED

    @property
    def load(self) -> int:
        return len(self.pending) + len(self.queued)

    def __repr__(self) -> str:
        return f"<UpstreamConnection {self.purpose} db={self.key.db} resp{self.key.proto} {self.state}>"

    # -- sending ----------------------------------------------------------------------------------------------------
    def send(self, raw: bytes, sink: Sink | None) -> None:
        """Queue one command; its reply goes to ``sink`` (None: the reply is a push or is handled by push_handler)."""
        if self.state == READY:
            if sink is not None:
                if not self.pending:
                    self.last_activity = time.monotonic()
                self.pending.append(sink)
            self.wbuf.append(raw)
            if not self.flush_scheduled:
                self.flush_scheduled = True
                self.loop.call_soon(self._flush)
        elif self.state == CONNECTING:
            self.queued.append((raw, sink))
        elif sink is not None:
            sink.deliver(resp.error(f"ERR upstream connection closed: {self.close_reason}"))

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.wbuf and self.transport is not None and self.state == READY:
            data = b"".join(self.wbuf) if len(self.wbuf) > 1 else self.wbuf[0]
            self.wbuf.clear()
            self.transport.write(data)

    # -- opening ----------------------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, authenticate (HELLO/AUTH first and alone), select the db, then release queued commands."""
        cfg = self.manager.cfg
        try:
            await asyncio.wait_for(self._connect_and_handshake(cfg), cfg.connect_timeout)
        except asyncio.TimeoutError:
            self._fail(f"no answer from upstream {self.manager.address} within upstream.connect_timeout "
                       f"({cfg.connect_timeout:g}s)", network=True)
        except UpstreamError as exc:
            self._fail(str(exc), network=False)
        except (OSError, ssl.SSLError) as exc:
            self._fail(f"cannot connect to upstream {self.manager.address}: {exc.strerror or exc}", network=True)
        except asyncio.CancelledError:
            self._fail("sidecar shutting down", network=False)
            raise
        except Exception as exc:  # a bug must cost these commands an error, never a stalled client
            log.exception("unexpected error opening an upstream connection")
            self._fail(f"ERR sidecar internal error opening an upstream connection: {exc!r}", network=False)
        else:
            if self.state == CLOSED:  # closed while connecting (its lease came back first): nobody tracks it now
                if self.transport is not None:
                    self.transport.abort()
                return
            self.state = READY
            self.manager.connected(self)
            queued, self.queued = self.queued, []
            for raw, sink in queued:
                self.send(raw, sink)
            if not self.ready.done():
                self.ready.set_result(None)
            if self.on_state:
                self.on_state(self)

    async def _connect_and_handshake(self, cfg: UpstreamConfig) -> None:
        factory = lambda: self  # noqa: E731
        if cfg.unix_socket:
            await self.loop.create_unix_connection(factory, cfg.unix_socket, ssl=self.manager.ssl_context,
                                                   server_hostname=self.manager.server_hostname)
        else:
            await self.loop.create_connection(factory, cfg.host, cfg.port, ssl=self.manager.ssl_context,
                                              server_hostname=self.manager.server_hostname)
        cred, proto = self.key.cred, self.key.proto
        hello = [b"HELLO", str(proto).encode()]
        if cred.password is not None:  # (surrogateescape: a client's non-UTF-8 password goes as its own bytes)
            hello += [b"AUTH", cred.user.encode(errors="surrogateescape"),
                      cred.password.encode(errors="surrogateescape")]
        reply = await self._request(hello)  # alone: nothing else is in flight (Redis >= 7.2 drops a failing AUTH's
        if reply.startswith(b"-"):           # reply when earlier replies are pending)
            if b"unknown command" not in reply or proto == 3:
                raise UpstreamError(_auth_failure(reply, cred))
            if cred.password is not None:  # a server older than Redis 6: no HELLO, plain AUTH
                pw = cred.password.encode(errors="surrogateescape")
                args = [b"AUTH", pw] if cred.username is None else \
                    [b"AUTH", cred.username.encode(errors="surrogateescape"), pw]
                reply = await self._request(args)
                if reply.startswith(b"-"):
                    raise UpstreamError(_auth_failure(reply, cred))
        else:
            self.manager.server_info = parse_hello(reply)
        naming = self._request_nowait([b"CLIENT", b"SETNAME", b"redis-sidecar"])  # for the upstream's CLIENT LIST
        select = self._request_nowait([b"SELECT", str(self.key.db).encode()]) if self.key.db else None
        await naming  # best effort: an ACL user may not be allowed to name its connection
        if select is not None:
            reply = await select
            if reply.startswith(b"-"):
                raise UpstreamError(f"ERR upstream refused SELECT {self.key.db}: {reply[1:].strip().decode()}")

    def _request_nowait(self, args: list[bytes]) -> "asyncio.Future[bytes]":
        waiter = Waiter(self.loop)
        self.pending.append(waiter)
        assert self.transport is not None
        self.transport.write(resp.encode_command(args))
        return waiter.future

    async def _request(self, args: list[bytes]) -> bytes:
        return await self._request_nowait(args)

    # -- asyncio.Protocol ---------------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket

            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass  # unix sockets have no TCP_NODELAY

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        framer, pending = self.framer, self.pending
        framer.feed(data)
        try:
            while (frame := framer.next()) is not None:
                if frame[0] == 62 or not pending:  # '>' push, or a frame no command waits for (pub/sub)
                    if self.push_handler is not None:
                        self.push_handler(frame)
                        continue
                    if frame[0] == 62:
                        continue  # a RESP3 push nobody subscribed to (e.g. an invalidation): dropped
                    self.close(f"unexpected reply from upstream with no command waiting: {frame[:40]!r}")
                    return
                pending.popleft().deliver(frame)
        except (ValueError, resp.ProtocolError) as exc:
            self.close(f"invalid reply from upstream: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state != CLOSED:
            reason = f"{exc}" if exc else "closed by the upstream server"
            self._fail(f"upstream connection lost ({reason})", network=True)

    # -- closing ------------------------------------------------------------------------------------------------------
    def _fail(self, reason: str, network: bool) -> None:
        """Every command in flight or queued gets an error naming the cause; nothing is replayed."""
        if self.state == CLOSED:
            return
        was_ready = self.state == READY
        self.state = CLOSED
        self.close_reason = reason
        if self.transport is not None:
            self.transport.abort()
        error = resp.error(f"ERR {reason}" if not reason.startswith(("ERR", "WRONGPASS", "NOAUTH", "NOPERM"))
                           else reason)
        sinks = [s for s in self.pending if not isinstance(s, Waiter)] + [s for _, s in self.queued if s]
        waiters = [s for s in self.pending if isinstance(s, Waiter)]
        self.pending.clear()
        self.queued.clear()
        for waiter in waiters:
            if not waiter.future.done():
                waiter.future.set_exception(UpstreamError(reason))
        if not self.ready.done():
            self.ready.set_exception(UpstreamError(reason))
        for sink in sinks:
            sink.deliver(error)
        self.manager.closed(self, reason, network=network, was_ready=was_ready)
        if self.on_state:
            self.on_state(self)

    def close(self, reason: str = "closed by the sidecar") -> None:
        self._fail(reason, network=False)


def _auth_failure(reply: bytes, cred: Credential) -> str:
    text = reply[1:].strip().decode(errors="replace")
    code = text.split(" ", 1)[0]
    if code in ("WRONGPASS", "NOAUTH", "NOPERM") or "password" in text.lower():
        return f"ERR upstream rejected the sidecar's credentials for user '{cred.user}': {text}"
    return f"ERR upstream refused the handshake: {text}"


class SharedPool:
    """Up to ``size`` connections for one key; a client's commands stay on one of them while any are in flight."""

    def __init__(self, manager: "UpstreamManager", key: PoolKey) -> None:
        self.manager = manager
        self.key = key
        self.conns: list[UpstreamConnection] = []

    def pick(self) -> UpstreamConnection:
        """The least-loaded live connection, opening another while the pool is below size and all are busy."""
        best: UpstreamConnection | None = None
        for conn in self.conns:
            if best is None or conn.load < best.load:
                best = conn
        if best is None or (best.load and len(self.conns) < self.manager.pool_cfg.size):
            self.manager.check_available()
            best = self.manager.open(self.key, "shared")
            self.conns.append(best)
        return best

    def remove(self, conn: UpstreamConnection) -> None:
        if conn in self.conns:
            self.conns.remove(conn)


class LeaseExhausted(UpstreamError):
    pass


class UpstreamManager:
    """Owns every upstream connection: shared pools, lease pools, health and reconnect backoff."""

    def __init__(self, cfg: UpstreamConfig, pool_cfg, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.pool_cfg = pool_cfg
        self.loop = loop
        self.address = cfg.unix_socket or f"{cfg.host}:{cfg.port}"
        self.ssl_context = make_ssl_context(cfg) if cfg.tls.enabled else None
        self.server_hostname = (cfg.tls.server_name or cfg.host) if self.ssl_context else None
        self.credential = Credential(cfg.username, cfg.password)
        self.server_info = ServerInfo()
        self.shared: dict[PoolKey, SharedPool] = {}
        self.idle: dict[PoolKey, list[UpstreamConnection]] = {}
        self.leased: set[UpstreamConnection] = set()
        self.lease_waiters: deque[asyncio.Future] = deque()
        self.all: set[UpstreamConnection] = set()
        self.failures = 0
        self.down_until = 0.0
        self.last_error = ""
        self.stats = {"connects": 0, "connect_failures": 0, "disconnects": 0, "lease_timeouts": 0}
        self._watchdog: asyncio.Task | None = None
        self._verifying = asyncio.Semaphore(VERIFY_CONCURRENCY)

    # -- health -----------------------------------------------------------------------------------------------------
    def check_available(self) -> None:
        """Fail fast while the upstream is known to be down (inside the reconnect backoff window)."""
        if self.down_until and time.monotonic() < self.down_until:
            raise UpstreamError(f"ERR upstream unavailable: {self.last_error}")

    @property
    def healthy(self) -> bool:
        return any(c.state == READY for c in self.all)

    def connected(self, conn: UpstreamConnection) -> None:
        self.failures = 0
        self.down_until = 0.0
        self.stats["connects"] += 1

    def closed(self, conn: UpstreamConnection, reason: str, network: bool, was_ready: bool) -> None:
        self.all.discard(conn)
        pool = self.shared.get(conn.key)
        if pool:
            pool.remove(conn)
        idle = self.idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
        if conn in self.leased:
            self.leased.discard(conn)
            self._wake_lease_waiter()
        if was_ready:
            if network:  # a real loss; connections the sidecar closes itself (leases, reload, shutdown) are not
                self.stats["disconnects"] += 1
                log.warning("upstream connection lost: %s (%s, db %d, RESP%d)", reason, conn.purpose, conn.key.db,
                            conn.key.proto)
        else:
            self.stats["connect_failures"] += 1
            now = time.monotonic()
            if network and now >= self.down_until:  # many attempts failing together are one failure, not many
                self.failures += 1
                backoff = min(self.pool_cfg.reconnect_backoff_max, 0.05 * 2 ** self.failures)
                self.down_until = now + backoff
            self.last_error = reason
            # not a lease the sidecar closed early, nor a client's wrong password being checked (counted elsewhere)
            if network or (reason.startswith("ERR upstream") and conn.purpose != "verify"):
                log.warning("upstream connect failed: %s", reason)

    # -- opening ------------------------------------------------------------------------------------------------------
    def open(self, key: PoolKey, purpose: str) -> UpstreamConnection:
        conn = UpstreamConnection(self, key, purpose)
        self.all.add(conn)
        self.loop.create_task(conn.open())
        return conn

    def shared_for(self, key: PoolKey) -> UpstreamConnection:
        pool = self.shared.get(key)
        if pool is None:
            pool = self.shared[key] = SharedPool(self, key)
        return pool.pick()

    # -- leases -------------------------------------------------------------------------------------------------------
    def try_lease(self, key: PoolKey) -> UpstreamConnection | None:
        """A pre-authenticated idle connection, or a new one while under ``pool.lease_max``; None when exhausted."""
        idle = self.idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.alive:
                self.leased.add(conn)
                return conn
        if len(self.leased) >= self.pool_cfg.lease_max:
            return None
        self.check_available()
        conn = self.open(key, "lease")
        self.leased.add(conn)
        return conn

    async def lease(self, key: PoolKey) -> UpstreamConnection:
        """Wait (FIFO, up to ``pool.lease_wait``) for a lease; then a clear error."""
        deadline = time.monotonic() + self.pool_cfg.lease_wait
        while True:
            conn = self.try_lease(key)
            if conn is not None:
                return conn
            waiter = self.loop.create_future()
            self.lease_waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                self.stats["lease_timeouts"] += 1
                raise LeaseExhausted(
                    f"ERR no upstream connection free for this command: all {self.pool_cfg.lease_max} leased "
                    f"connections are in use (pool.lease_max) and none came free within pool.lease_wait "
                    f"({self.pool_cfg.lease_wait:g}s)") from None
            finally:
                if waiter in self.lease_waiters:
                    self.lease_waiters.remove(waiter)

    def release(self, conn: UpstreamConnection, reusable: bool) -> None:
        """Return a lease. A connection that may hold client state (or a command in flight) is closed, not reused."""
        self.leased.discard(conn)
        if reusable and conn.state == READY and not conn.pending:
            idle = self.idle.setdefault(conn.key, [])
            if len(idle) < self.pool_cfg.lease_idle:
                idle.append(conn)
                conn.push_handler = None
                self._wake_lease_waiter()
                return
        conn.close("lease returned")
        self._wake_lease_waiter()

    def _wake_lease_waiter(self) -> None:
        while self.lease_waiters:
            waiter = self.lease_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def prewarm(self, key: PoolKey) -> None:
        """Open one shared connection (and one idle lease) at start so the first clients find them authenticated.

        The lease counts against ``pool.lease_max`` while it opens, as any lease does: clients that arrive first
        open their own, and the bound must still hold once this one turns idle. (A failed open is already
        uncounted by ``closed``.)"""
        self.shared_for(key)
        conn = self.open(key, "lease")
        self.leased.add(conn)
        conn.ready.add_done_callback(
            lambda f: self.release(conn, reusable=True) if not f.cancelled() and not f.exception() else None)

    # -- reply timeouts -------------------------------------------------------------------------------------------------
    def start_watchdog(self) -> None:
        self._watchdog = self.loop.create_task(self._watch())

    async def _watch(self) -> None:
        """Close connections whose oldest command has had no reply for ``upstream.reply_timeout``."""
        while True:
            timeout = self.cfg.reply_timeout  # read each round: a reload may change it
            await asyncio.sleep(min(0.25, timeout / 4))
            now = time.monotonic()
            for conn in list(self.all):
                if conn.state == READY and conn.pending and not conn.pending[0].blocking \
                        and now - conn.last_activity > timeout:
                    conn.close(f"no reply from upstream within upstream.reply_timeout ({timeout:g}s)")

    async def verify(self, cred: Credential) -> str | None:
        """Check a client's credential against the upstream once, on a connection of its own; None if accepted.

        At most VERIFY_CONCURRENCY checks run at once, so a flood of wrong passwords from many connections costs
        the upstream a bounded number of connections, not one per attempt.
        """
        async with self._verifying:
            conn = UpstreamConnection(self, PoolKey(cred, 0, 2), "verify")
            self.all.add(conn)
            await conn.open()
        if conn.state != READY:
            reason = conn.close_reason
            if "rejected the sidecar's credentials" in reason:
                return "WRONGPASS invalid username-password pair or user is disabled."
            return reason if reason.startswith("ERR") else f"ERR {reason}"
        conn.close("credential verified")
        return None

    async def close_all(self) -> None:
        if self._watchdog:
            self._watchdog.cancel()
        for conn in list(self.all):
            conn.close("sidecar shutting down")

    def snapshot(self) -> dict:
        """Counts for INFO, metrics and admin."""
        states: dict[str, int] = {}
        for conn in self.all:
            label = f"{conn.purpose}_{conn.state}"
            states[label] = states.get(label, 0) + 1
        return {"connections": len(self.all), "by_state": states, "leased": len(self.leased),
                "lease_waiters": len(self.lease_waiters), "idle_leases": sum(map(len, self.idle.values())),
                "shared_pools": len(self.shared), **self.stats}


def make_ssl_context(cfg: UpstreamConfig) -> ssl.SSLContext:
    tls = cfg.tls
    ctx = ssl.create_default_context(cafile=tls.ca_file) if tls.verify else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    return ctx
