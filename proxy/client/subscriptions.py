"""A session's (P|S)(UN)SUBSCRIBE: through the shared hub, or on the client's own connection when it has one.

Through the hub, the client's confirmation frames are made by the sidecar (with the client's own counts) and sent
once the upstream has confirmed every name, or replaced by the upstream's error for the whole command, after which
nothing of it stays recorded. A client that holds a connection of its own (CLIENT TRACKING, or a subscription to
``__redis__:invalidate``, which tracking redirects deliver to one connection alone) subscribes there, and every frame
the upstream sends for it reaches the client as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..services.pubsub import COMMANDS, Kind, Membership
from ..upstream.connection import UpstreamError
from ..wire import resp
from .state import LeaseKind

if TYPE_CHECKING:
    from .session import Session

INVALIDATE = b"__redis__:invalidate"


def command(s: Session, name: bytes, args: list[bytes], raw: bytes) -> None:
    kind, subscribing = COMMANDS[name]
    if subscribing and len(args) < 2:
        s.reply(resp.error(f"ERR wrong number of arguments for '{name.decode()}' command"))
        return
    if s.lease_kind is LeaseKind.SESSION or (subscribing and kind is Kind.CHANNEL and INVALIDATE in args[1:]):
        _dedicated(s, kind, subscribing, args, raw)
    elif subscribing:
        _subscribe(s, name, kind, args[1:])
    else:
        _unsubscribe(s, name, kind, args[1:])


def _dedicated(s: Session, kind: Kind, subscribing: bool, args: list[bytes], raw: bytes) -> None:
    lease = s.need_lease(LeaseKind.SESSION, args, raw)
    if lease is None:
        return
    lease.subscribed = True  # RESP2 messages and confirmations now arrive unasked: they go to the client as pushes
    subs = s.subs = s.subs or Membership()
    names = subs.names[kind]
    if subscribing:
        for channel in args[1:]:
            names[channel] = None
    else:
        for channel in args[1:] or [n for n, hub in names.items() if hub is None]:
            names.pop(channel, None)
    lease.send(raw, None)


def _subscribe(s: Session, name: bytes, kind: Kind, channels: list[bytes]) -> None:
    try:
        rt = s.handle.current
        hubs = rt.shard_hubs if kind is Kind.SHARD and rt.shard_hubs is not None else rt.hub
        hub = hubs.for_login(s.login)
    except UpstreamError as exc:
        s.reply(resp.error(str(exc)))
        return
    subs = s.subs = s.subs or Membership()
    mine = subs.names[kind]
    added = [c for c in dict.fromkeys(channels) if c not in mine]
    frames = []
    for channel in channels:
        mine[channel] = hub
        frames.append(resp.push([resp.bulk(name), resp.bulk(channel), resp.integer(subs.count(kind))], s.proto))
    slot = s.pending_slot(push=s.proto == 3)

    def confirmed(error: bytes | None) -> None:
        if error is not None:
            for channel in added:  # the upstream refused the whole command: nothing of it stays
                if mine.get(channel) is hub:
                    del mine[channel]
            hub.remove(s, kind, added)
        slot.deliver(error or b"".join(frames))

    try:
        hub.add(s, kind, channels, confirmed)
    except UpstreamError as exc:
        confirmed(resp.error(str(exc)))


def _unsubscribe(s: Session, name: bytes, kind: Kind, channels: list[bytes]) -> None:
    subs = s.subs
    mine = subs.names[kind] if subs is not None else {}
    targets = channels or list(mine)
    frames = []
    for channel in targets:
        if channel in mine:
            hub = mine.pop(channel)
            if hub is not None:
                hub.remove(s, kind, [channel])
        frames.append(resp.push([resp.bulk(name), resp.bulk(channel),
                                 resp.integer(subs.count(kind) if subs else 0)], s.proto))
    if not targets:  # nothing to unsubscribe from: Redis still answers, with a null channel
        frames.append(resp.push([resp.bulk(name), resp.null(s.proto), resp.integer(subs.count(kind) if subs else 0)],
                                s.proto))
    data = b"".join(frames)
    if s.proto == 3:
        s.push(data)  # RESP3 confirmations are pushes: CLIENT REPLY OFF does not drop them
    else:
        s.reply(data)
    if subs is not None and not subs.active:
        s.subs = None


def drop(s: Session) -> None:
    """The client left (or RESET): out of every hub, without replies."""
    subs, s.subs = s.subs, None
    if subs is None:
        return
    for kind, names in subs.names.items():
        for channel, hub in names.items():
            if hub is not None:
                hub.remove(s, kind, [channel])
