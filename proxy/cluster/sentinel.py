"""Following a Sentinel-managed master: find it, watch the sentinels, and say where it went.

At start the sentinels are asked for the master (``SENTINEL GET-MASTER-ADDR-BY-NAME``, confirmed by ``ROLE`` on the
server itself, with the master's login). Then every sentinel is subscribed to (with the sentinels' own login, if
any), so whichever one leads a failover is heard:

- ``+selected-slave``: the leader picked the replica it will promote. The upstream moves there at once, before the
  replica is promoted: a write is then refused (``-READONLY``) for the instant until it is, instead of being
  acknowledged by the old master after the promotion and lost when the old master rejoins as a replica;
- ``+switch-master``: the failover is done (for a sentinel that is not the leader, the first news of it);
- a sentinel connection lost and made again, and every ``CHECK_PERIOD`` seconds: the sentinels are asked again, in
  case news was missed (a failover that was aborted after its replica was picked moves the upstream back).

``on_master(address, why)`` is the caller's: it moves the pools (``ops.reload.follow_master``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import hiredis

from ..config import PoolConfig, UpstreamConfig
from ..upstream.connection import Role, UpstreamConnection, Waiter
from ..upstream.credentials import Credential, PoolKey
from ..upstream.manager import UpstreamManager
from ..wire.resp import encode_command
from .discovery import parse_switch_master, sentinel_master
from .topology import Address

log = logging.getLogger("sidecar.sentinel")

CHANNELS = (b"+switch-master", b"+selected-slave")
CHECK_PERIOD = 5.0
FAILOVER_GRACE = 15.0  # after +selected-slave, the sentinels still name the old master until +switch-master
RECONNECT_DELAY = 1.0


class SentinelWatch:
    """The master of ``upstream.sentinel_master`` as the sentinels ``upstream.seeds`` say (module docstring)."""

    def __init__(self, cfg: UpstreamConfig, pool_cfg: PoolConfig, loop: asyncio.AbstractEventLoop,
                 on_master: Callable[[Address, str], None]) -> None:
        assert cfg.sentinel_master is not None
        self.cfg, self.pool_cfg, self.loop = cfg, pool_cfg, loop
        self.name = cfg.sentinel_master
        self.on_master = on_master
        self.login = Credential(cfg.sentinel_username, cfg.sentinel_password)
        self.sentinels: dict[Address, UpstreamManager] = {
            a: UpstreamManager(self._server(a, self.login), pool_cfg, loop) for a in cfg.seeds}
        self.master: Address | None = None
        self.switches = 0
        self.failover_until = 0.0  # while a failover is under way, a periodic check would name the old master
        self._subscribers: dict[Address, UpstreamConnection] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False

    def _server(self, address: Address, login: Credential) -> UpstreamConfig:
        return dataclasses.replace(self.cfg, host=address[0], port=address[1], unix_socket=None, db=0,
                                   username=login.username, password=login.password)

    # -- asking ----------------------------------------------------------------------------------------------------
    async def _ask_sentinel(self, address: Address, args: Sequence[str]) -> Any:
        conn = self.sentinels[address].shared_conn(PoolKey(self.login, 0, 2))
        return await _request(conn, args, self.loop)

    async def _ask_master(self, address: Address, args: Sequence[str]) -> Any:
        """A question to a would-be master, logged in as the sidecar logs in to the master, on a connection of
        its own (closed after)."""
        manager = UpstreamManager(self._server(address, Credential(self.cfg.username, self.cfg.password)),
                                  self.pool_cfg, self.loop)
        conn = manager.control(PoolKey(manager.login, 0, 2))
        try:
            await conn.ready
            return await _request(conn, args, self.loop)
        finally:
            conn.close("master check done")

    async def find(self, trusted: Address | None = None) -> Address:
        """The master the sentinels name and ROLE confirms (``DiscoveryError`` if none does); ``trusted`` (the
        master in use, whose connections work) is not asked again."""
        async def ask_master(address: Address, args: Sequence[str]) -> Any:
            return [b"master"] if address == trusted else await self._ask_master(address, args)

        return await sentinel_master(list(self.sentinels), self.name, self._ask_sentinel,
                                     fetch_node=ask_master, timeout=self.cfg.connect_timeout)

    # -- following -------------------------------------------------------------------------------------------------
    async def start(self) -> Address:
        """Find the master (asking again every second until some sentinel names one that works), then follow it."""
        while True:
            try:
                self.master = await self.find()
                break
            except Exception as exc:  # DiscoveryError, or a sentinel that is not one
                log.warning("sentinel: no master for %r yet: %s", self.name, exc, extra={"event": "sentinel_wait"})
                await asyncio.sleep(1.0)
        log.info("sentinel: master %r is %s:%d", self.name, *self.master, extra={"event": "sentinel_master"})
        for manager in self.sentinels.values():
            manager.start_watchdog()
        for address in self.sentinels:
            self._subscribe(address, again=False)
        self._tasks.append(self.loop.create_task(self._check_periodically()))
        return self.master

    def _subscribe(self, address: Address, again: bool = True) -> None:
        """Subscribe on one sentinel; after a reconnect, ask again (news may have been missed meanwhile)."""
        if self.closed:
            return
        manager = self.sentinels[address]
        if manager.in_backoff():
            self.loop.call_later(RECONNECT_DELAY, self._subscribe, address)
            return
        conn = self._subscribers[address] = manager.open(PoolKey(self.login, 0, 2), Role.SUBSCRIBER)
        conn.subscribed = True
        conn.push_handler = partial(self._on_frame, address)
        conn.on_close = partial(self._lost, address)
        conn.send(encode_command([b"SUBSCRIBE", *CHANNELS]), None)
        if again:
            conn.ready.add_done_callback(self._subscribed)

    def _subscribed(self, ready: asyncio.Future[None]) -> None:
        if not ready.cancelled() and ready.exception() is None:
            self._tasks = [t for t in self._tasks if not t.done()]
            self._tasks.append(self.loop.create_task(self._check()))

    def _lost(self, address: Address, conn: UpstreamConnection) -> None:
        if not self.closed and self._subscribers.get(address) is conn:
            self.loop.call_later(RECONNECT_DELAY, self._subscribe, address)

    def _on_frame(self, address: Address, frame: bytes) -> None:
        reader = hiredis.Reader()
        reader.feed(frame)
        message = reader.gets()
        if not isinstance(message, list) or len(message) != 3 or message[0] != b"message":
            return  # (subscribe confirmations)
        channel, payload = message[1], message[2]
        if channel == b"+switch-master":
            switch = parse_switch_master(payload)
            if switch is not None and switch.name == self.name:
                self.failover_until = 0.0
                self._move(switch.new, f"+switch-master from sentinel {address[0]}:{address[1]}")
        elif channel == b"+selected-slave":
            picked = _selected(payload, self.name)
            if picked is not None:
                self.failover_until = time.monotonic() + FAILOVER_GRACE
                self._move(picked, f"failover under way, sentinel {address[0]}:{address[1]} picked it")

    def _move(self, address: Address, why: str) -> None:
        if address != self.master and not self.closed:
            log.warning("sentinel: master %r moves from %s to %s:%d: %s", self.name,
                        f"{self.master[0]}:{self.master[1]}" if self.master else "?", *address, why,
                        extra={"event": "sentinel_switch"})
            self.master = address
            self.switches += 1
            self.on_master(address, why)

    async def _check(self) -> None:
        if time.monotonic() < self.failover_until:
            return
        try:
            found = await self.find(trusted=self.master)
        except Exception as exc:
            log.debug("sentinel: check failed: %s", exc)
            return
        if time.monotonic() >= self.failover_until:
            self._move(found, "the sentinels name it")

    async def _check_periodically(self) -> None:
        while True:
            await asyncio.sleep(CHECK_PERIOD)
            await self._check()

    async def close(self) -> None:
        self.closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for manager in self.sentinels.values():
            await manager.close_all()


async def _request(conn: UpstreamConnection, args: Sequence[str], loop: asyncio.AbstractEventLoop) -> Any:
    waiter = Waiter(loop)
    conn.send(encode_command([a.encode() for a in args]), waiter)
    reader = hiredis.Reader()
    reader.feed(await waiter.future)
    return reader.gets()


def _selected(payload: bytes, name: str) -> Address | None:
    """``+selected-slave``'s message, ``slave <ip>:<port> <ip> <port> @ <master> <ip> <port>``: the replica, when
    it is for master ``name``."""
    words = payload.decode(errors="replace").split()
    if len(words) >= 6 and words[0] == "slave" and words[4] == "@" and words[5] == name and words[3].isdigit():
        return (words[2], int(words[3]))
    return None
