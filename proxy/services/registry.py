"""The sidecar's clients, by id: what CLIENT LIST, CLIENT KILL, tracking redirects and drain look up.

The registry knows a client only through ``ClientHandle``; it outlives reloads, so ids stay unique and every
connected client stays listed whichever configuration is in force.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Protocol


class ClientHandle(Protocol):
    id: int


class ClientRegistry:
    __slots__ = ("_clients", "_ids", "accepted", "rejected", "departed")

    def __init__(self) -> None:
        self._clients: dict[int, ClientHandle] = {}
        self._ids = itertools.count(1)
        self.accepted = 0
        self.rejected = 0
        self.departed = 0

    def next_id(self) -> int:
        return next(self._ids)

    def add(self, client: ClientHandle, max_clients: int) -> bool:
        """Register a new client; False (counted) when ``limits.max_clients`` are already connected."""
        if len(self._clients) >= max_clients:
            self.rejected += 1
            return False
        self._clients[client.id] = client
        self.accepted += 1
        return True

    def remove(self, client: ClientHandle) -> None:
        if self._clients.pop(client.id, None) is not None:
            self.departed += 1

    def get(self, client_id: int) -> ClientHandle | None:
        return self._clients.get(client_id)

    def __len__(self) -> int:
        return len(self._clients)

    def __iter__(self) -> Iterator[ClientHandle]:
        return iter(list(self._clients.values()))
