"""One client connection: it reads commands one at a time and sends each where its route says.

The data path: bytes -> ``RequestParser`` (one command at a time) -> ``CommandTable.route`` -> a local answer, a shared
upstream connection, a connection of the client's own, or the pub/sub hub -> a ``Slot`` -> the client, in order.

One rule keeps a client's commands in the order it sent them: a client may move to another upstream connection
(after SELECT, HELLO, AUTH, for a transaction or a blocking call) only once nothing of it is in flight. A command that
must wait (for that, for a lease, for a credential check) is *held*; nothing after it is read until it runs, so every
state change takes effect exactly where the client put it. Parsing one command at a time also means each command is
judged by the limits in force once every earlier command took effect (a big SET pipelined after AUTH).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from ..access.auth import Identity
from ..commands.guard import LOGIN_CONTAINERS, login_exposure
from ..commands.routes import Route
from ..wire import resp
from . import cluster_routes, routes
from .forwarding import Forwarding
from .output import ReplyQueue
from .state import QUEUEING, LeaseKind, ReplyMode, Tx, TxEvent, Wait, next_tx

log = logging.getLogger("sidecar.client")

PREAUTH = frozenset({b"auth", b"hello", b"quit", b"reset"})
# Commands allowed while a RESP2 client is subscribed, as Redis enforces them.
SUBSCRIBED_ALLOWED = frozenset({b"subscribe", b"psubscribe", b"ssubscribe", b"unsubscribe", b"punsubscribe",
                                b"sunsubscribe", b"ping", b"quit", b"reset"})
NOAUTH = b"-NOAUTH Authentication required.\r\n"
# The routes whose commands the sidecar itself handles (the upstream checks the arity of everything else), and the
# arity Redis gives those it knows before the server's COMMAND reply has been learned (negative: at least).
CHECKED_HERE = frozenset({Route.TRANSACTION, Route.PUBSUB})
STATIC_ARITY = {b"multi": 1, b"exec": 1, b"discard": 1, b"unwatch": 1, b"watch": -2, b"subscribe": -2,
                b"psubscribe": -2, b"ssubscribe": -2, b"unsubscribe": -1, b"punsubscribe": -1, b"sunsubscribe": -1}
HELD_READ_LIMIT = 1 << 20  # bytes read ahead while a command is held, before the client is paused


class Session(ReplyQueue, Forwarding, asyncio.Protocol):
    """One client connection (its state is ``SessionBase``'s; its output and upstream halves are mixins)."""

    __slots__ = ()

    # -- asyncio.Protocol ---------------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's transports are not its subclasses)
        rt = self.handle.current
        self.transport.set_write_buffer_limits(high=256 * 1024)
        if not rt.registry.add(self, rt.cfg.limits.max_clients):
            self.transport.write(resp.error("ERR max number of clients reached"))
            transport.close()
            self.closed = True
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("client connected", extra={"event": "client_connected", "client": self.id, "addr": self.addr})
        self.refresh_plain()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.received = time.perf_counter() if self.handle.current.sampler.every else 0.0
        self.net_in += len(data)
        self.parser.feed(data)
        if self.wait is None:
            self.pump()
        elif self.parser.buffered > HELD_READ_LIMIT:
            self.pause_reading()

    def eof_received(self) -> bool:
        if self.lease is not None or self.subscribed or self.wait is Wait.LEASE:
            return False  # a blocked call or a subscription would outlive a half-closed client: close now
        self.close_after_replies()  # a pipeline piped in by `nc` still gets its replies
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        rt = self.handle.current
        self.closed = self.closing = True
        rt.registry.remove(self)
        rt.output.report(self, 0)
        if self.task is not None:
            self.task.cancel()
        if self.lease is not None:
            self.release_lease(force_close=True)
        if self.subs is not None:
            routes.drop_subscriptions(self)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("client disconnected", extra={
                "event": "client_disconnected", "client": self.id, "addr": self.addr,
                "user": self.identity.user if self.identity else "", "client_name": self.name or "",
                "lib": self.lib_name, "age_s": round(time.monotonic() - self.created, 3)})

    def pause_writing(self) -> None:
        self.writing_paused = True
        self.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.handle.current.output.report(self, self.out_size)
        self.maybe_resume_reading()

    # -- reading commands ---------------------------------------------------------------------------------------------
    def pump(self) -> None:
        """Dispatch the commands read so far, one at a time, until one must wait."""
        rt = self.handle.current
        parser, plain_shared = self.parser, rt.table.plain_shared
        fast = 0
        last: list[bytes] | None = None
        while self.wait is None and not self.closing:
            try:
                command = parser.next()
            except resp.ProtocolError as exc:
                self.protocol_error(exc)
                break
            if command is None:
                break
            args, raw = command
            if self.plain and args[0].lower() in plain_shared:  # the common case, without the general checks
                last = args
                if self.forward_shared(args, raw) is not None:
                    fast += 1
                continue
            self.dispatch(args, raw)
        if last is not None:
            self.last_command, self.last_active = last, time.monotonic()
        if fast:
            self.cmds += fast
            stats = rt.stats
            stats.commands += fast
            stats.by_route[Route.SHARED] = stats.by_route.get(Route.SHARED, 0) + fast
        if len(self.slots) >= rt.cfg.limits.max_pipeline or (self.wait is not None
                                                              and parser.buffered > HELD_READ_LIMIT):
            self.pause_reading()

    def dispatch(self, args: list[bytes], raw: bytes) -> None:
        rt = self.handle.current
        name = args[0].lower()
        self.last_command, self.last_active = args, time.monotonic()
        self.cmds += 1
        rt.stats.commands += 1
        if self.skip_next:  # CLIENT REPLY SKIP: this command's replies are dropped, whatever answers them
            self.skip_next, self.skipping = False, True
        try:
            if self.identity is None and name not in PREAUTH and not self.admit(args, raw):
                return
            route = rt.table.route(args)
            by_route = rt.stats.by_route
            by_route[route] = by_route.get(route, 0) + 1
            identity = self.identity
            if identity is not None and identity.guarded and name in LOGIN_CONTAINERS \
                    and rt.cfg.client_auth.protect_upstream_login and login_exposure(args) is not None:
                route = Route.REFUSED  # (the table's refusal text names the guard; in MULTI it aborts the EXEC)
            if self.proto == 2 and self.subscribed and name not in SUBSCRIBED_ALLOWED:
                self.reply(resp.error(
                    f"ERR Can't execute '{rt.table.label(args).decode(errors='replace')}': only (P|S)SUBSCRIBE / "
                    "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"))
            elif (route not in CHECKED_HERE or self.arity_ok(args)) \
                    and not routes.in_transaction(self, name, args, raw, route):
                (routes.ROUTES if rt.cluster is None else cluster_routes.ROUTES)[route](self, name, args, raw)
        finally:
            if self.wait is not None and self.skipping and self.held is not None:
                self.skip_next = True  # held: its reply is skipped when it runs
            self.skipping = False
            self.refresh_plain()

    def arity_ok(self, args: list[bytes]) -> bool:
        """Commands the sidecar handles itself get Redis's arity error, as the server would give it (and inside
        MULTI that error aborts the transaction, as Redis flags it)."""
        rt = self.handle.current
        spec = rt.table.spec(args)
        if spec is not None:
            ok = spec.accepts_argc(len(args))
        else:
            arity = STATIC_ARITY.get(args[0].lower())
            ok = arity is None or (len(args) == arity if arity > 0 else len(args) >= -arity)
        if ok:
            return True
        error = f"wrong number of arguments for '{rt.table.label(args).decode(errors='replace')}' command"
        if args[0].lower() == b"exec":  # Redis ends the transaction, and any WATCH, saying why
            tx, self.tx = self.tx, next_tx(self.tx, TxEvent.END)
            abort = resp.error(f"EXECABORT Transaction discarded because of: {error}")
            if self.lease is not None and tx is not Tx.NONE:
                end = [b"DISCARD" if tx in QUEUEING else b"UNWATCH"]
                slot = self.forward_shared(end, resp.encode_command(end))
                if slot is not None:
                    slot.transform = lambda _: abort
            else:
                self.reply(abort)
            return False
        self.reply(resp.error(f"ERR {error}"))
        if self.tx in QUEUEING:
            self.tx = next_tx(self.tx, TxEvent.QUEUE_ERROR)
        return False

    def admit(self, args: list[bytes], raw: bytes, refusal: bytes = NOAUTH) -> bool:
        """A command before any AUTH: in passthrough mode the upstream decides whether an unauthenticated client
        may run it (its default user has no password); elsewhere, or when it may not, ``refusal``."""
        auth = self.handle.current.auth
        known, identity = auth.anonymous_known()
        if identity is not None:
            self.set_identity(identity)
            return True
        if known or auth.cfg.mode != "passthrough":
            self.reply(refusal)
            return False

        def admitted(result: Identity | BaseException | None) -> None:
            if isinstance(result, Identity):
                self.set_identity(result)  # the held command runs next
            else:
                self.held = None
                self.reply(refusal)

        self.suspend(Wait.AUTH, auth.anonymous(), admitted, held=(args, raw))
        return False

    # -- waiting ------------------------------------------------------------------------------------------------------
    def suspend(self, wait: Wait, work: Awaitable[Any], then: Callable[[Any], None],
                held: tuple[list[bytes], bytes] | None = None) -> None:
        """Read nothing more until ``work`` is done; then ``then(result or exception)``, then the held command."""
        self.wait, self.held = wait, held
        task = self.task = asyncio.ensure_future(work)

        def finished(done: asyncio.Future[Any]) -> None:
            self.task = None
            if done.cancelled():
                return
            exc = done.exception()
            then(exc if exc is not None else done.result())
            if not self.closed:
                self.resume()

        task.add_done_callback(finished)

    def hold(self, wait: Wait, args: list[bytes], raw: bytes) -> None:
        """Keep this command until the wait ends (``resume``)."""
        self.wait, self.held = wait, (args, raw)

    def resume(self) -> None:
        self.wait = None
        self.refresh_plain()  # (what the wait's outcome changed: a login, a lease, a failed MULTI)
        held, self.held = self.held, None
        if held is not None:
            self.dispatch(*held)
        if self.wait is None and not self.closing:
            self.pump()
        self.maybe_resume_reading()

    def idle_upstream(self) -> None:
        """Nothing of this client is in flight: it may change connections now."""
        self.switching = False
        self.conn = None
        kind = self.lease_kind
        if kind is LeaseKind.CALL or (kind is LeaseKind.TRANSACTION and self.tx is Tx.NONE):
            self.release_lease(force_close=False)
        if self.wait is Wait.DRAIN:
            self.handle.current.loop.call_soon(self.resume)

    # -- state changes (SELECT, HELLO, AUTH, RESET) -------------------------------------------------------------------
    def rekey(self) -> None:
        """The client's db, protocol or login changed: later commands use another pool, after the earlier ones."""
        self.key = None
        if self.inflight and self.lease is None:
            self.switching = True

    def set_identity(self, identity: Identity) -> None:
        old = self.login
        self.identity = identity
        self.parser.authenticated = True
        if identity.login != old:
            if self.lease is not None:
                self.lease_state_change([b"AUTH", *self.effective_login().auth_args()])
            self.rekey()

    def set_db(self, db: int) -> None:
        self.db = db
        self.rekey()

    def set_proto(self, proto: int) -> None:
        if proto != self.proto:
            self.proto = proto
            if self.lease is not None:
                self.lease_state_change([b"HELLO", b"%d" % proto])
            self.rekey()

    def reset(self) -> None:
        """RESET: leave every mode, forget name and db, authenticate again where the sidecar requires it."""
        rt = self.handle.current
        if self.lease is not None:
            self.release_lease(force_close=self.lease_kind is LeaseKind.SESSION or self.tx is not Tx.NONE)
        self.tx = Tx.NONE
        if self.subs is not None:
            routes.drop_subscriptions(self)
        self.identity = rt.auth.initial()
        self.parser.authenticated = self.identity is not None
        self.proto, self.db, self.name = 2, rt.cfg.upstream.db, None
        self.reply_mode, self.skip_next = ReplyMode.ON, False  # (a skipped RESET's own reply stays skipped)
        self.rekey()

    # -- closing and flow control ------------------------------------------------------------------------------------
    def protocol_error(self, exc: resp.ProtocolError) -> None:
        self.reply(resp.error(f"ERR {exc}"))
        self.handle.current.stats.protocol_errors += 1
        log.info("client %s closed: %s", self.addr, exc)
        self.close_after_replies()

    def close_after_replies(self) -> None:
        """QUIT, EOF or a protocol error: send what is pending, then close; read nothing more."""
        self.closing = True
        self.plain = False
        self.held = None
        if self.transport is not None and not self.slots and not self.out:
            self.transport.close()

    def abort(self) -> None:
        """Close at once (CLIENT KILL, output limits): nothing pending is sent."""
        self.closed = self.closing = True
        self.out.clear()
        self.out_size = 0
        if self.transport is not None:
            self.transport.abort()

    def subscription_lost(self, reason: str) -> None:
        """The hub cannot keep this client's subscriptions (its login was refused upstream): close it, as Redis
        closes a client whose user was removed."""
        log.info("client %s closed: its subscriptions were lost (%s)", self.addr, reason)
        self.abort()

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def maybe_resume_reading(self) -> None:
        if (self.reading_paused and not self.writing_paused and not self.closing and self.transport is not None
                and len(self.slots) < self.handle.current.cfg.limits.max_pipeline // 2
                and (self.wait is None or self.parser.buffered < HELD_READ_LIMIT)):
            self.reading_paused = False
            self.transport.resume_reading()

    @property
    def busy(self) -> bool:
        """Something is pending or open for this client (drain waits for it)."""
        return bool(self.slots or self.out or self.wait is not None or self.tx is not Tx.NONE or self.held)

