"""One client connection: its parser, authentication state, db, protocol, and its replies kept in order.

Data flows one way: bytes -> ``RequestParser`` -> ``CommandTable.route`` -> a local answer, a shared upstream
connection, a leased one, or the pub/sub hub -> a ``Slot`` -> the client. Each command gets a slot when it is
dispatched; slots are written to the client strictly in order, whichever connection fills them first.

A client's commands stay on one upstream connection while any of them are in flight, so a pipeline executes
upstream in the order it was sent; between pipelines the client may move to the least-loaded connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from . import local
from .wire import resp
from .auth import Identity
from .commands.table import CONTAINERS, Route
from .upstream import PoolKey, UpstreamConnection, UpstreamError

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("sidecar.session")

# Commands allowed while a RESP2 client is subscribed, as Redis enforces them.
SUBSCRIBED_ALLOWED = frozenset({b"subscribe", b"psubscribe", b"ssubscribe", b"unsubscribe", b"punsubscribe",
                                b"sunsubscribe", b"ping", b"quit", b"reset"})
PREAUTH_ALLOWED = frozenset({b"auth", b"hello", b"quit", b"reset"})
PUBLISH_COMMANDS = frozenset({b"publish", b"spublish"})  # their reply counts subscribers, which the hub changes
TRANSACTION_LOCAL_OK = frozenset({b"ping", b"echo", b"info"})  # local commands queued upstream in MULTI


class Slot:
    """A reply position in the client's output; filled by an upstream connection or by the sidecar."""

    __slots__ = ("session", "data", "blocking", "suppress", "upstream", "transform")

    def __init__(self, session: "Session", blocking: bool = False, upstream: bool = True) -> None:
        self.session = session
        self.data: bytes | None = None
        self.blocking = blocking
        self.suppress = False
        self.upstream = upstream
        self.transform = None

    def deliver(self, frame: bytes) -> None:
        if self.transform is not None:
            frame = self.transform(frame)
        self.data = frame
        self.session.slot_done(self)


class Session(asyncio.Protocol):
    def __init__(self, server: "Server") -> None:
        self.server = server
        self.cfg = server.cfg
        self.table = server.table
        self.manager = server.manager
        self.id = server.next_client_id()
        self.parser = resp.RequestParser(server.request_limits)
        self.transport: asyncio.Transport | None = None
        self.addr = self.laddr = ""
        self.created = self.last_command_at = time.monotonic()
        self.last_command = b"NULL"
        # client-visible state
        self.identity: Identity | None = server.auth.initial()
        self.parser.authenticated = self.identity is not None
        self.proto = 2
        self.db = self.cfg.upstream.db
        self.name: str | None = None
        self.lib_name = self.lib_ver = ""
        self.reply_mode = "on"
        self.skip_next = False
        # routing state
        self.key: PoolKey | None = None
        self.slots: deque[Slot] = deque()
        self.inflight = 0
        self.conn: UpstreamConnection | None = None
        self.lease: UpstreamConnection | None = None
        self.lease_kind: str | None = None  # "blocking", "transaction" or "session"
        self.lease_dirty = False  # a SELECT ran on the lease: close it rather than return it
        self.multi = self.watching = self.multi_aborted = False
        self.subs = None  # pub/sub membership, made by the hub on first subscribe
        # flow control
        self.backlog: deque[tuple[list[bytes], bytes]] = deque()
        self.stalled = False
        self.drain_then_resume = False
        self.reading_paused = self.writing_paused = False
        self.out: list[bytes] = []  # replies ready this loop turn, written together by _flush
        self.out_size = 0
        self.closing = self.closed = False
        self.auth_failures: deque[float] = deque()

    # -- asyncio.Protocol ---------------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.addr = _fmt_addr(transport.get_extra_info("peername"))
        self.laddr = _fmt_addr(transport.get_extra_info("sockname"))
        transport.set_write_buffer_limits(high=256 * 1024)  # type: ignore[attr-defined]
        if not self.server.register(self):
            transport.write(resp.error("ERR max number of clients reached"))
            transport.close()
            self.closed = True
            return
        self._rekey()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        parser = self.parser
        parser.feed(data)
        fast = self._plain()
        plain_shared = self.table.plain_shared
        forwarded = 0
        error = None
        last = None
        while True:
            try:
                command = parser.next()
            except resp.ProtocolError as exc:
                error = exc
                break
            if command is None:
                break
            args, raw = command
            last = args
            if self.stalled:
                self.backlog.append((args, raw))
                continue
            if fast:
                name = args[0].lower()
                if name in plain_shared:  # the common case, without the general dispatch's checks
                    self.forward(raw)
                    forwarded += 1
                    continue
            self.dispatch(args, raw)
            if self.closing:
                return
            fast = self._plain()
        if forwarded:
            stats = self.server.stats
            stats.commands += forwarded
            stats.by_route["shared"] += forwarded
            self.last_command = command_label(last)
            self.last_command_at = time.monotonic()
        if error is not None:
            self.reply(resp.error(f"ERR {error}"))
            self.server.stats.protocol_errors += 1
            log.info("client %s closed: %s", self.addr, error)
            self.close_after_replies()
            return
        if len(self.slots) + len(self.backlog) >= self.cfg.limits.max_pipeline and not self.reading_paused:
            self._pause_reading()

    def _plain(self) -> bool:
        """True while nothing about this client can change how a plain shared command is routed."""
        return (self.identity is not None and self.lease is None and not self.multi and self.subs is None
                and self.reply_mode == "on" and not self.skip_next)

    def eof_received(self) -> bool:
        if self.lease is not None or (self.subs is not None and self.subs.active):
            return False  # a blocked call or a subscription would outlive a half-closed client: close now
        self.close_after_replies()  # a pipeline piped in by `nc` still gets its replies
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = self.closing = True
        self.server.unregister(self)
        if self.lease is not None:
            self._release_lease(force_close=self.inflight > 0 or self.multi or self.watching
                                or self.lease_kind == "session")
        if self.subs is not None:
            self.server.hub.drop(self)

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._maybe_resume_reading()

    # -- dispatch ---------------------------------------------------------------------------------------------------
    def dispatch(self, args: list[bytes], raw: bytes) -> None:
        if self.skip_next:  # CLIENT REPLY SKIP: this command's reply is dropped, whatever answers it (as Redis does)
            self.skip_next = False
            mode, self.reply_mode, parked = self.reply_mode, "skip", len(self.backlog)
            self.dispatch(args, raw)
            if self.reply_mode == "skip":  # (unless the command was CLIENT REPLY itself)
                self.reply_mode = mode
            if len(self.backlog) > parked:  # parked until a lease or a drain: skip its reply when it runs
                self.skip_next = True
            return
        name = args[0].lower()
        self.last_command = command_label(args)
        self.last_command_at = time.monotonic()
        self.server.stats.commands += 1
        if self.identity is None and name not in PREAUTH_ALLOWED:
            self.reply(resp.error("NOAUTH Authentication required."))
            return
        route = self.table.route(args)
        self.server.stats.count_route(route)
        if self.subs is not None and self.proto == 2 and self.subs.active and name not in SUBSCRIBED_ALLOWED:
            self.reply(resp.error(
                f"ERR Can't execute '{name.decode(errors='replace')}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / "
                "PING / QUIT / RESET are allowed in this context"))
            return
        if self.multi and route is not Route.TRANSACTION and name not in (b"quit", b"reset"):
            self._queue_in_multi(name, args, raw, route)
            return
        self._dispatch_route(route, name, args, raw)

    def _dispatch_route(self, route: Route, name: bytes, args: list[bytes], raw: bytes) -> None:
        if route is Route.SHARED:
            if name == b"ping" and self.subs is not None and self.subs.active:
                local.handle(self, name, args)  # a subscribed client's PING is answered in its subscribed form
                return
            slot = self.forward(raw)
            if name in PUBLISH_COMMANDS and slot is not None and len(args) == 3:
                slot.transform = self.server.hub.publish_transform(name, args[1])
        elif route is Route.LOCAL:
            local.handle(self, name, args)
        elif route is Route.TRANSACTION:
            self._transaction(name, args, raw)
        elif route in (Route.BLOCKING, Route.WAIT, Route.CONTROL):  # each on a connection leased for the call
            self._blocking(args, raw)
        elif route is Route.PUBSUB:
            self.server.hub.command(self, name, args)
        elif route is Route.SESSION:
            if self._ensure_lease("session", args, raw):
                self.forward(raw)
        else:
            self.reply(resp.error(self.table.refusal(args)))

    # -- replies ------------------------------------------------------------------------------------------------------
    def reply(self, data: bytes) -> None:
        """A reply made by the sidecar, placed after every reply still pending."""
        suppressed = self.reply_mode != "on"
        if not self.slots:
            if not suppressed:
                self.write(data)
            return
        slot = Slot(self, upstream=False)
        slot.data = data
        slot.suppress = suppressed
        self.slots.append(slot)

    def pending_slot(self) -> Slot:
        """A slot the sidecar fills later itself (an AUTH checked upstream, a subscription confirmed)."""
        slot = Slot(self, upstream=False)
        slot.suppress = self.reply_mode != "on"
        self.slots.append(slot)
        return slot

    def slot_done(self, slot: Slot) -> None:
        if self.closed:
            return
        if slot.upstream:
            self.inflight -= 1
        slots = self.slots
        if slots and slots[0] is slot:
            out = []
            while slots and slots[0].data is not None:
                done = slots.popleft()
                if not done.suppress:
                    out.append(done.data)
            if out:
                self.write(out[0] if len(out) == 1 else b"".join(out))
        if self.inflight == 0:
            if self.lease is not None and not self._lease_pinned():
                self._release_lease(force_close=False)
            if self.drain_then_resume:
                self.drain_then_resume = False
                self.unstall()
        if self.closing and not slots and self.transport is not None and not self.out:
            self.transport.close()
        elif self.reading_paused:
            self._maybe_resume_reading()

    def write(self, data: bytes) -> None:
        """Queue bytes for the client; everything ready in one event-loop turn leaves in one write."""
        if self.closed:
            return
        if not self.out:
            self.server.loop.call_soon(self._flush)
        self.out.append(data)
        self.out_size += len(data)
        if self.out_size > 65536:  # a large turn (a reply burst for a client that may not read): check now
            self._check_output_limit()

    def _flush(self) -> None:
        transport, out = self.transport, self.out
        if transport is None or self.closed or not out:
            out.clear()
            self.out_size = 0
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()
        self.out_size = 0
        if not self._check_output_limit() and self.closing and not self.slots:
            transport.close()

    def _check_output_limit(self) -> bool:
        """Cut off a client whose unsent replies (queued and in the transport) pass its limit; True if it was."""
        transport = self.transport
        if transport is None or self.closed:
            return self.closed
        subscribed = self.subs is not None and self.subs.active
        limit = self.cfg.limits.pubsub_output_buffer if subscribed else self.cfg.limits.client_output_buffer
        if transport.get_write_buffer_size() + self.out_size <= limit:
            return False
        log.warning("client %s closed: output buffer over limits.%s (%d bytes); it is not reading its replies",
                    self.addr, "pubsub_output_buffer" if subscribed else "client_output_buffer", limit)
        self.server.stats.output_overflows += 1
        self.closed = True
        self.out.clear()
        self.out_size = 0
        transport.abort()
        return True

    def write_push(self, frame: bytes) -> None:
        """Out-of-band frames (pub/sub messages, MONITOR lines, invalidations), kept behind pending replies."""
        if self.reply_mode == "off" and frame[:1] != b">":
            return
        if self.slots:
            slot = Slot(self, upstream=False)
            slot.data = frame
            self.slots.append(slot)
        else:
            self.write(frame)

    # -- forwarding ---------------------------------------------------------------------------------------------------
    def _rekey(self) -> None:
        self.key = PoolKey(self.identity.upstream, self.db, self.proto) if self.identity else None

    def target(self) -> UpstreamConnection:
        """The lease if the client holds one; else its current shared connection while commands are in flight."""
        if self.lease is not None:
            return self.lease
        conn = self.conn
        if conn is None or self.inflight == 0 or not conn.alive or conn.key != self.key:
            conn = self.conn = self.manager.shared_for(self.key)  # type: ignore[arg-type]
        return conn

    def forward(self, raw: bytes, blocking: bool = False) -> Slot | None:
        try:
            conn = self.target()
        except UpstreamError as exc:
            self.reply(resp.error(str(exc)))
            return None
        slot = Slot(self, blocking)
        if self.reply_mode != "on":
            slot.suppress = True
        self.slots.append(slot)
        self.inflight += 1
        conn.send(raw, slot)
        return slot

    # -- leases ---------------------------------------------------------------------------------------------------
    def _lease_pinned(self) -> bool:
        return self.lease_kind == "session" or self.multi or self.watching

    def _ensure_lease(self, kind: str, args: list[bytes], raw: bytes) -> bool:
        """Hold a leased connection before ``args`` is sent. False: the command was parked until one is free."""
        if self.lease is not None:
            if kind == "session":
                self._upgrade_to_session()
            return True
        if self.inflight:  # let the shared connection finish this client's earlier commands first (order)
            self._park(args, raw)
            self.drain_then_resume = True
            return False
        try:
            conn = self.manager.try_lease(self.key)  # type: ignore[arg-type]
        except UpstreamError as exc:
            self.reply(resp.error(str(exc)))
            return False
        if conn is not None:
            self._take_lease(conn, kind)
            return True
        self._park(args, raw)
        self.server.loop.create_task(self._wait_for_lease(kind))
        return False

    def _park(self, args: list[bytes], raw: bytes) -> None:
        self.backlog.appendleft((args, raw))
        self.stalled = True

    async def _wait_for_lease(self, kind: str) -> None:
        try:
            conn = await self.manager.lease(self.key)  # type: ignore[arg-type]
        except UpstreamError as exc:
            if self.backlog:
                self.backlog.popleft()
            self.reply(resp.error(str(exc)))
        else:
            if self.closed:
                self.manager.release(conn, reusable=True)
                return
            self._take_lease(conn, kind)
        self.unstall()

    def _take_lease(self, conn: UpstreamConnection, kind: str) -> None:
        self.lease, self.lease_kind = conn, kind
        self.server.stats.leases += 1
        if kind == "session":
            self._upgrade_to_session()

    def _upgrade_to_session(self) -> None:
        self.lease_kind = "session"
        assert self.lease is not None
        self.lease.push_handler = self.write_push

    def _release_lease(self, force_close: bool) -> None:
        conn, self.lease, self.lease_kind = self.lease, None, None
        dirty, self.lease_dirty = self.lease_dirty, False
        if conn is not None:
            self.manager.release(conn, reusable=not (force_close or dirty))

    def unstall(self) -> None:
        self.stalled = False
        while self.backlog and not self.stalled and not self.closing:
            args, raw = self.backlog.popleft()
            self.dispatch(args, raw)
        self._maybe_resume_reading()

    def wait_for_drain(self, args: list[bytes], raw: bytes) -> bool:
        """Park a command until this client has nothing in flight (state changes that must not overtake replies)."""
        if not self.inflight:
            return False
        self._park(args, raw)
        self.drain_then_resume = True
        return True

    # -- transactions and blocking calls -------------------------------------------------------------------------------
    def _transaction(self, name: bytes, args: list[bytes], raw: bytes) -> None:
        if name == b"multi":
            if self.multi:
                self.forward(raw)  # the upstream answers "MULTI calls can not be nested"
            elif self._ensure_lease("transaction", args, raw):
                self.multi, self.multi_aborted = True, False
                self.forward(raw)
        elif name == b"watch":
            if self.multi:
                self.forward(raw)  # "WATCH inside MULTI is not allowed"
            elif self._ensure_lease("transaction", args, raw):
                self.watching = True
                self.forward(raw)
        elif name == b"unwatch":
            if self.lease is not None:
                self.watching = False
                self.forward(raw)
            else:
                self.reply(resp.OK)  # shared connections never hold a WATCH
        elif name in (b"exec", b"discard"):
            if not self.multi:
                self.reply(resp.error(f"ERR {name.decode().upper()} without MULTI"))
                return
            aborted = self.multi_aborted
            self.multi = self.watching = self.multi_aborted = False
            if name == b"exec" and aborted:
                slot = self.forward(resp.encode_command([b"DISCARD"]))
                if slot is not None:
                    slot.transform = lambda _frame: resp.error(
                        "EXECABORT Transaction discarded because of previous errors.")
            else:
                self.forward(raw)

    def _queue_in_multi(self, name: bytes, args: list[bytes], raw: bytes, route: Route) -> None:
        """Inside MULTI every command goes to the transaction's connection, where the upstream queues it."""
        if route in (Route.SHARED, Route.BLOCKING, Route.WAIT, Route.CONTROL) or name in TRANSACTION_LOCAL_OK:
            self.forward(raw)
            return
        # Not queueable through a proxy (AUTH, SELECT, HELLO, CLIENT ..., subscriptions, refused commands): an error
        # now and EXECABORT at EXEC, exactly as Redis treats a command rejected at queue time.
        self.multi_aborted = True
        if route is Route.REFUSED:
            self.reply(resp.error(self.table.refusal(args)))
        else:
            shown = name.decode(errors="replace").upper()
            self.reply(resp.error(f"ERR '{shown}' inside MULTI is not supported by the sidecar"))

    def _blocking(self, args: list[bytes], raw: bytes) -> None:
        if self.lease is not None:
            self.forward(raw, blocking=True)
        elif self._ensure_lease("blocking", args, raw):
            self.forward(raw, blocking=True)

    # -- state changes used by local commands -------------------------------------------------------------------------
    def set_identity(self, identity: Identity) -> None:
        if self.lease is not None and self.lease.key.cred != identity.upstream:
            # the lease runs as the previous user: a different user cannot inherit its WATCH or session state
            self._release_lease(force_close=True)
            self.multi = self.watching = self.multi_aborted = False
        self.identity = identity
        self.parser.authenticated = True
        self._rekey()

    def set_db(self, db: int) -> None:
        self.db = db
        self._rekey()

    def set_proto(self, proto: int) -> None:
        self.proto = proto
        self._rekey()

    def reset(self) -> None:
        """RESET: leave every mode, forget name and db, de-authenticate if the sidecar requires auth."""
        if self.lease is not None:
            self._release_lease(force_close=self.multi or self.watching or self.lease_kind == "session")
        self.multi = self.watching = self.multi_aborted = False
        if self.subs is not None:
            self.server.hub.drop(self)
        self.identity = self.server.auth.initial()
        self.parser.authenticated = self.identity is not None
        self.proto, self.db, self.name = 2, self.cfg.upstream.db, None
        # a RESET whose own reply is being skipped (CLIENT REPLY SKIP) stays skipped, as in Redis
        self.reply_mode, self.skip_next = ("skip" if self.reply_mode == "skip" else "on"), False
        self._rekey()

    def note_auth_failure(self) -> bool:
        """Count a failed AUTH; True when this connection exceeded limits.auth_failures_per_minute."""
        now = time.monotonic()
        window = self.auth_failures
        window.append(now)
        while window and now - window[0] > 60:
            window.popleft()
        self.server.stats.auth_failures += 1
        return len(window) > self.cfg.limits.auth_failures_per_minute

    # -- flow control and closing -------------------------------------------------------------------------------------
    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if (self.reading_paused and not self.writing_paused and not self.closing and self.transport is not None
                and len(self.slots) + len(self.backlog) < self.cfg.limits.max_pipeline // 2):
            self.reading_paused = False
            self.transport.resume_reading()

    def close_after_replies(self) -> None:
        """QUIT, EOF or a protocol error: send what is pending, then close; read nothing more."""
        self.closing = True
        self.backlog.clear()
        if self.transport is not None and not self.slots and not self.out:
            self.transport.close()

    def info_fields(self) -> dict[str, object]:
        """CLIENT LIST / CLIENT INFO fields, as Redis names them, for this client of the sidecar."""
        now = time.monotonic()
        flags = "".join(f for f, on in (("x", self.multi), ("P", bool(self.subs and self.subs.active)),
                                        ("b", bool(self.lease_kind == "blocking" and self.inflight)),
                                        ("t", self.lease_kind == "session")) if on) or "N"
        subs = self.subs
        omem = self.transport.get_write_buffer_size() if self.transport else 0
        return {
            "id": self.id, "addr": self.addr, "laddr": self.laddr, "fd": -1, "name": self.name or "",
            "age": int(now - self.created), "idle": int(now - self.last_command_at), "flags": flags, "db": self.db,
            "sub": len(subs.channels) if subs else 0, "psub": len(subs.patterns) if subs else 0,
            "ssub": len(subs.shard_channels) if subs else 0, "multi": -1 if not self.multi else 0,
            "qbuf": self.parser.buffered, "qbuf-free": 0, "argv-mem": 0, "multi-mem": 0, "rbs": 0, "rbp": 0,
            "obl": 0, "oll": len(self.slots), "omem": omem, "tot-mem": omem + self.parser.buffered,
            "events": "r", "cmd": self.last_command.decode(errors="replace"),
            "user": self.identity.user if self.identity else "default", "redir": -1, "resp": self.proto,
            "lib-name": self.lib_name, "lib-ver": self.lib_ver,
        }


def command_label(args: list[bytes]) -> bytes:
    """The command as CLIENT LIST's ``cmd=`` names it: ``get``, or ``client|info`` for a container command."""
    name = args[0].lower()
    return name + b"|" + args[1].lower() if name in CONTAINERS and len(args) > 1 else name


def _fmt_addr(addr) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = addr[0]
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr or "")
