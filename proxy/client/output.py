"""A session's output: one ``Slot`` per reply, written to the client strictly in request order.

Each command gets its slot when it is dispatched; an upstream connection (or the sidecar itself) fills it; the
completed prefix of the queue leaves in one write per event-loop turn. A slot made while replies are switched off
(CLIENT REPLY OFF/SKIP) is filled and dropped in turn, so switching them back on takes effect exactly in order.
Pub/sub messages and other pushes queue behind pending replies and are never dropped by CLIENT REPLY when they are
RESP3 pushes, as Redis sends them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .base import SessionBase

log = logging.getLogger("sidecar.client")


class Slot:
    """A reply position; as an upstream ``Sink`` it receives its reply's exact bytes."""

    __slots__ = ("session", "data", "upstream", "blocking", "suppress", "transform")

    def __init__(self, session: SessionBase, upstream: bool, suppress: bool, blocking: bool = False) -> None:
        self.session = session
        self.data: bytes | None = None
        self.upstream = upstream  # counts as a command in flight upstream
        self.blocking = blocking
        self.suppress = suppress
        self.transform: Callable[[bytes], bytes] | None = None

    def deliver(self, frame: bytes) -> None:
        if self.transform is not None:
            frame = self.transform(frame)
        self.data = frame
        self.session.slot_done(self)


class ReplyQueue(SessionBase):
    """The output half of ``Session`` (its attributes live in ``Session.__slots__``)."""

    __slots__ = ()

    def reply(self, data: bytes) -> None:
        """A reply made by the sidecar, placed after every reply still pending."""
        suppress = self.quiet
        if not self.slots:
            if not suppress:
                self.write(data)
            return
        slot = Slot(self, False, suppress)
        slot.data = data
        self.slots.append(slot)

    def pending_slot(self, push: bool = False) -> Slot:
        """A slot the sidecar fills later itself (a subscription confirmed, an out-of-band reply). ``push``: it is
        a RESP3 push, which CLIENT REPLY never drops."""
        slot = Slot(self, False, False if push else self.quiet)
        self.slots.append(slot)
        return slot

    def slot_done(self, slot: Slot) -> None:
        if self.closed:
            return
        if slot.upstream:
            self.inflight -= 1
        slots = self.slots
        if slots and slots[0] is slot:
            out: list[bytes] = []
            while slots and (data := slots[0].data) is not None:
                if not slots.popleft().suppress:
                    out.append(data)
            if out:
                self.write(out[0] if len(out) == 1 else b"".join(out))
            elif self.out:  # replies _flush held back for these (all switched off): they leave now
                self._schedule_flush()
        if not self.inflight:
            self.idle_upstream()
        if self.closing and not slots and not self.out and self.transport is not None:
            self.transport.close()
        elif self.reading_paused:
            self.maybe_resume_reading()

    def write(self, data: bytes) -> None:
        """Queue bytes for the client; everything ready in one event-loop turn leaves in one write."""
        if self.closed:
            return
        self._schedule_flush()
        self.out.append(data)
        self.out_size += len(data)
        self.net_out += len(data)
        if self.out_size > 65536:  # a large turn (a reply burst for a client that may not read): check now
            self.check_output_limit()

    def _schedule_flush(self) -> None:
        if not self.flush_pending:
            self.flush_pending = True
            self.handle.end_of_turn.add(self._flush)

    def push(self, frame: bytes) -> None:
        """A pub/sub message or another out-of-band frame, kept behind pending replies; CLIENT REPLY OFF never
        drops them (Redis sends them as pushes in RESP2 too)."""
        if self.slots:
            slot = Slot(self, False, False)
            slot.data = frame
            self.slots.append(slot)
        else:
            self.write(frame)

    def _flush(self) -> None:
        self.flush_pending = False
        transport, out = self.transport, self.out
        if self.inflight and self.lease is None and not self.closing and self.out_size < 16384:
            # local replies (the handshake's +OK) ahead of shared commands sent in the same read: they leave with
            # those replies, a moment later, in one write instead of two
            return
        if transport is None or self.closed or not out:
            out.clear()
            self.out_size = 0
            return
        if len(out) == 1:
            transport.write(out[0])
        else:
            transport.writelines(out)  # no join: a burst of big replies is not copied once more
        out.clear()
        self.out_size = 0
        if not self.check_output_limit() and self.closing and not self.slots:
            transport.close()

    def check_output_limit(self) -> bool:
        """Cut off a client whose unsent replies pass its limit, or the largest holder when all clients together
        pass ``limits.total_output_buffer``; True if this client was cut off."""
        transport = self.transport
        if transport is None or self.closed:
            return self.closed
        rt = self.handle.current
        limits = rt.cfg.limits
        held = transport.get_write_buffer_size() + self.out_size
        budget = rt.output
        budget.report(self, held)
        subscribed = self.subscribed
        limit = limits.pubsub_output_buffer if subscribed else limits.client_output_buffer
        if held > limit:
            why = "limits.pubsub_output_buffer" if subscribed else "limits.client_output_buffer"
        elif budget.total > limits.total_output_buffer and budget.largest() is self:
            why = "limits.total_output_buffer (the largest holder)"
        else:
            return False
        log.warning("client %s closed: output buffer over %s (%d bytes held); it is not reading its replies",
                    self.addr, why, held)
        rt.stats.output_overflows += 1
        self.abort()
        return True
