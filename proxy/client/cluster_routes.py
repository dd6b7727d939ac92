"""The route handlers a cluster upstream changes (``Session.dispatch`` takes ``ROUTES`` from here on a cluster):
transactions and blocking calls lease on their keys' node, connection flags that name one node are the sidecar's own
business or refused, out-of-band kills reach every primary, SELECT gets the cluster's refusal. The shared path and
the leases' bookkeeping are in ``client.cluster``.

MULTI is answered here and sent upstream with the first command queued after it, once that command's slot names
the node; EXEC or DISCARD with nothing queued upstream are answered here too, as one node answers them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..cluster.commands import CROSSSLOT, Kind, plan
from ..cluster.nodes import address_of
from ..cluster.redirect import Redirecting
from ..commands.routes import Route
from ..upstream.control import Control
from ..upstream.credentials import PoolKey
from ..wire import resp
from . import local, routes
from .cluster import cluster_of, forward, state, wait_routable
from .state import QUEUEING, LeaseKind, Tx, TxEvent, Wait, next_tx

if TYPE_CHECKING:
    from .session import Session

EMPTY_EXEC = b"*0\r\n"
# connection state a client cannot keep across nodes: refused on a cluster, with why
NOT_ON_A_CLUSTER = frozenset({b"tracking", b"caching", b"getredir", b"trackinginfo", b"no-evict", b"no-touch",
                              b"capa"})


def route_transaction(s: Session, name: bytes, args: list[bytes], raw: bytes) -> None:
    """MULTI is answered here until a command names the node; WATCH leases on its keys' node."""
    rt = s.handle.current
    st = state(s)
    if s.lease_kind is LeaseKind.CALL:  # a blocking call in flight: the transaction starts after it
        s.hold(Wait.DRAIN, args, raw)
        return
    if s.tx is Tx.NONE and s.lease is None:
        st.tx_slot, st.tx_pending = None, False
    if name == b"multi" and s.tx is Tx.NONE and s.lease is None:
        s.tx = next_tx(s.tx, TxEvent.MULTI)
        st.tx_pending = True
        s.reply(resp.OK)
        return
    if name in (b"exec", b"discard") and st.tx_pending and s.lease is None and s.tx in QUEUEING:
        st.tx_pending = False  # nothing was queued upstream: nothing to run or discard there
        tx, s.tx = s.tx, next_tx(s.tx, TxEvent.END)
        s.reply(resp.OK if name == b"discard" else routes.EXECABORT if tx is Tx.MULTI_ABORTED else EMPTY_EXEC)
        return
    if name == b"watch" and s.tx not in QUEUEING and s.tx is not Tx.WATCH_FAILED:
        if not rt.routable():
            wait_routable(s, args, raw)
            return
        p = plan(rt.table, args)
        if p.kind is not Kind.NODE or (s.lease is not None and p.slot not in (None, st.tx_slot)):
            s.reply(CROSSSLOT)
            return
        if s.lease is None:
            lease = s.need_lease(LeaseKind.TRANSACTION, args, raw, cluster_of(s).node(p.slot))
            if lease is None:
                return
            st.tx_slot = p.slot
        s.tx = next_tx(s.tx, TxEvent.WATCH)
        forward(s, args, raw)
        return
    routes.route_transaction(s, name, args, raw)


def route_blocking(s: Session, name: bytes, args: list[bytes], raw: bytes) -> None:
    """A blocking call leases a connection on its keys' node."""
    rt = s.handle.current
    if not rt.routable():
        wait_routable(s, args, raw)
        return
    p = plan(rt.table, args)
    if p.kind is not Kind.NODE:
        s.reply(CROSSSLOT)
        return
    cluster = cluster_of(s)
    manager = cluster.node(p.slot)
    lease = s.lease
    if lease is not None and (lease.owner is not manager or (s.inflight and s.conn is not lease)):
        if s.inflight:
            s.hold(Wait.DRAIN, args, raw)
        else:  # watching keys of another node: one client, one connection of its own
            s.reply(CROSSSLOT)
        return
    lease = s.need_lease(LeaseKind.CALL, args, raw, manager)
    if lease is None:
        return
    s.conn = lease
    out = s.new_slot(blocking=True)
    lease.send(raw, Redirecting(out, raw, p.slot, address_of(manager), state(s).resend_leased, cluster, lease.key))


def route_session(s: Session, name: bytes, args: list[bytes], raw: bytes) -> None:
    """READONLY, READWRITE and ASKING are the sidecar's business on a cluster; connection-tracking state cannot
    follow a client across nodes. The rest (MONITOR) runs on the home node."""
    if name in (b"readonly", b"readwrite", b"asking"):
        s.reply(resp.OK if len(args) == 1 else local.wrong_args(name.decode()))
        return
    if name == b"client" and len(args) > 1 and args[1].lower() in NOT_ON_A_CLUSTER:
        shown = f"CLIENT {args[1].decode(errors='replace').upper()}"
        s.reply(resp.error(f"ERR '{shown}' is not available through the sidecar on a cluster: it is connection "
                           "state of one node, and the sidecar spreads a client's commands over every node"))
        return
    routes.route_session(s, name, args, raw)


def route_control(s: Session, name: bytes, args: list[bytes], raw: bytes) -> None:
    """SCRIPT KILL, FUNCTION KILL: the busy script may be on any node, so every primary is asked, out of band."""
    if s.inflight:
        s.hold(Wait.DRAIN, args, raw)
        return
    key = PoolKey(s.effective_login(), 0, s.proto)
    slot = s.pending_slot()

    async def everywhere() -> bytes:
        replies = await asyncio.gather(*(Control(m).oneshot(key, raw) for m in cluster_of(s).primaries()),
                                       return_exceptions=True)
        frames = [r if isinstance(r, bytes) else resp.error(str(r)) for r in replies]
        return next((f for f in frames if f == resp.OK), frames[0])

    s.suspend(Wait.CONTROL, everywhere(), lambda result: slot.deliver(
        result if isinstance(result, bytes) else resp.error(f"ERR sidecar internal error: {result!r}")))


def route_local(s: Session, name: bytes, args: list[bytes], raw: bytes) -> None:
    """SELECT n>0 gets the cluster's own refusal (after the checks the server makes before it): Redis refuses
    SELECT on a cluster; Valkey 9 has cluster databases, by default one, so db n>0 is out of its range."""
    if name == b"select" and len(args) == 2:
        db = resp.redis_int(args[1])
        if db is not None and -(1 << 31) <= db < (1 << 31) and db != 0:
            s.reply(b"-ERR DB index is out of range\r\n" if s.handle.current.manager.server_info.valkey
                    else b"-ERR SELECT is not allowed in cluster mode\r\n")
            return
    local.handle(s, name, args, raw)


ROUTES: dict[Route, Callable[[Session, bytes, list[bytes], bytes], None]] = {
    **routes.ROUTES, Route.TRANSACTION: route_transaction, Route.BLOCKING: route_blocking,
    Route.SESSION: route_session, Route.CONTROL: route_control, Route.LOCAL: route_local,
}
