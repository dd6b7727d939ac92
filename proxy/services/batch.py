"""Work done once at the end of an event-loop turn for many objects: one scheduled callback, not one per object.

Every client whose replies became ready in a turn is flushed by the same callback, so a burst of replies for many
clients costs one loop handle, and each client still gets one write per turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class EndOfTurn:
    __slots__ = ("loop", "pending", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: list[Callable[[], None]] = []
        self.scheduled = False

    def add(self, work: Callable[[], None]) -> None:
        self.pending.append(work)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._run)

    def _run(self) -> None:
        self.scheduled = False
        pending, self.pending = self.pending, []
        for work in pending:
            work()
