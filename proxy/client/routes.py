"""One handler per routing class: what a session does with a command once the command table has classified it.

Transactions live here too, as a state machine (``state.Tx``): a command inside MULTI goes to the client's lease,
where the upstream queues it; one the sidecar cannot queue is refused at queue time, so EXEC answers EXECABORT, as
Redis does for any command rejected at queue time; and once a MULTI or WATCH could not get a connection, nothing
queued after it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import hiredis

from ..commands.routes import Route
from ..services.pubsub import Hub, Kind
from ..upstream.credentials import PoolKey
from ..wire import resp
from . import local, subscriptions
from .state import QUEUEING, LeaseKind, Tx, TxEvent, Wait, next_tx

if TYPE_CHECKING:
    from .session import Session

Handler = Callable[["Session", bytes, list[bytes], bytes], None]

EXECABORT = b"-EXECABORT Transaction discarded because of previous errors.\r\n"
# Commands the client may queue in MULTI although the sidecar answers them itself outside a transaction.
QUEUED_UPSTREAM_IN_MULTI = frozenset({b"info"})
WAIT_CHANNEL = b"__redis-sidecar__:wait"


# -- shared ------------------------------------------------------------------------------------------------------------

def route_shared(s: Session, name: bytes, args: list[bytes], raw: bytes) -> None:
    if name == b"ping" and s.proto == 2 and s.subscribed and s.lease is None:
        local.cmd_ping(s, args, raw)  # a RESP2 subscriber's PING: its hub connection cannot answer for it
        return
    slot = s.forward_shared(args, raw)
    if slot is None:
        return
    adjust = ADJUSTED.get(name)
    if adjust is not None:
        slot.transform = adjust(s, args)


def _publish(s: Session, args: list[bytes]) -> Callable[[bytes], bytes] | None:
    """PUBLISH counts the hub's subscriptions upstream; a direct connection would count the local subscribers."""
    if len(args) != 3:
        return None
    rt, kind = s.handle.current, Kind.SHARD if args[0].lower() == b"spublish" else Kind.CHANNEL
    counted = (rt.shard_hubs if kind is Kind.SHARD and rt.shard_hubs is not None else rt.hub).receivers(kind, args[1])
    if counted is None:
        return None
    upstream, local_count = counted

    def adjust(frame: bytes) -> bytes:
        return resp.integer(max(0, int(frame[1:-2]) - upstream) + local_count) if frame[:1] == b":" else frame

    return adjust


def _pubsub(s: Session, args: list[bytes]) -> Callable[[bytes], bytes] | None:
    """PUBSUB NUMSUB / SHARDNUMSUB: each channel's count as a direct connection would see it."""
    sub = args[1].lower() if len(args) > 1 else b""
    kind = {b"numsub": Kind.CHANNEL, b"shardnumsub": Kind.SHARD}.get(sub)
    if kind is None:
        return None
    rt = s.handle.current
    hub = rt.hub
    shard_hubs = rt.shard_hubs or hub

    def adjust(frame: bytes) -> bytes:
        if frame[:1] not in (b"*", b"%"):
            return frame
        reader = hiredis.Reader()
        reader.feed(frame)
        value = reader.gets()
        pairs = list(value.items()) if isinstance(value, dict) else list(zip(value[::2], value[1::2]))
        out = []
        for channel, count in pairs:
            counted = shard_hubs.receivers(kind, channel) if kind is Kind.SHARD else _exact(hub, channel)
            if counted is not None:
                count = max(0, count - counted[0]) + counted[1]
            out.append(resp.bulk(channel) + resp.integer(count))
        header = b"%%%d\r\n" % len(out) if frame[:1] == b"%" else b"*%d\r\n" % (2 * len(out))
        return header + b"".join(out)

    return adjust


def _exact(hub: Hub, channel: bytes) -> tuple[int, int] | None:
    """NUMSUB counts channel subscribers only (patterns are NUMPAT's)."""
    upstream = local_count = 0
    for conn in hub.hubs.values():
        subs = conn.members[Kind.CHANNEL].get(channel)
        if subs:
            upstream += conn.confirmed(Kind.CHANNEL, channel)
            local_count += len(subs)
    return (upstream, local_count) if upstream or local_count else None


ADJUSTED: dict[bytes, Callable[[Session, list[bytes]], Callable[[bytes], bytes] | None]] = {
    b"publish": _publish, b"spublish": _publish, b"pubsub": _pubsub}


# -- transactions ------------------------------------------------------------------------------------------------------

def in_transaction(s: Session, name: bytes, args: list[bytes], raw: bytes, route: Route) -> bool:
    """Handle ``args`` as part of an open transaction; False when it is not one (or is MULTI/EXEC... itself)."""
    tx = s.tx
    if tx in QUEUEING:
        if route is Route.TRANSACTION or name in (b"quit", b"reset"):
            return False
        if route in (Route.SHARED, Route.BLOCKING, Route.WAIT) or name in QUEUED_UPSTREAM_IN_MULTI:
            s.forward_shared(args, raw)  # to the lease: the upstream queues it (or refuses it, and aborts)
            return True
        s.tx = next_tx(tx, TxEvent.QUEUE_ERROR)
        if route is Route.REFUSED:
            s.reply(resp.error(s.handle.current.table.refusal(args)))
        else:
            shown = name.decode(errors="replace").upper()
            s.reply(resp.error(f"ERR '{shown}' inside MULTI is not supported by the sidecar"))
        return True
    if tx is Tx.MULTI_FAILED and name not in (b"exec", b"discard", b"quit", b"reset"):
        s.reply(b"-ERR this command was discarded: the MULTI before it could not start; EXEC will answer "
                b"EXECABORT\r\n")
        return True
    return False


def route_transaction(s: Session, name: bytes, args: list[bytes], raw: bytes) -> None:
    tx = s.tx
    if name in (b"multi", b"watch"):
        if tx in QUEUEING:
            s.forward_shared(args, raw)  # the upstream answers "MULTI calls can not be nested" / "WATCH inside MULTI"
        elif tx is Tx.WATCH_FAILED:
            event = TxEvent.MULTI_REFUSED if name == b"multi" else TxEvent.WATCH_REFUSED
            s.tx = next_tx(tx, event)
            s.reply(resp.error(f"ERR {name.decode().upper()} refused: an earlier WATCH could not get a connection, "
                               "so this transaction would run unwatched (UNWATCH or DISCARD first)"))
        elif s.need_lease(LeaseKind.TRANSACTION, args, raw) is not None:
            s.tx = next_tx(tx, TxEvent.MULTI if name == b"multi" else TxEvent.WATCH)
            s.forward_shared(args, raw)
    elif name == b"unwatch":
        if tx in QUEUEING or s.lease is not None:
            s.forward_shared(args, raw)
        else:
            s.reply(resp.OK)  # shared connections never hold a WATCH
        if tx not in QUEUEING:
            s.tx = next_tx(tx, TxEvent.END)
    elif tx is Tx.MULTI_FAILED:  # EXEC or DISCARD after a MULTI that never started
        s.tx = next_tx(tx, TxEvent.END)
        s.reply(EXECABORT if name == b"exec" else resp.OK)
    elif tx not in QUEUEING:
        if s.lease is not None:
            s.forward_shared(args, raw)  # "EXEC without MULTI", and the WATCH stays, as Redis has it
        else:
            s.reply(resp.error(f"ERR {name.decode().upper()} without MULTI"))
    else:
        s.tx = next_tx(tx, TxEvent.END)
        if tx is Tx.MULTI_ABORTED and name == b"exec":
            slot = s.forward_shared([b"DISCARD"], resp.encode_command([b"DISCARD"]))
            if slot is not None:
                slot.transform = lambda _frame: EXECABORT
        else:
            s.forward_shared(args, raw)


# -- connections of the client's own ---------------------------------------------------------------------------------

def route_blocking(s: Session, name: bytes, args: list[bytes], raw: bytes) -> None:
    lease = s.need_lease(LeaseKind.CALL, args, raw)
    if lease is not None:
        s.send_upstream(lease, raw, blocking=True)


def route_wait(s: Session, name: bytes, args: list[bytes], raw: bytes) -> None:
    """WAIT/WAITAOF count replicas that acknowledged the connection's last write offset. On a lent connection that
    offset is not the client's: a PUBLISH first (propagated, so it moves the offset past every write the client made
    before) makes the count honest; without permission to publish, the client is told instead of misled."""
    held = s.lease is not None
    lease = s.need_lease(LeaseKind.CALL, args, raw)
    if lease is None:
        return
    if held:
        s.send_upstream(lease, raw, blocking=True)
        return
    marker = _Marker()
    lease.send(resp.encode_command([b"PUBLISH", WAIT_CHANNEL, b""]), marker)
    slot = s.send_upstream(lease, raw, blocking=True)
    slot.transform = marker.check


class _Marker:
    """The PUBLISH before a WAIT: if the upstream refused it, the WAIT's count cannot be trusted."""

    __slots__ = ("error",)
    blocking = False

    def __init__(self) -> None:
        self.error: bytes | None = None

    def deliver(self, frame: bytes) -> None:
        if frame[:1] == b"-":
            self.error = frame

    def check(self, frame: bytes) -> bytes:
        if self.error is None:
            return frame
        return resp.error(f"ERR WAIT through the sidecar publishes to {WAIT_CHANNEL.decode()} first, to count only "
                          f"replicas that have this client's writes, and the upstream refused: "
                          f"{self.error[1:-2].decode(errors='replace')}")


def route_session(s: Session, name: bytes, args: list[bytes], raw: bytes) -> None:
    if name == b"client" and len(args) > 1 and args[1].lower() == b"tracking":
        translated = local.tracking_redirect(s, args)
        if isinstance(translated, bytes):
            s.reply(translated)
            return
        args, raw = translated, resp.encode_command(translated) if translated is not args else raw
    lease = s.need_lease(LeaseKind.SESSION, args, raw)
    if lease is not None:
        s.send_upstream(lease, raw, blocking=name == b"monitor")


def route_control(s: Session, name: bytes, args: list[bytes], raw: bytes) -> None:
    """SCRIPT KILL, FUNCTION KILL: on a connection of their own, never queued behind the busy command they stop."""
    if s.inflight:
        s.hold(Wait.DRAIN, args, raw)
        return
    s.out_of_band(PoolKey(s.effective_login(), 0, s.proto), raw)


def route_refused(s: Session, name: bytes, args: list[bytes], raw: bytes) -> None:
    s.reply(resp.error(s.handle.current.table.refusal(args)))


def route_pubsub(s: Session, name: bytes, args: list[bytes], raw: bytes) -> None:
    subscriptions.command(s, name, args, raw)


def route_local(s: Session, name: bytes, args: list[bytes], raw: bytes) -> None:
    local.handle(s, name, args, raw)


def drop_subscriptions(s: Session) -> None:
    subscriptions.drop(s)


ROUTES: dict[Route, Handler] = {
    Route.SHARED: route_shared, Route.LOCAL: route_local, Route.TRANSACTION: route_transaction,
    Route.BLOCKING: route_blocking, Route.WAIT: route_wait, Route.PUBSUB: route_pubsub,
    Route.SESSION: route_session, Route.CONTROL: route_control, Route.REFUSED: route_refused,
}
