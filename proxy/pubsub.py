"""The shared subscription hub: one upstream subscriber connection per (credential, protocol) for every client.

Each channel, pattern or shard channel is subscribed upstream once, when its first local subscriber arrives, and
unsubscribed when its last one leaves. Messages arrive as the upstream's bytes in the hub connection's protocol and
are copied, unchanged, to every local subscriber of that protocol. A client's subscribe confirmation is sent only
once the upstream has confirmed the subscription, so a message published after the client saw its confirmation is
never missed. Slow subscribers are cut off by their output buffer limit (limits.pubsub_output_buffer), as Redis's
client-output-buffer-limit pubsub does; the others never wait for them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import hiredis

from .wire import resp
from .wire.glob import glob_match
from .upstream import PoolKey, UpstreamConnection, UpstreamError

if TYPE_CHECKING:
    from .session import Session, Slot
    from .upstream import UpstreamManager

log = logging.getLogger("sidecar.pubsub")

# command -> (kind, reply word); kinds: "channel", "pattern", "shard"
KINDS = {b"subscribe": "channel", b"unsubscribe": "channel", b"psubscribe": "pattern", b"punsubscribe": "pattern",
         b"ssubscribe": "shard", b"sunsubscribe": "shard"}
SUBSCRIBE_CMD = {"channel": b"SUBSCRIBE", "pattern": b"PSUBSCRIBE", "shard": b"SSUBSCRIBE"}
UNSUBSCRIBE_CMD = {"channel": b"UNSUBSCRIBE", "pattern": b"PUNSUBSCRIBE", "shard": b"SUNSUBSCRIBE"}
CONFIRM_KIND = {b"subscribe": "channel", b"psubscribe": "pattern", b"ssubscribe": "shard"}
MESSAGE_KIND = {b"message": "channel", b"pmessage": "pattern", b"smessage": "shard"}


@dataclass
class Subscriptions:
    """One client's subscriptions (what CLIENT LIST shows as sub/psub/ssub)."""

    channels: set[bytes] = field(default_factory=set)
    patterns: set[bytes] = field(default_factory=set)
    shard_channels: set[bytes] = field(default_factory=set)

    @property
    def active(self) -> bool:
        return bool(self.channels or self.patterns or self.shard_channels)

    def of(self, kind: str) -> set[bytes]:
        return {"channel": self.channels, "pattern": self.patterns, "shard": self.shard_channels}[kind]

    def count(self, kind: str) -> int:
        """The number Redis puts in a (un)subscribe confirmation."""
        return len(self.shard_channels) if kind == "shard" else len(self.channels) + len(self.patterns)


class HubConnection:
    """The upstream subscriber connection for one (credential, protocol), with its local subscriber tables."""

    def __init__(self, hub: "Hub", key: PoolKey) -> None:
        self.hub = hub
        self.key = key
        self.members: dict[str, dict[bytes, set["Session"]]] = {"channel": {}, "pattern": {}, "shard": {}}
        # SUBSCRIBEs sent upstream and not yet confirmed, per (kind, name). A client waits for the confirmation of the
        # last one sent when it subscribed: after an UNSUBSCRIBE, an older confirmation is not yet in force.
        self.outstanding: dict[tuple[str, bytes], int] = {}
        self.waiting: dict[tuple[str, bytes], list[tuple[int, "_Confirmation"]]] = {}
        self.conn: UpstreamConnection | None = None
        self.reader = hiredis.Reader()

    def connection(self) -> UpstreamConnection:
        if self.conn is None or not self.conn.alive:
            self.hub.manager.check_available()
            conn = self.conn = self.hub.manager.open(self.key, "pubsub")
            conn.push_handler = self.on_frame
            conn.on_state = self._on_state
            self.outstanding.clear()
            for kind in self.members:
                names = list(self.members[kind])
                if names:  # after a reconnect: subscribe everything again
                    self.send_subscribe(kind, names)
        return self.conn

    def send_subscribe(self, kind: str, names: list[bytes]) -> None:
        assert self.conn is not None
        for name in names:
            self.outstanding[(kind, name)] = self.outstanding.get((kind, name), 0) + 1
        self.conn.send(resp.encode_command([SUBSCRIBE_CMD[kind], *names]), None)

    def is_confirmed(self, kind: str, name: bytes) -> bool:
        """Subscribed upstream for local members, with every SUBSCRIBE sent for it confirmed."""
        return bool(self.members[kind].get(name)) and not self.outstanding.get((kind, name))

    def wait_for(self, kind: str, name: bytes, confirmation: "_Confirmation") -> None:
        """Confirm to the client once the latest SUBSCRIBE sent for ``name`` is confirmed upstream."""
        self.waiting.setdefault((kind, name), []).append((self.outstanding.get((kind, name), 0), confirmation))

    def _on_state(self, conn: UpstreamConnection) -> None:
        if conn.alive or conn is not self.conn:
            return
        self.conn = None
        for confirmations in self.waiting.values():
            for _, c in confirmations:
                c.fail(f"ERR {conn.close_reason}")
        self.waiting.clear()
        if any(self.members.values()):
            log.warning("pub/sub hub connection lost (%s); resubscribing", conn.close_reason)
            self.hub.manager.loop.call_later(0.1, self._resubscribe)

    def _resubscribe(self) -> None:
        if self.conn is None and any(self.members.values()):
            try:
                self.connection()
            except UpstreamError:
                self.hub.manager.loop.call_later(0.5, self._resubscribe)

    def on_frame(self, frame: bytes) -> None:
        reader = self.reader
        reader.feed(frame)
        value = reader.gets()
        if not isinstance(value, list) or not value:
            return
        word = value[0].lower() if isinstance(value[0], bytes) else b""
        kind = MESSAGE_KIND.get(word)
        if kind is not None:
            self.hub.stats_messages += 1
            subscribers = self.members[kind].get(value[1])
            if subscribers:
                for session in list(subscribers):
                    session.write_push(frame)
            return
        kind = CONFIRM_KIND.get(word)
        if kind is not None:
            key = (kind, value[1])
            left = self.outstanding.pop(key, 1) - 1
            if left > 0:
                self.outstanding[key] = left
            still_waiting = []
            for need, c in self.waiting.pop(key, ()):
                if need <= 1:
                    c.confirm_one()
                else:
                    still_waiting.append((need - 1, c))
            if still_waiting:
                self.waiting[key] = still_waiting


class _Confirmation:
    """The reply to one (P|S)SUBSCRIBE command: sent when every channel in it is confirmed upstream."""

    def __init__(self, session: "Session", slot: "Slot", frames: bytes, missing: int) -> None:
        self.session, self.slot, self.frames, self.missing = session, slot, frames, missing

    def confirm_one(self) -> None:
        self.missing -= 1
        if self.missing == 0 and self.slot.data is None:
            self.slot.data = self.frames
            self.session.slot_done(self.slot)

    def fail(self, error: str) -> None:
        if self.slot.data is None:
            self.slot.data = resp.error(error)
            self.session.slot_done(self.slot)


class Hub:
    def __init__(self, manager: "UpstreamManager") -> None:
        self.manager = manager
        self.hubs: dict[PoolKey, HubConnection] = {}
        self.stats_messages = 0

    def _hub_for(self, session: "Session") -> HubConnection:
        key = PoolKey(session.identity.upstream, 0, session.proto)  # type: ignore[union-attr]
        hub = self.hubs.get(key)
        if hub is None:
            hub = self.hubs[key] = HubConnection(self, key)
        return hub

    def command(self, session: "Session", name: bytes, args: list[bytes]) -> None:
        kind = KINDS[name]
        if name.startswith((b"subscribe", b"psubscribe", b"ssubscribe")):
            if len(args) < 2:
                session.reply(resp.error(f"ERR wrong number of arguments for '{name.decode()}' command"))
            else:
                self._subscribe(session, name, kind, args[1:])
        else:
            self._unsubscribe(session, name, kind, args[1:], reply=True)

    def _subscribe(self, session: "Session", name: bytes, kind: str, names: list[bytes]) -> None:
        try:
            hub = self._hub_for(session)
            hub.connection()  # opened (or reopened) now, so the SUBSCRIBE below has somewhere to go
        except UpstreamError as exc:
            session.reply(resp.error(str(exc)))
            return
        subs = session.subs = session.subs or Subscriptions()
        mine = subs.of(kind)
        frames, new_upstream, unconfirmed = [], [], []
        for channel in names:
            mine.add(channel)
            if not hub.is_confirmed(kind, channel):
                unconfirmed.append(channel)
            members = hub.members[kind].setdefault(channel, set())
            if not members:
                new_upstream.append(channel)
            members.add(session)
            frames.append(resp.push([resp.bulk(name), resp.bulk(channel), resp.integer(subs.count(kind))],
                                    session.proto))
        if new_upstream:
            hub.send_subscribe(kind, new_upstream)
        data = b"".join(frames)
        if not unconfirmed:
            session.reply(data)
            return
        confirmation = _Confirmation(session, session.pending_slot(), data, len(unconfirmed))
        for channel in unconfirmed:
            hub.wait_for(kind, channel, confirmation)

    def _unsubscribe(self, session: "Session", name: bytes, kind: str, names: list[bytes], reply: bool) -> None:
        subs = session.subs
        mine = subs.of(kind) if subs else set()
        targets = names or sorted(mine)
        hub = self.hubs.get(PoolKey(session.identity.upstream, 0, session.proto)) if session.identity else None
        frames, gone = [], []
        for channel in targets:
            mine.discard(channel)
            if hub is not None:
                members = hub.members[kind].get(channel)
                if members is not None:
                    members.discard(session)
                    if not members:
                        del hub.members[kind][channel]
                        gone.append(channel)
            frames.append(resp.push([resp.bulk(name), resp.bulk(channel),
                                     resp.integer(subs.count(kind) if subs else 0)], session.proto))
        if gone and hub is not None and hub.conn is not None and hub.conn.alive:
            hub.conn.send(resp.encode_command([UNSUBSCRIBE_CMD[kind], *gone]), None)
        if not reply:
            return
        if not targets:  # nothing to unsubscribe from: Redis still answers, with a null channel
            frames.append(resp.push([resp.bulk(name), resp.null(session.proto),
                                     resp.integer(subs.count(kind) if subs else 0)], session.proto))
        session.reply(b"".join(frames))

    def drop(self, session: "Session") -> None:
        """A client left (or RESET): remove it everywhere, without replies."""
        if session.subs is None or session.identity is None:
            session.subs = None
            return
        for kind, cmd in (("channel", b"unsubscribe"), ("pattern", b"punsubscribe"), ("shard", b"sunsubscribe")):
            if session.subs.of(kind):
                self._unsubscribe(session, cmd, kind, [], reply=False)
        session.subs = None

    def publish_transform(self, name: bytes, channel: bytes):
        """A reply transform for PUBLISH/SPUBLISH: the upstream counted this sidecar's hub connections as receivers;
        a direct connection would count every local subscriber (and every matching pattern subscription) instead."""
        if not self.hubs:
            return None
        kind = "shard" if name == b"spublish" else "channel"
        upstream_seen = local = 0
        for hub in self.hubs.values():
            members = hub.members[kind].get(channel)
            if members:
                upstream_seen += hub.is_confirmed(kind, channel)
                local += len(members)
            if kind == "channel":
                for pattern, subscribers in hub.members["pattern"].items():
                    if glob_match(pattern, channel):
                        upstream_seen += hub.is_confirmed("pattern", pattern)
                        local += len(subscribers)
        if not upstream_seen and not local:
            return None

        def adjust(frame: bytes) -> bytes:
            if frame[:1] != b":":
                return frame
            return resp.integer(max(0, int(frame[1:-2]) - upstream_seen) + local)

        return adjust

    def snapshot(self) -> dict:
        channels = sum(len(h.members["channel"]) + len(h.members["shard"]) for h in self.hubs.values())
        patterns = sum(len(h.members["pattern"]) for h in self.hubs.values())
        subscribers = len({s for h in self.hubs.values() for m in h.members.values() for ss in m.values()
                           for s in ss})
        upstream = sum(1 for h in self.hubs.values() if h.conn is not None and h.conn.alive)
        return {"channels": channels, "patterns": patterns, "subscribers": subscribers,
                "upstream_connections": upstream, "messages": self.stats_messages}
