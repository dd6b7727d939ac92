"""The chatroom's data access, deliberately written the way the article criticises: connect per request.

Every Socket.IO event handler does ``async with fresh_connection(REDIS_URL) as db:``, which opens a brand-new TCP
connection (and, against a password-protected Redis, pays an AUTH round trip), runs the event's few commands and
closes it. Against a distant Redis that handshake dominates every event; against the sidecar on localhost it costs a
loopback connect while the sidecar keeps its few authenticated upstream connections open. That contrast is what this
demo exists to show, so do not "fix" this module with a pool. Nothing here knows whether the URL names the sidecar or
the real Redis.

Keys (the set keeps the article's name):
  who_is_online          set of the names currently in the room
  who_is_online:version  counter bumped on every presence change, so clients can drop out-of-order snapshots
  chat_messages          list of JSON messages, newest first, capped at HISTORY_LENGTH
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis

ONLINE_KEY = "who_is_online"
ONLINE_VERSION_KEY = "who_is_online:version"
MESSAGES_KEY = "chat_messages"
HISTORY_LENGTH = 50


@dataclass(frozen=True)
class Presence:
    """Who is online, with the version of the change it was read after (higher is newer)."""

    version: int
    names: list[str]

    def as_dict(self) -> dict:
        return {"version": self.version, "names": self.names}


class ChatData:
    """The commands one event needs, run on the single connection that event opened."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def join(self, name: str) -> Presence | None:
        """Add ``name`` to who is online; ``None`` if someone already uses that name."""
        if not await self._redis.sadd(ONLINE_KEY, name):
            return None
        return await self._changed_presence()

    async def leave(self, name: str) -> Presence:
        await self._redis.srem(ONLINE_KEY, name)
        return await self._changed_presence()

    async def presence(self) -> Presence:
        """A snapshot read after the current version, so it includes every change up to that version."""
        version = int(await self._redis.get(ONLINE_VERSION_KEY) or 0)
        return Presence(version, sorted(await self._redis.smembers(ONLINE_KEY)))

    async def _changed_presence(self) -> Presence:
        # Bumping the counter after the change and reading the set after the counter means the snapshot with the
        # highest version reflects every change, however events from several processes interleave.
        version = await self._redis.incr(ONLINE_VERSION_KEY)
        return Presence(version, sorted(await self._redis.smembers(ONLINE_KEY)))

    async def add_message(self, message: dict) -> None:
        await self._redis.lpush(MESSAGES_KEY, json.dumps(message))
        await self._redis.ltrim(MESSAGES_KEY, 0, HISTORY_LENGTH - 1)

    async def history(self) -> list[dict]:
        """The last HISTORY_LENGTH messages, oldest first."""
        raw = await self._redis.lrange(MESSAGES_KEY, 0, HISTORY_LENGTH - 1)
        return [json.loads(item) for item in reversed(raw)]


@asynccontextmanager
async def fresh_connection(redis_url: str) -> AsyncIterator[ChatData]:
    """Open a new connection for one event and close it when the event is done (no pool, on purpose)."""
    redis = Redis.from_url(redis_url, decode_responses=True, single_connection_client=True)
    try:
        yield ChatData(redis)
    finally:
        await redis.aclose()
