"""``--check``: what the sidecar will use, in words; ``--check --connect``: proof that the upstream accepts it.

The connection check reuses the sidecar's own upstream code (an ``UpstreamManager`` opening one connection of the
sidecar's own) rather than redis-py: it must prove what the sidecar itself will do (the same TLS context and server
name, HELLO with AUTH sent alone, the plain-AUTH fallback for servers without HELLO, SELECT, all within
``upstream.connect_timeout``) and fail with the same error texts, which another client library would only approximate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from collections.abc import Sequence
from typing import Any

import hiredis

from ..cluster import DiscoveryError, sentinel_master
from ..cluster.discovery import Fetch
from ..cluster.topology import Address
from ..config import Config, PoolConfig, UpstreamConfig, metrics_address
from ..upstream.connection import UpstreamError
from ..upstream.credentials import Credential, PoolKey, ServerInfo
from ..upstream.manager import UpstreamManager


class CheckFailed(Exception):
    """The upstream did not accept the sidecar's connection; the message says why, in the upstream's own words."""


def describe(cfg: Config) -> list[str]:
    """What the sidecar will use, one line per subject; a password is only said to be set, never shown."""
    up, auth = cfg.upstream, cfg.client_auth
    lines = [("upstream", f"{_target(up)} ({up.mode}, db {up.db}, TLS {'on' if up.tls.enabled else 'off'})"),
             ("login", _login(up.username, up.password, up.password_env, up.password_file))]
    if up.mode == "sentinel":
        lines.append(("sentinel login", _login(up.sentinel_username, up.sentinel_password, up.sentinel_password_env,
                                               up.sentinel_password_file)))
    listen = [_hostport(address) for address in cfg.listen_addresses()]
    listen += [f"unix socket {cfg.unix_socket}"] if cfg.unix_socket else []
    if cfg.tls.cert_file:
        listen[-1] += " (TLS, client certificates required)" if cfg.tls.require_client_cert else " (TLS)"
    lines.append(("listen", ", ".join(listen)))
    if auth.mode == "password":
        clients = f"password: clients log in as {', '.join(u.name for u in auth.users)}"
    elif auth.mode == "passthrough":
        clients = f"passthrough: clients' own upstream credentials, checked upstream, trusted {auth.passthrough_ttl:g}s"
    else:
        clients = "none: no client authentication"
    admins = [u.name for u in auth.users if u.admin]
    lines.append(("client auth", clients + (f"; admin users: {', '.join(admins)}" if admins else "")))
    lines.append(("metrics", _hostport(metrics_address(cfg.metrics.listen)) if cfg.metrics.listen else "off"))
    return [f"{label + ':':<16}{text}" for label, text in lines]


def _target(up: UpstreamConfig) -> str:
    if up.unix_socket:
        return f"unix socket {up.unix_socket}"
    seeds = ", ".join(_hostport(seed) for seed in up.seeds)
    if up.mode == "cluster":
        return f"seeds {seeds}"
    if up.mode == "sentinel":
        return f"master {up.sentinel_master!r} via sentinels {seeds}"
    return _hostport((up.host, up.port))


def _login(username: str | None, password: str | None, env: str | None, file: str | None) -> str:
    if password is None:
        return f"user {username or 'default'!r}, no password (no AUTH)"
    source = f" (from environment variable {env})" if env else f" (from file {file})" if file else ""
    return f"user {username or 'default'!r}, password set{source}"


def _hostport(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def connect(cfg: Config) -> str:
    """Connect and log in as the sidecar would, then PING: a line saying who answered, or ``CheckFailed``. A
    cluster's seeds are tried in turn (any one will do, as for the sidecar); a Sentinel upstream is checked at the
    master its sentinels name."""
    up = cfg.upstream
    login = Credential(up.username, up.password)
    targets: Sequence[Address | None] = [None]
    if up.mode == "cluster":
        targets = up.seeds
    elif up.mode == "sentinel":
        targets = [await _sentinel_master(up, login)]
    reasons = []
    for target in targets:
        aimed = up if target is None else dataclasses.replace(up, host=target[0], port=target[1])
        try:
            return await _ping(aimed, login)
        except CheckFailed as exc:
            reasons.append(f"seed {_hostport(target)}: {exc}" if target and up.mode == "cluster" else str(exc))
    raise CheckFailed("; ".join(reasons))


async def _ping(up: UpstreamConfig, login: Credential) -> str:
    began = time.monotonic()
    info, reply = await _session(up, login, up.db, [b"PING"])
    elapsed = (time.monotonic() - began) * 1000
    where = up.unix_socket or _hostport((up.host, up.port))
    if reply.startswith(b"-"):
        raise CheckFailed(f"upstream {where} refused PING: {reply[1:].strip().decode(errors='replace')}")
    expected = "cluster" if up.mode == "cluster" else "standalone"
    if info.hello and info.mode != expected:  # a sentinel's or a cluster node's port in the wrong kind of url
        scheme = {"cluster": "redis-cluster://", "sentinel": "redis-sentinel://...#master"}.get(info.mode, "redis://")
        raise CheckFailed(f"upstream {where} is a {info.mode} server, but upstream.url says {up.mode}: "
                          f"use {scheme}")
    server = f"{info.server} {info.version}, role {info.role}" if info.hello else "a server without HELLO (< Redis 6)"
    replica = "; a replica: writes will fail with READONLY" if info.hello and info.role != "master" else ""
    return (f"upstream answers: {server}, at {where} as user {login.user!r}, db {up.db}, "
            f"TLS {'on' if up.tls.enabled else 'off'}; PING {reply.strip().decode(errors='replace')} "
            f"in {elapsed:.1f} ms{replica}")


async def _session(up: UpstreamConfig, login: Credential, db: int, command: list[bytes]) -> tuple[ServerInfo, bytes]:
    """Open one connection as the sidecar opens its own, send ``command``, close: the server's HELLO facts and the
    reply's bytes. The handshake and the reply each get ``upstream.connect_timeout``."""
    try:
        manager = UpstreamManager(up, PoolConfig(), asyncio.get_running_loop())
    except (ssl.SSLError, OSError) as exc:
        raise CheckFailed(f"cannot set up TLS to the upstream: {exc}") from None
    try:
        conn = manager.control(PoolKey(login, db, 2))
        await conn.ready
        reply = await asyncio.wait_for(conn.request(command), up.connect_timeout)
    except UpstreamError as exc:
        raise CheckFailed(str(exc).removeprefix("ERR ")) from None
    except asyncio.TimeoutError:
        raise CheckFailed(f"no reply to {command[0].decode()} from upstream {manager.address} within "
                          f"upstream.connect_timeout ({up.connect_timeout:g}s)") from None
    finally:
        await manager.close_all("check done")
    return manager.server_info, reply


async def _sentinel_master(up: UpstreamConfig, login: Credential) -> Address:
    """The master's address as the sentinels name it (with their own login) and ROLE confirms it (with the
    master's)."""
    def fetch(who: Credential, db: int) -> Fetch:
        async def ask(address: Address, args: Sequence[str]) -> Any:
            aimed = dataclasses.replace(up, host=address[0], port=address[1])
            _, reply = await _session(aimed, who, db, [arg.encode() for arg in args])
            reader = hiredis.Reader()
            reader.feed(reply)
            return reader.gets()  # an error reply comes back as a ReplyError value, as discovery expects
        return ask

    sentinels = Credential(up.sentinel_username, up.sentinel_password)
    try:
        return await sentinel_master(up.seeds, up.sentinel_master or "", fetch(sentinels, 0),
                                     fetch_node=fetch(login, up.db), timeout=up.connect_timeout)
    except DiscoveryError as exc:
        raise CheckFailed(str(exc)) from None
