"""The validated, immutable configuration: one frozen dataclass per section, defaults included."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .addresses import listen_address


def secret_field(default: str | None = None) -> Any:
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
    password: str | None = secret_field()
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
    sentinel_password: str | None = secret_field()
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
    password: str | None = secret_field()
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
        return [listen_address(a, "listen") for a in self.listen]
