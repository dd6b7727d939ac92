"""When to re-read the cluster's layout: on demand (a MOVED, a connection lost), periodically, and never in a herd.

A burst of MOVED replies after a resharding would otherwise start one CLUSTER SHARDS per reply. The policy coalesces
every request made while a refresh is queued into that one refresh, runs at most one at a time, spaces their starts
by ``min_interval``, and adds a jittered periodic refresh so that several sidecars started together do not ask the
cluster in step. The refresh itself is the caller's async callable (discover, then install the new map).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

log = logging.getLogger("sidecar.cluster")


class RefreshPolicy:
    """Runs ``refresh()`` when asked (coalesced, rate-limited) and every ``period`` seconds (+/- ``jitter``)."""

    def __init__(self, refresh: Callable[[], Awaitable[None]], *, min_interval: float = 1.0, period: float = 30.0,
                 jitter: float = 0.2, rng: Callable[[], float] = random.random) -> None:
        if min_interval < 0 or period <= 0 or not 0 <= jitter < 1:
            raise ValueError("min_interval >= 0, period > 0 and 0 <= jitter < 1 are needed")
        self._refresh = refresh
        self.min_interval = min_interval
        self.period = period
        self.jitter = jitter
        self._rng = rng
        self._queued: asyncio.Future[None] | None = None  # the refresh that new requests join
        self._worker: asyncio.Task[None] | None = None
        self._periodic: asyncio.Task[None] | None = None
        self._last_start = float("-inf")
        self._next_due = 0.0
        self.runs = 0  # refreshes started
        self.failures = 0  # of which raised
        self.last_error: BaseException | None = None

    def request(self) -> asyncio.Future[None]:
        """Ask for a refresh that starts after this call; returns its future, which the caller may await (it
        raises what the refresh raised) or drop. Requests made before that refresh starts share it."""
        if self._queued is None:
            loop = asyncio.get_running_loop()
            self._queued = loop.create_future()
            self._queued.add_done_callback(_consume_exception)
            if self._worker is None or self._worker.done():
                self._worker = loop.create_task(self._drain())
        return self._queued

    def start(self) -> None:
        """Begin the periodic refresh (the first one a jittered period from now)."""
        if self._periodic is None:
            loop = asyncio.get_running_loop()
            self._next_due = loop.time() + self._jittered(self.period)
            self._periodic = loop.create_task(self._every_period())

    async def close(self) -> None:
        """Stop everything; a request still waiting fails with CancelledError."""
        tasks = [t for t in (self._worker, self._periodic) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._queued is not None and not self._queued.done():
            self._queued.cancel()
        self._queued = self._worker = self._periodic = None

    def _jittered(self, seconds: float) -> float:
        return seconds * (1 - self.jitter + 2 * self.jitter * self._rng())

    async def _drain(self) -> None:
        """Run queued refreshes one at a time until none is queued (requests during a run queue the next one)."""
        loop = asyncio.get_running_loop()
        while self._queued is not None:
            wait = self._last_start + self.min_interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            future, self._queued = self._queued, None
            self._last_start = loop.time()
            self.runs += 1
            try:
                await self._refresh()
            except asyncio.CancelledError:
                future.cancel()
                raise
            except Exception as exc:
                self.failures += 1
                self.last_error = exc
                log.warning("cluster topology refresh failed: %s", exc)
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(None)
            finally:
                self._next_due = loop.time() + self._jittered(self.period)

    async def _every_period(self) -> None:
        """A refresh once no refresh of any kind has run for a (jittered) period."""
        loop = asyncio.get_running_loop()
        while True:
            delay = self._next_due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                continue  # a refresh asked for meanwhile pushed the due time back
            try:
                await self.request()
            except Exception:
                pass


def _consume_exception(future: asyncio.Future[None]) -> None:
    """A dropped request's failure is already logged; mark it retrieved so asyncio does not log it again."""
    if not future.cancelled():
        future.exception()
