"""The sidecar's own requests upstream: credential checks, permission probes and out-of-band commands.

Credential checks run on a few bare connections that are kept and reused: each sends one ``AUTH`` at a time (alone,
because Redis >= 7.2 drops the reply of a failing AUTH when other replies are pending), so a flood of wrong passwords
costs the upstream a bounded number of connections, not one per attempt. Out-of-band commands (SCRIPT KILL, CLIENT
UNBLOCK) run on a connection of their own, so they never queue behind the busy command they are meant to stop.
"""

from __future__ import annotations

import asyncio

from .connection import UpstreamConnection, UpstreamError, Waiter
from .credentials import Credential, PoolKey
from .manager import UpstreamManager

CHECK_CONNECTIONS = 4
_BARE = PoolKey(Credential(None), 0, 0)  # proto 0: no handshake; the connection only ever sends AUTH


class Control:
    """Requests of the sidecar's own against one upstream (see the module docstring)."""

    def __init__(self, manager: UpstreamManager) -> None:
        self.manager = manager
        self._free: list[UpstreamConnection] = []
        self._slots = asyncio.Semaphore(CHECK_CONNECTIONS)
        self.checks = 0

    async def auth(self, args: list[bytes]) -> bytes:
        """The upstream's reply to ``AUTH *args`` (its exact bytes: ``+OK``, ``-WRONGPASS ...``, ...)."""
        return (await self._run([[b"AUTH", *args]]))[0]

    async def probe(self, login: Credential, args: list[bytes]) -> bytes:
        """The reply to ``args`` run as ``login`` (after an AUTH of its own, sent alone); ``args`` must be harmless
        on a connection that is kept for further checks."""
        auth, reply = await self._run([[b"AUTH", *login.auth_args()], args], stop_on_error=True)
        if auth.startswith(b"-"):
            raise UpstreamError(f"ERR upstream refused the login '{login.user}': {auth[1:-2].decode(errors='replace')}")
        return reply

    async def _run(self, commands: list[list[bytes]], stop_on_error: bool = False) -> list[bytes]:
        """Run ``commands`` one at a time on a reused bare connection (each alone: an AUTH may fail)."""
        async with self._slots:
            conn = None
            while self._free and conn is None:
                candidate = self._free.pop()
                conn = candidate if candidate.alive else None
            if conn is None:
                conn = self.manager.control(_BARE)
                await conn.ready
            self.checks += 1
            replies: list[bytes] = []
            try:
                for args in commands:
                    replies.append(await conn.request(args))
                    if stop_on_error and replies[-1].startswith(b"-"):
                        replies += [b""] * (len(commands) - len(replies))
                        break
            finally:
                if conn.alive:
                    self._free.append(conn)
            return replies

    async def oneshot(self, key: PoolKey, raw: bytes) -> bytes:
        """Send one client command on a fresh connection logged in as ``key`` says; its reply's bytes."""
        conn = self.manager.control(key)
        try:
            await conn.ready
            waiter = Waiter(self.manager.loop)
            conn.send(raw, waiter)
            return await waiter.future
        finally:
            conn.close("out-of-band command done")

    def close(self) -> None:
        for conn in self._free:
            conn.close("sidecar shutting down")
        self._free.clear()
