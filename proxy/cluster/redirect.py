"""Sinks that stand between a node's reply and the client: redirections followed, parts gathered into one reply.

A client of the sidecar speaks to one node, so it must never see a MOVED or ASK it did not cause. ``Redirecting``
wraps the client's reply sink: a ``-MOVED`` updates the slot map and sends the command again to the node it names,
an ``-ASK`` sends ``ASKING`` and the command to the importing node once, ``-TRYAGAIN`` and ``-CLUSTERDOWN`` are sent
again after a short, growing pause, a few times, and then surfaced. Each of those replies means the command did not
run, so sending it again cannot run it twice; a lost connection is an unknown outcome and is never retried (its error
goes to the client, and the layout is read again). Where the command goes again is the caller's ``Resend``, which
keeps one client's retries on one connection per node, so they stay in the client's order.

``Gather`` collects the replies of a command split across slots or fanned out to every primary and delivers one
reply, merged, when the last part is in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..upstream.connection import Sink
from ..upstream.credentials import PoolKey
from ..wire.resp import encode_command
from .nodes import ClusterUpstream
from .topology import Address, parse_redirect

ASKING = encode_command([b"ASKING"])
MAX_REDIRECTS = 5
RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8)  # TRYAGAIN and CLUSTERDOWN: about 1.5 s in all, then the error is the reply
# errors the sidecar makes when a node cannot be reached: the layout may have changed (a failover)
NODE_FAILURES = (b"-ERR upstream ", b"-ERR cannot connect to upstream", b"-ERR no answer from upstream")


class Resend(Protocol):
    """Send ``sink.raw`` again to ``address`` (after ``ASKING`` when ``asking``), with ``sink`` as its sink."""

    def __call__(self, sink: Redirecting, address: Address, asking: bool) -> None: ...


class Redirecting:
    """The reply sink of one command sent to a cluster node (see the module docstring)."""

    __slots__ = ("final", "raw", "slot", "address", "resend", "cluster", "key", "hops", "tries", "blocking")

    def __init__(self, final: Sink, raw: bytes, slot: int | None, address: Address, resend: Resend,
                 cluster: ClusterUpstream, key: PoolKey) -> None:
        self.final = final
        self.raw = raw
        self.slot = slot  # None: keyless, it stays with the node it was sent to
        self.address = address
        self.resend = resend
        self.cluster = cluster
        self.key = key  # the pool it was sent on: a retry goes out in the same login and protocol
        self.hops = 0
        self.tries = 0
        self.blocking = final.blocking

    def deliver(self, frame: bytes) -> None:
        if frame[:1] == b"-" and self._again(frame):
            return
        self.final.deliver(frame)

    def fail(self, error: bytes) -> None:
        """The command could not be sent again (no connection to the node): ``error`` is its reply."""
        self.cluster.refresh()
        self.final.deliver(error)

    def _again(self, frame: bytes) -> bool:
        cluster = self.cluster
        if frame.startswith((b"-MOVED ", b"-ASK ")):
            redirect = parse_redirect(frame)
            if redirect is None or self.hops >= MAX_REDIRECTS:
                return False
            self.hops += 1
            target = redirect.address(self.address[0])
            if redirect.ask:
                cluster.counts["ask"] += 1
            else:
                cluster.moved(redirect.slot, target)
            self.address = target
            self.resend(self, target, redirect.ask)
            return True
        if frame.startswith((b"-TRYAGAIN", b"-CLUSTERDOWN")):
            if self.tries >= len(RETRY_DELAYS):
                return False
            cluster.counts["retries"] += 1
            if frame.startswith(b"-CLUSTERDOWN"):
                cluster.refresh()
            cluster.loop.call_later(RETRY_DELAYS[self.tries], self._retry)
            self.tries += 1
            return True
        if frame.startswith(NODE_FAILURES):
            cluster.refresh()
        return False

    def _retry(self) -> None:
        """Again, to whoever serves the slot by now (a migration may have finished, a replica taken over)."""
        if self.slot is not None:
            owner = self.cluster.owner(self.slot)
            if owner is not None:
                self.address = (owner.target.host, owner.target.port)
        self.resend(self, self.address, False)


class Gather:
    """The parts of one client command; ``merge`` turns their replies, in part order, into the client's reply."""

    __slots__ = ("final", "replies", "left", "merge")

    def __init__(self, final: Sink, parts: int, merge: Callable[[list[bytes]], bytes]) -> None:
        self.final = final
        self.replies: list[bytes] = [b""] * parts
        self.left = parts
        self.merge = merge

    def part(self, index: int) -> Part:
        return Part(self, index)

    def done(self, index: int, frame: bytes) -> None:
        self.replies[index] = frame
        self.left -= 1
        if self.left == 0:
            self.final.deliver(self.merge(self.replies))


class Part:
    """The sink of one part of a ``Gather``."""

    __slots__ = ("gather", "index")
    blocking = False

    def __init__(self, gather: Gather, index: int) -> None:
        self.gather = gather
        self.index = index

    def deliver(self, frame: bytes) -> None:
        self.gather.done(self.index, frame)
