"""Ranges and the checks across keys, run on a built Config; a check built on a key already refused is skipped."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..commands.routes import ALLOWABLE, command_key
from .addresses import is_loopback, listen_address, metrics_address
from .model import Config, ListenTLSConfig, UpstreamConfig
from .problems import ConfigError, Problems

if TYPE_CHECKING:
    import ssl


def validate(cfg: Config, b: Problems) -> None:
    """Ranges and the checks across keys; a check built on a key already refused is skipped, not repeated."""
    def positive(value: float, path: str, allow_zero: bool = False) -> None:
        if value < 0 or (value == 0 and not allow_zero):
            b.add(f"{path}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")

    if not cfg.listen and not cfg.unix_socket:
        b.add("listen: at least one address (or unix_socket) is needed")
    addresses = []
    for text in cfg.listen:
        with b.collect():
            addresses.append(listen_address(text, "listen"))
    mode = cfg.client_auth.mode
    mode_known = mode in ("none", "password", "passthrough") and not b.failed("client_auth.mode")
    if mode not in ("none", "password", "passthrough"):
        b.add(f"client_auth.mode: must be none, password or passthrough, got {mode!r}")
    if mode == "password" and not cfg.client_auth.users and not b.failed("client_auth.users"):
        b.add("client_auth.users: password mode needs at least one user")
    names = [u.name for u in cfg.client_auth.users]
    if len(set(names)) != len(names):
        b.add("client_auth.users: user names must be unique")
    if cfg.commands.unknown not in ("shared", "refused"):
        b.add(f"commands.unknown: must be shared or refused, got {cfg.commands.unknown!r}")
    if cfg.commands.profile not in ("production", "development"):
        b.add(f"commands.profile: must be production or development, got {cfg.commands.profile!r}")
    denied = {command_key(d) for d in cfg.commands.deny}
    for name in cfg.commands.allow:
        if command_key(name) not in ALLOWABLE:
            b.add(f"commands.allow: {name!r} cannot be allowed; allowable: "
                  f"{', '.join(sorted(k.replace('|', ' ').upper() for k in ALLOWABLE))}")
        elif command_key(name) in denied:
            b.add(f"commands.allow: {name!r} is also in commands.deny")
    if cfg.log.level.lower() not in ("debug", "info", "warning", "error"):
        b.add(f"log.level: must be debug, info, warning or error, got {cfg.log.level!r}")
    if cfg.log.format not in ("text", "logfmt", "json"):
        b.add(f"log.format: must be text, logfmt or json, got {cfg.log.format!r}")
    positive(cfg.pool.size, "pool.size")
    positive(cfg.pool.lease_max, "pool.lease_max")
    positive(cfg.pool.blocking_max, "pool.blocking_max")
    positive(cfg.pool.lease_idle, "pool.lease_idle", allow_zero=True)
    positive(cfg.pool.lease_wait, "pool.lease_wait")
    positive(cfg.pool.reconnect_backoff_max, "pool.reconnect_backoff_max")
    positive(cfg.upstream.connect_timeout, "upstream.connect_timeout")
    positive(cfg.upstream.reply_timeout, "upstream.reply_timeout")
    positive(cfg.client_auth.passthrough_ttl, "client_auth.passthrough_ttl", allow_zero=True)
    positive(cfg.shutdown_timeout, "shutdown_timeout", allow_zero=True)
    _validate_ops(cfg, b, mode_known)
    for name in ("max_clients", "proto_max_bulk_len", "max_multibulk_len", "max_pipeline", "client_output_buffer",
                 "pubsub_output_buffer", "total_output_buffer", "databases", "auth_failures_per_minute"):
        positive(getattr(cfg.limits, name), f"limits.{name}")
    if not 0 <= cfg.upstream.db < cfg.limits.databases and not b.failed("limits.databases"):
        b.add(f"upstream.db: {cfg.upstream.db} is outside 0..{cfg.limits.databases - 1}")
    _validate_topology(cfg.upstream, b)
    tls = cfg.upstream.tls
    if bool(tls.cert_file) != bool(tls.key_file):
        b.add("upstream.tls: cert_file and key_file go together")
    for key in ("ca_file", "cert_file", "key_file"):
        value = getattr(tls, key)
        if value and not os.path.exists(value):
            b.add(f"upstream.tls.{key}: {value} does not exist")
    _validate_listen_tls(cfg.tls, b)
    # Who may connect without any credential: everyone in mode none, and in passthrough mode when the upstream has
    # no password (the sidecar then lets every client in). Mutual TLS is a credential too.
    if not mode_known or b.failed("upstream.url", "upstream.password", "tls", "client_auth.allow_public"):
        return
    if (mode == "none" or (mode == "passthrough" and cfg.upstream.password is None)) \
            and not cfg.client_auth.allow_public_without_auth and not cfg.tls.require_client_cert:
        why, fix = ("client_auth.mode is none", "use password or passthrough") if mode == "none" else (
            "client_auth.mode is passthrough with an upstream that has no password",
            "use password mode, give the upstream a password, require client certificates (tls)")
        for host, _ in addresses:
            if not is_loopback(host):
                b.add(f"listen: {host} is not a loopback address and {why}; {fix}, "
                      "or set client_auth.allow_public_without_auth: true if you really mean it")


def _validate_topology(up: UpstreamConfig, b: Problems) -> None:
    """What only makes sense for one mode is refused in the others, so a misplaced key is never silently unused."""
    if up.mode == "cluster" and up.db:
        b.add(f"upstream.db: Redis Cluster has only database 0 (SELECT {up.db} fails on a cluster)")
    if up.read_from not in ("primary", "replica"):
        b.add(f"upstream.read_from: must be primary or replica, got {up.read_from!r}")
    elif up.read_from == "replica" and up.mode != "cluster" and not b.failed("upstream.url"):
        b.add("upstream.read_from: replica is only for a redis-cluster:// upstream.url")
    if up.mode != "sentinel" and not b.failed("upstream.url"):
        for key in ("sentinel_username", "sentinel_password", "sentinel_password_env", "sentinel_password_file"):
            if getattr(up, key) is not None:
                b.add(f"upstream.{key}: only for a redis-sentinel:// upstream.url")


def _validate_listen_tls(tls: ListenTLSConfig, b: Problems) -> None:
    if not (tls.cert_file or tls.key_file or tls.ca_file or tls.require_client_cert):
        return
    if not (tls.cert_file and tls.key_file):
        b.add("tls: cert_file and key_file are both needed to serve clients over TLS")
        return
    if tls.require_client_cert and not tls.ca_file:
        b.add("tls.require_client_cert: needs tls.ca_file, the CA that signs the client certificates")
    missing = [key for key in ("ca_file", "cert_file", "key_file")
               if getattr(tls, key) and not os.path.exists(getattr(tls, key))]
    for key in missing:
        b.add(f"tls.{key}: {getattr(tls, key)} does not exist")
    if not missing:
        with b.collect():
            listener_ssl_context(tls)  # a bad certificate, key or CA is refused now, not at the first client


def listener_ssl_context(tls: ListenTLSConfig) -> ssl.SSLContext | None:
    """The server-side SSLContext for the client listeners, or None when tls.cert_file is not set."""
    import ssl

    if not tls.cert_file:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.ca_file:
            ctx.load_verify_locations(cafile=tls.ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"tls: cannot load the certificate, key or CA: {exc}") from None
    ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else \
        (ssl.CERT_OPTIONAL if tls.ca_file else ssl.CERT_NONE)
    return ctx


def _validate_ops(cfg: Config, b: Problems, mode_known: bool) -> None:
    """The operating keys: metrics endpoint, workers, and who may use the SIDECAR admin commands."""
    if cfg.metrics.listen is not None:
        with b.collect():
            metrics_address(cfg.metrics.listen)
    if cfg.metrics.latency_sample < 0:
        b.add(f"metrics.latency_sample: must be >= 0, got {cfg.metrics.latency_sample}")
    if not 1 <= cfg.workers <= 64:
        b.add(f"workers: must be between 1 and 64, got {cfg.workers}")
    if cfg.workers > 1 and cfg.unix_socket:
        b.add("workers: several workers cannot share unix_socket; listen on TCP or use workers: 1")
    if mode_known and cfg.client_auth.mode != "password" and not b.failed("client_auth.users"):
        for i, user in enumerate(cfg.client_auth.users):
            if not user.admin:
                b.add(f"client_auth.users[{i}].admin: in {cfg.client_auth.mode} mode this list only holds the "
                      "sidecar's admin users (SIDECAR commands); set admin: true or remove the user")
