"""The routing classes, and what the sidecar knows without asking the server: this module is data.

A command's class comes from the server's flags (COMMAND): ``blocking`` leases a connection for the call,
``pubsub`` subscriptions go to the shared subscription hub, everything else is pipelined on a shared connection.
``OVERRIDES`` then sets, with a reason each, the commands whose class the flags cannot tell: what the sidecar
answers itself, what leaves state on a connection, what it refuses. Before the server has been asked (or if it
cannot be), the same rules run on the static lists below, which cover Redis 7.0 and Valkey 9.

PING is no override: it is shared, so a health check through the sidecar sees the server's -BUSY or -LOADING.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Route(enum.Enum):
    LOCAL = "local"              # answered by the sidecar (handshake, per-client state, INFO's own section)
    SHARED = "shared"            # pipelined on a shared connection with other clients' commands
    TRANSACTION = "transaction"  # a connection leased from WATCH/MULTI to EXEC/DISCARD/UNWATCH
    BLOCKING = "blocking"        # a connection leased for one call
    WAIT = "wait"                # WAIT/WAITAOF: count the replicas of the writes of this client's connection
    PUBSUB = "pubsub"            # (un)subscriptions, served by the shared subscription hub
    SESSION = "session"          # a connection of the client's own for the rest of its session
    CONTROL = "control"          # out of band, once, on a connection of its own (never queued behind a busy one)
    REFUSED = "refused"          # a clear -ERR with the reason

    # members are singletons: hash by identity, in C (Enum's own __hash__ is Python code, and the router looks a
    # class up several times per command)
    __hash__ = object.__hash__


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


def command_key(name: str) -> str:
    """A command as the configuration names it, as the table keys it: "CONFIG  Set" -> "config|set"."""
    return "|".join(name.lower().split())


# Every command of Redis 7.0 and Valkey 9 (COMMAND's names); the static fallback's universe.
KNOWN_COMMANDS: frozenset[str] = _names("""
    acl append asking auth bgrewriteaof bgsave bitcount bitfield bitfield_ro bitop bitpos blmove blmpop blpop brpop
    brpoplpush bzmpop bzpopmax bzpopmin client cluster clusterscan command commandlog config copy dbsize debug decr
    decrby del delifeq discard dump echo eval eval_ro evalsha evalsha_ro exec exists expire expireat expiretime
    failover fcall fcall_ro flushall flushdb function geoadd geodist geohash geopos georadius georadius_ro
    georadiusbymember georadiusbymember_ro geosearch geosearchstore get getbit getdel getex getrange getset hdel
    hello hexists hexpire hexpireat hexpiretime hget hgetall hgetdel hgetex hincrby hincrbyfloat hkeys hlen hmget
    hmset hpersist hpexpire hpexpireat hpexpiretime hpttl hrandfield hscan hset hsetex hsetnx hstrlen httl hvals
    incr incrby incrbyfloat info keys lastsave latency lcs lindex linsert llen lmove lmpop lolwut lpop lpos lpush
    lpushx lrange lrem lset ltrim memory mget migrate module monitor move mset msetex msetnx multi object persist
    pexpire pexpireat pexpiretime pfadd pfcount pfdebug pfmerge pfselftest ping psetex psubscribe psync pttl publish
    pubsub punsubscribe quit randomkey readonly readwrite rename renamenx replconf replicaof reset restore
    restore-asking role rpop rpoplpush rpush rpushx sadd save scan scard script sdiff sdiffstore select set setbit
    setex setnx setrange shutdown sinter sintercard sinterstore sismember slaveof slowlog smembers smismember smove
    sort sort_ro spop spublish srandmember srem sscan ssubscribe strlen subscribe substr sunion sunionstore
    sunsubscribe swapdb sync time touch ttl type unlink unsubscribe unwatch wait waitaof watch xack xadd xautoclaim
    xclaim xdel xgroup xinfo xlen xpending xrange xread xreadgroup xrevrange xsetid xtrim zadd zcard zcount zdiff
    zdiffstore zincrby zinter zintercard zinterstore zlexcount zmpop zmscore zpopmax zpopmin zrandmember zrange
    zrangebylex zrangebyscore zrangestore zrank zrem zremrangebylex zremrangebyrank zremrangebyscore zrevrange
    zrevrangebylex zrevrangebyscore zrevrank zscan zscore zunion zunionstore
""")

# What the flags say where the static fallback must know it without them.
STATIC_BLOCKING: frozenset[str] = _names(
    "blpop brpop brpoplpush blmove blmpop bzpopmin bzpopmax bzmpop xread xreadgroup")
STATIC_PUBSUB: frozenset[str] = _names("subscribe psubscribe ssubscribe unsubscribe punsubscribe sunsubscribe")

# Commands whose first argument is a subcommand (CLIENT LIST's cmd= shows "client|info").
CONTAINERS: frozenset[bytes] = frozenset(n.encode() for n in _names(
    "acl client cluster command commandlog config function latency memory module object pubsub script slowlog "
    "xgroup xinfo sidecar"))

# Commands that block only when an argument is present (XREAD ... BLOCK ms ...): shared otherwise.
BLOCKING_IF_ARG: dict[bytes, bytes] = {b"xread": b"block", b"xreadgroup": b"block"}

# Their reply counts subscribers, which the hub's shared subscriptions change (PUBLISH, SPUBLISH, PUBSUB NUMSUB /
# SHARDNUMSUB): never on the session's fast path.
PUBLISH_COMMANDS: frozenset[bytes] = frozenset({b"publish", b"spublish", b"pubsub"})


@dataclass(frozen=True)
class Override:
    """A class the flags cannot give. ``gate`` opens a refused command as SESSION: "development" under
    ``commands.profile: development`` or when named in ``commands.allow``; "allow" only when named there."""

    route: Route
    reason: str
    gate: str | None = None


def _rows(*rows: tuple[str, Route, str] | tuple[str, Route, str, str]) -> dict[str, Override]:
    return {name: Override(*row[1:]) for row in rows for name in row[0].split()}


DEVELOPMENT, ALLOW_ONLY = "development", "allow"

OVERRIDES: dict[str, Override] = _rows(
    ("auth hello select quit reset", Route.LOCAL, "the sidecar keeps each client's login, db and protocol itself"),
    ("info", Route.LOCAL, "the upstream's INFO with the sidecar's own section appended"),
    ("sidecar", Route.LOCAL, "the sidecar's admin commands"),
    ("client|setname client|getname client|id client|setinfo client|info client|list client|reply "
     "client|maint_notifications", Route.LOCAL, "per-client state the sidecar keeps for its own clients"),
    ("client|kill client|unblock", Route.LOCAL, "emulated on the sidecar's own clients, whose ids they name"),
    ("client|help", Route.SHARED, "the server's help text; no state"),
    ("multi exec discard watch unwatch", Route.TRANSACTION, "a transaction needs one connection from WATCH/MULTI on"),
    ("wait waitaof", Route.WAIT, "they count acknowledgements of the writes made on the connection they run on"),
    ("monitor", Route.SESSION, "it streams every command to the connection until it closes"),
    ("asking readonly readwrite", Route.SESSION, "cluster flags that stay on the connection"),
    ("client|tracking client|caching client|getredir client|trackinginfo client|no-evict client|no-touch "
     "client|capa", Route.SESSION, "connection state the server keeps for the rest of the session"),
    ("script|kill function|kill", Route.CONTROL,
     "it must reach the server past the busy script it stops, on a connection of its own"),
    ("client|import-source", Route.REFUSED, "it marks a shared upstream connection"),
    ("shutdown", Route.REFUSED, "it would stop the upstream server for every client of the sidecar", ALLOW_ONLY),
    ("debug", Route.REFUSED, "it can crash or stall the upstream server for every client", DEVELOPMENT),
    ("pfdebug", Route.REFUSED, "it is an internal debugging command", DEVELOPMENT),
    ("sync psync replconf", Route.REFUSED, "replication streams cannot share a proxied connection", DEVELOPMENT),
    ("replicaof slaveof failover", Route.REFUSED, "changing replication affects every client of the sidecar",
     DEVELOPMENT),
    ("client|pause client|unpause", Route.REFUSED, "it would stall the shared connections of every client",
     DEVELOPMENT),
    ("script|debug", Route.REFUSED, "a script debugging session needs a connection of its own and blocks the server",
     DEVELOPMENT),
)

# Containers whose subcommands are all classified here: one the sidecar does not know is refused, not forwarded.
EXPLICIT_CONTAINERS: dict[str, Override] = {
    "client": Override(Route.REFUSED, "CLIENT subcommands act on the connection, and the sidecar does not know "
                                      "this one"),
}

# Names commands.allow may open (the gated overrides).
ALLOWABLE: frozenset[str] = frozenset(name for name, o in OVERRIDES.items() if o.gate)
