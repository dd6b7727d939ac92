"""The command table: which routing class each Redis 7.x / Valkey 8-9 command belongs to.

This module is data. The router asks ``CommandTable.route(args)`` once per command; the answer decides where the
command runs. The classes, in the spirit of PgBouncer's pool modes:

- LOCAL: answered by the sidecar itself (the connection handshake and per-client state), no upstream round trip;
- SHARED: pipelined onto a shared, already-authenticated upstream connection with other clients' commands;
- TRANSACTION: MULTI/EXEC/DISCARD/WATCH/UNWATCH: a connection is leased from WATCH or MULTI until the end;
- BLOCKING: a connection is leased for one blocking call, so nobody else waits behind it;
- PUBSUB: (un)subscriptions, served by the shared subscription hub;
- SESSION: leaves per-connection state upstream (MONITOR, CLIENT TRACKING, ...): the client gets a connection of
  its own for the rest of its session;
- REFUSED: would break the sidecar or other clients (SHUTDOWN, CLIENT KILL, replication ...): a clear ``-ERR``.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Iterable

from ..wire.glob import glob_match

if TYPE_CHECKING:
    from ..config import Config


class Route(enum.Enum):
    LOCAL = "local"
    SHARED = "shared"
    TRANSACTION = "transaction"
    BLOCKING = "blocking"
    WAIT = "wait"
    PUBSUB = "pubsub"
    SESSION = "session"
    CONTROL = "control"
    REFUSED = "refused"


def _names(text: str) -> list[str]:
    return text.split()


# Every command of Redis 7.0 and Valkey 9 not listed in a class below is SHARED.
_ALL = _names("""
    acl append asking auth bgrewriteaof bgsave bitcount bitfield bitfield_ro bitop bitpos blmove blmpop blpop brpop
    brpoplpush bzmpop bzpopmax bzpopmin client cluster clusterscan command commandlog config copy dbsize debug decr
    decrby del delifeq discard dump echo eval eval_ro evalsha evalsha_ro exec exists expire expireat expiretime failover
    fcall fcall_ro flushall flushdb function geoadd geodist geohash geopos georadius georadius_ro georadiusbymember
    georadiusbymember_ro geosearch geosearchstore get getbit getdel getex getrange getset hdel hello hexists hexpire
    hexpireat hexpiretime hget hgetall hgetdel hgetex hincrby hincrbyfloat hkeys hlen hmget hmset hpersist hpexpire
    hpexpireat hpexpiretime hpttl hrandfield hscan hset hsetex hsetnx hstrlen httl hvals incr incrby incrbyfloat info
    keys lastsave latency lcs lindex linsert llen lmove lmpop lolwut lpop lpos lpush lpushx lrange lrem lset ltrim memory
    mget migrate module monitor move mset msetex msetnx multi object persist pexpire pexpireat pexpiretime pfadd pfcount
    pfdebug pfmerge pfselftest ping psetex psubscribe psync pttl publish pubsub punsubscribe quit randomkey readonly
    readwrite rename renamenx replconf replicaof reset restore restore-asking role rpop rpoplpush rpush rpushx sadd save
    scan scard script sdiff sdiffstore select set setbit setex setnx setrange shutdown sinter sintercard sinterstore
    sismember slaveof slowlog smembers smismember smove sort sort_ro spop spublish srandmember srem sscan ssubscribe
    strlen subscribe substr sunion sunionstore sunsubscribe swapdb sync time touch ttl type unlink unsubscribe unwatch
    wait waitaof watch xack xadd xautoclaim xclaim xdel xgroup xinfo xlen xpending xrange xread xreadgroup xrevrange
    xsetid xtrim zadd zcard zcount zdiff zdiffstore zincrby zinter zintercard zinterstore zlexcount zmpop zmscore
    zpopmax zpopmin zrandmember zrange zrangebylex zrangebyscore zrangestore zrank zrem zremrangebylex
    zremrangebyrank zremrangebyscore zrevrange zrevrangebylex zrevrangebyscore zrevrank zscan zscore zunion zunionstore
""")

_CLASSES: dict[Route, list[str]] = {
    Route.LOCAL: _names("auth hello select echo quit reset info sidecar"),  # info: upstream's + "# Sidecar"
    Route.TRANSACTION: _names("multi exec discard watch unwatch"),
    Route.BLOCKING: _names("blpop brpop brpoplpush blmove blmpop bzpopmin bzpopmax bzmpop"),
    Route.WAIT: _names("wait waitaof"),
    Route.PUBSUB: _names("subscribe psubscribe ssubscribe unsubscribe punsubscribe sunsubscribe"),
    Route.SESSION: _names("monitor asking"),
    Route.REFUSED: _names("shutdown debug pfdebug sync psync replconf replicaof slaveof failover"),
}

# Container commands whose subcommands differ in class; subcommands not listed take the container's class (SHARED).
_SUBCOMMANDS: dict[str, dict[Route, list[str]]] = {
    "client": {
        Route.LOCAL: _names("setname getname id setinfo info list reply maint_notifications kill unblock"),
        Route.SESSION: _names("tracking caching getredir trackinginfo no-evict no-touch capa"),
        Route.REFUSED: _names("pause unpause import-source"),
    },
    "script": {Route.REFUSED: _names("debug"), Route.CONTROL: _names("kill")},
    "function": {Route.CONTROL: _names("kill")},
}

# Commands whose first argument is a subcommand (CLIENT LIST's cmd= shows "client|info").
CONTAINERS: frozenset[bytes] = frozenset(n.encode() for n in _names(
    "acl client cluster command commandlog config function latency memory module object pubsub script slowlog "
    "xgroup xinfo sidecar"))

# Commands that block only when an argument is present (XREAD ... BLOCK ms ...).
BLOCKING_IF_ARG: dict[bytes, bytes] = {b"xread": b"block", b"xreadgroup": b"block"}

# Why a command is refused, for the error text the client sees.
REFUSAL_REASONS: dict[str, str] = {
    "shutdown": "it would stop the upstream server for every client of the sidecar",
    "debug": "it can crash or stall the upstream server for every client",
    "pfdebug": "it is an internal debugging command",
    "sync": "replication streams cannot share a proxied connection",
    "psync": "replication streams cannot share a proxied connection",
    "replconf": "replication streams cannot share a proxied connection",
    "replicaof": "changing replication affects every client of the sidecar",
    "slaveof": "changing replication affects every client of the sidecar",
    "failover": "changing replication affects every client of the sidecar",
    "client|pause": "it would stall the shared connections of every client",
    "client|unpause": "it would stall the shared connections of every client",
    "client|import-source": "it marks a shared upstream connection",
    "script|debug": "a script debugging session needs a connection of its own and blocks the server",
}

ALL_COMMANDS: frozenset[str] = frozenset(_ALL)

# Where clients share the sidecar's own upstream login (client_auth.mode password or none), these would show a
# client the upstream's secrets or let it change the login every client depends on.
SECRET_CONFIG: tuple[bytes, ...] = (b"requirepass", b"masterauth", b"primaryauth", b"tls-key-file-pass",
                                    b"tls-client-key-file-pass")
LOGIN_CONTAINERS: frozenset[bytes] = frozenset({b"config", b"acl"})
LOGIN_ACL: frozenset[bytes] = frozenset({b"list", b"getuser", b"setuser", b"deluser", b"load", b"save"})


def login_exposure(args: list[bytes]) -> str | None:
    """Why this command would expose or change the shared upstream login, or None if it would not."""
    name = args[0].lower()
    sub = args[1].lower() if len(args) > 1 else b""
    if name == b"config" and sub == b"get":
        if any(glob_match(pattern.lower(), secret) for pattern in args[2:] for secret in SECRET_CONFIG):
            return "it would show the upstream password the sidecar logs in with; ask for the parameters by name"
    elif name == b"config" and sub == b"set":
        if any(param.lower() in SECRET_CONFIG for param in args[2::2]):
            return "it would change the upstream password the sidecar logs in with"
    elif name == b"acl" and sub in LOGIN_ACL:
        return "ACL users and their passwords are managed upstream, not through the sidecar's shared login"
    return None


class CommandTable:
    """Routing lookups, with the ops' deny-list and the default for commands the table does not know (modules)."""

    __slots__ = ("_routes", "_subroutes", "_unknown", "_denied", "plain_shared")

    def __init__(self, deny: Iterable[str] = (), unknown: Route = Route.SHARED) -> None:
        self._routes: dict[bytes, Route] = {name.encode(): Route.SHARED for name in _ALL}
        for route, names in _CLASSES.items():
            for name in names:
                self._routes[name.encode()] = route
        self._subroutes: dict[bytes, dict[bytes, Route]] = {}
        for container, classes in _SUBCOMMANDS.items():
            table = self._subroutes.setdefault(container.encode(), {})
            for route, names in classes.items():
                for name in names:
                    table[name.encode()] = route
        self._unknown = unknown
        self._denied: frozenset[bytes] = frozenset(d.lower().replace(" ", "|").encode() for d in deny)
        for name in self._denied:
            if b"|" in name:
                container, sub = name.split(b"|", 1)
                self._subroutes.setdefault(container, {})[sub] = Route.REFUSED
            else:
                self._routes[name] = Route.REFUSED
        # SHARED whatever their arguments: the session's fast path forwards these without further checks
        self.plain_shared: frozenset[bytes] = frozenset(
            name for name, route in self._routes.items()
            if route is Route.SHARED and name not in self._subroutes and name not in BLOCKING_IF_ARG
            and name not in (b"publish", b"spublish")  # their reply is adjusted for the pub/sub hub
            and name not in LOGIN_CONTAINERS)  # checked per client: protect_upstream_login

    def route(self, args: list[bytes]) -> Route:
        name = args[0].lower()
        route = self._routes.get(name)
        if route is None:
            return self._unknown
        subs = self._subroutes.get(name)
        if subs is not None and len(args) > 1:
            route = subs.get(args[1].lower(), route)
        elif name in BLOCKING_IF_ARG and BLOCKING_IF_ARG[name] in (a.lower() for a in args[1:]):
            return Route.BLOCKING
        return route

    def refusal(self, args: list[bytes]) -> str:
        """The ``-ERR`` text for a refused command."""
        name = args[0].decode(errors="replace").lower()
        full = f"{name}|{args[1].decode(errors='replace').lower()}" if len(args) > 1 else name
        if args[0].lower() in LOGIN_CONTAINERS and (why := login_exposure(args)):
            return f"ERR '{full.replace('|', ' ').upper()}' is not allowed through the sidecar: {why} " \
                   "(client_auth.protect_upstream_login)"
        for key in (full, name):
            if key.encode() in self._denied:
                return f"ERR '{key.replace('|', ' ').upper()}' is disabled by the sidecar's configuration " \
                       "(commands.deny)"
        for key in (full, name):
            if key in REFUSAL_REASONS:
                return f"ERR '{key.replace('|', ' ').upper()}' is not allowed through the sidecar: " \
                       f"{REFUSAL_REASONS[key]}"
        return f"ERR '{name.upper()}' is not served by the sidecar (commands.unknown is 'refused')"

    @classmethod
    def for_config(cls, cfg: "Config") -> "CommandTable":
        """The table a configuration asks for (built at start and again on reload)."""
        return cls(cfg.commands.deny, Route.SHARED if cfg.commands.unknown == "shared" else Route.REFUSED)

    def classified(self) -> dict[str, Route]:
        """Every known command and container|subcommand with its class (for docs, admin and the differential test)."""
        out = {name.decode(): route for name, route in self._routes.items()}
        for container, subs in self._subroutes.items():
            for sub, route in subs.items():
                out[f"{container.decode()}|{sub.decode()}"] = route
        return out


def command_label(args: list[bytes]) -> bytes:
    """The command as CLIENT LIST's ``cmd=`` and ACL errors name it: ``get``, or ``client|info``."""
    name = args[0].lower()
    return name + b"|" + args[1].lower() if name in CONTAINERS and len(args) > 1 else name
