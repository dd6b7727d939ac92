"""The shared subscription hub: one upstream subscriber connection per login for every local subscriber.

Each channel, pattern or shard channel is subscribed upstream once, when its first local subscriber arrives, and
unsubscribed when its last one leaves. The hub connection speaks RESP3 where the server has HELLO, and a message is
copied to each subscriber in the subscriber's own protocol: a pub/sub message is a flat array of bulk strings in both,
so only its first byte differs (``>`` or ``*``). A client's protocol switch (HELLO 2/3) therefore never touches its
subscriptions.

Every command the hub sends upstream is an ``Outstanding`` entry in a FIFO, answered by one confirmation per name or
by one error for the whole command (an ACL refusal), exactly as Redis answers it. A client's confirmation waits for
the entries that cover its names, so a message published after the client saw its confirmation is never missed, and
a refusal reaches exactly the clients that asked, with the upstream's own error; nothing is recorded for them.
A client's UNSUBSCRIBE (RESET, QUIT) waits for a PING's answer on the hub connection (``caught_up``): every message
the upstream sent before it is delivered first, so a message published before the client left (its own PUBLISH,
answered on another connection a moment earlier) still reaches it, as on a direct connection.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..upstream.connection import Cause, Role, UpstreamConnection, UpstreamError
from ..upstream.credentials import Credential, PoolKey
from ..upstream.manager import UpstreamManager
from ..wire import resp
from ..wire.glob import glob_match

log = logging.getLogger("sidecar.pubsub")


class Kind(enum.Enum):
    CHANNEL = "channel"
    PATTERN = "pattern"
    SHARD = "shard"


SUBSCRIBE_CMD = {Kind.CHANNEL: b"SUBSCRIBE", Kind.PATTERN: b"PSUBSCRIBE", Kind.SHARD: b"SSUBSCRIBE"}
UNSUBSCRIBE_CMD = {Kind.CHANNEL: b"UNSUBSCRIBE", Kind.PATTERN: b"PUNSUBSCRIBE", Kind.SHARD: b"SUNSUBSCRIBE"}
# client command -> (kind, subscribing)
COMMANDS: dict[bytes, tuple[Kind, bool]] = {
    b"subscribe": (Kind.CHANNEL, True), b"psubscribe": (Kind.PATTERN, True), b"ssubscribe": (Kind.SHARD, True),
    b"unsubscribe": (Kind.CHANNEL, False), b"punsubscribe": (Kind.PATTERN, False),
    b"sunsubscribe": (Kind.SHARD, False)}
_MESSAGE_KIND = {b"message": Kind.CHANNEL, b"pmessage": Kind.PATTERN, b"smessage": Kind.SHARD}
_CONFIRMATIONS = frozenset({b"subscribe", b"psubscribe", b"ssubscribe", b"unsubscribe", b"punsubscribe",
                            b"sunsubscribe"})
_PING = resp.encode_command([b"PING"])
_PONGS = (b"+PONG\r\n", b"*2\r\n$4\r\npong\r\n")  # a subscribed connection's answer in RESP3, in RESP2

Done = Callable[[bytes | None], None]  # called with None once confirmed, or with the error frame


class Subscriber(Protocol):
    """A local client, as the hub sees it."""

    proto: int

    def push(self, frame: bytes) -> None: ...
    def subscription_lost(self, reason: str) -> None: ...


def words(frame: bytes) -> tuple[bytes, bytes]:
    """The first two bulk strings of a pub/sub frame: its type word and its channel or pattern."""
    pos = frame.index(b"\r\n") + 2
    out = []
    for _ in range(2):
        eol = frame.index(b"\r\n", pos)
        size = int(frame[pos + 1:eol])
        start = eol + 2
        out.append(frame[start:start + size] if size >= 0 else b"")
        pos = start + max(size, 0) + 2
    return out[0], out[1]


class Outstanding:
    """One (un)subscribe command on the hub connection, waiting for a confirmation per name, or one error; or a PING
    (``marker``, with no names) that marks a point in the connection's stream."""

    __slots__ = ("kind", "names", "subscribing", "remaining", "waiters", "marker")

    def __init__(self, kind: Kind, names: list[bytes], subscribing: bool, marker: bool = False) -> None:
        self.marker = marker
        self.kind = kind
        self.names = names
        self.subscribing = subscribing
        self.remaining = len(names)
        self.waiters: list[Callable[[bytes | None], None]] = []


class HubConnection:
    """The upstream subscriber connection of one login, with its local members."""

    def __init__(self, hub: Hub, login: Credential) -> None:
        self.hub = hub
        self.login = login
        self.members: dict[Kind, dict[bytes, set[Subscriber]]] = {k: {} for k in Kind}
        self.fifo: deque[Outstanding] = deque()
        self.latest: dict[tuple[Kind, bytes], Outstanding] = {}  # the last SUBSCRIBE sent for a name, unconfirmed
        self.conn: UpstreamConnection | None = None
        self.proto = 2

    # -- the upstream connection --------------------------------------------------------------------------------------
    def connection(self) -> UpstreamConnection:
        if self.conn is None or not self.conn.alive:
            manager = self.hub.manager
            self.proto = 3 if manager.server_info.hello else 2
            if manager.in_backoff():
                raise manager.unavailable()
            conn = self.conn = manager.open(PoolKey(self.login, 0, self.proto), Role.SUBSCRIBER)
            conn.push_handler = self.on_frame
            conn.on_close = self._closed
            conn.subscribed = True
            for kind, names in self.members.items():
                if names:  # after a reconnect: subscribe everything again
                    self._send(kind, list(names), subscribing=True)
        return self.conn

    def _send(self, kind: Kind, names: list[bytes], subscribing: bool) -> Outstanding:
        entry = Outstanding(kind, names, subscribing)
        self.fifo.append(entry)
        if subscribing:
            for name in names:
                self.latest[(kind, name)] = entry
        assert self.conn is not None
        self.conn.send(resp.encode_command([(SUBSCRIBE_CMD if subscribing else UNSUBSCRIBE_CMD)[kind], *names]),
                       None)
        return entry

    def caught_up(self, names: list[bytes], done: Done) -> None:
        """``done(None)`` once every frame the upstream sent this connection so far has been delivered (or it is
        gone): a refused PING (a user without +ping) marks the same point as its answer."""
        del names  # (one connection carries all of them)
        conn = self.conn
        if conn is None or not conn.alive:
            done(None)
            return
        entry = Outstanding(Kind.CHANNEL, [], False, marker=True)
        entry.waiters.append(lambda _answer: done(None))
        self.fifo.append(entry)
        conn.send(_PING, None)

    def _closed(self, conn: UpstreamConnection) -> None:
        if conn is not self.conn:
            return
        self.conn = None
        error = conn.error_frame()
        fifo, self.fifo = self.fifo, deque()
        self.latest.clear()
        for entry in fifo:
            self._fail(entry, error)
        if not any(self.members.values()):
            return
        if conn.cause is Cause.REFUSED or self.hub.manager.retired:
            self.drop_everyone(conn.close_reason)
            return
        if self.hub.rehome is not None:  # a cluster node's shard channels go where their slots are now
            self._give_up(list(self.members[Kind.SHARD]))
            return
        log.warning("pub/sub hub connection lost (%s); subscribing again", conn.close_reason)
        self.hub.manager.loop.call_later(min(1.0, self.hub.manager.pool_cfg.reconnect_backoff_max),
                                         self._resubscribe)

    def _resubscribe(self) -> None:
        if self.conn is None and any(self.members.values()):
            try:
                self.connection()
            except UpstreamError:
                self.hub.manager.loop.call_later(self.hub.manager.pool_cfg.reconnect_backoff_max, self._resubscribe)

    def _asked(self, kind: Kind, name: bytes) -> bool:
        """An unsubscription of ``name`` is the oldest command waiting for confirmations."""
        return bool(self.fifo) and self.fifo[0].kind is kind and not self.fifo[0].subscribing \
            and name in self.fifo[0].names

    def _give_up(self, names: list[bytes]) -> None:
        """These shard channels are no longer served here: their members go to ``Hub.rehome``."""
        moving = {name: self.members[Kind.SHARD].pop(name, set()) for name in names}
        for name in names:
            self.latest.pop((Kind.SHARD, name), None)
        assert self.hub.rehome is not None
        self.hub.rehome(self, moving)

    def drop_everyone(self, reason: str) -> None:
        """The subscriptions cannot be kept (the login was refused, the upstream changed): tell every member."""
        everyone = {sub for names in self.members.values() for subs in names.values() for sub in subs}
        for names in self.members.values():
            names.clear()
        if self.conn is not None:
            self.conn.close("no subscribers left")
        for sub in everyone:
            sub.subscription_lost(reason)

    # -- frames from upstream -----------------------------------------------------------------------------------------
    def on_frame(self, frame: bytes) -> None:
        if frame[:1] == b"-":
            if self.fifo:
                self._fail(self.fifo.popleft(), frame)
            return
        marker = bool(self.fifo) and self.fifo[0].marker
        if marker and frame.startswith(_PONGS):
            self._succeed(self.fifo.popleft())
            return
        try:
            word, name = words(frame)
        except ValueError:
            return
        kind = _MESSAGE_KIND.get(word)
        if kind is not None:
            self.hub.messages += 1
            subs = self.members[kind].get(name)
            if subs:
                resp3 = frame[:1] == b">"
                other = (b"*" if resp3 else b">") + frame[1:]  # the same message in the other protocol
                for sub in list(subs):
                    sub.push(frame if (sub.proto == 3) == resp3 else other)
            return
        if word == b"sunsubscribe" and self.hub.rehome is not None and not self._asked(Kind.SHARD, name):
            self._give_up([name])  # the server dropped it: its slot moved to another node
            return
        if word in _CONFIRMATIONS and self.fifo and not marker:
            entry = self.fifo[0]
            entry.remaining -= 1
            if entry.remaining <= 0:
                self.fifo.popleft()
                self._succeed(entry)

    def _succeed(self, entry: Outstanding) -> None:
        for name in entry.names:
            if self.latest.get((entry.kind, name)) is entry:
                del self.latest[(entry.kind, name)]
        for waiter in entry.waiters:
            waiter(None)

    def _fail(self, entry: Outstanding, error: bytes) -> None:
        """The upstream refused the command (or the connection went): its names were new upstream, so their members
        all joined while it was pending and all hear the error; nothing stays recorded."""
        dropped: set[Subscriber] = set()
        for name in entry.names:
            if self.latest.get((entry.kind, name)) is entry:
                del self.latest[(entry.kind, name)]
                dropped |= self.members[entry.kind].pop(name, set())
        for waiter in entry.waiters:
            waiter(error)
        if not entry.waiters:  # a resubscription after a reconnect: its members are not waiting for an answer
            for sub in dropped:
                sub.subscription_lost(error[1:-2].decode(errors="replace"))

    # -- members ------------------------------------------------------------------------------------------------------
    def add(self, sub: Subscriber, kind: Kind, names: list[bytes], done: Done) -> None:
        members = self.members[kind]
        new = [n for n in dict.fromkeys(names) if not members.get(n)]
        conn = self.connection()  # (raises UpstreamError before anything is recorded)
        del conn
        for name in names:
            members.setdefault(name, set()).add(sub)
        waits = {id(e): e for e in (self.latest.get((kind, n)) for n in names) if e is not None}
        if new:
            entry = self._send(kind, new, subscribing=True)
            waits[id(entry)] = entry
        if not waits:
            done(None)
            return
        gate = Gate(len(waits), done)
        for entry in waits.values():
            entry.waiters.append(gate.one)

    def remove(self, sub: Subscriber, kind: Kind, names: list[bytes]) -> None:
        members, gone = self.members[kind], []
        for name in names:
            subs = members.get(name)
            if subs is not None and sub in subs:
                subs.discard(sub)
                if not subs:
                    del members[name]
                    gone.append(name)
        if gone and self.conn is not None and self.conn.alive:
            for name in gone:
                self.latest.pop((kind, name), None)
            self._send(kind, gone, subscribing=False)

    def confirmed(self, kind: Kind, name: bytes) -> bool:
        return bool(self.members[kind].get(name)) and (kind, name) not in self.latest


class Gate:
    """Calls ``done`` once ``left`` answers have come, or at once with the first error."""

    __slots__ = ("left", "done")

    def __init__(self, left: int, done: Done) -> None:
        self.left, self.done = left, done

    def one(self, error: bytes | None) -> None:
        if self.left <= 0:
            return
        if error is not None:
            self.left = 0
            self.done(error)
            return
        self.left -= 1
        if self.left == 0:
            self.done(None)


class Placement(Protocol):
    """Where a subscription lives: a hub connection, or on a cluster a shard router (``services.shards``)."""

    def add(self, sub: Subscriber, kind: Kind, names: list[bytes], done: Done) -> None: ...
    def remove(self, sub: Subscriber, kind: Kind, names: list[bytes]) -> None: ...
    def caught_up(self, names: list[bytes], done: Done) -> None: ...


class Membership:
    """One client's subscriptions, each with the hub connection it lives on (None: on the client's own
    connection), so a change of login or protocol never loses track of where a subscription is."""

    __slots__ = ("names",)

    def __init__(self) -> None:
        self.names: dict[Kind, dict[bytes, Placement | None]] = {k: {} for k in Kind}

    @property
    def active(self) -> bool:
        return any(self.names.values())

    def count(self, kind: Kind) -> int:
        """The number Redis puts in a (un)subscribe confirmation."""
        names = self.names
        return len(names[Kind.SHARD]) if kind is Kind.SHARD else len(names[Kind.CHANNEL]) + len(names[Kind.PATTERN])


@dataclass(frozen=True, slots=True)
class HubSnapshot:
    channels: int
    patterns: int
    shard_channels: int
    subscribers: int
    upstream_connections: int
    messages: int


class Hub:
    """The hub connections of every login (``None``: the sidecar's own)."""

    def __init__(self, manager: UpstreamManager) -> None:
        self.manager = manager
        self.hubs: dict[Credential, HubConnection] = {}
        self.messages = 0
        # a cluster node's shard hub: channels the node stops serving (their slot moved, the node failed) are
        # handed over, with their members, instead of subscribed again here
        self.rehome: Callable[[HubConnection, dict[bytes, set[Subscriber]]], None] | None = None

    def for_login(self, login: Credential | None) -> HubConnection:
        login = login or self.manager.login
        hub = self.hubs.get(login)
        if hub is None:
            hub = self.hubs[login] = HubConnection(self, login)
        return hub

    def receivers(self, kind: Kind, channel: bytes) -> tuple[int, int] | None:
        """For PUBLISH and PUBSUB NUMSUB: (the hub's confirmed subscriptions the upstream counts, the local
        subscribers a direct connection would count instead); None when the hub has nothing for ``channel``."""
        upstream = local = 0
        for hub in self.hubs.values():
            subs = hub.members[kind].get(channel)
            if subs:
                upstream += hub.confirmed(kind, channel)
                local += len(subs)
            if kind is Kind.CHANNEL:
                for pattern, psubs in hub.members[Kind.PATTERN].items():
                    if glob_match(pattern, channel):
                        upstream += hub.confirmed(Kind.PATTERN, pattern)
                        local += len(psubs)
        return (upstream, local) if upstream or local else None

    def close_all(self, reason: str) -> None:
        for hub in list(self.hubs.values()):
            hub.drop_everyone(reason)

    def snapshot(self) -> HubSnapshot:
        hubs = list(self.hubs.values())
        subscribers = {s for h in hubs for m in h.members.values() for subs in m.values() for s in subs}
        return HubSnapshot(
            channels=sum(len(h.members[Kind.CHANNEL]) for h in hubs),
            patterns=sum(len(h.members[Kind.PATTERN]) for h in hubs),
            shard_channels=sum(len(h.members[Kind.SHARD]) for h in hubs), subscribers=len(subscribers),
            upstream_connections=sum(1 for h in hubs if h.conn is not None and h.conn.alive),
            messages=self.messages)

