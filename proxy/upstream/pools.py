"""The pool modes, first-class: shared connections multiplexed by many clients, and leases lent to one client.

A shared pool holds up to ``pool.size`` connections per ``PoolKey``; a client's commands stay on one of them while any
are in flight (the session enforces that), and move to the least-loaded one between pipelines.

Leases come in two classes with separate bounds, so idle blocking calls can never starve transactions:
``HELD`` (a transaction from WATCH/MULTI to EXEC, or a client session: ``pool.lease_max``) and ``CALL`` (one
blocking call or one WAIT: ``pool.blocking_max``). Idle authenticated connections are kept per key for the next
lease, but only lent connections count against a bound.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from dataclasses import dataclass

from .connection import UpstreamConnection
from .credentials import PoolKey


BATCH_DEPTH = 64  # commands in flight on a connection past which new clients spread to the others


class LeaseClass(enum.Enum):
    HELD = "held"  # transactions and client sessions: pool.lease_max
    CALL = "call"  # one blocking call or WAIT: pool.blocking_max


@dataclass(slots=True)
class SharedPool:
    key: PoolKey
    conns: list[UpstreamConnection]

    def best(self) -> UpstreamConnection | None:
        """A connection that already has a write going out this loop turn (its commands join that write, one
        syscall for many clients) while it is not deep in work; else the least-loaded, preferring ones whose oldest
        command is not overdue (an idle one at once)."""
        best: UpstreamConnection | None = None
        lowest = 0
        for conn in self.conns:
            load = len(conn.pending) + len(conn.queued) + (1 << 30 if conn.slow else 0)
            if conn.flush_scheduled and load < BATCH_DEPTH:
                return conn
            if best is None or load < lowest:
                best, lowest = conn, load
        return best


class LeaseBook:
    """Who holds which lease, the idle connections per key, and the clients waiting for a lease, per class."""

    __slots__ = ("lent", "idle", "waiters", "in_use")

    def __init__(self) -> None:
        self.lent: dict[UpstreamConnection, LeaseClass] = {}
        self.idle: dict[PoolKey, list[UpstreamConnection]] = {}
        self.waiters: dict[LeaseClass, deque[asyncio.Future[None]]] = {c: deque() for c in LeaseClass}
        self.in_use: dict[LeaseClass, int] = {c: 0 for c in LeaseClass}

    def lend(self, conn: UpstreamConnection, cls: LeaseClass) -> None:
        self.lent[conn] = cls
        self.in_use[cls] += 1

    def take_idle(self, key: PoolKey) -> UpstreamConnection | None:
        idle = self.idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.alive:
                return conn
        return None

    def forget(self, conn: UpstreamConnection) -> LeaseClass | None:
        """Drop every record of ``conn``; the class it was lent under, if it was."""
        idle = self.idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
        cls = self.lent.pop(conn, None)
        if cls is not None:
            self.in_use[cls] -= 1
        return cls

    def wake(self, cls: LeaseClass) -> None:
        """A lease of ``cls`` came free: let the longest waiter try again."""
        waiters = self.waiters[cls]
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake_all(self) -> None:
        for cls in LeaseClass:
            while self.waiters[cls]:
                self.wake(cls)

    def idle_count(self) -> int:
        return sum(map(len, self.idle.values()))
