"""Configuration: YAML file, then environment, then command-line flags -> one validated, immutable ``Config``.

Every key is checked once at start; an unknown key or a bad value is refused with its path (``pool.size: ...``) so a
typo never silently falls back to a default, and every problem is reported at once, one line each. A value keeps the
type its key declares: an environment variable's text is parsed for numeric and boolean keys only (``0123`` stays the
string ``"0123"`` for a password), and a YAML number or boolean where a string belongs is refused, not converted.
Secrets (upstream password, client passwords) can come from the URL, an environment variable or a file; they are
never part of ``repr`` nor of any error message.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit

import yaml

from .commands.routes import ALLOWABLE, command_key

if TYPE_CHECKING:
    import ssl

    from _typeshed import DataclassInstance

    Section = TypeVar("Section", bound=DataclassInstance)

ENV_PREFIX = "REDIS_SIDECAR_"


class ConfigError(ValueError):
    """One or more configuration problems, each a line that starts with its key's path."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


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
        return [listen_address(a, "listen") for a in self.listen]


# -- loading ---------------------------------------------------------------------------------------------------------

LIST_KEYS = ("listen", "commands.deny", "commands.allow")  # a string or a list; comma-separated in the environment
PORT_KEYS = ("listen", "metrics.listen")  # where a YAML integer is a port
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def parse_hostport(text: str, path: str) -> tuple[str, int]:
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"{path}: expected HOST:PORT or PORT, got {text!r}")
    host = host.strip("[]")
    if not 0 <= int(port) <= 65535:
        raise ConfigError(f"{path}: port out of range in {text!r}")
    return host, int(port)


def listen_address(text: str, path: str) -> tuple[str, int]:
    """A listening address as (host, port): ``PORT`` alone means loopback, as every default does."""
    text = str(text)
    if not text.isdigit():
        return parse_hostport(text, path)
    if int(text) > 65535:
        raise ConfigError(f"{path}: port out of range in {text!r}")
    return "127.0.0.1", int(text)


def metrics_address(text: str) -> tuple[str, int]:
    """``metrics.listen`` as (host, port)."""
    return listen_address(text, "metrics.listen")


class _EnvText(str):
    """A value from a ``REDIS_SIDECAR_*`` variable: text, to be read as its key's type (``_from_env``)."""


class _Build:
    """The state of building one Config: the environment secrets come from, and every problem found so far, so a
    config with several mistakes is reported whole instead of one mistake per attempt."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def add(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    @contextmanager
    def collect(self) -> Iterator[None]:
        """Record a ConfigError raised inside, and carry on with the next check."""
        try:
            yield
        except ConfigError as exc:
            for problem in exc.problems:
                self.add(problem)

    def failed(self, *paths: str) -> bool:
        """Whether a key under one of ``paths`` was refused: a check built on its value would only add noise."""
        return any(problem.startswith(paths) for problem in self.problems)

    def done(self) -> None:
        if self.problems:
            raise ConfigError(*self.problems)


def load(path: str | None = None, overrides: Mapping[str, Any] | None = None,
         environ: Mapping[str, str] | None = None) -> Config:
    """Build the Config: file, then ``REDIS_SIDECAR_*`` environment variables, then ``overrides`` (the flags)."""
    b = _Build(os.environ if environ is None else environ)
    raw = _read_file(path) if path else {}
    for name, value in b.environ.items():
        dotted = _env_key(name)
        if dotted is not None:
            with b.collect():
                _set_path(raw, dotted, _EnvText(value))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            with b.collect():
                _set_path(raw, dotted, value)
    cfg = _build(raw, b)
    b.done()
    return cfg


def _read_file(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML{_yaml_problem(exc)}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return loaded


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where the parser stopped and why, without the snippet of the line it quotes: that line may hold a password."""
    mark = getattr(exc, "problem_mark", None)
    if not isinstance(exc, yaml.MarkedYAMLError) or mark is None:
        return ""
    problem, context = exc.problem or "", exc.context or ""
    if "scalar" in context:  # inside a value: a character the parser names may be part of a password
        problem = re.sub(r"'[^']*'", "(not shown)", problem)
    return f" at line {mark.line + 1}, column {mark.column + 1}: {f'{context}: ' if context else ''}{problem}"


def _env_key(name: str) -> str | None:
    """The key a variable sets: ``REDIS_SIDECAR_UPSTREAM`` the upstream URL, ``REDIS_SIDECAR_LISTEN`` the listen
    addresses, ``REDIS_SIDECAR_POOL__SIZE`` ``pool.size``; None for any other (REDIS_SIDECAR_NO_EXTENSIONS ...)."""
    if not name.startswith(ENV_PREFIX):
        return None
    key = name[len(ENV_PREFIX):].lower()
    if key == "upstream":
        return "upstream.url"
    return key.replace("__", ".") if key == "listen" or "__" in key else None


def _set_path(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {part} is not a section")
    node[parts[-1]] = value


def build(raw: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """The Config for ``raw`` (a parsed file); ``ConfigError`` lists every problem, one per line."""
    b = _Build(os.environ if environ is None else environ)
    cfg = _build(raw, b)
    b.done()
    return cfg


def _build(raw: Mapping[str, Any], b: _Build) -> Config:
    raw = dict(raw)
    upstream = raw.get("upstream")
    if isinstance(upstream, dict):
        for key in DERIVED_FROM_URL:
            if key in upstream:
                b.add(f"upstream.{key}: set it in upstream.url (redis://host:port/db, "
                      "redis-cluster://host:port,host:port or redis-sentinel://host:port,host:port#master)")
        raw["upstream"] = {k: v for k, v in upstream.items() if k not in DERIVED_FROM_URL}
    cfg = _section(Config, raw, "", b) or Config()
    cfg = dataclasses.replace(cfg, upstream=_resolve_upstream(cfg.upstream, b))
    _validate(cfg, b)
    return cfg


def _section(cls: type[Section], raw: Any, path: str, b: _Build) -> Section | None:
    """``raw`` as a ``cls``: each unknown key and bad value is recorded (the key keeps its default meanwhile);
    None when there is nothing to build it from."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        b.add(f"{path or 'config'}: expected a section (a mapping of keys), got {_kind(raw)}")
        return None
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for name, value in raw.items():
        where = f"{path}.{name}" if path else str(name)
        if name not in known:
            close = difflib.get_close_matches(str(name), known, 1)
            b.add(f"{where}: unknown key ({f'did you mean {close[0]}?' if close else 'known: ' + ', '.join(known)})")
            continue
        with b.collect():
            values[name] = _coerce(known[name], value, where, b)
    for f in known.values():
        if f.default is MISSING and f.default_factory is MISSING and f.name not in raw:
            b.add(f"{path}.{f.name}: required")
    try:
        return cls(**values)
    except TypeError:  # a required key is missing or was refused: recorded above
        return None


_NESTED: dict[str, type[Any]] = {
    "upstream": UpstreamConfig, "pool": PoolConfig, "client_auth": ClientAuthConfig, "limits": LimitsConfig,
    "commands": CommandsConfig, "log": LogConfig, "tls": TLSConfig, "metrics": MetricsConfig,
}


def _type_name(f: dataclasses.Field[Any]) -> str:
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")


def _coerce(f: dataclasses.Field[Any], value: Any, path: str, b: _Build) -> Any:
    """One key's value as its field declares it; ``ConfigError`` when it is not one (never converted silently)."""
    if isinstance(value, _EnvText):
        value = _from_env(f, str(value), path)
    if path == "tls":  # the listeners' TLS (upstream.tls is the upstream's)
        return _section(ListenTLSConfig, value, path, b) or ListenTLSConfig()
    if f.name == "tls" and isinstance(value, bool):
        return TLSConfig(enabled=value)
    if f.name in _NESTED:
        return _section(_NESTED[f.name], value, path, b) or _NESTED[f.name]()
    if f.name == "users":
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list of users")
        users = (_user(u, f"{path}[{i}]", b) for i, u in enumerate(value))
        return tuple(u for u in users if u is not None)
    if path in PORT_KEYS and type(value) is int:  # listen: 6380
        value = str(value)
    if path in LIST_KEYS:
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) or (path in PORT_KEYS and type(v) is int) for v in items):
            raise ConfigError(f"{path}: expected a string or a list of strings")
        return tuple(str(v) for v in items)
    kind = _type_name(f)
    if kind.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {_got(value, path)}")
    elif kind.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {_got(value, path)}")
    elif kind.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {_got(value, path)}")
        if not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number, got {value}")
        value = float(value)
    elif kind.startswith("str") and value is not None and not isinstance(value, str):
        quote = "" if isinstance(value, (list, dict)) else \
            " (put it in quotes: unquoted, YAML reads 0123 as the octal number 83, and yes as true)"
        raise ConfigError(f"{path}: expected a string, got {_got(value, path)}{quote}")
    return value


def _from_env(f: dataclasses.Field[Any], text: str, path: str) -> Any:
    """An environment variable's text as its key's type: the exact text for a string (``0123``, ``yes`` and ``1e3``
    stay strings; empty unsets an optional key), a number or a boolean where the key takes one, a list split at
    commas."""
    kind = _type_name(f)
    if path in LIST_KEYS:
        return [item.strip() for item in text.split(",") if item.strip()]
    if kind.startswith("bool") or path == "upstream.tls":
        word = text.strip().lower()
        if word not in _TRUE + _FALSE:
            raise ConfigError(f"{path}: expected true or false (or yes/no, on/off, 1/0), got {_got(text, path)}")
        return word in _TRUE
    if kind.startswith(("int", "float")):
        try:
            return int(text) if kind.startswith("int") else float(text)
        except ValueError:
            what = "an integer" if kind.startswith("int") else "a number"
            raise ConfigError(f"{path}: expected {what}, got {_got(text, path)}") from None
    return None if text == "" and "None" in kind else text


def _secret(path: str) -> bool:
    """Keys whose values never appear in an error: the passwords and where they come from, and the upstream URL
    (which may carry one)."""
    return path.rpartition(".")[2].startswith(("password", "sentinel_password")) or path == "upstream.url"


def _kind(value: Any) -> str:
    """A value's type, in YAML's words."""
    if value is None:
        return "null"
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a mapping"}
    return kinds.get(type(value), f"a {type(value).__name__}")


def _got(value: Any, path: str) -> str:
    """What was given, for an error: its type, and the value itself only for a scalar of a key that is no secret."""
    if _secret(path) or not isinstance(value, (str, int, float)):
        return _kind(value)
    if isinstance(value, str):
        return repr(value)
    return f"{_kind(value)} {str(value).lower() if isinstance(value, bool) else value}"


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


def _user(raw: Any, path: str, b: _Build) -> ClientUser | None:
    """One ``client_auth.users`` entry, its password read from wherever it comes from."""
    user = _section(ClientUser, raw, path, b)
    if user is None:
        return None
    password = None
    with b.collect():
        password = _read_secret(user.password, user.password_env, user.password_file, f"{path}.password",
                                b.environ)
        if not password and not b.failed(f"{path}.password"):
            raise ConfigError(f"{path}.password: every sidecar user needs a password")
    return dataclasses.replace(user, password=password)


DERIVED_FROM_URL = ("host", "port", "mode", "seeds", "sentinel_master")
TOPOLOGY_SCHEMES = {"redis-cluster": ("cluster", 6379), "rediss-cluster": ("cluster", 6379),
                    "redis-sentinel": ("sentinel", 26379), "rediss-sentinel": ("sentinel", 26379)}


def _resolve_upstream(up: UpstreamConfig, b: _Build) -> UpstreamConfig:
    """Split the URL into fields; explicit keys (username, password*, tls) win over what the URL carries."""
    resolved = up
    parts: SplitResult | None = None
    with b.collect():
        parts = _split_url(up.url)
        if parts.scheme in TOPOLOGY_SCHEMES:
            resolved = _resolve_topology(up, parts)
        elif parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"upstream.url: scheme must be redis://, rediss://, unix://, redis-cluster://, "
                              f"rediss-cluster://, redis-sentinel:// or rediss-sentinel://, got {parts.scheme!r}")
        else:
            resolved = _resolve_standalone(up, parts)
    url_username = unquote(parts.username) if parts is not None and parts.username else None
    url_password = unquote(parts.password) if parts is not None and parts.password else None
    password = sentinel_password = None
    with b.collect():
        password = _read_secret(up.password if up.password is not None else url_password, up.password_env,
                                up.password_file, "upstream.password", b.environ)
    with b.collect():
        sentinel_password = _read_secret(up.sentinel_password, up.sentinel_password_env, up.sentinel_password_file,
                                         "upstream.sentinel_password", b.environ)
    tls, url = up.tls, up.url
    if parts is not None and parts.scheme.startswith("rediss") and not tls.enabled:
        tls = dataclasses.replace(tls, enabled=True)
    if parts is not None and parts.password is not None:  # kept for display: its password is blanked
        url = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":(hidden)@", 1)).geturl()
    username = up.username if up.username is not None else url_username
    return dataclasses.replace(resolved, url=url, username=username or None, password=password or None, tls=tls,
                               sentinel_password=sentinel_password or None)


def _split_url(url: str) -> SplitResult:
    """``urlsplit``, refusing a URL whose password would spill out of the credentials (into the host, the path or
    an error message): an unencoded / ? # in it. Errors never quote the URL, which may hold the password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigError("upstream.url: cannot be parsed (an unbalanced [ or ], or a bracketed host that is not an "
                          "IPv6 address); percent-encode such characters in the user name and password") from None
    tail = parts.query + parts.fragment + ("" if parts.scheme == "unix" else parts.path)
    if "@" in tail or (parts.scheme == "unix" and parts.netloc and not parts.netloc.endswith("@")):
        raise ConfigError("upstream.url: an '@' after the host: the user name or password holds a / ? or # that "
                          "ends the address; percent-encode it (%2F, %3F, %23), or use upstream.password_env")
    return parts


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


def _validate(cfg: Config, b: _Build) -> None:
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
            if not _is_loopback(host):
                b.add(f"listen: {host} is not a loopback address and {why}; {fix}, "
                      "or set client_auth.allow_public_without_auth: true if you really mean it")


def _validate_topology(up: UpstreamConfig, b: _Build) -> None:
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


def _validate_listen_tls(tls: ListenTLSConfig, b: _Build) -> None:
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


def _validate_ops(cfg: Config, b: _Build, mode_known: bool) -> None:
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


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
