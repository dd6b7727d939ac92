"""The upstream URL into its fields: one server (redis://, rediss://, unix://), a cluster's seeds
(redis-cluster://) or the sentinels of a master (redis-sentinel://). Errors never quote the URL: it may hold the
password."""

from __future__ import annotations

import dataclasses
from urllib.parse import SplitResult, unquote, urlsplit

from .coerce import read_secret
from .model import UpstreamConfig
from .problems import ConfigError, Problems

DERIVED_FROM_URL = ("host", "port", "mode", "seeds", "sentinel_master")
TOPOLOGY_SCHEMES = {"redis-cluster": ("cluster", 6379), "rediss-cluster": ("cluster", 6379),
                    "redis-sentinel": ("sentinel", 26379), "rediss-sentinel": ("sentinel", 26379)}


def resolve_upstream(up: UpstreamConfig, b: Problems) -> UpstreamConfig:
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
        password = read_secret(up.password if up.password is not None else url_password, up.password_env,
                                up.password_file, "upstream.password", b.environ)
    with b.collect():
        sentinel_password = read_secret(up.sentinel_password, up.sentinel_password_env, up.sentinel_password_file,
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
