"""The ``SIDECAR`` admin commands and the ``# Sidecar`` section of INFO, answered from snapshots.

Only clients authenticated as an admin may run ``SIDECAR``: in ``password`` mode a ``client_auth.users`` entry with
``admin: true``; in ``passthrough`` and ``none`` modes ``client_auth.users`` holds only admin users, whose passwords
the sidecar checks itself (the upstream never sees them). With no admin user configured nobody is an admin.

    redis-cli -p 6380 --user ops --pass "$OPS_PASSWORD" SIDECAR INFO | CLIENTS | POOLS | CONFIG | RELOAD | HELP
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Callable
from typing import Protocol, cast
from urllib.parse import urlsplit

import yaml

from .. import __version__
from ..access.auth import Identity
from ..client.client_command import client_line, info_fields
from ..client.session import Session
from ..cluster.sentinel import SentinelWatch
from ..config import Config
from ..runtime import RuntimeHandle
from ..upstream.manager import ManagerSnapshot
from ..wire import resp

HELP = [
    "SIDECAR <subcommand> [<arg> ...]. Subcommands are:",
    "INFO",
    "    The sidecar's counters, upstream pools, pub/sub hub and reload state.",
    "CLIENTS",
    "    Every client connection (CLIENT LIST fields, plus inflight=, lease= and wait=).",
    "POOLS",
    "    Every upstream pool: shared, leased and pub/sub connections with their states.",
    "CONFIG",
    "    The configuration in force, as YAML, secrets hidden.",
    "RELOAD",
    "    Read the configuration again and apply it (as SIGHUP does); refused if it does not validate.",
    "HELP",
    "    Print this help.",
]


class SidecarView(Protocol):
    """What ops surfaces read of a running sidecar (the server provides it)."""

    handle: RuntimeHandle
    started: float
    worker: int | None
    draining: bool
    listening: bool
    sentinels: SentinelWatch | None

    def reload(self) -> list[str]: ...


# -- INFO -----------------------------------------------------------------------------------------------------------

def info_fields_of(view: SidecarView) -> dict[str, object]:
    """The ``# Sidecar`` section: counters only, no secrets, nothing about other clients."""
    rt = view.handle.current
    st, registry = rt.stats, rt.registry
    snap = rt.manager.snapshot()
    hub = rt.hub.snapshot()
    ready = sum(n for state, n in snap.by_state.items() if state not in ("connecting",))
    return {
        "sidecar_version": __version__,
        "process_id": os.getpid(),
        "sidecar_worker": view.worker if view.worker is not None else 0,
        "sidecar_workers": rt.cfg.workers,
        "wire_speedups": int(resp.SPEEDUPS),  # 1: the request parser and reply framer are the C extension's
        "uptime_in_seconds": int(time.monotonic() - view.started),
        "upstream_address": snap.address,
        "upstream_up": int(snap.up),
        "connected_clients": len(registry),
        "total_connections_received": registry.accepted,
        "rejected_connections": registry.rejected,
        "total_commands_processed": st.commands,
        **{f"commands_{route.value}": n for route, n in sorted(st.by_route.items(), key=lambda i: i[0].value)},
        "round_trips_saved": sum(st.local.values()),
        "auth_failures": st.auth_failures,
        "upstream_connections": sum(snap.by_state.values()),
        "upstream_connections_ready": ready,
        "upstream_connects": snap.connects,
        "upstream_connect_failures": snap.connect_failures,
        "upstream_reply_timeouts": snap.reply_timeouts,
        "leases_in_use": sum(snap.lent.values()),
        "lease_waiters": sum(snap.lease_waiters.values()),
        "pubsub_channels": hub.channels + hub.shard_channels,
        "pubsub_patterns": hub.patterns,
        "pubsub_subscribers": hub.subscribers,
        "config_reloads": st.reloads_ok,
        "config_reloads_refused": st.reloads_failed,
        "draining": int(view.draining),
        **topology_fields(view),
    }


def topology_fields(view: SidecarView) -> dict[str, object]:
    """What a cluster or Sentinel upstream adds: its nodes and layout reads, redirections, failovers followed."""
    rt = view.handle.current
    fields: dict[str, object] = {"upstream_mode": rt.cfg.upstream.mode}
    if rt.cluster is not None:
        snap = rt.cluster.snapshot()
        fields.update({"cluster_nodes": snap.nodes, "cluster_primaries": snap.primaries,
                       "cluster_slots_served": snap.slots_served, "cluster_layout_reads": snap.refreshes,
                       "cluster_layout_read_failures": snap.refresh_failures,
                       **{f"cluster_{name}": n for name, n in snap.counts.items()}})
    if view.sentinels is not None:
        fields.update({"sentinel_master_name": view.sentinels.name, "sentinel_switches": view.sentinels.switches})
    return fields


def info_section(view: SidecarView) -> str:
    return "# Sidecar\r\n" + "".join(f"{k}:{v}\r\n" for k, v in info_fields_of(view).items())


# -- SIDECAR ---------------------------------------------------------------------------------------------------------

def _info(view: SidecarView, args: list[bytes], proto: int) -> bytes:
    cfg = view.handle.current.cfg
    lines = [info_section(view), "\r\n# Limits\r\n"]
    lines += [f"{k}:{v}\r\n" for k, v in (
        ("pool_size", cfg.pool.size), ("lease_max", cfg.pool.lease_max), ("blocking_max", cfg.pool.blocking_max),
        ("lease_idle", cfg.pool.lease_idle), ("lease_wait", cfg.pool.lease_wait),
        ("max_clients", cfg.limits.max_clients), ("max_pipeline", cfg.limits.max_pipeline),
        ("client_auth_mode", cfg.client_auth.mode), ("log_level", cfg.log.level),
        ("shutdown_timeout", cfg.shutdown_timeout))]
    return resp.verbatim("".join(lines), proto)


def _clients(view: SidecarView, args: list[bytes], proto: int) -> bytes:
    lines = []
    for entry in view.handle.current.registry:
        client = cast(Session, entry)
        fields = info_fields(client)
        fields["inflight"] = client.inflight
        fields["lease"] = client.lease_kind.value if client.lease_kind else "none"
        fields["wait"] = client.wait.value if client.wait else "none"
        lines.append(client_line(fields))
    return resp.verbatim("".join(lines), proto)


def _pools(view: SidecarView, args: list[bytes], proto: int) -> bytes:
    """Every upstream pool; on a cluster, every node's (the home node first), each under its own upstream= line."""
    rt = view.handle.current
    managers = [rt.manager]
    if rt.cluster is not None:
        managers += [m for m in rt.cluster.nodes.values() if m is not rt.manager]
    lines = []
    for manager in managers:
        lines += _manager_pools(manager.snapshot(), rt.cfg)
    for login, hub in list(rt.hub.hubs.items()):
        up = hub.conn is not None and hub.conn.alive
        lines.append(f"pool=pubsub user={login.user} resp={hub.proto} connected={int(up)} "
                     + " ".join(f"{kind.value}s={len(names)}" for kind, names in hub.members.items()) + "\n")
    return resp.verbatim("".join(lines), proto)


def _manager_pools(snap: ManagerSnapshot, cfg: Config) -> list[str]:
    lines = [f"upstream={snap.address} up={int(snap.up)} pool_size={cfg.pool.size} lease_max={cfg.pool.lease_max} "
             f"blocking_max={cfg.pool.blocking_max} lent_held={snap.lent.get('held', 0)} "
             f"lent_call={snap.lent.get('call', 0)} waiters={sum(snap.lease_waiters.values())} "
             + " ".join(f"{state}={n}" for state, n in snap.by_state.items()) + "\n"]
    for pool in snap.pools:
        lines.append(f"pool={pool.kind} user={pool.user} db={pool.db} resp={pool.proto} conns={pool.connections} "
                     f"ready={pool.ready} connecting={pool.connecting} inflight={pool.inflight} lent={pool.lent} "
                     f"idle={pool.idle}\n")
    return lines


def redacted(obj: object) -> object:
    """The config as plain data; fields kept out of repr (passwords) show only whether they are set."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            out[f.name] = ("(set)" if value is not None else None) if not f.repr else redacted(value)
        return out
    if isinstance(obj, tuple):
        return [redacted(v) for v in obj]
    if isinstance(obj, str) and "://" in obj:  # a URL's password (upstream.url)
        parts = urlsplit(obj)
        if parts.password is not None:  # the hosts kept as written: a cluster url lists several
            netloc = f"{parts.username or ''}:(hidden)@{parts.netloc.rpartition('@')[2]}"
            return parts._replace(netloc=netloc).geturl()
    return obj


def _config(view: SidecarView, args: list[bytes], proto: int) -> bytes:
    return resp.verbatim(yaml.safe_dump(redacted(view.handle.current.cfg), sort_keys=False), proto)


def _reload(view: SidecarView, args: list[bytes], proto: int) -> bytes:
    from .reload import ReloadError

    try:
        changed = view.reload()
    except ReloadError as exc:
        return resp.error(f"ERR reload refused, the running configuration stays in force: {exc}")
    if view.worker is not None:  # let the supervisor carry it to the other workers
        try:
            os.kill(os.getppid(), signal.SIGHUP)
        except OSError:
            pass
    return resp.simple(f"OK reloaded, changed: {', '.join(changed)}" if changed else "OK reloaded, no changes")


def _help(view: SidecarView, args: list[bytes], proto: int) -> bytes:
    return resp.array([resp.simple(line) for line in HELP])


SUBCOMMANDS: dict[bytes, Callable[[SidecarView, list[bytes], int], bytes]] = {
    b"info": _info, b"clients": _clients, b"pools": _pools, b"config": _config, b"reload": _reload, b"help": _help,
}


def handler(view: SidecarView) -> Callable[[list[bytes], int, Identity | None], bytes]:
    """The SIDECAR command for the runtime's hooks."""

    def sidecar(args: list[bytes], proto: int, identity: Identity | None) -> bytes:
        if identity is None or not identity.admin:
            user = identity.user if identity else "default"
            return resp.error(f"NOPERM User {user} has no permissions to run the 'sidecar' command (it needs an "
                              "admin user: client_auth.users[].admin)")
        if len(args) < 2:
            return resp.error("ERR wrong number of arguments for 'sidecar' command")
        sub = SUBCOMMANDS.get(args[1].lower())
        if sub is None:
            return resp.error(f"ERR unknown subcommand '{args[1].decode(errors='replace')[:128]}'. Try SIDECAR HELP.")
        return sub(view, args, proto)

    return sidecar
