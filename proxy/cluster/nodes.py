"""A Redis Cluster as the core uses it: one ``UpstreamManager`` per node, the slot map, and when to read it again.

Each node gets the same pools a standalone upstream has (shared, leased, pub/sub); the slot map says which primary
serves a key. The map is read from the nodes themselves over the sidecar's own pooled connections (CLUSTER SHARDS,
CLUSTER SLOTS on older servers), at start, after a MOVED, after a node failed, and periodically, through
``RefreshPolicy`` (coalesced, rate-limited, jittered). One primary is the *home* node: keyless commands, the classic
pub/sub hub, credential checks and COMMAND go there; it moves when its node stops being a healthy primary.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import hiredis

from ..config import PoolConfig, UpstreamConfig
from ..upstream.connection import DISCARD, UpstreamConnection, Waiter
from ..upstream.credentials import Credential, PoolKey
from ..upstream.manager import UpstreamManager
from ..wire.resp import encode_command
from .discovery import discover
from .refresh import RefreshPolicy
from .slots import SLOTS
from .topology import Address, SlotMap

log = logging.getLogger("sidecar.cluster")

READONLY = encode_command([b"READONLY"])
REFRESH_PERIOD = 15.0  # seconds between periodic reads of the layout (jittered)
REFRESH_MIN_INTERVAL = 0.5  # at most two reads a second, however many MOVED replies or failures ask for one


def address_of(manager: UpstreamManager) -> Address:
    return (manager.target.host, manager.target.port)


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    nodes: int
    primaries: int
    slots_served: int
    epoch: int
    refreshes: int
    refresh_failures: int
    counts: dict[str, int]


class ClusterUpstream:
    """The nodes of one cluster and its slot map (see the module docstring)."""

    def __init__(self, cfg: UpstreamConfig, pool_cfg: PoolConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg, self.pool_cfg, self.loop = cfg, pool_cfg, loop
        self.login = Credential(cfg.username, cfg.password)
        self.nodes: dict[Address, UpstreamManager] = {}
        self.slot_map: SlotMap | None = None
        self.ready: asyncio.Future[None] = loop.create_future()
        self.policy = RefreshPolicy(self._refresh, min_interval=REFRESH_MIN_INTERVAL, period=REFRESH_PERIOD)
        self.on_home: Callable[[UpstreamManager], None] | None = None  # the runtime re-points its services
        self._credential_lost: Callable[[Credential], None] | None = None
        self._readonly: weakref.WeakSet[UpstreamConnection] = weakref.WeakSet()
        self.started = False
        self.counts = {"moved": 0, "ask": 0, "retries": 0, "split": 0, "fanout": 0, "replica_reads": 0}
        self.home = self.manager(cfg.seeds[0])

    @property
    def default_key(self) -> PoolKey:
        return PoolKey(self.login, 0, 2)

    # -- nodes ---------------------------------------------------------------------------------------------------
    def manager(self, address: Address) -> UpstreamManager:
        """The node's manager, made on first use (a node a MOVED names before the map does, too)."""
        manager = self.nodes.get(address)
        if manager is None:
            node_cfg = dataclasses.replace(self.cfg, host=address[0], port=address[1], unix_socket=None)
            manager = self.nodes[address] = UpstreamManager(node_cfg, self.pool_cfg, self.loop)
            manager.on_credential_lost = self._credential_lost
            if self.started:
                manager.start_watchdog()
        return manager

    def set_credential_lost(self, callback: Callable[[Credential], None]) -> None:
        self._credential_lost = callback
        for manager in self.nodes.values():
            manager.on_credential_lost = callback

    def configure(self, cfg: UpstreamConfig, pool_cfg: PoolConfig) -> None:
        """A reload that keeps the cluster and its login: new timeouts and pool bounds on every node."""
        self.cfg, self.pool_cfg = cfg, pool_cfg
        for address, manager in self.nodes.items():
            manager.configure(dataclasses.replace(cfg, host=address[0], port=address[1], unix_socket=None), pool_cfg)

    def owner(self, slot: int) -> UpstreamManager | None:
        """The primary serving ``slot``; None while no node claims it (or before the map is known)."""
        address = self.slot_map.primary_for_slot(slot) if self.slot_map is not None else None
        return self.manager(address) if address is not None else None

    def node(self, slot: int | None) -> UpstreamManager:
        """Where a command for ``slot`` goes: its primary, or home (keyless, or a slot nobody serves: the node's own
        -CLUSTERDOWN is the answer then)."""
        owner = self.owner(slot) if slot is not None else None
        return owner or self.home

    def replica(self, slot: int, prefer: object = None) -> UpstreamManager | None:
        """A healthy replica of the shard serving ``slot`` for a read (``read_from: replica``): ``prefer`` (the
        manager a client's reads are in flight on) if it is one, else one at random; None when the shard has none.
        Its connections need ``readonly`` before the first read."""
        shard = self.slot_map.shard_for_slot(slot) if self.slot_map is not None else None
        replicas = [self.manager(n.address) for n in shard.replicas if n.healthy] if shard is not None else []
        if prefer in replicas:
            return prefer
        return random.choice(replicas) if replicas else None

    def readonly(self, conn: UpstreamConnection) -> None:
        """Mark a replica connection READONLY once (the flag lives on the connection)."""
        if conn not in self._readonly:
            self._readonly.add(conn)
            conn.send(READONLY, DISCARD)

    def primaries_in_order(self) -> list[tuple[int, UpstreamManager]]:
        """(first slot served, primary) for every primary serving slots, by first slot: SCAN's order."""
        if self.slot_map is None:
            return []
        return [(s.slots[0][0], self.manager(s.primary.address)) for s in self.slot_map.shards if s.slots]

    def primaries(self) -> list[UpstreamManager]:
        """Every primary, fan-out commands' targets (before the map is known: home alone)."""
        if self.slot_map is None:
            return [self.home]
        return [self.manager(address) for address in self.slot_map.primaries()]

    # -- the layout ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Watchdogs on every node, the first discovery now, the periodic refresh from then on."""
        self.started = True
        for manager in self.nodes.values():
            manager.start_watchdog()
        self.policy.request()
        self.policy.start()

    def refresh(self) -> None:
        """Ask for a refresh (a node failed, or said the layout changed); many asks make one."""
        if self.started:
            self._check_home()
            self.policy.request()

    def _check_home(self) -> None:
        """Home's node is down: another primary that is not known down serves keyless commands, credential checks
        and the pub/sub hub from now on, without waiting for a replica to take over (any primary answers those)."""
        if self.home.up or not self.home.ever_up or self.slot_map is None:
            return
        for address in self.slot_map.primaries():
            manager = self.manager(address)
            if manager is not self.home and (manager.up or not manager.ever_up) and not manager.in_backoff():
                self._set_home(manager)
                return

    def _set_home(self, manager: UpstreamManager) -> None:
        self.home = manager
        log.warning("cluster: home node is now %s", manager.address, extra={"event": "cluster_home"})
        if self.on_home is not None:
            self.on_home(manager)

    def moved(self, slot: int, address: Address) -> None:
        """A MOVED: the slot lives at ``address`` now. The map follows at once, a full refresh soon after."""
        self.counts["moved"] += 1
        if self.slot_map is not None and self.slot_map.primary_for_slot(slot) != address:
            self.slot_map = self.slot_map.moved(slot, address)
        self.refresh()

    async def _fetch(self, address: Address, args: Sequence[str]) -> Any:
        """One question to one node on the sidecar's own shared connection, decoded (an error comes back as
        hiredis' ReplyError value, which discovery understands)."""
        conn = self.manager(address).shared_conn(self.default_key)
        waiter = Waiter(self.loop)
        conn.send(encode_command([a.encode() for a in args]), waiter)
        frame = await waiter.future
        reader = hiredis.Reader()
        reader.feed(frame)
        return reader.gets()

    async def _refresh(self) -> None:
        known = self.slot_map.addresses() if self.slot_map is not None else ()
        seeds = list(dict.fromkeys([*known, *self.cfg.seeds]))
        self.install(await discover(seeds, self._fetch, tls=self.cfg.tls.enabled,
                                    timeout=self.cfg.connect_timeout))

    def install(self, slot_map: SlotMap) -> None:
        """Route by ``slot_map`` from now on; open pools on new primaries, move home if it must, retire nodes the
        cluster no longer names."""
        old, self.slot_map = self.slot_map, slot_map
        for address in slot_map.primaries():
            if address not in self.nodes:
                self.manager(address).prewarm(self.default_key)
        healthy = [s.primary.address for s in slot_map.shards if s.primary.healthy and s.slots]
        if address_of(self.home) not in healthy and healthy:
            self._set_home(self.manager(healthy[0]))
        self._check_home()
        keep = {*slot_map.addresses(), *self.cfg.seeds, address_of(self.home)}
        for address in [a for a in self.nodes if a not in keep]:
            self.loop.create_task(self.nodes.pop(address).retire(self.cfg.reply_timeout))
        if old != slot_map:
            log.info("cluster layout: %r", slot_map, extra={"event": "cluster_layout"})
        if not self.ready.done():
            self.ready.set_result(None)

    # -- ending --------------------------------------------------------------------------------------------------
    async def retire(self, timeout: float) -> None:
        """A reload moved to another upstream: every node's connections close once given back, or at ``timeout``."""
        await self.policy.close()
        await asyncio.gather(*(m.retire(timeout) for m in list(self.nodes.values())))

    async def close_all(self, reason: str = "sidecar shutting down") -> None:
        await self.policy.close()
        for manager in list(self.nodes.values()):
            await manager.close_all(reason)

    def snapshot(self) -> ClusterSnapshot:
        slot_map = self.slot_map
        return ClusterSnapshot(
            nodes=len(slot_map.addresses()) if slot_map else 0, primaries=len(slot_map.primaries()) if slot_map else 0,
            slots_served=SLOTS - slot_map.uncovered() if slot_map else 0, epoch=slot_map.epoch if slot_map else 0,
            refreshes=self.policy.runs, refresh_failures=self.policy.failures, counts=dict(self.counts))
