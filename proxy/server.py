"""The sidecar's lifecycle: it builds the runtime, wires ops into its hooks, owns the listeners, signals and drain."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import cast

from .client.session import Session
from .cluster.sentinel import SentinelWatch
from .config import Config, listener_ssl_context, metrics_address
from .ops import admin, httpd, metrics, reload
from .runtime import Hooks, Runtime, RuntimeHandle

log = logging.getLogger("sidecar")
SUMMARY_EVERY = 60.0  # seconds between the "clients" summary lines (connects and disconnects are DEBUG lines)


class Server:
    def __init__(self, cfg: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.handle = RuntimeHandle(Runtime.build(cfg, loop))
        self.handle.current.hooks = Hooks(info_section=lambda: admin.info_section(self), admin=admin.handler(self))
        self.loader: Callable[[], Config] | None = None  # reads the configuration again, for reload
        self.worker: int | None = None  # this process's index under --workers (workers.py); None when alone
        self.worker_socket: str | None = None  # where a worker serves its HTTP endpoint for the supervisor
        self.log_static: dict[str, object] = {}  # fields on every log line (the worker's index)
        self.draining = False
        self.listening = False  # /readyz says "starting" until the client listeners are bound
        self.started = time.monotonic()
        self._http: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._listeners: list[asyncio.AbstractServer] = []
        self._stopping = asyncio.Event()
        self._signals = 0
        self.sentinels: SentinelWatch | None = None  # behind Sentinel: who says where the master is

    @property
    def cfg(self) -> Config:
        return self.handle.current.cfg

    def reload(self) -> list[str]:
        return reload.reload(self.handle, self.loader, self.log_static)

    # -- lifecycle ------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.cfg.upstream.mode == "sentinel":
            await self._find_master()
        cfg, rt = self.cfg, self.handle.current
        handle = self.handle
        factory = lambda: Session(handle)  # noqa: E731
        metered = bool(cfg.metrics.listen or self.worker_socket)
        if metered and not self.worker_socket:
            await self._start_http()  # up before the clients' port: whoever sees that open can scrape and probe
        raise_fd_limit(cfg)
        tls = listener_ssl_context(cfg.tls)  # (validated with the config: loads or says why)
        for host, port in cfg.listen_addresses():
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            srv = await self.loop.create_server(factory, host, port, family=family, reuse_address=True,
                                                reuse_port=self.worker is not None, backlog=4096, ssl=tls,
                                                ssl_handshake_timeout=10.0 if tls else None,
                                                # closing waits this long for the client's close_notify, not 30 s:
                                                # an idle client never answers, and drain waits for every close
                                                ssl_shutdown_timeout=2.0 if tls else None)
            self._listeners.append(srv)
            log.info("listening on %s:%d%s", host, port, " (TLS, client certificates required)"
                     if tls and cfg.tls.require_client_cert else " (TLS)" if tls else "")
        if cfg.unix_socket:
            if os.path.exists(cfg.unix_socket):
                os.unlink(cfg.unix_socket)
            srv = await self.loop.create_unix_server(factory, cfg.unix_socket, backlog=4096)
            os.chmod(cfg.unix_socket, 0o660)
            self._listeners.append(srv)
            log.info("listening on unix socket %s", cfg.unix_socket)
        up = cfg.upstream
        log.info("upstream %s%s%s as user '%s', db %d, pool %d per (user, db, protocol), client auth %s",
                 "" if up.mode == "standalone" else f"{up.mode} ", "rediss://" if up.tls.enabled else "",
                 rt.manager.address, rt.manager.login.user, up.db, cfg.pool.size, cfg.client_auth.mode)
        rt.start_upstream()
        self._tasks.append(self.loop.create_task(rt.learn_upstream()))
        self._tasks.append(self.loop.create_task(self._summaries()))
        self.listening = True
        if self.worker_socket:
            await self._start_http()  # after the listeners: its socket tells the supervisor this worker serves

    async def _find_master(self) -> None:
        """Behind Sentinel, nothing connects upstream before the sentinels name a master: the runtime is rebuilt
        for its address, and every later failover moves the pools there (``reload.follow_master``)."""
        cfg = self.cfg
        self.sentinels = SentinelWatch(cfg.upstream, cfg.pool, self.loop,
                                       lambda address, why: reload.follow_master(self.handle, address, why))
        host, port = await self.sentinels.start()
        upstream = dataclasses.replace(cfg.upstream, host=host, port=port)
        self.handle.current = Runtime.build(dataclasses.replace(cfg, upstream=upstream), self.loop,
                                            previous=self.handle.current)

    async def _start_http(self) -> None:
        """/metrics, /healthz, /readyz: on metrics.listen, or for a worker on the socket its supervisor reads."""
        self._tasks.append(self.loop.create_task(self.handle.current.sampler.watch_loop()))
        handler = metrics.routes(self)
        if self.worker_socket:
            if os.path.exists(self.worker_socket):
                os.unlink(self.worker_socket)
            self._http = await httpd.serve(handler, path=self.worker_socket)
            return
        assert self.cfg.metrics.listen is not None
        host, port = metrics_address(self.cfg.metrics.listen)
        self._http = await httpd.serve(handler, host, port)
        log.info("metrics and health on http://%s:%d/metrics, /healthz, /readyz", host, port)

    async def _summaries(self) -> None:
        """One line a minute about client traffic, instead of a line per connect-per-request client."""
        accepted = departed = 0
        while True:
            await asyncio.sleep(SUMMARY_EVERY)
            registry = self.handle.current.registry
            if registry.accepted != accepted or registry.departed != departed:
                log.info("clients: %d connected, %d connects and %d disconnects in the last %gs", len(registry),
                         registry.accepted - accepted, registry.departed - departed, SUMMARY_EVERY,
                         extra={"event": "clients_summary", "clients": len(registry)})
                accepted, departed = registry.accepted, registry.departed

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self._on_signal, sig)
        self.loop.add_signal_handler(signal.SIGHUP, self._on_reload)

    def _on_reload(self) -> None:
        log.info("SIGHUP: reloading the configuration", extra={"event": "reload_requested"})
        try:
            self.reload()
        except reload.ReloadError:
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
        """Stop accepting; close each client once nothing is pending for it and no transaction is open; then exit.

        A client that is never idle (it pipelines faster than the upstream answers) stops being read at half of
        shutdown_timeout, unless it is inside a transaction: what it already sent is answered, then it is closed;
        what it had not sent yet is never read, so it never runs. Whatever is still busy at the deadline is cut.
        """
        self.draining = True  # /readyz answers 503 from now on
        for srv in self._listeners:
            srv.close()
        now = time.monotonic()
        deadline, cutoff = now + self.cfg.shutdown_timeout, now + self.cfg.shutdown_timeout / 2
        registry = self.handle.current.registry
        while len(registry) and time.monotonic() < deadline:
            late = time.monotonic() >= cutoff
            for entry in registry:
                session = cast(Session, entry)
                if session.transport is None or session.closed:
                    continue
                if not session.busy:
                    session.closing = True
                    session.transport.close()
                elif late and not session.closing and session.tx.value == "none" and session.wait is None:
                    session.close_after_replies()  # it closes itself after its last pending reply
                    session.pause_reading()
            await asyncio.sleep(0.02)
        cut = [cast(Session, s) for s in registry if cast(Session, s).transport is not None]
        for session in cut:
            session.abort()
        if cut:
            log.warning("drain: %d clients still busy at shutdown_timeout were cut off", len(cut),
                        extra={"event": "drain_cut", "clients": len(cut)})
        rt = self.handle.current
        if self.sentinels is not None:
            await self.sentinels.close()
        await rt.close_upstream()
        if self._http is not None:
            self._http.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.sleep(0)  # let them finish cancelling
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
    needed = cfg.limits.max_clients + cfg.pool.lease_max + cfg.pool.blocking_max + 4 * cfg.pool.size + 64
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


def run(cfg: Config, loader: Callable[[], Config] | None = None, worker: int | None = None,
        worker_socket: str | None = None) -> None:
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
