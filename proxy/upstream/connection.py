"""One upstream socket: its handshake, its explicit state, and the FIFO that routes each reply to its command.

An ``UpstreamConnection`` authenticates once (HELLO or AUTH sent first and alone, because Redis >= 7.2 drops the reply
of a failing AUTH when earlier replies are pending), selects its db, names itself, and learns its own upstream client
id (for CLIENT UNBLOCK and tracking redirects). Then it carries commands: each command's ``Sink`` waits in
``pending`` and receives its reply's exact bytes; frames no command waits for (RESP3 pushes, pub/sub messages) go to
``push_handler``. Writes are coalesced into one ``transport.write`` per event-loop turn.

The connection's ``state`` is set only by its ``Owner`` (the manager), which keeps one list per state.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from ..wire import resp
from .credentials import PoolKey, ServerInfo, parse_hello

log = logging.getLogger("sidecar.upstream")


class ConnState(enum.Enum):
    """Where a connection is (PgBouncer's sv_login, sv_idle, sv_active ...): exactly one at a time."""

    CONNECTING = "connecting"  # TCP and handshake under way; commands queue
    SHARED = "shared"          # in a shared pool, pipelining many clients' commands
    IDLE = "idle"              # authenticated and parked for the next lease
    LEASED = "leased"          # lent to one client (transaction, blocking call, session)
    SUBSCRIBER = "subscriber"  # the pub/sub hub's connection
    CONTROL = "control"        # the sidecar's own work: credential checks, probes, out-of-band commands
    CLOSED = "closed"

    __hash__ = object.__hash__  # (singletons: identity hashing, in C: states key the manager's sets)


class Role(enum.Enum):
    """What a connection was opened for; its owner decides from it the state it enters once ready."""

    SHARED = "shared"
    LEASE = "lease"
    SUBSCRIBER = "subscriber"
    CONTROL = "control"


class Cause(enum.Enum):
    """Why a connection closed: only LOST and REFUSED are upstream failures (metrics, backoff, cache invalidation)."""

    SIDECAR = "closed by the sidecar"  # given back, retired, shutting down, a reply out of step
    LOST = "lost"                      # the network or the server dropped it, or it never connected
    REFUSED = "refused"                # the server refused the handshake (credentials, SELECT)


@dataclass(frozen=True, slots=True)
class Target:
    """Where connections go: a TCP address or a unix socket path, with TLS settings."""

    host: str
    port: int
    path: str | None = None
    ssl: ssl.SSLContext | None = None
    server_hostname: str | None = None


class Sink(Protocol):
    """Receives the bytes of exactly one reply (or a Redis-style error made by the sidecar)."""

    blocking: bool  # a reply may legitimately take long (BLPOP 0): the reply watchdog leaves it alone

    def deliver(self, frame: bytes) -> None: ...


class UpstreamError(Exception):
    """The upstream cannot serve a command now; ``str()`` is the error text the client sees (with its code)."""


class Owner(Protocol):
    """What a connection needs from whoever owns it (the manager): its settings and its state changes."""

    loop: asyncio.AbstractEventLoop
    address: str

    target: Target
    def connect_timeout(self) -> float: ...
    def change_state(self, conn: UpstreamConnection, state: ConnState, cause: Cause | None = None) -> None: ...
    def opened(self, conn: UpstreamConnection) -> None: ...
    def release(self, conn: UpstreamConnection, reusable: bool) -> None: ...
    def learned(self, info: ServerInfo) -> None: ...
    def sidecar_login(self) -> list[bytes] | None: ...


class Waiter:
    """A sink the sidecar itself awaits (handshake replies, probes, credential checks)."""

    __slots__ = ("future",)
    blocking = False

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[bytes] = loop.create_future()

    def deliver(self, frame: bytes) -> None:
        if not self.future.done():
            self.future.set_result(frame)


class Discard:
    """A sink for a reply nobody needs (a state change forwarded to a lease alongside the client's own)."""

    __slots__ = ()
    blocking = False

    def deliver(self, frame: bytes) -> None:
        pass


DISCARD = Discard()
_ERROR_CODES = ("ERR", "WRONGPASS", "NOAUTH", "NOPERM", "BUSY", "LOADING", "NOPROTO")

# RESP2 frames a subscribed connection receives without asking: messages and (un)subscribe confirmations.
_RESP2_PUSHES = (b"*3\r\n$7\r\nmessage\r\n", b"*4\r\n$8\r\npmessage\r\n", b"*3\r\n$8\r\nsmessage\r\n",
                 b"*3\r\n$9\r\nsubscribe\r\n", b"*3\r\n$10\r\npsubscribe\r\n", b"*3\r\n$10\r\nssubscribe\r\n",
                 b"*3\r\n$11\r\nunsubscribe\r\n", b"*3\r\n$12\r\npunsubscribe\r\n", b"*3\r\n$12\r\nsunsubscribe\r\n")


class UpstreamConnection(asyncio.Protocol):
    """One upstream socket carrying pipelined commands, replies routed by order."""

    __slots__ = ("owner", "key", "role", "state", "pending", "queued", "wbuf", "flush_scheduled", "transport",
                 "framer", "last_activity", "push_handler", "on_close", "close_reason", "ready", "upstream_id",
                 "subscribed", "slow", "dirty", "sent", "replied", "flushes", "cause", "__weakref__")

    def __init__(self, owner: Owner, key: PoolKey, role: Role) -> None:
        self.owner = owner
        self.key = key
        self.role = role
        self.state = ConnState.CONNECTING
        self.pending: deque[Sink] = deque()
        self.queued: list[tuple[bytes, Sink | None]] = []
        self.wbuf: list[bytes] = []
        self.flush_scheduled = False
        self.transport: asyncio.Transport | None = None
        self.framer = resp.ReplyFramer()
        self.last_activity = time.monotonic()
        self.push_handler: Callable[[bytes], None] | None = None
        self.on_close: Callable[[UpstreamConnection], None] | None = None
        self.close_reason = ""
        self.cause: Cause | None = None
        self.ready: asyncio.Future[None] = owner.loop.create_future()
        self.ready.add_done_callback(_consume)  # a failure is reported to sinks, never as an unhandled exception
        self.upstream_id = 0      # the server's CLIENT ID for this connection (0: unknown)
        self.subscribed = False   # RESP2 pub/sub frames arrive without a command waiting for them
        self.slow = False         # its oldest command is overdue while the server answers others: avoid it
        self.dirty = False        # a client changed its db, protocol or user: never lend it again
        # reply deadlines without a timestamp per command: (commands sent so far, when) at each flush; the oldest
        # pending command is number ``replied``, sent at the first flush that counted past it
        self.sent = 0
        self.replied = 0
        self.flushes: deque[tuple[int, float]] = deque()

    @property
    def alive(self) -> bool:
        return self.state is not ConnState.CLOSED

    @property
    def load(self) -> int:
        return len(self.pending) + len(self.queued)

    def __repr__(self) -> str:
        return f"<UpstreamConnection {self.state.value} user={self.key.login.user} db={self.key.db} " \
               f"resp{self.key.proto}>"

    # -- sending ------------------------------------------------------------------------------------------------------
    def send(self, raw: bytes, sink: Sink | None) -> None:
        """Queue one command; its reply goes to ``sink`` (None: no reply is routed, e.g. SUBSCRIBE on the hub)."""
        state = self.state
        if state is ConnState.CLOSED:
            if sink is not None:
                sink.deliver(self.error_frame())
            return
        if state is ConnState.CONNECTING:
            self.queued.append((raw, sink))
            return
        if sink is not None:
            if not self.pending:
                self.last_activity = time.monotonic()
            self.pending.append(sink)
        self.wbuf.append(raw)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.owner.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        wbuf = self.wbuf
        if wbuf and self.transport is not None and self.state is not ConnState.CLOSED:
            self.transport.write(wbuf[0] if len(wbuf) == 1 else b"".join(wbuf))
            sent = self.replied + len(self.pending)
            if sent != self.sent:
                self.sent = sent
                self.flushes.append((sent, time.monotonic()))
        wbuf.clear()

    def waited(self, now: float) -> float:
        """How long the oldest command still waiting for its reply has waited (blocking calls: 0)."""
        flushes, index = self.flushes, self.replied
        while flushes and flushes[0][0] <= index:
            flushes.popleft()
        for sink in self.pending:
            if sink is not DISCARD:
                return 0.0 if sink.blocking or not flushes else now - flushes[0][1]
            index += 1
            if flushes and flushes[0][0] <= index:
                flushes.popleft()
        return 0.0

    def abandon_overdue(self, timeout: float, now: float, error: bytes) -> int:
        """Answer every command that has waited longer than ``timeout`` with ``error`` now (blocking calls never);
        their replies, when they come, are dropped. The connection stays: the commands behind them are younger and
        keep their own deadlines. Returns how many were newly abandoned."""
        flushes, pending, index = self.flushes, self.pending, self.replied
        abandoned: list[Sink] = []
        while flushes and flushes[0][0] <= index:
            flushes.popleft()
        for i in range(len(pending)):
            sink = pending[i]
            if sink.blocking or not flushes or now - flushes[0][1] <= timeout:
                break
            if sink is not DISCARD:
                pending[i] = DISCARD
                abandoned.append(sink)
            index += 1
            if flushes[0][0] <= index:
                flushes.popleft()
        if abandoned:
            self.slow = True
        for sink in abandoned:  # (after the loop: a client may send more, or the connection may close, meanwhile)
            if isinstance(sink, Waiter):
                if not sink.future.done():
                    sink.future.set_exception(UpstreamError(error[1:-2].decode(errors="replace")))
            else:
                sink.deliver(error)
        return len(abandoned)

    def error_frame(self) -> bytes:
        reason = self.close_reason or "upstream connection closed"
        return resp.error(reason if reason.startswith(_ERROR_CODES) else f"ERR {reason}")

    # -- opening ------------------------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and log in, then release the commands queued meanwhile. Failures close the connection."""
        owner = self.owner
        try:
            await asyncio.wait_for(self._connect_and_handshake(), owner.connect_timeout())
        except asyncio.TimeoutError:
            self.fail(f"no answer from upstream {owner.address} within upstream.connect_timeout "
                      f"({owner.connect_timeout():g}s)", Cause.LOST)
        except UpstreamError as exc:
            self.fail(str(exc), Cause.REFUSED)
        except (OSError, ssl.SSLError) as exc:
            self.fail(f"cannot connect to upstream {owner.address}: {exc.strerror or exc}", Cause.LOST)
        except asyncio.CancelledError:
            self.fail("sidecar shutting down")
            raise
        except Exception as exc:  # a bug must cost these commands an error, never a stalled client
            log.exception("unexpected error opening an upstream connection")
            self.fail(f"sidecar internal error opening an upstream connection: {exc!r}")
        else:
            if self.state is ConnState.CLOSED:  # given back while it was connecting
                if self.transport is not None:
                    self.transport.abort()
                return
            owner.opened(self)
            queued, self.queued = self.queued, []
            for raw, sink in queued:
                self.send(raw, sink)
            if not self.ready.done():
                self.ready.set_result(None)

    async def _connect_and_handshake(self) -> None:
        target = self.owner.target
        loop = self.owner.loop
        if target.path:
            await loop.create_unix_connection(lambda: self, target.path, ssl=target.ssl,
                                              server_hostname=target.server_hostname)
        else:
            await loop.create_connection(lambda: self, target.host, target.port, ssl=target.ssl,
                                         server_hostname=target.server_hostname)
        if self.role is Role.CONTROL and self.key.proto == 0:
            return  # a bare connection: the caller sends its own AUTH commands (credential checks)
        login, proto = self.key.login, self.key.proto
        hello = [b"HELLO", b"%d" % proto]
        if login.password is not None:
            hello += [b"AUTH", *login.auth_args()]
        reply = await self.request(hello)  # alone: nothing else may be pending while an AUTH can fail
        if reply.startswith(b"-"):
            if b"unknown command" not in reply or proto == 3:
                raise UpstreamError(_auth_failure(reply, login.user))
            self.owner.learned(ServerInfo(hello=False))
            if login.password is not None:  # a server older than Redis 6: no HELLO, plain AUTH
                reply = await self.request([b"AUTH", *login.auth_args()])
                if reply.startswith(b"-"):
                    raise UpstreamError(_auth_failure(reply, login.user))
        else:
            self.owner.learned(parse_hello(reply))
        if self.key.db:
            await self._select()
        naming = self._request_nowait([b"CLIENT", b"SETNAME", b"redis-sidecar"])  # for the upstream's CLIENT LIST
        ident = self._request_nowait([b"CLIENT", b"ID"])
        await naming  # best effort: an ACL user may not be allowed to name itself
        reply = await ident
        if reply.startswith(b":"):
            self.upstream_id = int(reply[1:-2])

    async def _select(self) -> None:
        """SELECT the key's db; a user without +select gets there as the client did: the sidecar's login selects,
        then the user authenticates (AUTH keeps the db)."""
        db = b"%d" % self.key.db
        reply = await self.request([b"SELECT", db])
        login = self.owner.sidecar_login()
        if reply.startswith(b"-NOPERM") and login is not None and login != self.key.login.auth_args() \
                and not (await self.request([b"AUTH", *login])).startswith(b"-"):
            reply = await self.request([b"SELECT", db])
            if not reply.startswith(b"-"):
                again = await self.request([b"AUTH", *self.key.login.auth_args()])
                if again.startswith(b"-"):
                    raise UpstreamError(_auth_failure(again, self.key.login.user))
        if reply.startswith(b"-"):
            raise UpstreamError(f"ERR upstream refused SELECT {self.key.db}: {reply[1:].strip().decode()}")

    def _request_nowait(self, args: list[bytes]) -> asyncio.Future[bytes]:
        waiter = Waiter(self.owner.loop)
        self.pending.append(waiter)
        assert self.transport is not None
        self.transport.write(resp.encode_command(args))
        return waiter.future

    def request(self, args: list[bytes]) -> asyncio.Future[bytes]:
        """Send one command of the sidecar's own and await its reply (usable during the handshake too)."""
        if self.state is ConnState.CONNECTING:
            return self._request_nowait(args)
        waiter = Waiter(self.owner.loop)
        self.send(resp.encode_command(args), waiter)
        return waiter.future

    # -- asyncio.Protocol ---------------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = self.transport = cast(asyncio.Transport, transport)
        if self.state is ConnState.CLOSED:  # failed or given back while the TCP connect was under way
            stream.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # a link that died silently (no RST) is noticed in about 25 s even while commands wait patiently
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for option, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
                if hasattr(socket, option):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        self.slow = False
        framer, pending = self.framer, self.pending
        framer.feed(data)
        try:
            while (frame := framer.next()) is not None:
                if frame[0] == 62 or not pending or (self.subscribed and frame.startswith(_RESP2_PUSHES)):
                    if self.push_handler is not None:
                        self.push_handler(frame)
                    elif frame[0] != 62:  # a reply nobody asked for: the stream is out of step, never guess
                        self.close(f"unexpected reply from upstream with no command waiting: {frame[:40]!r}")
                        return
                    continue  # a RESP3 push nobody subscribed to is dropped
                self.replied += 1
                pending.popleft().deliver(frame)
        except (ValueError, resp.ProtocolError) as exc:
            self.close(f"invalid reply from upstream: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is not ConnState.CLOSED:
            self.fail(f"upstream connection lost ({exc or 'closed by the upstream server'})", Cause.LOST)

    # -- closing ------------------------------------------------------------------------------------------------------
    def fail(self, reason: str, cause: Cause = Cause.SIDECAR) -> None:
        """Every command in flight or queued gets an error naming the cause; nothing is replayed."""
        if self.state is ConnState.CLOSED:
            return
        self.close_reason, self.cause = reason, cause
        self.owner.change_state(self, ConnState.CLOSED, cause)
        if self.transport is not None:
            self.transport.abort()
        error = self.error_frame()
        sinks = list(self.pending) + [s for _, s in self.queued if s is not None]
        self.pending.clear()
        self.queued.clear()
        if not self.ready.done():
            self.ready.set_exception(UpstreamError(error[1:-2].decode(errors="replace")))
        for sink in sinks:
            if isinstance(sink, Waiter):
                if not sink.future.done():
                    sink.future.set_exception(UpstreamError(reason))
            else:
                sink.deliver(error)
        on_close, self.on_close, self.push_handler = self.on_close, None, None  # a closed connection keeps no client
        if on_close is not None:
            on_close(self)

    def close(self, reason: str = "closed by the sidecar") -> None:
        self.fail(reason)


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _auth_failure(reply: bytes, user: str) -> str:
    text = reply[1:].strip().decode(errors="replace")
    code = text.split(" ", 1)[0]
    if code in ("WRONGPASS", "NOAUTH", "NOPERM") or "password" in text.lower():
        return f"ERR upstream rejected the sidecar's credentials for user '{user}': {text}"
    return f"ERR upstream refused the handshake: {text}"
