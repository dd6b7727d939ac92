"""A session's state, in one place: every attribute a client connection has, typed, with what derives from it.

``Session`` is split by role into mixins over this base (``ReplyQueue``: its output; ``Forwarding``: where its
commands go upstream; ``Session``: reading and dispatching); the few calls that cross from one half to another are
declared here, so each half reads on its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..access.auth import Identity
from ..runtime import RuntimeHandle
from ..services.pubsub import Membership
from ..upstream.connection import UpstreamConnection
from ..upstream.credentials import Credential, PoolKey
from ..wire import resp
from .state import LeaseKind, ReplyMode, Tx, Wait

if TYPE_CHECKING:
    from .cluster import ClusterState
    from .output import Slot


class SessionBase:
    __slots__ = (
        "handle", "id", "parser", "transport", "_addr", "_laddr", "created", "last_active", "last_command",
        "identity", "db", "proto", "name", "lib_name", "lib_ver", "reply_mode", "skip_next", "skipping",
        "key", "conn", "inflight", "switching", "lease", "lease_kind", "tx", "subs", "plain",
        "wait", "held", "task", "slots", "out", "out_size", "closing", "closed", "reading_paused",
        "writing_paused", "received", "net_in", "net_out", "cmds", "flush_pending", "cluster", "__weakref__")

    def __init__(self, handle: RuntimeHandle) -> None:
        rt = handle.current
        self.handle = handle
        self.id = rt.registry.next_id()
        self.parser = resp.RequestParser(rt.limits)
        self.transport: asyncio.Transport | None = None
        self._addr: str | None = None  # worked out when first needed (CLIENT LIST, logs, a failed AUTH)
        self._laddr: str | None = None
        self.created = self.last_active = time.monotonic()
        self.last_command: list[bytes] = [b"NULL"]
        self.identity: Identity | None = rt.auth.initial()
        self.parser.authenticated = self.identity is not None
        self.db = rt.cfg.upstream.db
        self.proto = 2
        self.name: str | None = None
        self.lib_name = self.lib_ver = ""
        self.reply_mode = ReplyMode.ON
        self.skip_next = self.skipping = False
        self.key: PoolKey | None = None  # the shared pool for (login, db, protocol); None: work it out again
        self.conn: UpstreamConnection | None = None  # the shared connection of the commands in flight
        self.inflight = 0
        self.switching = False  # the pool changed while commands were in flight: finish those first
        self.lease: UpstreamConnection | None = None
        self.lease_kind: LeaseKind | None = None
        self.tx = Tx.NONE
        self.subs: Membership | None = None
        self.plain = False  # nothing about this client changes how a plain shared command is routed
        self.wait: Wait | None = None
        self.held: tuple[list[bytes], bytes] | None = None
        self.task: asyncio.Future[Any] | None = None
        self.slots: deque[Slot] = deque()
        self.out: list[bytes] = []
        self.out_size = 0
        self.flush_pending = False
        self.closing = self.closed = False
        self.reading_paused = self.writing_paused = False
        self.received = 0.0
        self.net_in = self.net_out = self.cmds = 0  # CLIENT LIST's tot-net-in, tot-net-out, tot-cmds
        self.cluster: ClusterState | None = None  # what a cluster upstream needs to know about this client

    # -- derived state ------------------------------------------------------------------------------------------------
    @property
    def quiet(self) -> bool:
        """Replies made now are dropped (CLIENT REPLY OFF, or SKIP for this one command)."""
        return self.reply_mode is ReplyMode.OFF or self.skipping

    @property
    def addr(self) -> str:
        if self._addr is None:
            self._addr = _fmt_addr(self.transport.get_extra_info("peername") if self.transport else None)
        return self._addr

    @property
    def laddr(self) -> str:
        if self._laddr is None:
            self._laddr = _fmt_addr(self.transport.get_extra_info("sockname") if self.transport else None)
        return self._laddr

    @property
    def subscribed(self) -> bool:
        return self.subs is not None and self.subs.active

    @property
    def login(self) -> Credential | None:
        """The upstream login this client's commands run as (None: the sidecar's own)."""
        return self.identity.login if self.identity is not None else None

    def refresh_plain(self) -> None:
        self.plain = (self.identity is not None and self.lease is None and self.tx is Tx.NONE
                      and not self.subscribed and self.reply_mode is ReplyMode.ON and not self.skip_next
                      and not self.closing)

    # -- calls from one half of the session to another ------------------------------------------------------------
    def reply(self, data: bytes) -> None:
        """A reply made by the sidecar, after every pending one (``ReplyQueue``)."""
        raise NotImplementedError

    def pending_slot(self, push: bool = False) -> Slot:
        """A reply position the sidecar fills later (``ReplyQueue``)."""
        raise NotImplementedError

    def push(self, frame: bytes) -> None:
        """An out-of-band frame for the client (``ReplyQueue``)."""
        raise NotImplementedError

    def slot_done(self, slot: Slot) -> None:
        """A reply came in (``ReplyQueue``)."""
        raise NotImplementedError

    def abort(self) -> None:
        """Close at once (``Session``)."""
        raise NotImplementedError

    def hold(self, wait: Wait, args: list[bytes], raw: bytes) -> None:
        """Keep this command until the wait ends (``Session``)."""
        raise NotImplementedError

    def suspend(self, wait: Wait, work: Awaitable[Any], then: Callable[[Any], None],
                held: tuple[list[bytes], bytes] | None = None) -> None:
        """Read nothing more until ``work`` is done (``Session``)."""
        raise NotImplementedError

    def idle_upstream(self) -> None:
        """Nothing of this client is in flight any more (``Session``)."""
        raise NotImplementedError

    def maybe_resume_reading(self) -> None:
        """Read from the client again if it is below its limits (``Session``)."""
        raise NotImplementedError


def _fmt_addr(addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = addr[0]
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr or "")
