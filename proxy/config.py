"""Configuration: YAML file, then environment, then command-line flags -> one validated, immutable ``Config``.

Every key is checked once at start; an unknown key or a bad value is refused with its path (``pool.size: ...``) so a
typo never silently falls back to a default. Secrets (upstream password, client passwords) can come from the URL, an
environment variable or a file, and are never part of ``repr``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import yaml

from .commands.routes import ALLOWABLE, command_key

ENV_PREFIX = "REDIS_SIDECAR_"


class ConfigError(ValueError):
    """A configuration problem, phrased with the key's path."""


def _secret_field(default: str | None = None) -> Any:
    return field(default=default, repr=False)


@dataclass(frozen=True)
class TLSConfig:
    enabled: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    server_name: str | None = None


@dataclass(frozen=True)
class ListenTLSConfig:
    """TLS for clients, on every TCP ``listen`` address (the unix socket stays plain); on when cert_file is set."""

    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None  # CAs whose client certificates are accepted
    require_client_cert: bool = False  # mutual TLS: a client without a certificate from ca_file is refused


@dataclass(frozen=True)
class UpstreamConfig:
    """Where the real Redis is and how the sidecar authenticates to it."""

    url: str = "redis://127.0.0.1:6379/0"
    host: str = "127.0.0.1"
    port: int = 6379
    unix_socket: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = _secret_field()
    password_env: str | None = None
    password_file: str | None = None
    connect_timeout: float = 2.0
    reply_timeout: float = 10.0
    tls: TLSConfig = TLSConfig()
    # Cluster and Sentinel upstreams, from a redis-cluster:// or redis-sentinel:// url (see _resolve_topology)
    mode: str = "standalone"  # standalone, cluster or sentinel
    seeds: tuple[tuple[str, int], ...] = ()  # the url's addresses: cluster seeds, or the sentinels
    sentinel_master: str | None = None  # the #name of a redis-sentinel:// url
    sentinel_username: str | None = None  # the sentinels' own login, if they require one
    sentinel_password: str | None = _secret_field()
    sentinel_password_env: str | None = None
    sentinel_password_file: str | None = None
    read_from: str = "primary"  # cluster: "replica" sends read-only commands to a replica of the key's shard


@dataclass(frozen=True)
class PoolConfig:
    """Shared connections per (credential, db, protocol); leased ones for transactions and sessions (lease_max) and
    for single blocking calls and WAIT (blocking_max), bounded apart so idle blocking calls never starve
    transactions."""

    size: int = 4
    lease_max: int = 64
    blocking_max: int = 64
    lease_idle: int = 4
    lease_wait: float = 2.0
    reconnect_backoff_max: float = 1.0


@dataclass(frozen=True)
class ClientUser:
    name: str
    password: str | None = _secret_field()
    password_env: str | None = None
    password_file: str | None = None
    admin: bool = False


@dataclass(frozen=True)
class ClientAuthConfig:
    """How clients authenticate to the sidecar: none, password (users below) or passthrough (the upstream decides)."""

    mode: str = "passthrough"
    users: tuple[ClientUser, ...] = ()
    passthrough_ttl: float = 300.0
    allow_public_without_auth: bool = False
    # password and none modes: refuse what would show or change the sidecar's own upstream login (CONFIG GET
    # requirepass, ACL GETUSER, ...), since every client runs with it
    protect_upstream_login: bool = True


@dataclass(frozen=True)
class LimitsConfig:
    max_clients: int = 10000
    proto_max_bulk_len: int = 512 * 1024 * 1024
    max_multibulk_len: int = 1024 * 1024
    max_pipeline: int = 1024
    client_output_buffer: int = 64 * 1024 * 1024
    pubsub_output_buffer: int = 8 * 1024 * 1024
    total_output_buffer: int = 1024 * 1024 * 1024  # replies queued for all clients together
    databases: int = 16
    auth_failures_per_minute: int = 100


@dataclass(frozen=True)
class CommandsConfig:
    deny: tuple[str, ...] = ()
    unknown: str = "shared"
    # development: the refused development commands (DEBUG, CLIENT PAUSE, replication ...) run on a connection of
    # the client's own; allow opens some of them (and SHUTDOWN) by name in any profile
    profile: str = "production"
    allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "text"


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus ``/metrics`` and the ``/healthz``, ``/readyz`` probes on one HTTP port; off unless listen is set."""

    listen: str | None = None  # HOST:PORT, or PORT alone for 127.0.0.1:PORT
    latency_sample: int = 16  # time 1 forwarded command in N for the latency histograms (0: never)


@dataclass(frozen=True)
class Config:
    listen: tuple[str, ...] = ("127.0.0.1:6380",)
    unix_socket: str | None = None
    upstream: UpstreamConfig = UpstreamConfig()
    pool: PoolConfig = PoolConfig()
    client_auth: ClientAuthConfig = ClientAuthConfig()
    limits: LimitsConfig = LimitsConfig()
    commands: CommandsConfig = CommandsConfig()
    log: LogConfig = LogConfig()
    metrics: MetricsConfig = MetricsConfig()
    tls: ListenTLSConfig = ListenTLSConfig()
    shutdown_timeout: float = 10.0
    workers: int = 1

    def listen_addresses(self) -> list[tuple[str, int]]:
        return [parse_hostport(a, "listen") for a in self.listen]


# -- loading ---------------------------------------------------------------------------------------------------------

def parse_hostport(text: str, path: str) -> tuple[str, int]:
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"{path}: expected HOST:PORT, got {text!r}")
    host = host.strip("[]")
    if not 0 <= int(port) <= 65535:
        raise ConfigError(f"{path}: port out of range in {text!r}")
    return host, int(port)


def load(path: str | None = None, overrides: Mapping[str, Any] | None = None,
         environ: Mapping[str, str] | None = None) -> Config:
    """Build the Config: file, then ``REDIS_SIDECAR_*`` environment variables, then ``overrides`` (the flags)."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        raw = loaded
    _apply_env(raw, environ)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(raw, dotted, value)
    return build(raw, environ)


def _apply_env(raw: dict, environ: Mapping[str, str]) -> None:
    """``REDIS_SIDECAR_UPSTREAM`` names the upstream URL; ``REDIS_SIDECAR_POOL__SIZE=8`` sets ``pool.size``."""
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key == "upstream":
            _set_path(raw, "upstream.url", value)
        elif key == "listen":
            _set_path(raw, "listen", value)
        elif "__" in key:
            _set_path(raw, key.replace("__", "."), yaml.safe_load(value) if value else value)


def _set_path(raw: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {part} is not a section")
    node[parts[-1]] = value


def build(raw: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    for key in DERIVED_FROM_URL:
        if isinstance(raw.get("upstream"), dict) and key in raw["upstream"]:
            raise ConfigError(f"upstream.{key}: set it in upstream.url (redis://host:port/db, "
                              "redis-cluster://host:port,host:port or redis-sentinel://host:port,host:port#master)")
    cfg = _section(Config, dict(raw), "")
    upstream = _resolve_upstream(cfg.upstream, environ)
    users = tuple(_resolve_user(u, i, environ) for i, u in enumerate(cfg.client_auth.users))
    cfg = dataclasses.replace(cfg, upstream=upstream,
                              client_auth=dataclasses.replace(cfg.client_auth, users=users))
    _validate(cfg)
    return cfg


def _section(cls: type, raw: Any, path: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(known[name], value, f"{path}.{name}" if path else name)
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{path or 'config'}: {exc}") from None


_NESTED = {
    "upstream": UpstreamConfig, "pool": PoolConfig, "client_auth": ClientAuthConfig, "limits": LimitsConfig,
    "commands": CommandsConfig, "log": LogConfig, "tls": TLSConfig, "metrics": MetricsConfig,
}


def _coerce(f: dataclasses.Field, value: Any, path: str) -> Any:
    if path == "tls":  # the listeners' TLS (upstream.tls is the upstream's)
        return _section(ListenTLSConfig, value, path)
    if f.name == "tls" and isinstance(value, bool):
        return TLSConfig(enabled=value)
    if f.name in _NESTED:
        return _section(_NESTED[f.name], value, path)
    if f.name == "users":
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list of users")
        return tuple(_section(ClientUser, u, f"{path}[{i}]") for i, u in enumerate(value))
    if path in ("listen", "commands.deny", "commands.allow"):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path}: expected a string or a list of strings")
        return tuple(value)
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    if kind.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
    elif kind.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
    elif kind.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        value = float(value)
    elif kind.startswith("str"):
        if value is not None and not isinstance(value, (str, int)):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        value = None if value is None else str(value)
    return value


def _read_secret(value: str | None, env: str | None, file: str | None, path: str,
                 environ: Mapping[str, str]) -> str | None:
    if env:
        if env not in environ:
            raise ConfigError(f"{path}_env: environment variable {env} is not set")
        return environ[env]
    if file:
        try:
            return Path(file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{path}_file: cannot read {file}: {exc.strerror}") from None
    return value


DERIVED_FROM_URL = ("host", "port", "mode", "seeds", "sentinel_master")
TOPOLOGY_SCHEMES = {"redis-cluster": ("cluster", 6379), "rediss-cluster": ("cluster", 6379),
                    "redis-sentinel": ("sentinel", 26379), "rediss-sentinel": ("sentinel", 26379)}


def _resolve_upstream(up: UpstreamConfig, environ: Mapping[str, str]) -> UpstreamConfig:
    """Split the URL into fields; explicit keys (username, password*, tls) win over what the URL carries."""
    parts = urlsplit(up.url)
    if parts.scheme in TOPOLOGY_SCHEMES:
        up = _resolve_topology(up, parts)
    elif parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"upstream.url: scheme must be redis://, rediss://, unix://, redis-cluster://, "
                          f"rediss-cluster://, redis-sentinel:// or rediss-sentinel://, got {parts.scheme!r}")
    else:
        up = _resolve_standalone(up, parts)
    username = up.username if up.username is not None else (unquote(parts.username) if parts.username else None)
    password = up.password if up.password is not None else (unquote(parts.password) if parts.password else None)
    password = _read_secret(password, up.password_env, up.password_file, "upstream.password", environ)
    sentinel_password = _read_secret(up.sentinel_password, up.sentinel_password_env, up.sentinel_password_file,
                                     "upstream.sentinel_password", environ)
    tls = up.tls
    if parts.scheme.startswith("rediss") and not tls.enabled:
        tls = dataclasses.replace(tls, enabled=True)
    url = up.url  # kept for display: its password (now in the password field, out of repr) is blanked
    if parts.password is not None:
        url = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":(hidden)@", 1)).geturl()
    return dataclasses.replace(up, url=url, username=username or None, password=password or None, tls=tls,
                               sentinel_password=sentinel_password or None)


def _resolve_standalone(up: UpstreamConfig, parts: SplitResult) -> UpstreamConfig:
    """redis://, rediss:// and unix:// urls: one server."""
    try:
        port = parts.port or 6379
    except ValueError:
        raise ConfigError("upstream.url: invalid port") from None
    if parts.scheme == "unix":
        return dataclasses.replace(up, unix_socket=parts.path)
    db = _url_db(parts) if parts.path.strip("/") else up.db
    host = parts.hostname or "127.0.0.1"
    return dataclasses.replace(up, host=host, port=port, db=db, seeds=((host, port),))


def _url_db(parts: SplitResult) -> int:
    try:
        return int(parts.path.strip("/"))
    except ValueError:
        raise ConfigError(f"upstream.url: database must be a number, got {parts.path!r}") from None


def _resolve_topology(up: UpstreamConfig, parts: SplitResult) -> UpstreamConfig:
    """redis-cluster://[user:password@]host:port[,host:port...] (seed nodes; any reachable ones will do) and
    redis-sentinel://[user:password@]host:port[,host:port...][/db]#master (the sentinels; credentials are the
    master's). ``host`` and ``port`` become the first address, for what needs a single one."""
    mode, default_port = TOPOLOGY_SCHEMES[parts.scheme]
    hosts = parts.netloc.rpartition("@")[2]
    seeds = tuple(_seed(text.strip(), default_port) for text in hosts.split(",") if text.strip())
    if not seeds:
        raise ConfigError(f"upstream.url: {parts.scheme}:// needs at least one host:port")
    if parts.query:
        raise ConfigError(f"upstream.url: {parts.scheme}:// takes no ?options, got ?{parts.query}")
    db = _url_db(parts) if parts.path.strip("/") else up.db
    if mode == "cluster" and parts.path.strip("/") and db:  # a db from the yaml alone: _validate_topology
        raise ConfigError(f"upstream.url: Redis Cluster has only database 0 (SELECT {db} fails on a cluster); "
                          f"remove /{db} from the url")
    master = unquote(parts.fragment)
    if mode == "sentinel" and not master:
        raise ConfigError("upstream.url: redis-sentinel:// needs the master's name after #, e.g. "
                          "redis-sentinel://sentinel1:26379,sentinel2:26379#mymaster")
    if mode == "cluster" and master:
        raise ConfigError(f"upstream.url: redis-cluster:// takes no #fragment, got #{parts.fragment}")
    return dataclasses.replace(up, mode=mode, seeds=seeds, host=seeds[0][0], port=seeds[0][1], db=db,
                               sentinel_master=master or None)


def _seed(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` -> (host, port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    elif text.count(":") > 1:
        raise ConfigError(f"upstream.url: write an IPv6 address in brackets, [{text}]:port")
    else:
        host, _, port = text.partition(":")
    if not host or (port and not port.isdigit()) or not 0 < int(port or default_port) <= 65535:
        raise ConfigError(f"upstream.url: expected host:port, got {text!r}")
    return host, int(port or default_port)


def _resolve_user(user: ClientUser, i: int, environ: Mapping[str, str]) -> ClientUser:
    pw = _read_secret(user.password, user.password_env, user.password_file, f"client_auth.users[{i}].password",
                      environ)
    if not pw:
        raise ConfigError(f"client_auth.users[{i}].password: every sidecar user needs a password")
    return dataclasses.replace(user, password=pw)


def _validate(cfg: Config) -> None:
    def positive(value: float, path: str, allow_zero: bool = False) -> None:
        if value < 0 or (value == 0 and not allow_zero):
            raise ConfigError(f"{path}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")

    if not cfg.listen and not cfg.unix_socket:
        raise ConfigError("listen: at least one address (or unix_socket) is needed")
    cfg.listen_addresses()
    if cfg.client_auth.mode not in ("none", "password", "passthrough"):
        raise ConfigError(f"client_auth.mode: must be none, password or passthrough, got {cfg.client_auth.mode!r}")
    if cfg.client_auth.mode == "password" and not cfg.client_auth.users:
        raise ConfigError("client_auth.users: password mode needs at least one user")
    names = [u.name for u in cfg.client_auth.users]
    if len(set(names)) != len(names):
        raise ConfigError("client_auth.users: user names must be unique")
    if cfg.commands.unknown not in ("shared", "refused"):
        raise ConfigError(f"commands.unknown: must be shared or refused, got {cfg.commands.unknown!r}")
    if cfg.commands.profile not in ("production", "development"):
        raise ConfigError(f"commands.profile: must be production or development, got {cfg.commands.profile!r}")
    for name in cfg.commands.allow:
        if command_key(name) not in ALLOWABLE:
            raise ConfigError(f"commands.allow: {name!r} cannot be allowed; allowable: "
                              f"{', '.join(sorted(k.replace('|', ' ').upper() for k in ALLOWABLE))}")
        if command_key(name) in {command_key(d) for d in cfg.commands.deny}:
            raise ConfigError(f"commands.allow: {name!r} is also in commands.deny")
    if cfg.log.level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log.level: must be debug, info, warning or error, got {cfg.log.level!r}")
    if cfg.log.format not in ("text", "logfmt", "json"):
        raise ConfigError(f"log.format: must be text, logfmt or json, got {cfg.log.format!r}")
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
    _validate_ops(cfg)
    for name in ("max_clients", "proto_max_bulk_len", "max_multibulk_len", "max_pipeline", "client_output_buffer",
                 "pubsub_output_buffer", "total_output_buffer", "databases", "auth_failures_per_minute"):
        positive(getattr(cfg.limits, name), f"limits.{name}")
    if not 0 <= cfg.upstream.db < cfg.limits.databases:
        raise ConfigError(f"upstream.db: {cfg.upstream.db} is outside 0..{cfg.limits.databases - 1}")
    _validate_topology(cfg.upstream)
    tls = cfg.upstream.tls
    if bool(tls.cert_file) != bool(tls.key_file):
        raise ConfigError("upstream.tls: cert_file and key_file go together")
    for key in ("ca_file", "cert_file", "key_file"):
        value = getattr(tls, key)
        if value and not os.path.exists(value):
            raise ConfigError(f"upstream.tls.{key}: {value} does not exist")
    _validate_listen_tls(cfg.tls)
    # Who may connect without any credential: everyone in mode none, and in passthrough mode when the upstream has
    # no password (the sidecar then lets every client in). Mutual TLS is a credential too.
    mode = cfg.client_auth.mode
    if (mode == "none" or (mode == "passthrough" and cfg.upstream.password is None)) \
            and not cfg.client_auth.allow_public_without_auth and not cfg.tls.require_client_cert:
        why, fix = ("client_auth.mode is none", "use password or passthrough") if mode == "none" else (
            "client_auth.mode is passthrough with an upstream that has no password",
            "use password mode, give the upstream a password, require client certificates (tls)")
        for host, _ in cfg.listen_addresses():
            if not _is_loopback(host):
                raise ConfigError(
                    f"listen: {host} is not a loopback address and {why}; {fix}, "
                    "or set client_auth.allow_public_without_auth: true if you really mean it")


def _validate_topology(up: UpstreamConfig) -> None:
    """What only makes sense for one mode is refused in the others, so a misplaced key is never silently unused."""
    if up.mode == "cluster" and up.db:
        raise ConfigError(f"upstream.db: Redis Cluster has only database 0 (SELECT {up.db} fails on a cluster)")
    if up.read_from not in ("primary", "replica"):
        raise ConfigError(f"upstream.read_from: must be primary or replica, got {up.read_from!r}")
    if up.read_from == "replica" and up.mode != "cluster":
        raise ConfigError("upstream.read_from: replica is only for a redis-cluster:// upstream.url")
    if up.mode != "sentinel":
        for key in ("sentinel_username", "sentinel_password", "sentinel_password_env", "sentinel_password_file"):
            if getattr(up, key) is not None:
                raise ConfigError(f"upstream.{key}: only for a redis-sentinel:// upstream.url")


def _validate_listen_tls(tls: ListenTLSConfig) -> None:
    if not (tls.cert_file or tls.key_file or tls.ca_file or tls.require_client_cert):
        return
    if not (tls.cert_file and tls.key_file):
        raise ConfigError("tls: cert_file and key_file are both needed to serve clients over TLS")
    if tls.require_client_cert and not tls.ca_file:
        raise ConfigError("tls.require_client_cert: needs tls.ca_file, the CA that signs the client certificates")
    for key in ("ca_file", "cert_file", "key_file"):
        value = getattr(tls, key)
        if value and not os.path.exists(value):
            raise ConfigError(f"tls.{key}: {value} does not exist")
    listener_ssl_context(tls)  # a bad certificate, key or CA is refused now, not at the first client


def listener_ssl_context(tls: ListenTLSConfig):
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


def _validate_ops(cfg: Config) -> None:
    """The operating keys: metrics endpoint, workers, and who may use the SIDECAR admin commands."""
    if cfg.metrics.listen is not None:
        metrics_address(cfg.metrics.listen)
    if cfg.metrics.latency_sample < 0:
        raise ConfigError(f"metrics.latency_sample: must be >= 0, got {cfg.metrics.latency_sample}")
    if not 1 <= cfg.workers <= 64:
        raise ConfigError(f"workers: must be between 1 and 64, got {cfg.workers}")
    if cfg.workers > 1 and cfg.unix_socket:
        raise ConfigError("workers: several workers cannot share unix_socket; listen on TCP or use workers: 1")
    if cfg.client_auth.mode != "password":
        for i, user in enumerate(cfg.client_auth.users):
            if not user.admin:
                raise ConfigError(
                    f"client_auth.users[{i}].admin: in {cfg.client_auth.mode} mode this list only holds the "
                    "sidecar's admin users (SIDECAR commands); set admin: true or remove the user")


def metrics_address(text: str) -> tuple[str, int]:
    """``metrics.listen`` as (host, port): ``PORT`` alone means loopback, as does the default everywhere."""
    text = str(text)
    if text.isdigit():
        text = f"127.0.0.1:{text}"
    return parse_hostport(text, "metrics.listen")


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
