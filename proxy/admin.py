"""The ``SIDECAR`` admin commands and the ``# Sidecar`` section of INFO, answered by the sidecar from redis-cli.

Only clients authenticated as an admin may run ``SIDECAR``: in ``password`` mode a ``client_auth.users`` entry with
``admin: true``; in ``passthrough`` and ``none`` modes ``client_auth.users`` holds only admin users, whose passwords
the sidecar checks itself (the upstream never sees them) and whose data commands run with the sidecar's own upstream
login. With no admin user configured nobody is an admin: secure by default.

    redis-cli -p 6380 --user ops --pass "$OPS_PASSWORD" SIDECAR INFO | CLIENTS | POOLS | CONFIG | RELOAD | HELP
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import signal
import time
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlsplit

import yaml

from . import __version__
from .wire import resp
from .auth import WRONGPASS, Identity

if TYPE_CHECKING:
    from .server import Server
    from .session import Session

HELP = [
    "SIDECAR <subcommand> [<arg> ...]. Subcommands are:",
    "INFO",
    "    The sidecar's counters, upstream pools, pub/sub hub and reload state.",
    "CLIENTS",
    "    Every client connection (CLIENT LIST fields, plus inflight= and lease=).",
    "POOLS",
    "    Every upstream pool: shared, leased and pub/sub connections with their states.",
    "CONFIG",
    "    The configuration in force, as YAML, secrets hidden.",
    "RELOAD",
    "    Read the configuration again and apply it (as SIGHUP does); refused if it does not validate.",
    "HELP",
    "    Print this help.",
]


# -- authentication of admin users in passthrough and none modes ----------------------------------------------------

def login(server: "Server", username: str | None, password: str) -> Identity | str | None:
    """An admin identity or WRONGPASS for a configured admin user; None for anyone else (the normal checks apply).

    In password mode the admin users are ordinary sidecar users (``Authenticator`` handles them).
    """
    cfg = server.auth.cfg
    if cfg.mode == "password" or username is None:
        return None
    for user in cfg.users:
        if user.name == username:
            given = hashlib.sha256(password.encode(errors="surrogateescape")).digest()
            if user.password is not None and hmac.compare_digest(hashlib.sha256(user.password.encode()).digest(),
                                                                 given):
                return Identity(user.name, server.auth.upstream, admin=True)
            return WRONGPASS
    return None


# -- INFO -----------------------------------------------------------------------------------------------------------

INFO_ALL = frozenset({b"default", b"all", b"everything", b"sidecar"})


def info_fields(server: "Server") -> dict[str, object]:
    """The ``# Sidecar`` section: no secrets, nothing a client of the upstream could not already learn."""
    st = server.stats
    snap = server.manager.snapshot()
    hub = server.hub.snapshot()
    by_state = snap.get("by_state", {})
    return {
        "sidecar_version": __version__,
        "process_id": os.getpid(),
        "sidecar_worker": server.worker if server.worker is not None else 0,
        "sidecar_workers": server.cfg.workers,
        "uptime_in_seconds": int(time.monotonic() - server.started),
        "upstream_address": server.manager.address,
        "upstream_up": int(server.manager.healthy),
        "connected_clients": len(server.sessions),
        "total_connections_received": st.accepted,
        "rejected_connections": st.rejected,
        "total_commands_processed": st.commands,
        **{f"commands_{route}": n for route, n in st.by_route.items()},
        "round_trips_saved": sum(st.local.values()),
        "auth_failures": st.auth_failures,
        "upstream_connections": snap.get("connections", 0),
        "upstream_connections_ready": sum(n for k, n in by_state.items() if k.endswith("_ready")),
        "upstream_connects": snap.get("connects", 0),
        "upstream_connect_failures": snap.get("connect_failures", 0),
        "leases_in_use": snap.get("leased", 0),
        "lease_waiters": snap.get("lease_waiters", 0),
        "pubsub_channels": hub.get("channels", 0),
        "pubsub_patterns": hub.get("patterns", 0),
        "pubsub_subscribers": hub.get("subscribers", 0),
        "config_reloads": st.reloads_ok,
        "config_reloads_refused": st.reloads_failed,
        "draining": int(server.draining),
    }


def info_section(server: "Server") -> str:
    return "# Sidecar\r\n" + "".join(f"{k}:{v}\r\n" for k, v in info_fields(server).items())


def _append_section(frame: bytes, section: str) -> bytes:
    """Add the section to the upstream's INFO reply (a RESP2 bulk or a RESP3 verbatim string); errors pass."""
    kind = frame[:1]
    if kind not in (b"$", b"="):
        return frame
    head, _, rest = frame.partition(b"\r\n")
    length = int(head[1:])
    if length < 0:
        return frame
    body = rest[:length]
    prefix = b""
    if kind == b"=":
        prefix, body = body[:4], body[4:]
    text = section.encode()
    if body.strip():
        body = body.rstrip(b"\r\n") + b"\r\n\r\n" + text
    else:
        body = text
    body = prefix + body
    return kind + b"%d\r\n" % len(body) + body + b"\r\n"


def cmd_info(s: "Session", args: list[bytes]) -> None:
    """INFO runs upstream; the sidecar appends ``# Sidecar`` when the sections asked for include it."""
    sections = {a.lower() for a in args[1:]}
    raw = resp.encode_command(args)
    if sections and not sections & INFO_ALL:
        s.forward(raw)
        return
    if sections == {b"sidecar"}:  # only ours: no upstream round trip
        s.reply(resp.verbatim(info_section(s.server), s.proto))
        return
    slot = s.forward(raw)
    if slot is not None:
        server = s.server
        slot.transform = lambda frame: _append_section(frame, info_section(server))


# -- SIDECAR ---------------------------------------------------------------------------------------------------------

def _text(s: "Session", text: str) -> bytes:
    return resp.verbatim(text, s.proto)


def _info(s: "Session", args: list[bytes]) -> bytes:
    server = s.server
    cfg = server.cfg
    lines = [info_section(server), "\r\n# Limits\r\n"]
    lines += [f"{k}:{v}\r\n" for k, v in (
        ("pool_size", cfg.pool.size), ("lease_max", cfg.pool.lease_max), ("lease_idle", cfg.pool.lease_idle),
        ("lease_wait", cfg.pool.lease_wait), ("max_clients", cfg.limits.max_clients),
        ("max_pipeline", cfg.limits.max_pipeline), ("client_auth_mode", cfg.client_auth.mode),
        ("log_level", cfg.log.level), ("shutdown_timeout", cfg.shutdown_timeout))]
    return _text(s, "".join(lines))


def _clients(s: "Session", args: list[bytes]) -> bytes:
    lines = []
    for other in list(s.server.sessions.values()):
        fields = other.info_fields()
        fields["inflight"] = other.inflight
        fields["lease"] = other.lease_kind or "none"
        lines.append(" ".join(f"{k}={v}" for k, v in fields.items()) + "\n")
    return _text(s, "".join(lines))


def _pools(s: "Session", args: list[bytes]) -> bytes:
    manager = s.server.manager
    cfg = s.server.cfg
    lines = [f"upstream={manager.address} up={int(manager.healthy)} pool_size={cfg.pool.size} "
             f"lease_max={cfg.pool.lease_max} leased={len(manager.leased)} waiters={len(manager.lease_waiters)}\n"]

    def key_text(key) -> str:
        return f"user={key.cred.user} db={key.db} resp={key.proto}"

    for key, pool in list(manager.shared.items()):
        states = [c.state for c in pool.conns]
        lines.append(f"pool=shared {key_text(key)} conns={len(pool.conns)} ready={states.count('ready')} "
                     f"connecting={states.count('connecting')} inflight={sum(c.load for c in pool.conns)}\n")
    leased: dict = {}
    for conn in list(manager.leased):
        leased[conn.key] = leased.get(conn.key, 0) + 1
    for key in sorted(set(leased) | set(manager.idle), key=key_text):
        lines.append(f"pool=lease {key_text(key)} leased={leased.get(key, 0)} "
                     f"idle={len(manager.idle.get(key, ()))}\n")
    for key, hub in list(s.server.hub.hubs.items()):
        up = hub.conn is not None and hub.conn.alive
        lines.append(f"pool=pubsub user={key.cred.user} resp={key.proto} connected={int(up)} "
                     f"channels={len(hub.members['channel'])} patterns={len(hub.members['pattern'])} "
                     f"shard_channels={len(hub.members['shard'])}\n")
    return _text(s, "".join(lines))


def redacted(obj: object) -> object:
    """The config as plain data; fields kept out of repr (passwords) show only whether they are set."""
    if dataclasses.is_dataclass(obj):
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


def _config(s: "Session", args: list[bytes]) -> bytes:
    return _text(s, yaml.safe_dump(redacted(s.server.cfg), sort_keys=False))


def _reload(s: "Session", args: list[bytes]) -> bytes:
    from .reload import ReloadError, reload

    try:
        changed = reload(s.server)
    except ReloadError as exc:
        return resp.error(f"ERR reload refused, the running configuration stays in force: {exc}")
    if s.server.worker is not None:  # let the supervisor carry it to the other workers
        try:
            os.kill(os.getppid(), signal.SIGHUP)
        except OSError:
            pass
    return resp.simple(f"OK reloaded, changed: {', '.join(changed)}" if changed else "OK reloaded, no changes")


def _help(s: "Session", args: list[bytes]) -> bytes:
    return resp.array([resp.simple(line) for line in HELP])


SUBCOMMANDS: dict[bytes, Callable[["Session", list[bytes]], bytes]] = {
    b"info": _info, b"clients": _clients, b"pools": _pools, b"config": _config, b"reload": _reload, b"help": _help,
}


def cmd_sidecar(s: "Session", args: list[bytes]) -> None:
    identity = s.identity
    if identity is None or not identity.admin:
        s.reply(resp.error(f"NOPERM User {identity.user if identity else 'default'} has no permissions to run the "
                           "'sidecar' command (it needs an admin user: client_auth.users[].admin)"))
        return
    if len(args) < 2:
        s.reply(resp.error("ERR wrong number of arguments for 'sidecar' command"))
        return
    handler = SUBCOMMANDS.get(args[1].lower())
    if handler is None:
        s.reply(resp.error(f"ERR unknown subcommand '{args[1].decode(errors='replace')[:128]}'. Try SIDECAR HELP."))
        return
    s.reply(handler(s, args))
