"""A session's commands on a Redis Cluster upstream: each to the node serving its keys, as if there were one node.

``forward`` replaces the shared path of a standalone upstream (``Forwarding.forward_shared`` calls it): the command's
plan (``proxy.cluster.commands``) names one node, a split across slots, a fan-out to every primary, or a refusal
(``-CROSSSLOT``). The session's ordering rule holds across nodes: while commands of the client are in flight, its next
command goes out only on the same connection; one for another node (or a split, or a fan-out) is held until they are
answered, so every command takes effect in the order the client sent it. Replies pass through ``Redirecting``, which
follows MOVED and ASK and retries TRYAGAIN and CLUSTERDOWN before the client sees anything; one client's retries to a
node share one connection (``ClusterState.retry``), so they too stay in order.

A client holding a connection of its own (a transaction's, a blocking call's) sends what belongs to that node there:
in MULTI, a command for another slot is refused at queue time with ``-CROSSSLOT`` (and EXEC answers EXECABORT, as
Redis does); a MOVED on it cannot be followed and becomes an error the client can act on. The route handlers that
lease (transactions, blocking calls) are in ``client.cluster_routes``.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from ..cluster.commands import CROSSSLOT, Kind, Plan, plan, scan_cursor, scan_position, scan_reply, scan_split
from ..cluster.nodes import ClusterUpstream, address_of
from ..cluster.redirect import ASKING, Gather, Redirecting
from ..cluster.topology import Address, parse_redirect
from ..upstream.connection import DISCARD, UpstreamConnection, UpstreamError
from ..upstream.manager import UpstreamManager
from ..upstream.pools import LeaseClass
from ..wire import resp
from .output import Slot
from .state import QUEUEING, LeaseKind, TxEvent, Wait, next_tx

if TYPE_CHECKING:
    from .session import Session

MULTI = resp.encode_command([b"MULTI"])


class ClusterState:
    """What a session keeps about the cluster: its retry connections and its transaction's slot."""

    __slots__ = ("session", "retry", "tx_slot", "tx_pending")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.retry: dict[Address, UpstreamConnection] = {}
        self.tx_slot: int | None = None
        self.tx_pending = False  # MULTI was answered here and is not sent yet (no command chose the node yet)

    def resend(self, sink: Redirecting, address: Address, asking: bool) -> None:
        """A redirected or retried command, on this client's one connection to that node."""
        if self.session.closed:
            return
        conn = self.retry.get(address)
        if conn is None or not conn.alive or conn.key != sink.key:
            try:
                conn = self.retry[address] = sink.cluster.manager(address).shared_conn(sink.key)
            except UpstreamError as exc:
                sink.fail(resp.error(str(exc)))
                return
        if asking:
            conn.send(ASKING, DISCARD)
        conn.send(sink.raw, sink)

    def resend_leased(self, sink: Redirecting, address: Address, asking: bool) -> None:
        """A blocking call redirected: on a lease on the node named, the old lease given back (nothing is left on
        it: its reply was the redirection)."""
        s = self.session
        if s.closed:
            return
        manager = sink.cluster.manager(address)
        lease = s.lease
        if lease is not None and lease.owner is not manager and s.lease_kind is not LeaseKind.CALL:
            # a transaction's connection (a WATCH on it) cannot be swapped for another node's
            sink.fail(b"-TRYAGAIN the key's slot moved to another node while this client watched keys; run the "
                      b"transaction again\r\n")
            return
        if lease is None or lease.owner is not manager:
            if lease is not None:
                s.release_lease(force_close=False)
            try:
                lease = manager.try_lease(sink.key, LeaseClass.CALL)
            except UpstreamError as exc:
                sink.fail(resp.error(str(exc)))
                return
            if lease is None:
                sink.fail(b"-ERR no upstream connection free for this blocking call on the node its key moved to "
                          b"(pool.blocking_max)\r\n")
                return
            s.take_lease(lease, LeaseKind.CALL)
            s.conn = lease
        if asking:
            lease.send(ASKING, DISCARD)
        lease.send(sink.raw, sink)


def state(s: Session) -> ClusterState:
    st = s.cluster
    if st is None:
        st = s.cluster = ClusterState(s)
    return st


def cluster_of(s: Session) -> ClusterUpstream:
    cluster = s.handle.current.cluster
    assert cluster is not None
    return cluster


# -- the shared path ---------------------------------------------------------------------------------------------------

def forward(s: Session, args: list[bytes], raw: bytes) -> Slot | None:
    """Send ``args`` where the cluster serves it; None when it was held, refused or answered here."""
    rt = s.handle.current
    if not rt.routable():
        wait_routable(s, args, raw)
        return None
    p = plan(rt.table, args)
    if s.lease is not None or s.tx in QUEUEING:
        return _with_lease(s, args, raw, p)
    return _shared(s, args, raw, p)


def _shared(s: Session, args: list[bytes], raw: bytes, p: Plan) -> Slot | None:
    kind = p.kind
    if kind is Kind.NODE:
        return _send(s, args, raw, p.slot)
    if kind is Kind.CROSSSLOT:
        s.reply(CROSSSLOT)
        return None
    if kind is Kind.SCAN:
        return _scan(s, args, raw)
    if s.inflight:  # a split or a fan-out runs on several nodes: everything before it must be answered first
        s.hold(Wait.DRAIN, args, raw)
        return None
    cluster = cluster_of(s)
    assert p.merge is not None
    parts: list[tuple[UpstreamManager, int | None, bytes]]
    if kind is Kind.SPLIT:
        cluster.counts["split"] += 1
        parts = [(cluster.node(slot), slot, resp.encode_command(command)) for slot, command in p.parts]
    else:
        cluster.counts["fanout"] += 1
        parts = [(manager, None, raw) for manager in cluster.primaries()]
    out = s.new_slot()
    gather = Gather(out, len(parts), p.merge)
    st, key = state(s), s.pool_key()
    for index, (manager, slot, part_raw) in enumerate(parts):
        try:
            conn = manager.shared_conn(key)
        except UpstreamError as exc:
            cluster.refresh()
            gather.part(index).deliver(resp.error(str(exc)))
            continue
        conn.send(part_raw, Redirecting(gather.part(index), part_raw, slot, address_of(manager), st.resend, cluster,
                                        key))
    s.conn = None  # on several connections: the next command waits for all of them
    return out


def _send(s: Session, args: list[bytes], raw: bytes, slot: int | None,
          manager: UpstreamManager | None = None) -> Slot | None:
    """One command to one node (``manager``, or the one serving ``slot``), behind the client's earlier commands."""
    rt = s.handle.current
    cluster = cluster_of(s)
    replica = False
    if manager is None:
        if slot is not None and rt.cfg.upstream.read_from == "replica" and _read_only(s, args):
            manager = cluster.replica(slot, s.conn.owner if s.inflight and s.conn is not None else None)
            replica = manager is not None
            cluster.counts["replica_reads"] += replica
        manager = manager or cluster.node(slot)
    st = state(s)
    if s.inflight:
        conn = s.conn
        if s.switching or conn is None or not conn.alive or conn.owner is not manager or conn is s.lease:
            s.hold(Wait.DRAIN, args, raw)
            return None
    else:
        if st.retry:
            st.retry.clear()
        try:
            conn = s.conn = manager.shared_conn(s.pool_key())
        except UpstreamError as exc:
            cluster.refresh()
            s.reply(resp.error(str(exc)))
            return None
        if replica:
            cluster.readonly(conn)
    out = s.new_slot()
    conn.send(raw, Redirecting(out, raw, slot, address_of(manager), st.resend, cluster, conn.key))
    return out


def _read_only(s: Session, args: list[bytes]) -> bool:
    spec = s.handle.current.table.spec(args)
    return spec is not None and "readonly" in spec.flags and not spec.write


def _scan(s: Session, args: list[bytes], raw: bytes) -> Slot | None:
    """SCAN on the node the cursor names; its reply's cursor names the next node when that node is done."""
    cluster = cluster_of(s)
    order = cluster.primaries_in_order()
    position = scan_position(args[1]) if len(args) > 1 else None
    if position is None or not order:
        return _send(s, args, raw, None)  # the home node answers (a malformed cursor, a wrong arity)
    node_cursor, slot = position
    owner = cluster.owner(slot)
    index = next((i for i, (_, manager) in enumerate(order) if manager is owner), 0)
    command = [args[0], b"%d" % node_cursor, *args[2:]]
    out = _send(s, command, resp.encode_command(command), None, order[index][1])
    if out is not None:
        out.transform = partial(_scan_cursor, [first for first, _ in order], index)
    return out


def _scan_cursor(firsts: list[int], index: int, frame: bytes) -> bytes:
    split = scan_split(frame)
    if split is None:
        return frame
    node_cursor, rest = split
    if node_cursor:
        cursor = scan_cursor(node_cursor, firsts[index])
    else:
        cursor = scan_cursor(0, firsts[index + 1]) if index + 1 < len(firsts) else 0
    return scan_reply(cursor, rest)


def wait_routable(s: Session, args: list[bytes], raw: bytes) -> None:
    """Hold the command until the cluster's layout and the server's key specs are known (the sidecar just
    started, or was pointed at another cluster), or answer why not, at ``upstream.reply_timeout``."""
    def known(result: object) -> None:
        if isinstance(result, BaseException):
            s.held = None
            s.reply(resp.error(str(result) if isinstance(result, UpstreamError) else
                               f"ERR sidecar internal error waiting for the cluster's layout: {result!r}"))

    s.suspend(Wait.TOPOLOGY, s.handle.current.until_routable(), known, held=(args, raw))


# -- connections of the client's own -------------------------------------------------------------------------------

def _with_lease(s: Session, args: list[bytes], raw: bytes, p: Plan) -> Slot | None:
    """A client holding a connection (or in MULTI): commands for its node go there, in order."""
    cluster = cluster_of(s)
    st = state(s)
    lease = s.lease
    if s.tx in QUEUEING:
        if p.kind in (Kind.SPLIT, Kind.CROSSSLOT) or (p.slot is not None and st.tx_slot not in (None, p.slot)) \
                or (p.slot is not None and lease is not None and cluster.node(p.slot) is not lease.owner):
            s.tx = next_tx(s.tx, TxEvent.QUEUE_ERROR)
            s.reply(CROSSSLOT)
            return None
        if p.slot is not None:
            st.tx_slot = p.slot
        if lease is None:
            lease = s.need_lease(LeaseKind.TRANSACTION, args, raw, cluster.node(st.tx_slot))
            if lease is None:
                if s.wait is None:  # refused (not held): what the client queues after it must not run
                    s.tx = next_tx(s.tx, TxEvent.QUEUE_ERROR)
                return None
        if st.tx_pending:
            st.tx_pending = False
            lease.send(MULTI, DISCARD)
        return _to_lease(s, args, raw, lease)
    assert lease is not None
    if s.lease_kind is LeaseKind.CALL:  # a blocking call in flight: everything after it waits for it
        s.hold(Wait.DRAIN, args, raw)
        return None
    if p.kind is Kind.NODE and (p.slot is None or p.slot == st.tx_slot or cluster.node(p.slot) is lease.owner):
        return _to_lease(s, args, raw, lease)
    return _shared(s, args, raw, p)  # another node while watching (or monitoring): the lease stays


def _to_lease(s: Session, args: list[bytes], raw: bytes, lease: UpstreamConnection) -> Slot | None:
    if s.inflight and s.conn is not lease:
        s.hold(Wait.DRAIN, args, raw)
        return None
    s.conn = lease
    out = s.send_upstream(lease, raw)
    out.transform = partial(_layout_changed, cluster_of(s), lease)
    return out


def _layout_changed(cluster: ClusterUpstream, lease: UpstreamConnection, frame: bytes) -> bytes:
    """A redirection on a transaction's connection cannot be followed (the transaction lives there): the client
    gets an error it can act on instead of a MOVED it did not cause, and the map is read again."""
    if not frame.startswith((b"-MOVED ", b"-ASK ")):
        return frame
    redirect = parse_redirect(frame)
    if redirect is None:
        return frame
    if not redirect.ask:
        cluster.moved(redirect.slot, redirect.address(address_of(lease.owner)[0]))  # type: ignore[arg-type]
    return resp.error(f"TRYAGAIN slot {redirect.slot} moved to another node while this transaction was open; run "
                      "the transaction again")
