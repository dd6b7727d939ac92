"""Every upstream connection of one upstream server: their states, the pools, health and reconnect backoff.

In PgBouncer's manner, each connection is in exactly one ``ConnState``, kept in one set per state, and
``change_state`` is the only place a connection moves: counting, draining, health and snapshots all read those sets.
The upstream's health is a fact derived from them (``up``: a connection is ready), logged once per transition.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import PoolConfig, UpstreamConfig
from .connection import Cause, ConnState, Role, Target, UpstreamConnection, UpstreamError
from .credentials import Credential, PoolKey, ServerInfo
from .pools import LeaseBook, LeaseClass, SharedPool

log = logging.getLogger("sidecar.upstream")

READY_STATES = (ConnState.SHARED, ConnState.IDLE, ConnState.LEASED, ConnState.SUBSCRIBER, ConnState.CONTROL)


@dataclass(frozen=True, slots=True)
class PoolView:
    """One pool as ops surfaces show it."""

    kind: str  # "shared" or "lease"
    user: str
    db: int
    proto: int
    connections: int
    ready: int
    connecting: int
    inflight: int
    lent: int
    idle: int


@dataclass(frozen=True, slots=True)
class ManagerSnapshot:
    address: str
    up: bool
    by_state: dict[str, int]
    lent: dict[str, int]
    lease_waiters: dict[str, int]
    idle_leases: int
    connects: int
    connect_failures: int
    disconnects: int
    lease_timeouts: int
    reply_timeouts: int
    pools: tuple[PoolView, ...]


class UpstreamManager:
    """Owns every connection to one upstream server (see the module docstring)."""

    def __init__(self, cfg: UpstreamConfig, pool_cfg: PoolConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.pool_cfg = pool_cfg
        self.loop = loop
        self.address = cfg.unix_socket or f"{cfg.host}:{cfg.port}"
        context = make_ssl_context(cfg) if cfg.tls.enabled else None
        self.target = Target(cfg.host, cfg.port, cfg.unix_socket, context,
                             (cfg.tls.server_name or cfg.host) if context else None)
        self.login = Credential(cfg.username, cfg.password)
        self.server_info = ServerInfo()
        self.info_known: asyncio.Future[None] = loop.create_future()  # the first HELLO reply came (or gave up)
        self.client_fields: tuple[tuple[str, ...], ...] = ()  # the server's CLIENT INFO (field, sample) in order
        self.states: dict[ConnState, set[UpstreamConnection]] = {s: set() for s in ConnState if s is not
                                                                   ConnState.CLOSED}
        self.shared: dict[PoolKey, SharedPool] = {}
        self.leases = LeaseBook()
        self.up = False
        self.ever_up = False
        self.failures = 0
        self.down_until = 0.0
        self.last_error = ""
        self.retired = False
        self.counts = {"connects": 0, "connect_failures": 0, "disconnects": 0, "lease_timeouts": 0,
                       "reply_timeouts": 0}
        # told when the upstream refuses a login or kills its connections (the authenticator forgets it)
        self.on_credential_lost: Callable[[Credential], None] | None = None
        self._watchdog: asyncio.Task[None] | None = None

    # -- settings the connections read (Owner) ---------------------------------------------------------------------
    def connect_timeout(self) -> float:
        return self.cfg.connect_timeout

    def sidecar_login(self) -> list[bytes] | None:
        return self.login.auth_args()

    def learned(self, info: ServerInfo) -> None:
        self.server_info = info
        if not self.info_known.done():
            self.info_known.set_result(None)

    async def server_known(self) -> None:
        """Wait (at most connect_timeout) for the server to have said what it is: a client's HELLO answers with
        its name and version, never with a guess."""
        if not self.info_known.done():
            try:
                await asyncio.wait_for(asyncio.shield(self.info_known), self.cfg.connect_timeout)
            except asyncio.TimeoutError:
                if not self.info_known.done():
                    self.info_known.set_result(None)  # unreachable: answer with what is known, and stop waiting

    def configure(self, cfg: UpstreamConfig, pool_cfg: PoolConfig) -> None:
        """New timeouts and pool bounds (a reload that keeps the same server and login)."""
        self.cfg, self.pool_cfg = cfg, pool_cfg
        for pool in self.shared.values():
            surplus = len(pool.conns) - pool_cfg.size
            for conn in sorted(pool.conns, key=lambda c: c.load)[:max(0, surplus)]:
                pool.conns.remove(conn)
                self.loop.create_task(self._close_when_idle(conn, "pool.size reduced by a configuration reload"))
        for idle in self.leases.idle.values():
            while len(idle) > pool_cfg.lease_idle:
                idle.pop().close("pool.lease_idle reduced by a configuration reload")
        self.leases.wake_all()  # a bound may have grown

    # -- the one place states change -------------------------------------------------------------------------------
    def change_state(self, conn: UpstreamConnection, state: ConnState, cause: Cause | None = None) -> None:
        old = conn.state
        if old is state:
            return
        if old is not ConnState.CLOSED:
            self.states[old].discard(conn)
        conn.state = state
        if state is not ConnState.CLOSED:
            self.states[state].add(conn)
            if old is ConnState.CONNECTING:
                self._connected()
            return
        pool = self.shared.get(conn.key)
        if pool is not None and conn in pool.conns:
            pool.conns.remove(conn)
        cls = self.leases.forget(conn)
        if cls is not None:
            self.leases.wake(cls)
        if old is ConnState.CONNECTING:
            if cause is not Cause.SIDECAR:  # not a lease its own client gave back while it connected
                self.counts["connect_failures"] += 1
                self._connect_failed(conn, cause)
        elif cause is Cause.LOST:
            self.counts["disconnects"] += 1
            log.debug("upstream connection lost: %s (%s, db %d, RESP%d)", conn.close_reason, old.value,
                      conn.key.db, conn.key.proto)
            if self.on_credential_lost is not None and conn.key.login != self.login:
                self.on_credential_lost(conn.key.login)  # killed upstream (ACL DELUSER, CLIENT KILL USER): re-check
            self._derive_health(conn.close_reason)

    def opened(self, conn: UpstreamConnection) -> None:
        """A connection finished its handshake: it enters the state its role and its lease say."""
        if conn.role is Role.SHARED:
            state = ConnState.SHARED
        elif conn.role is Role.LEASE:
            state = ConnState.LEASED if conn in self.leases.lent else ConnState.IDLE
        else:
            state = ConnState.SUBSCRIBER if conn.role is Role.SUBSCRIBER else ConnState.CONTROL
        self.change_state(conn, state)
        if state is ConnState.IDLE:
            self._park(conn)

    def _connected(self) -> None:
        self.counts["connects"] += 1
        self.failures, self.down_until = 0, 0.0
        if not self.up:
            self.up = True
            if self.ever_up:
                log.warning("upstream %s is back", self.address, extra={"event": "upstream_up"})
            self.ever_up = True

    def _connect_failed(self, conn: UpstreamConnection, cause: Cause | None) -> None:
        reason = conn.close_reason
        if cause is Cause.REFUSED:
            if conn.key.login == self.login:
                self.last_error = reason
                self._down(reason)
            elif self.on_credential_lost is not None:
                self.on_credential_lost(conn.key.login)
            return
        now = time.monotonic()
        if now >= self.down_until:  # many attempts failing together are one failure, not many
            self.failures += 1
            self.down_until = now + min(self.pool_cfg.reconnect_backoff_max, 0.05 * 2 ** self.failures)
        self.last_error = reason
        self._down(reason)

    def _derive_health(self, reason: str) -> None:
        if self.up and not any(self.states[s] for s in READY_STATES):
            self._down(reason)

    def _down(self, reason: str) -> None:
        if self.up or not self.ever_up:
            log.warning("upstream %s unavailable: %s", self.address, reason, extra={"event": "upstream_down"})
            self.ever_up = True  # (logged once, also when it never came up)
        self.up = False

    # -- opening ------------------------------------------------------------------------------------------------------
    def in_backoff(self) -> bool:
        return bool(self.down_until) and time.monotonic() < self.down_until

    def unavailable(self) -> UpstreamError:
        return UpstreamError(f"ERR upstream unavailable: {self.last_error}")

    def open(self, key: PoolKey, role: Role) -> UpstreamConnection:
        conn = UpstreamConnection(self, key, role)
        self.states[ConnState.CONNECTING].add(conn)
        self.loop.create_task(conn.open())
        return conn

    def shared_conn(self, key: PoolKey) -> UpstreamConnection:
        """The least-loaded shared connection, opening another while the pool is below size and all are busy.
        During reconnect backoff an existing connection still serves; only opening a new one is refused."""
        pool = self.shared.get(key)
        if pool is None:
            pool = self.shared[key] = SharedPool(key, [])
        best = pool.best()
        if best is None or ((best.load or best.slow) and len(pool.conns) < self.pool_cfg.size):
            if not self.in_backoff() and not self.retired:
                conn = self.open(key, Role.SHARED)
                pool.conns.append(conn)
                return conn
            if best is None:
                raise self.unavailable()
        return best

    # -- leases -------------------------------------------------------------------------------------------------------
    def _bound(self, cls: LeaseClass) -> int:
        return self.pool_cfg.lease_max if cls is LeaseClass.HELD else self.pool_cfg.blocking_max

    def try_lease(self, key: PoolKey, cls: LeaseClass) -> UpstreamConnection | None:
        """An idle authenticated connection or a new one while ``cls`` is under its bound; None when exhausted."""
        if self.leases.in_use[cls] >= self._bound(cls):
            return None
        conn = self.leases.take_idle(key)
        if conn is None:
            if self.in_backoff():
                raise self.unavailable()
            conn = self.open(key, Role.LEASE)
        self.leases.lend(conn, cls)
        if conn.state is ConnState.IDLE:
            self.change_state(conn, ConnState.LEASED)
        return conn

    async def lease(self, key: PoolKey, cls: LeaseClass) -> UpstreamConnection:
        """Wait (FIFO per class, up to ``pool.lease_wait``) for a lease; then a clear error."""
        deadline = time.monotonic() + self.pool_cfg.lease_wait
        waiters = self.leases.waiters[cls]
        while True:
            conn = self.try_lease(key, cls)
            if conn is not None:
                return conn
            waiter = self.loop.create_future()
            waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                self.counts["lease_timeouts"] += 1
                bound = "pool.lease_max" if cls is LeaseClass.HELD else "pool.blocking_max"
                what = "transactions and client sessions" if cls is LeaseClass.HELD else "blocking calls"
                raise UpstreamError(
                    f"ERR no upstream connection free for this command: all {self._bound(cls)} connections for "
                    f"{what} are in use ({bound}) and none came free within pool.lease_wait "
                    f"({self.pool_cfg.lease_wait:g}s)") from None
            finally:
                if waiter in waiters:
                    waiters.remove(waiter)

    def release(self, conn: UpstreamConnection, reusable: bool) -> None:
        """Take a lease back. A connection that may hold client state (or a command in flight) is closed."""
        cls = self.leases.forget(conn)
        if reusable and not conn.dirty and conn.state is ConnState.LEASED and not conn.load and not self.retired:
            conn.push_handler = None
            conn.subscribed = False
            self.change_state(conn, ConnState.IDLE)
            self._park(conn)
        elif conn.alive:
            conn.close("lease returned")
        if cls is not None:
            self.leases.wake(cls)

    def _park(self, conn: UpstreamConnection) -> None:
        idle = self.leases.idle.setdefault(conn.key, [])
        if len(idle) < self.pool_cfg.lease_idle:
            idle.append(conn)
        else:
            conn.close("enough idle connections (pool.lease_idle)")

    def prewarm(self, key: PoolKey) -> None:
        """Open one shared connection and one idle lease at start, so the first clients find them ready.
        The idle one is not lent, so it counts against no bound until a client takes it."""
        try:
            self.shared_conn(key)
        except UpstreamError:
            return
        self.open(key, Role.LEASE)

    # -- control work ---------------------------------------------------------------------------------------------
    def control(self, key: PoolKey) -> UpstreamConnection:
        """A connection of the sidecar's own work (one out-of-band command, credential checks); proto 0 in the key
        opens it bare, without a handshake. The caller closes it."""
        if self.in_backoff():
            raise self.unavailable()
        return self.open(key, Role.CONTROL)

    # -- reply deadlines ----------------------------------------------------------------------------------------------
    def start_watchdog(self) -> None:
        self._watchdog = self.loop.create_task(self._watch())

    async def _watch(self) -> None:
        """Commands waiting longer than ``upstream.reply_timeout``: if the server still answers a fresh connection
        (PING, within ``upstream.connect_timeout``), they are only slow (a long script, a big KEYS): they keep
        waiting, and new commands avoid their connection. If it does not, they get a clear error now; the
        connection stays, so the commands behind them keep their own deadlines, and late replies are dropped."""
        while True:
            timeout = self.cfg.reply_timeout
            await asyncio.sleep(min(0.25, timeout / 4) * (0.9 + 0.2 * random.random()))
            now = time.monotonic()
            overdue = [conn for state in (ConnState.SHARED, ConnState.LEASED) for conn in self.states[state]
                       if conn.pending and conn.waited(now) > timeout]
            if not overdue:
                continue
            if await self._answers():
                for conn in overdue:
                    conn.slow = True
                continue
            error = _timeout_error(timeout)
            for conn in overdue:
                self.counts["reply_timeouts"] += conn.abandon_overdue(timeout, time.monotonic(), error)

    async def _answers(self) -> bool:
        """Whether the server answers a fresh connection at all (a PING, refused or not) in connect_timeout."""
        conn = self.open(PoolKey(Credential(None), 0, 0), Role.CONTROL)
        try:
            await conn.ready
            await asyncio.wait_for(conn.request([b"PING"]), self.cfg.connect_timeout)
            return True
        except (asyncio.TimeoutError, UpstreamError):
            return False
        finally:
            conn.close("probe done")

    # -- shutting down ------------------------------------------------------------------------------------------------
    async def _close_when_idle(self, conn: UpstreamConnection, reason: str) -> None:
        while conn.alive and conn.load:
            await asyncio.sleep(0.05)
        if conn.alive:
            conn.close(reason)

    async def retire(self, timeout: float) -> None:
        """A reload moved to another upstream: close what nobody uses now, the rest once given back or idle,
        everything at ``timeout``."""
        self.retired = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for conn in list(self.states[ConnState.IDLE]) + [c for s in (ConnState.SHARED, ConnState.CONTROL,
                                                                            ConnState.CONNECTING)
                                                              for c in self.states[s] if not c.load]:
                conn.close("upstream changed by a configuration reload")
            if not any(self.states.values()):
                break
            await asyncio.sleep(0.05)
        await self.close_all("upstream changed by a configuration reload")

    async def close_all(self, reason: str = "sidecar shutting down") -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        for conns in list(self.states.values()):
            for conn in list(conns):
                conn.close(reason)

    # -- snapshots ----------------------------------------------------------------------------------------------------
    def snapshot(self) -> ManagerSnapshot:
        pools: list[PoolView] = []
        for key, pool in self.shared.items():
            conns = pool.conns
            pools.append(PoolView("shared", key.login.user, key.db, key.proto, len(conns),
                                  sum(c.state is ConnState.SHARED for c in conns),
                                  sum(c.state is ConnState.CONNECTING for c in conns), sum(c.load for c in conns),
                                  0, 0))
        lent_by_key: dict[PoolKey, int] = {}
        for conn in self.leases.lent:
            lent_by_key[conn.key] = lent_by_key.get(conn.key, 0) + 1
        for key in set(lent_by_key) | set(self.leases.idle):
            idle = len(self.leases.idle.get(key, ()))
            lent = lent_by_key.get(key, 0)
            pools.append(PoolView("lease", key.login.user, key.db, key.proto, lent + idle, 0, 0, 0, lent, idle))
        return ManagerSnapshot(
            address=self.address, up=self.up, by_state={s.value: len(c) for s, c in self.states.items()},
            lent={c.value: n for c, n in self.leases.in_use.items()},
            lease_waiters={c.value: len(w) for c, w in self.leases.waiters.items()},
            idle_leases=self.leases.idle_count(), pools=tuple(pools), **self.counts)


def _timeout_error(timeout: float) -> bytes:
    return (b"-ERR no reply from upstream within upstream.reply_timeout (%gs); the command may still run "
            b"upstream\r\n" % timeout)


def make_ssl_context(cfg: UpstreamConfig) -> ssl.SSLContext:
    tls = cfg.tls
    ctx = ssl.create_default_context(cafile=tls.ca_file) if tls.verify else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    return ctx
