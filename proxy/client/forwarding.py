"""Where a session's command goes upstream: its shared connection, or a connection lent to it alone.

The rule behind every method here: a client changes upstream connection only when nothing of it is in flight
(``Session.hold(Wait.DRAIN, ...)`` otherwise), so its commands run upstream in the order it sent them. A client that
holds a lease sends everything there, and its state changes (SELECT, HELLO, AUTH) are forwarded to the lease too,
which is then never lent to anyone else.
"""

from __future__ import annotations

import functools
import time

from ..services.stats import Sampler
from ..upstream.connection import DISCARD, UpstreamConnection, UpstreamError
from ..upstream.credentials import Credential, PoolKey
from ..upstream.manager import UpstreamManager
from ..upstream.pools import LeaseClass
from ..wire import resp
from . import cluster
from .base import SessionBase
from .output import Slot
from .state import PINNING, LeaseKind, TxEvent, Wait, next_tx

_LEASE_CLASS = {LeaseKind.CALL: LeaseClass.CALL, LeaseKind.TRANSACTION: LeaseClass.HELD,
                LeaseKind.SESSION: LeaseClass.HELD}


class Forwarding(SessionBase):
    """The upstream half of ``Session`` (its attributes live in ``Session.__slots__``)."""

    __slots__ = ()

    def effective_login(self) -> Credential:
        return self.login or self.handle.current.manager.login

    def pool_key(self) -> PoolKey:
        key = self.key
        if key is None:
            key = self.key = PoolKey(self.effective_login(), self.db, self.proto)
        return key

    def forward_shared(self, args: list[bytes], raw: bytes) -> Slot | None:
        """Send on the client's own lease if it holds one, else on its shared connection; None if the command was
        held (the client must first finish its in-flight commands) or answered with an error."""
        if self.handle.current.cluster is not None:
            return cluster.forward(self, args, raw)  # type: ignore[arg-type]
        if self.lease is not None:
            return self.send_upstream(self.lease, raw)
        if self.inflight:
            conn = self.conn
            if self.switching or conn is None or not conn.alive:
                self.hold(Wait.DRAIN, args, raw)
                return None
        else:
            try:
                conn = self.conn = self.handle.current.manager.shared_conn(self.pool_key())
            except UpstreamError as exc:
                self.reply(resp.error(str(exc)))
                return None
        return self.send_upstream(conn, raw)

    def send_upstream(self, conn: UpstreamConnection, raw: bytes, blocking: bool = False) -> Slot:
        slot = self.new_slot(blocking)
        conn.send(raw, slot)
        return slot

    def new_slot(self, blocking: bool = False) -> Slot:
        """The reply slot of a command about to go upstream (counted in flight until its reply is in)."""
        slot = Slot(self, True, self.quiet, blocking)
        self.slots.append(slot)
        self.inflight += 1
        sampler = self.handle.current.sampler
        if sampler.every and self.received and not blocking and sampler.due():
            slot.transform = functools.partial(_sampled, sampler, self.received, time.perf_counter())
        return slot

    # -- leases -------------------------------------------------------------------------------------------------------
    def need_lease(self, kind: LeaseKind, args: list[bytes], raw: bytes,
                   manager: UpstreamManager | None = None) -> UpstreamConnection | None:
        """The client's own connection for ``args``: the one it holds, or a newly lent one (from ``manager``, the
        node of its keys on a cluster; by default the upstream). None: the command was held (until the client's
        in-flight commands finish, or a lease comes free) or refused with an error."""
        lease = self.lease
        if lease is not None:
            if kind is LeaseKind.SESSION and self.lease_kind is not LeaseKind.SESSION:
                self.lease_kind = kind
                lease.push_handler = self.push
            elif kind is LeaseKind.TRANSACTION and self.lease_kind is LeaseKind.CALL:
                self.lease_kind = kind
            return lease
        if self.inflight:
            self.hold(Wait.DRAIN, args, raw)
            return None
        owner = manager or self.handle.current.manager
        cls = _LEASE_CLASS[kind]
        try:
            conn = owner.try_lease(self.pool_key(), cls)
        except UpstreamError as exc:
            self.lease_refused(args, exc)
            return None
        if conn is not None:
            self.take_lease(conn, kind)
            return conn

        def lent(result: object) -> None:
            if isinstance(result, UpstreamConnection):
                if self.closed:
                    owner.release(result, reusable=True)
                else:
                    self.take_lease(result, kind)  # the held command runs next, on it
            else:
                self.held = None
                self.lease_refused(args, result if isinstance(result, UpstreamError) else UpstreamError(
                    f"ERR sidecar internal error waiting for a connection: {result!r}"))

        self.suspend(Wait.LEASE, owner.lease(self.pool_key(), cls), lent, held=(args, raw))
        return None

    def take_lease(self, conn: UpstreamConnection, kind: LeaseKind) -> None:
        self.lease, self.lease_kind = conn, kind
        self.handle.current.stats.leases += 1
        if kind is LeaseKind.SESSION:
            conn.push_handler = self.push

    def release_lease(self, force_close: bool) -> None:
        """Give the lease back; it is closed rather than reused if it may carry this client's state."""
        conn, kind = self.lease, self.lease_kind
        self.lease = self.lease_kind = None
        if conn is None:
            return
        reusable = not force_close and kind is not LeaseKind.SESSION and self.tx not in PINNING
        conn.owner.release(conn, reusable)

    def lease_refused(self, args: list[bytes], exc: BaseException) -> None:
        """No connection could be lent for ``args``: its error, and for MULTI and WATCH the state that makes sure
        nothing the client queues after them runs unprotected (EXEC then answers EXECABORT)."""
        self.reply(resp.error(str(exc)))
        name = args[0].lower()
        if name == b"multi":
            self.tx = next_tx(self.tx, TxEvent.MULTI_REFUSED)
        elif name == b"watch":
            self.tx = next_tx(self.tx, TxEvent.WATCH_REFUSED)

    def out_of_band(self, key: PoolKey, raw: bytes) -> None:
        """Run one command on a connection of its own, logged in as ``key`` says; its reply in this command's
        place (SCRIPT KILL never queues behind the script it stops)."""
        slot = self.pending_slot()

        def answered(result: object) -> None:
            slot.deliver(result if isinstance(result, bytes) else resp.error(str(result) if isinstance(
                result, UpstreamError) else f"ERR sidecar internal error: {result!r}"))

        self.suspend(Wait.CONTROL, self.handle.current.control.oneshot(key, raw), answered)

    def lease_state_change(self, args: list[bytes]) -> None:
        """Apply a state change (SELECT, HELLO, AUTH) to the lease too, in order; it is never lent again."""
        assert self.lease is not None
        self.lease.dirty = True
        self.lease.send(resp.encode_command(args), DISCARD)


def _sampled(sampler: Sampler, received: float, sent: float, frame: bytes) -> bytes:
    sampler.observe(received, sent)
    return frame
