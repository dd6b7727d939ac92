"""Sharded Pub/Sub on a Redis Cluster: each shard channel subscribed on the node serving its slot, and moved with it.

SSUBSCRIBE goes to the primary of the channel's slot, through that node's own hub (one subscriber connection per
login and node, as the classic hub has per login). When a node stops serving a channel's slot, because a resharding
moved it (the node then sends an unasked ``sunsubscribe``) or because the node failed, the channel's local
subscribers are subscribed again, once the layout has been read again, on the node serving the slot by then; the
clients see nothing of it. A message published in between is lost, as for any subscriber of a moving shard. If no
node takes the slot over within ``upstream.reply_timeout``, the subscribers are closed, as a lost connection would.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

from ..cluster.commands import CROSSSLOT
from ..cluster.nodes import ClusterUpstream
from ..cluster.slots import key_slot
from ..upstream.connection import UpstreamError
from ..upstream.credentials import Credential
from ..upstream.manager import UpstreamManager
from .pubsub import Done, Gate, Hub, HubConnection, Kind, Subscriber

RETRY_DELAY = 0.5


class ShardHubs:
    """Every login's shard channels on a cluster, and a hub per node."""

    def __init__(self, cluster: ClusterUpstream) -> None:
        self.cluster = cluster
        self.nodes: dict[UpstreamManager, Hub] = {}
        self.logins: dict[Credential, ShardRouter] = {}

    def for_login(self, login: Credential | None) -> ShardRouter:
        login = login or self.cluster.login
        router = self.logins.get(login)
        if router is None:
            router = self.logins[login] = ShardRouter(self, login)
        return router

    def hub(self, manager: UpstreamManager) -> Hub:
        hub = self.nodes.get(manager)
        if hub is None:
            hub = self.nodes[manager] = Hub(manager)
            hub.rehome = self._rehome
        return hub

    def _rehome(self, conn: HubConnection, moving: dict[bytes, set[Subscriber]]) -> None:
        self.for_login(conn.login).moving(conn, moving)

    def receivers(self, kind: Kind, channel: bytes) -> tuple[int, int] | None:
        """As ``Hub.receivers``, for SPUBLISH's count."""
        upstream = local = 0
        for router in self.logins.values():
            conn = router.where.get(channel)
            if conn is not None and conn.members[kind].get(channel):
                upstream += conn.confirmed(kind, channel)
                local += len(conn.members[kind][channel])
        return (upstream, local) if upstream or local else None

    def close_all(self, reason: str) -> None:
        for hub in self.nodes.values():
            hub.close_all(reason)


class ShardRouter:
    """One login's shard channels, each on the hub connection of the node serving it (a ``Membership`` records
    this router for them, so a channel can move between nodes without its members knowing)."""

    def __init__(self, hubs: ShardHubs, login: Credential) -> None:
        self.hubs = hubs
        self.login = login
        self.where: dict[bytes, HubConnection] = {}
        self.pending: dict[bytes, set[Subscriber]] = {}  # channels between two nodes, with their members
        self.task: asyncio.Future[None] | None = None  # placing pending channels again
        self.give_up_at = 0.0

    def add(self, sub: Subscriber, kind: Kind, names: list[bytes], done: Done) -> None:
        """SSUBSCRIBE: the channels must share a slot, as on a cluster node."""
        if len({key_slot(name) for name in names}) > 1:
            done(CROSSSLOT)
            return
        conn = next((self.where[n] for n in names if n in self.where), None)
        if conn is None:
            conn = self.hubs.hub(self.hubs.cluster.node(key_slot(names[0]))).for_login(self.login)
        conn.add(sub, kind, names, done)  # (raises UpstreamError before anything is recorded)
        for name in names:
            self.where[name] = conn

    def remove(self, sub: Subscriber, kind: Kind, names: list[bytes]) -> None:
        for name in names:
            pending = self.pending.get(name)
            if pending is not None:
                pending.discard(sub)
            conn = self.where.get(name)
            if conn is not None:
                conn.remove(sub, kind, [name])
                if not conn.members[kind].get(name):
                    del self.where[name]

    def caught_up(self, names: list[bytes], done: Done) -> None:
        """As ``HubConnection.caught_up``, on each node these channels live on (one between nodes has none)."""
        conns = {id(c): c for c in (self.where.get(n) for n in names) if c is not None}
        if not conns:
            done(None)
            return
        gate = Gate(len(conns), done)
        for conn in conns.values():
            conn.caught_up(names, gate.one)

    def moving(self, conn: HubConnection, moving: dict[bytes, set[Subscriber]]) -> None:
        """``conn``'s node no longer serves these channels: place them again after the layout is read again."""
        for name, subs in moving.items():
            if self.where.get(name) is conn:
                del self.where[name]
            if subs:
                self.pending.setdefault(name, set()).update(subs)
        if self.task is None:
            self.give_up_at = time.monotonic() + self.hubs.cluster.cfg.reply_timeout
        self._start()

    def _start(self) -> None:
        if self.pending and self.task is None:
            self.task = asyncio.ensure_future(self._place_again())

    async def _place_again(self) -> None:
        try:
            while self.pending:
                try:
                    await self.hubs.cluster.policy.request()
                except Exception:  # (a failed read is logged by the policy; the map may be right all the same)
                    pass
                pending, self.pending = self.pending, {}
                for name, subs in pending.items():
                    for sub in subs:
                        try:
                            self.add(sub, Kind.SHARD, [name], partial(self._placed, sub, name))
                        except UpstreamError as exc:
                            self._again_or_drop(sub, name, str(exc))
                if self.pending:
                    await asyncio.sleep(RETRY_DELAY)
        finally:
            self.task = None

    def _placed(self, sub: Subscriber, name: bytes, error: bytes | None) -> None:
        if error is not None:
            self._again_or_drop(sub, name, error[1:-2].decode(errors="replace"))
            self._start()

    def _again_or_drop(self, sub: Subscriber, name: bytes, reason: str) -> None:
        """Not placed (the node is still down): again shortly, until no node took the slot over in time."""
        if time.monotonic() < self.give_up_at:
            self.pending.setdefault(name, set()).add(sub)
        else:
            sub.subscription_lost(reason)
