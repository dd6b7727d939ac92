"""The scenarios: each module turns one access pattern into measurements the runner repeats and compares by mode."""

from __future__ import annotations

from typing import Protocol

from benchmarks.stats import Sample


class Measurement(Protocol):
    """One cell of the plan against one endpoint.

    ``async with`` spans the whole block (start a chatroom, open a pool); ``warm`` runs before each repeat, outside
    the upstream counters; ``measure`` is the repeat that counts.
    """

    async def __aenter__(self) -> "Measurement": ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def warm(self) -> None: ...

    async def measure(self) -> Sample: ...


class NothingToStart:
    """For measurements that need nothing running for their block beyond the endpoint itself."""

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
