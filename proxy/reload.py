"""Hot reload: apply a new, validated ``Config`` to a running ``Server`` without dropping its clients.

Triggered by SIGHUP and ``SIDECAR RELOAD``. The file (and environment, and the original flags) are read again; a
configuration that does not validate is refused with one log line and the running one stays in force. Otherwise:

- pool sizes, lease limits, timeouts and limits apply at once, to connected clients too (each session's ``cfg`` is
  swapped; every read of a limit goes through it); surplus shared connections are retired once they are idle;
- client users, passwords and the auth mode apply to the next AUTH; authenticated clients stay authenticated;
- the command deny-list applies to the next command; log level and format at once;
- a new upstream address or credential starts a new set of pools: each client moves over as soon as it has nothing
  in flight and holds no lease, and the old connections close once nobody uses them (after ``shutdown_timeout`` the
  stragglers are closed, so the old upstream is never held forever);
- ``listen``, ``unix_socket``, ``metrics.listen`` and ``workers`` need a restart: a change is logged and ignored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from . import logs
from .wire import resp
from .auth import Authenticator
from .commands.table import CommandTable
from .config import Config, ConfigError
from .upstream import UpstreamConnection, UpstreamManager

if TYPE_CHECKING:
    from .server import Server
    from .session import Session

log = logging.getLogger("sidecar.reload")

RESTART_ONLY = ("listen", "unix_socket", "metrics.listen", "workers", "tls.cert_file", "tls.key_file", "tls.ca_file",
                "tls.require_client_cert")  # (tls: the listeners' TLS; upstream.tls reloads)
# Upstream fields that name a different server or login: a change means new connections.
TARGET_FIELDS = ("host", "port", "unix_socket", "username", "password", "tls")


class ReloadError(Exception):
    """The new configuration was refused; ``str()`` says why (the running one stays in force)."""


def changed_keys(old: object, new: object, path: str = "") -> list[str]:
    """Dotted paths of the keys that differ (values are never returned: some are secrets)."""
    if dataclasses.is_dataclass(old) and dataclasses.is_dataclass(new) and type(old) is type(new):
        out: list[str] = []
        for f in dataclasses.fields(old):
            sub = f"{path}.{f.name}" if path else f.name
            out += changed_keys(getattr(old, f.name), getattr(new, f.name), sub)
        return out
    return [path] if old != new else []


def reload(server: "Server") -> list[str]:
    """Read the configuration again and apply it; the changed keys. ``ReloadError`` if refused."""
    if server.loader is None:
        raise ReloadError("this sidecar has no configuration source to read again")
    try:
        new = server.loader()
    except ConfigError as exc:
        server.stats.reloads_failed += 1
        log.error("configuration reload refused, the running configuration stays in force: %s", exc,
                  extra={"event": "reload_refused"})
        raise ReloadError(str(exc)) from None
    return apply(server, new)


def apply(server: "Server", new: Config) -> list[str]:
    old = server.cfg
    changed = changed_keys(old, new)
    ignored = [k for k in changed if k in RESTART_ONLY]
    if ignored:
        log.warning("configuration reload: %s changed but needs a restart; keeping the running value",
                    ", ".join(ignored), extra={"event": "reload_needs_restart"})
    new = dataclasses.replace(new, listen=old.listen, unix_socket=old.unix_socket, workers=old.workers, tls=old.tls,
                              metrics=dataclasses.replace(new.metrics, listen=old.metrics.listen))
    changed = [k for k in changed if k not in RESTART_ONLY]
    if not changed:
        server.stats.reloads_ok += 1
        log.info("configuration reloaded: no changes", extra={"event": "config_reloaded"})
        return []

    manager = server.manager
    if any(getattr(old.upstream, f) != getattr(new.upstream, f) for f in TARGET_FIELDS):
        _switch_upstream(server, new)
    else:
        manager.cfg = new.upstream  # the reply watchdog reads its timeout from here each round
        manager.pool_cfg = new.pool
        _resize(server, manager, new)
    if old.commands != new.commands or old.client_auth != new.client_auth:
        server.table = CommandTable.for_config(new)
    if old.client_auth != new.client_auth or server.auth.upstream != server.manager.credential:
        server.auth = Authenticator(new.client_auth, server.manager.credential, server.manager.verify)
    limits = resp.RequestLimits(max_bulk_len=new.limits.proto_max_bulk_len,
                                max_multibulk_len=new.limits.max_multibulk_len)
    if limits != server.request_limits:
        server.request_limits = limits
    for session in list(server.sessions.values()):
        session.cfg = new
        session.table = server.table
        session.parser.limits = server.request_limits
    server.cfg = new
    if old.log != new.log:
        logs.setup(new.log.level, new.log.format, server.log_static)
    server.sampler.every, server.sampler.seen = new.metrics.latency_sample, 0
    server.stats.reloads_ok += 1
    log.info("configuration reloaded: %s", ", ".join(changed), extra={"event": "config_reloaded"})
    return changed


# -- pools ------------------------------------------------------------------------------------------------------------

def _resize(server: "Server", manager: UpstreamManager, new: Config) -> None:
    """Apply smaller pools: surplus shared connections leave their pool and close once idle; idle leases trimmed."""
    for pool in list(manager.shared.values()):
        surplus = len(pool.conns) - new.pool.size
        if surplus > 0:
            for conn in sorted(pool.conns, key=lambda c: c.load)[:surplus]:
                pool.remove(conn)
                server.loop.create_task(_retire(conn, "pool.size reduced by a configuration reload"))
    for idle in manager.idle.values():
        while len(idle) > new.pool.lease_idle:
            idle.pop().close("pool.lease_idle reduced by a configuration reload")
    for waiter in list(manager.lease_waiters):  # pool.lease_max may have grown: let them try again
        if not waiter.done():
            waiter.set_result(None)


async def _retire(conn: UpstreamConnection, reason: str) -> None:
    """Close a connection that left its pool once no command is in flight on it.

    A client keeps its connection only while it has commands in flight, then picks again from the pool, so an
    idle retired connection can receive nothing more.
    """
    while conn.alive and (conn.pending or conn.queued or conn.wbuf):
        await asyncio.sleep(0.05)
    if conn.alive:
        conn.close(reason)


# -- a new upstream ----------------------------------------------------------------------------------------------------

def _switch_upstream(server: "Server", new: Config) -> None:
    old_mgr = server.manager
    new_mgr = UpstreamManager(new.upstream, new.pool, server.loop)
    for key, value in old_mgr.stats.items():  # counters continue across the switch
        new_mgr.stats[key] = new_mgr.stats.get(key, 0) + value
    new_mgr.start_watchdog()
    server.manager = new_mgr
    server.hub.manager = new_mgr
    log.info("upstream changing from %s to %s: clients move over as they go idle", old_mgr.address,
             new_mgr.address, extra={"event": "upstream_switch"})
    new_mgr.prewarm(_default_key(new_mgr, new))
    for hub in list(server.hub.hubs.values()):  # subscribers: their hub connection resubscribes on the new upstream
        if hub.conn is not None and hub.conn.alive and hub.key.cred == old_mgr.credential == new_mgr.credential:
            hub.conn.close("upstream changed by a configuration reload")
    server.loop.create_task(_move_clients(server, old_mgr, new_mgr, new.shutdown_timeout))


def _default_key(manager: UpstreamManager, cfg: Config):
    from .upstream import PoolKey

    return PoolKey(manager.credential, cfg.upstream.db, 2)


def _movable(session: "Session") -> bool:
    return not (session.inflight or session.lease is not None or session.multi or session.watching
                or session.stalled or session.backlog)


def _move(session: "Session", old_mgr: UpstreamManager, new_mgr: UpstreamManager) -> None:
    identity = session.identity
    credential_changed = old_mgr.credential != new_mgr.credential
    if identity is not None and credential_changed and identity.upstream == old_mgr.credential:
        if session.subs is not None and session.subs.active:
            # its subscriptions live on the old login's hub connection: let it reconnect and subscribe again
            session.close_after_replies()
            return
        session.manager = new_mgr
        session.conn = None
        session.set_identity(dataclasses.replace(identity, upstream=new_mgr.credential))
        return
    session.manager = new_mgr
    session.conn = None


async def _move_clients(server: "Server", old_mgr: UpstreamManager, new_mgr: UpstreamManager,
                        timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        waiting = 0
        for session in list(server.sessions.values()):
            if session.manager is not old_mgr or session.closed:
                continue
            if _movable(session):
                _move(session, old_mgr, new_mgr)
            else:
                waiting += 1
        if not waiting or time.monotonic() > deadline or server.manager is not new_mgr:
            break
        await asyncio.sleep(0.02)
    stragglers = [s for s in server.sessions.values() if s.manager is old_mgr and not s.closed]
    for session in stragglers:
        session.close_after_replies()
    if stragglers:
        log.warning("upstream switch: closed %d clients still busy on the old upstream after shutdown_timeout",
                    len(stragglers), extra={"event": "upstream_switch_stragglers"})
    await old_mgr.close_all()
    log.info("upstream switch done: old connections to %s closed", old_mgr.address,
             extra={"event": "upstream_switch_done"})
