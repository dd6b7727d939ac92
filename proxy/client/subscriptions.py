"""A session's (P|S)(UN)SUBSCRIBE: through the shared hub, or on the client's own connection when it has one.

Through the hub, the client's confirmation frames are made by the sidecar (with the client's own counts) and sent
once the upstream has confirmed every name, or replaced by the upstream's error for the whole command, after which
nothing of it stays recorded. A client that holds a connection of its own (CLIENT TRACKING, or a subscription to
``__redis__:invalidate``, which tracking redirects deliver to one connection alone) subscribes there, and every frame
the upstream sends for it reaches the client as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..services.pubsub import COMMANDS, Gate, Kind, Membership, Placement
from ..upstream.connection import UpstreamError
from ..wire import resp
from .state import LeaseKind, Wait

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
    elif s.inflight:
        s.hold(Wait.DRAIN, args, raw)  # a message its PUBLISH just sent is delivered before it leaves
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
    slot = s.pending_slot(push=True)
    answered: asyncio.Future[None] = s.handle.current.loop.create_future()

    def confirmed(error: bytes | None) -> None:
        if error is not None:
            for channel in added:  # the upstream refused the whole command: nothing of it stays
                if mine.get(channel) is hub:
                    del mine[channel]
            hub.remove(s, kind, added)
            if s.subs is not None and not s.subs.active:
                s.subs = None
        slot.deliver(error or b"".join(frames))
        if not answered.done():
            answered.set_result(None)

    try:
        hub.add(s, kind, channels, confirmed)
    except UpstreamError as exc:
        confirmed(resp.error(str(exc)))
    if not answered.done():
        # Whether the client is subscribed now is the upstream's answer: nothing after it runs before that (a
        # refused SUBSCRIBE leaves a RESP2 client free to run anything, as Redis does)
        s.suspend(Wait.SUBSCRIBE, answered, _ignore)


def _ignore(_: object) -> None:
    """(The confirmation is already in the client's output.)"""


def _unsubscribe(s: Session, name: bytes, kind: Kind, channels: list[bytes]) -> None:
    catch_up(s, (kind,), channels, lambda: _leave(s, name, kind, channels))


def catch_up(s: Session, kinds: Iterable[Kind], channels: list[bytes], then: Callable[[], None]) -> None:
    """``then``, once the hub connections the client's ``channels`` (all, when empty) live on have delivered what the
    upstream sent them before now: a direct connection gets every message published before its UNSUBSCRIBE (RESET,
    QUIT) first. At most ``upstream.reply_timeout`` is spent waiting, as for any reply."""
    places: dict[int, Placement] = {}
    names: list[bytes] = []
    subs = s.subs
    if subs is not None:
        for kind in kinds:
            mine = subs.names[kind]
            for channel in channels or list(mine):
                place = mine.get(channel)
                if place is not None:
                    places[id(place)] = place
                    names.append(channel)
    if not places:
        then()
        return
    rt = s.handle.current
    caught: asyncio.Future[None] = rt.loop.create_future()

    def done(_: bytes | None) -> None:
        if not caught.done():  # (wait_for may have given up on it)
            caught.set_result(None)

    gate = Gate(len(places), done)
    for place in places.values():
        place.caught_up(names, gate.one)
    s.suspend(Wait.CATCH_UP, asyncio.wait_for(caught, rt.cfg.upstream.reply_timeout), lambda _: then())


def _leave(s: Session, name: bytes, kind: Kind, channels: list[bytes]) -> None:
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
    s.push(b"".join(frames))  # confirmations are pushes, in RESP2 too: CLIENT REPLY OFF never drops them
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
