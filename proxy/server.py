"""The sidecar's lifecycle: listeners, signals, graceful drain. It wires the modules together and owns nothing else."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
import time

from . import httpd, metrics
from .wire import resp
from .auth import Authenticator
from .commands.table import CommandTable
from .config import Config, listener_ssl_context, metrics_address
from .metrics import Stats
from .pubsub import Hub
from .session import Session
from .upstream import PoolKey, UpstreamManager

log = logging.getLogger("sidecar")


class Server:
    def __init__(self, cfg: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.loop = loop
        self.table = CommandTable.for_config(cfg)
        self.manager = UpstreamManager(cfg.upstream, cfg.pool, loop)
        self.auth = Authenticator(cfg.client_auth, self.manager.credential, self.manager.verify)
        self.hub = Hub(self.manager)
        self.request_limits = resp.RequestLimits(max_bulk_len=cfg.limits.proto_max_bulk_len,
                                                 max_multibulk_len=cfg.limits.max_multibulk_len)
        self.sessions: dict[int, Session] = {}
        self.stats = Stats()
        self.sampler = metrics.Sampler(cfg.metrics.latency_sample)
        self.loader = None  # () -> Config: reads the configuration again, for reload.py (set by run)
        self.worker: int | None = None  # this process's index under --workers (workers.py); None when alone
        self.worker_socket: str | None = None  # where a worker serves its HTTP endpoint for the supervisor
        self.log_static: dict = {}  # fields on every log line (the worker's index)
        self.draining = False
        self.listening = False  # /readyz says "starting" until the client listeners are bound
        self._http: asyncio.AbstractServer | None = None
        self._lag_task: asyncio.Task | None = None
        self.started = time.monotonic()
        self._ids = itertools.count(1)
        self._listeners: list[asyncio.AbstractServer] = []
        self._stopping = asyncio.Event()
        self._signals = 0

    def next_client_id(self) -> int:
        return next(self._ids)

    def register(self, session: Session) -> bool:
        if len(self.sessions) >= self.cfg.limits.max_clients:
            self.stats.rejected += 1
            return False
        self.sessions[session.id] = session
        self.stats.accepted += 1
        log.info("client connected", extra={"event": "client_connected", "client": session.id,
                                            "addr": session.addr, "clients": len(self.sessions)})
        return True

    def unregister(self, session: Session) -> None:
        if self.sessions.pop(session.id, None) is not None:
            log.info("client disconnected", extra={
                "event": "client_disconnected", "client": session.id, "addr": session.addr,
                "user": session.identity.user if session.identity else "", "client_name": session.name or "",
                "lib": session.lib_name, "age_s": round(time.monotonic() - session.created, 3),
                "clients": len(self.sessions)})

    # -- lifecycle ------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        metered = bool(self.cfg.metrics.listen or self.worker_socket)
        session_class = metrics.timed_session_class() if metered else Session
        factory = lambda: session_class(self)  # noqa: E731
        if metered and not self.worker_socket:
            await self._start_http()  # up before the clients' port: whoever sees that open can scrape and probe
        raise_fd_limit(self.cfg)
        tls = listener_ssl_context(self.cfg.tls)  # (validated with the config: loads or says why)
        for host, port in self.cfg.listen_addresses():
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            srv = await self.loop.create_server(factory, host, port, family=family, reuse_address=True,
                                                reuse_port=self.worker is not None, backlog=4096, ssl=tls,
                                                ssl_handshake_timeout=10.0 if tls else None,
                                                # closing waits this long for the client's close_notify, not 30 s:
                                                # an idle client never answers, and drain waits for every close
                                                ssl_shutdown_timeout=2.0 if tls else None)
            self._listeners.append(srv)
            log.info("listening on %s:%d%s", host, port, " (TLS, client certificates required)"
                     if tls and self.cfg.tls.require_client_cert else " (TLS)" if tls else "")
        if self.cfg.unix_socket:
            if os.path.exists(self.cfg.unix_socket):
                os.unlink(self.cfg.unix_socket)
            srv = await self.loop.create_unix_server(factory, self.cfg.unix_socket, backlog=4096)
            os.chmod(self.cfg.unix_socket, 0o660)
            self._listeners.append(srv)
            log.info("listening on unix socket %s", self.cfg.unix_socket)
        up = self.cfg.upstream
        log.info("upstream %s%s as user '%s', db %d, pool %d per (user, db, protocol), client auth %s",
                 "rediss://" if up.tls.enabled else "", self.manager.address, self.manager.credential.user, up.db,
                 self.cfg.pool.size, self.cfg.client_auth.mode)
        self.manager.start_watchdog()
        self.manager.prewarm(PoolKey(self.manager.credential, up.db, 2))
        self.listening = True
        if self.worker_socket:
            await self._start_http()  # after the listeners: its socket tells the supervisor this worker serves

    async def _start_http(self) -> None:
        """/metrics, /healthz, /readyz: on metrics.listen, or for a worker on the socket its supervisor reads."""
        self._lag_task = self.loop.create_task(self.sampler.watch_loop())
        handler = metrics.routes(self)
        if self.worker_socket:
            if os.path.exists(self.worker_socket):
                os.unlink(self.worker_socket)
            self._http = await httpd.serve(handler, path=self.worker_socket)
            return
        host, port = metrics_address(self.cfg.metrics.listen)
        self._http = await httpd.serve(handler, host, port)
        log.info("metrics and health on http://%s:%d/metrics, /healthz, /readyz", host, port)

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self._on_signal, sig)
        self.loop.add_signal_handler(signal.SIGHUP, self._on_reload)

    def _on_reload(self) -> None:
        from .reload import ReloadError, reload

        log.info("SIGHUP: reloading the configuration", extra={"event": "reload_requested"})
        try:
            reload(self)
        except ReloadError:
            pass  # logged by reload(); the running configuration stays in force

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals > 1:
            if self.worker is not None:
                return  # the supervisor sends one SIGTERM, and SIGKILL on a second signal; repeats come from a group
            log.warning("second signal: exiting now")
            os._exit(1)
        log.info("%s: draining (up to shutdown_timeout=%gs)", signal.Signals(sig).name, self.cfg.shutdown_timeout)
        self._stopping.set()

    async def serve(self) -> None:
        self.install_signals()  # first: a SIGHUP during start-up must not kill the process (its default action)
        await self.start()
        await self._stopping.wait()
        await self.drain()

    async def drain(self) -> None:
        """Stop accepting; close each client once it has no reply pending and no transaction open; then exit.

        A client that is never idle (it pipelines faster than the upstream answers) stops being read at half of
        shutdown_timeout, unless it is inside a transaction: what it already sent is answered, then it is closed;
        what it had not sent yet is never read, so it never runs. Whatever is still busy at the deadline is cut.
        """
        self.draining = True  # /readyz answers 503 from now on
        for srv in self._listeners:
            srv.close()
        now = time.monotonic()
        deadline, cutoff = now + self.cfg.shutdown_timeout, now + self.cfg.shutdown_timeout / 2
        while self.sessions and time.monotonic() < deadline:
            late = time.monotonic() >= cutoff
            for session in list(self.sessions.values()):
                if session.transport is None or session.closed:
                    continue
                busy = session.slots or session.out or session.backlog or session.multi or session.watching \
                    or session.stalled
                if not busy:
                    session.closing = True
                    session.transport.close()
                elif late and not session.closing and not (session.multi or session.watching or session.stalled
                                                           or session.backlog):
                    session.closing = True  # the session closes itself after its last pending reply
                    if not session.reading_paused:
                        session.transport.pause_reading()
            await asyncio.sleep(0.02)
        cut = [s for s in self.sessions.values() if s.transport is not None]
        for session in cut:
            session.transport.abort()
        if cut:
            log.warning("drain: %d clients still busy at shutdown_timeout were cut off", len(cut),
                        extra={"event": "drain_cut", "clients": len(cut)})
        await self.manager.close_all()
        if self._http is not None:
            self._http.close()
        if self._lag_task is not None:
            self._lag_task.cancel()
            await asyncio.sleep(0)  # let it finish cancelling
        if self.worker_socket and os.path.exists(self.worker_socket):
            os.unlink(self.worker_socket)
        if self.cfg.unix_socket and os.path.exists(self.cfg.unix_socket):
            os.unlink(self.cfg.unix_socket)
        log.info("stopped")


def raise_fd_limit(cfg: Config) -> None:
    """Each client is a file descriptor: raise the soft open-file limit to the hard one; warn if still too low."""
    try:
        import resource
    except ImportError:  # not a Unix
        return
    inf = resource.RLIM_INFINITY
    needed = cfg.limits.max_clients + cfg.pool.lease_max + 4 * cfg.pool.size + 64  # upstream, listeners, spare
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != inf else max(soft, needed)
    if soft != inf and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    if soft != inf and soft < needed:
        log.warning("limits.max_clients is %d but this process may open only %d files (ulimit -n, hard limit %s): "
                    "connections past about %d clients will fail; raise the hard limit (LimitNOFILE=, ulimit -Hn)",
                    cfg.limits.max_clients, soft, "unlimited" if hard == inf else hard, max(0, soft - (needed -
                    cfg.limits.max_clients)), extra={"event": "fd_limit_low"})


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it is a dependency), else asyncio's default loop."""
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def run(cfg: Config, loader=None, worker: int | None = None, worker_socket: str | None = None) -> None:
    """Serve until SIGTERM; ``loader`` reads the configuration again on reload; ``worker`` under --workers."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    server = Server(cfg, loop)
    server.loader, server.worker, server.worker_socket = loader, worker, worker_socket
    if worker is not None:
        server.log_static = {"worker": worker}
    try:
        loop.run_until_complete(server.serve())
    finally:
        loop.close()
