"""The one object every client session shares, in uvicorn's manner: sessions read through it and nothing else.

A ``Runtime`` is built from a validated ``Config``; a reload builds a new one (keeping the upstream connections when
the upstream and its login did not change) and swaps it in the ``RuntimeHandle`` every session holds. No session is
ever patched: each reads the runtime in force when it handles its next command, and moves to new upstream
connections once its in-flight commands are answered.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import hiredis

from .access.auth import Authenticator, Identity
from .access.permissions import Permissions
from .cluster.nodes import ClusterUpstream
from .commands.table import CommandTable
from .config import Config
from .services.batch import EndOfTurn
from .services.pubsub import Hub
from .services.registry import ClientRegistry
from .services.shards import ShardHubs
from .services.stats import Sampler, Stats
from .upstream.connection import UpstreamError, Waiter
from .upstream.control import Control
from .upstream.credentials import Credential, PoolKey
from .upstream.manager import UpstreamManager
from .wire.resp import RequestLimits, encode_command

# Upstream settings that name another server or login: a change means new connections (a new manager).
TARGET_FIELDS = ("host", "port", "unix_socket", "username", "password", "tls", "mode", "seeds")


def _no_admin(args: list[bytes], proto: int, identity: Identity | None) -> bytes:
    return b"-ERR admin commands are not available\r\n"


@dataclass(slots=True)
class Hooks:
    """Upward calls, set by the layer that wires the sidecar together (ops answers these; sessions call them)."""

    info_section: Callable[[], str] = lambda: ""
    admin: Callable[[list[bytes], int, Identity | None], bytes] = _no_admin


@dataclass(slots=True, eq=False)
class Runtime:
    cfg: Config
    loop: asyncio.AbstractEventLoop
    table: CommandTable
    manager: UpstreamManager
    control: Control
    auth: Authenticator
    permissions: Permissions
    hub: Hub
    limits: RequestLimits
    stats: Stats
    registry: ClientRegistry
    sampler: Sampler
    hooks: Hooks
    output: OutputBudget = field(default_factory=lambda: OutputBudget())
    cluster: ClusterUpstream | None = None  # a Redis Cluster upstream: its nodes; ``manager`` is its home node
    shard_hubs: ShardHubs | None = None  # on a cluster, SSUBSCRIBE's hubs: one per node
    learned: asyncio.Event = field(default_factory=asyncio.Event)  # COMMAND was asked (answered or refused)

    @property
    def default_key(self) -> PoolKey:
        return PoolKey(self.manager.login, self.cfg.upstream.db, 2)

    # -- the upstream's lifecycle (one server, or a cluster's nodes) ------------------------------------------------
    def start_upstream(self) -> None:
        if self.cluster is not None:
            self.cluster.start()
        else:
            self.manager.start_watchdog()
            self.manager.prewarm(self.default_key)

    def retire_upstream(self, timeout: float) -> None:
        """A reload moved to another upstream: this one's connections close once given back."""
        self.control.close()
        self.loop.create_task(self.cluster.retire(timeout) if self.cluster is not None
                              else self.manager.retire(timeout))

    async def close_upstream(self) -> None:
        self.control.close()
        if self.cluster is not None:
            await self.cluster.close_all()
        else:
            await self.manager.close_all()

    def rehome(self, manager: UpstreamManager) -> None:
        """The cluster's home node moved (its node failed or was demoted): keyless commands, the pub/sub hub and
        credential checks follow it."""
        manager.client_fields = manager.client_fields or self.manager.client_fields
        self.manager = self.control.manager = self.hub.manager = manager

    def routable(self) -> bool:
        """Commands can be routed: always for one server; on a cluster once its layout and key specs are known."""
        cluster = self.cluster
        return cluster is None or (cluster.ready.done() and self.learned.is_set())

    async def until_routable(self) -> None:
        """Wait (up to ``upstream.reply_timeout``) until ``routable``; else say why not."""
        assert self.cluster is not None
        timeout = self.cfg.upstream.reply_timeout
        try:
            await asyncio.wait_for(asyncio.gather(asyncio.shield(self.cluster.ready), self.learned.wait()), timeout)
        except asyncio.TimeoutError:
            why = self.cluster.policy.last_error
            raise UpstreamError(f"ERR the cluster's layout is not known yet ({why or 'no seed answered'}; waited "
                                f"{timeout:g}s, upstream.reply_timeout)") from None

    async def learn_upstream(self) -> None:
        """Learn what the server says about itself, once it answers (tried again while it cannot be reached):
        its commands' flags (COMMAND: the table classifies by them from now on, a module's commands included),
        its largest argument (``proto-max-bulk-len``: a bigger one is refused here, as the server would, instead
        of costing a shared connection), and its CLIENT INFO fields (the sidecar's CLIENT LIST has the same)."""
        delay = 0.5
        while True:
            try:
                conn = self.manager.shared_conn(self.default_key)
                replies = [Waiter(self.loop) for _ in range(3)]
                for waiter, args in zip(replies, ([b"COMMAND"], [b"CONFIG", b"GET", b"proto-max-bulk-len"],
                                                  [b"CLIENT", b"INFO"])):
                    conn.send(encode_command(args), waiter)
                command, limit, client = [await w.future for w in replies]
            except UpstreamError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            break
        reader = hiredis.Reader()
        if command[:1] != b"-":  # (not allowed to the sidecar's login: the static table stays)
            reader.feed(command)
            self.table = self.table.learn(reader.gets())
        if limit[:1] in (b"*", b"%"):
            reader.feed(limit)
            pairs = reader.gets()
            values = list(pairs.values()) if isinstance(pairs, dict) else pairs[1::2]
            if values and int(values[0]) < self.limits.max_bulk_len:
                self.limits = dataclasses.replace(self.limits, max_bulk_len=int(values[0]))
        if client[:1] in (b"$", b"="):
            reader.feed(client)
            text = reader.gets()
            self.manager.client_fields = tuple(
                tuple(field.split("=", 1)) for field in (text.decode() if isinstance(text, bytes) else text).split())
        self.learned.set()

    @classmethod
    def build(cls, cfg: Config, loop: asyncio.AbstractEventLoop, previous: Runtime | None = None) -> Runtime:
        """A runtime for ``cfg``; with ``previous``, its upstream connections, counters and clients carry over
        unless the upstream server or login changed."""
        same_target = previous is not None and all(
            getattr(previous.cfg.upstream, f) == getattr(cfg.upstream, f) for f in TARGET_FIELDS)
        cluster = shard_hubs = None
        if previous is not None and same_target:
            manager, control, hub = previous.manager, previous.control, previous.hub
            cluster, shard_hubs = previous.cluster, previous.shard_hubs
            if cluster is not None:
                cluster.configure(cfg.upstream, cfg.pool)
            else:
                manager.configure(cfg.upstream, cfg.pool)
        else:
            if cfg.upstream.mode == "cluster":
                cluster = ClusterUpstream(cfg.upstream, cfg.pool, loop)
                shard_hubs = ShardHubs(cluster)
            manager = cluster.home if cluster is not None else UpstreamManager(cfg.upstream, cfg.pool, loop)
            control, hub = Control(manager), Hub(manager)
        auth = Authenticator(cfg.client_auth, manager.login, control, cfg.limits.auth_failures_per_minute)
        permissions = Permissions(control, manager.login, cfg.client_auth.passthrough_ttl)

        def credential_lost(login: Credential) -> None:
            auth.forget(login)
            permissions.forget(login)

        if cluster is not None:
            cluster.set_credential_lost(credential_lost)
        else:
            manager.on_credential_lost = credential_lost
        sampler = previous.sampler if previous else Sampler(cfg.metrics.latency_sample)
        sampler.every = cfg.metrics.latency_sample if cfg.metrics.listen else 0  # (nobody reads them otherwise)
        specs = previous.table.specs if previous is not None and same_target else None
        rt = cls(cfg=cfg, loop=loop, table=CommandTable.for_config(cfg.commands, specs), manager=manager,
                 control=control,
                 auth=auth, permissions=permissions, hub=hub,
                 limits=RequestLimits(max_bulk_len=cfg.limits.proto_max_bulk_len,
                                      max_multibulk_len=cfg.limits.max_multibulk_len),
                 stats=previous.stats if previous else Stats(),
                 registry=previous.registry if previous else ClientRegistry(), sampler=sampler,
                 hooks=previous.hooks if previous else Hooks(),
                 output=previous.output if previous else OutputBudget(), cluster=cluster, shard_hubs=shard_hubs)
        if previous is not None and same_target:
            rt.learned = previous.learned  # (a learning still under way sets it for both)
        if cluster is not None:
            cluster.on_home = rt.rehome
        return rt


class OutputBudget:
    """Replies queued for all clients together (``limits.total_output_buffer``): each session reports what it
    holds, and the largest holder is cut off when the total passes the bound."""

    __slots__ = ("total", "holders")

    def __init__(self) -> None:
        self.total = 0
        self.holders: dict[object, int] = {}

    def report(self, holder: object, size: int) -> None:
        if not size and holder not in self.holders:
            return  # the common case: a client that holds nothing and held nothing
        before = self.holders.get(holder, 0)
        if size:
            self.holders[holder] = size
        elif before:
            del self.holders[holder]
        self.total += size - before

    def largest(self) -> object | None:
        return max(self.holders, key=self.holders.__getitem__) if self.holders else None


class RuntimeHandle:
    """What a session holds: the runtime in force, swapped whole by a reload, and the end-of-turn batch its
    writes join."""

    __slots__ = ("current", "end_of_turn")

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime
        self.end_of_turn = EndOfTurn(runtime.loop)
