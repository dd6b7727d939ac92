"""``--workers N``: N sidecar processes sharing the listening port with SO_REUSEPORT, and their supervisor.

Each worker is a complete sidecar (``python -m proxy`` with the same arguments, plus its index) with its own upstream
pools; the kernel spreads new client connections across them. The supervisor holds no client connection. It:

- starts the workers and restarts one that dies (backoff doubling from 0.5 s to 30 s while it keeps dying before it
  is ready); if a worker fails on the very first start (a port in use, a bad certificate) everything stops, exit 1;
- forwards SIGHUP (reload: it validates the configuration first and refuses a bad one itself), and on SIGTERM or
  SIGINT sends each worker one SIGTERM (each drains) and waits; a second signal SIGKILLs them and exits at once;
- serves ``metrics.listen``: ``/metrics`` sums every worker's series (the same names as a single process, so
  dashboards work with any N), ``/metrics/workers`` gives each worker's own series with a ``worker`` label,
  ``/healthz`` is the supervisor itself and ``/readyz`` is ready while any worker is.

Workers serve their own endpoint on a unix socket in a private directory; a worker is "ready" once that socket
exists, which it creates after its listeners are bound.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from .config import Config, ConfigError, metrics_address
from .ops import httpd, logs
from .ops.metrics import PREFIX
from .server import new_event_loop

log = logging.getLogger("sidecar.workers")

_LIBC: ctypes.CDLL | None
try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None
PR_SET_PDEATHSIG = 1


def _die_with_supervisor() -> None:
    """In the child before exec: SIGTERM it if the supervisor dies without stopping it (kill -9)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Worker:
    index: int
    socket: str
    proc: subprocess.Popen[bytes] | None = None
    ready: bool = False
    ever_ready: bool = False
    restarts: int = 0
    failures: int = 0  # deaths in a row before becoming ready
    next_start: float = 0.0


class Supervisor:
    def __init__(self, cfg: Config, argv: list[str], loader: Callable[[], Config],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.argv = argv
        self.loader = loader
        self.loop = loop
        self.dir = tempfile.mkdtemp(prefix="redis-sidecar-workers-")
        self.workers = [Worker(i, os.path.join(self.dir, f"worker-{i}.sock")) for i in range(cfg.workers)]
        self.stopping = False
        self.failed = False
        self.signals = 0
        self.deadline = 0.0

    # -- processes --------------------------------------------------------------------------------------------------
    def spawn(self, w: Worker) -> None:
        if os.path.exists(w.socket):
            os.unlink(w.socket)
        cmd = [sys.executable, "-m", "proxy", *self.argv, "--worker-index", str(w.index),
               "--worker-socket", w.socket]
        w.proc = subprocess.Popen(cmd, preexec_fn=_die_with_supervisor)
        w.ready = False
        log.info("worker started", extra={"event": "worker_started", "worker": w.index, "pid": w.proc.pid})

    def _exited(self, w: Worker, code: int) -> None:
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        w.proc = None
        if self.stopping:
            log.info("worker stopped (%s)", how, extra={"event": "worker_stopped", "worker": w.index})
            return
        if not w.ever_ready:
            log.error("worker %d failed to start (%s); stopping", w.index, how,
                      extra={"event": "worker_start_failed", "worker": w.index})
            self.failed = True
            self.drain()
            return
        w.failures = w.failures + 1 if not w.ready else 0
        delay = min(30.0, 0.5 * 2 ** w.failures) if w.failures else 0.0
        w.restarts += 1
        w.next_start = time.monotonic() + delay
        log.warning("worker died (%s); restarting in %gs", how, delay,
                    extra={"event": "worker_died", "worker": w.index, "restarts": w.restarts})

    async def monitor(self) -> None:
        while True:
            now = time.monotonic()
            for w in self.workers:
                if w.proc is None:
                    if not self.stopping and now >= w.next_start:
                        self.spawn(w)
                    continue
                code = w.proc.poll()
                if code is not None:
                    self._exited(w, code)
                elif not w.ready and os.path.exists(w.socket):
                    w.ready = w.ever_ready = True
                    log.info("worker ready", extra={"event": "worker_ready", "worker": w.index, "pid": w.proc.pid})
            if self.stopping:
                alive = [w for w in self.workers if w.proc is not None]
                if not alive:
                    return
                if now > self.deadline:
                    log.warning("workers still running after shutdown_timeout: killing them")
                    self._kill_all()
            await asyncio.sleep(0.05)

    def _kill_all(self) -> None:
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.kill()

    # -- signals ----------------------------------------------------------------------------------------------------
    def stop(self, sig: int) -> None:
        self.signals += 1
        if self.signals > 1:
            log.warning("second signal: killing the workers and exiting now")
            self._kill_all()
            os._exit(1)
        log.info("%s: draining %d workers (up to shutdown_timeout=%gs)", signal.Signals(sig).name,
                 len(self.workers), self.cfg.shutdown_timeout, extra={"event": "drain"})
        self.drain()

    def drain(self) -> None:
        self.stopping = True
        self.deadline = time.monotonic() + self.cfg.shutdown_timeout + 5
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)

    def reload(self) -> None:
        try:
            new = self.loader()
        except ConfigError as exc:
            log.error("configuration reload refused, the running configuration stays in force: %s", exc,
                      extra={"event": "reload_refused"})
            return
        if new.workers != self.cfg.workers or new.metrics.listen != self.cfg.metrics.listen:
            log.warning("configuration reload: workers and metrics.listen need a restart; keeping the running values",
                        extra={"event": "reload_needs_restart"})
        if new.log != self.cfg.log:
            logs.setup(new.log.level, new.log.format)
        self.cfg = dataclasses.replace(new, workers=self.cfg.workers, metrics=self.cfg.metrics)
        log.info("SIGHUP: reloading %d workers", len(self.workers), extra={"event": "reload_requested"})
        for w in self.workers:  # one still starting reads the configuration itself (and has no handler yet)
            if w.proc is not None and w.ready and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGHUP)

    # -- HTTP -------------------------------------------------------------------------------------------------------
    async def _fetch_all(self, path: str) -> dict[int, tuple[int, bytes]]:
        ready = [w for w in self.workers if w.proc is not None and w.ready]

        async def one(w: Worker) -> tuple[int, tuple[int, bytes]]:
            try:
                return w.index, await httpd.fetch_unix(w.socket, path)
            except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
                return w.index, (503, f"worker {w.index}: {exc}".encode())

        return dict(await asyncio.gather(*(one(w) for w in ready)))

    async def handle(self, path: str) -> tuple[int, str, bytes]:
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            answers = await self._fetch_all("/readyz")
            if any(status == 200 for status, _ in answers.values()):
                return 200, "text/plain", b"ready\n"
            why = b"".join(f"worker {i}: ".encode() + body for i, (_, body) in sorted(answers.items()))
            return 503, "text/plain", why or b"no worker is ready\n"
        if path in ("/metrics", "/metrics/workers"):
            answers = await self._fetch_all("/metrics")
            texts = {i: body.decode() for i, (status, body) in answers.items() if status == 200}
            per_worker = path == "/metrics/workers"
            families = merge(texts, per_worker)
            if not per_worker:
                families += self.own_metrics()
            reg = CollectorRegistry(auto_describe=False)
            reg.register(_Fixed(families))
            return 200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(reg)
        return 404, "text/plain", b"not found: try /metrics, /metrics/workers, /healthz or /readyz\n"

    def own_metrics(self) -> list[Metric]:
        configured = Metric(PREFIX + "workers", "Worker processes configured (--workers).", "gauge")
        configured.add_sample(PREFIX + "workers", {}, len(self.workers))
        ready = Metric(PREFIX + "workers_ready", "Worker processes running and listening.", "gauge")
        ready.add_sample(PREFIX + "workers_ready", {}, sum(1 for w in self.workers if w.proc and w.ready))
        restarts = Metric(PREFIX + "worker_restarts", "Workers restarted after dying, by worker.", "counter")
        for w in self.workers:
            restarts.add_sample(PREFIX + "worker_restarts_total", {"worker": str(w.index)}, w.restarts)
        return [configured, ready, restarts]

    # -- main -------------------------------------------------------------------------------------------------------
    async def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stop, sig)
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)
        http = None
        if self.cfg.metrics.listen:
            host, port = metrics_address(self.cfg.metrics.listen)
            http = await httpd.serve(self.handle, host, port)
            log.info("metrics and health for %d workers on http://%s:%d/metrics, /metrics/workers, /healthz, "
                     "/readyz", len(self.workers), host, port)
        try:
            await self.monitor()
        finally:
            if http is not None:
                http.close()
            shutil.rmtree(self.dir, ignore_errors=True)
        log.info("stopped")
        return 1 if self.failed else 0


class _Fixed:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def merge(texts: dict[int, str], per_worker: bool) -> list[Metric]:
    """Workers' expositions as one: summed per series, or kept apart with a ``worker`` label.

    Summing is right for counters, histograms and the gauges here (connections, clients, leases); per-process facts
    (``process_*``: start time, memory) appear only in the per-worker view.
    """
    out: dict[str, Metric] = {}
    values: dict[str, dict[tuple[Any, ...], float]] = {}
    labels_of: dict[tuple[Any, ...], dict[str, str]] = {}
    for index, text in sorted(texts.items()):
        for family in text_string_to_metric_families(text):
            if not per_worker and family.name.startswith(("process_", "python_")):
                continue
            if family.name not in out:
                out[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            series = values[family.name]
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                labels = dict(sample.labels)
                if per_worker:
                    labels["worker"] = str(index)
                key = (sample.name, tuple(sorted(labels.items())))
                labels_of[key] = labels
                series[key] = series.get(key, 0.0) + sample.value
    for name, metric in out.items():
        for key, value in values[name].items():
            metric.add_sample(key[0], labels_of[key], value)
    return list(out.values())


def supervise(cfg: Config, argv: list[str], loader: Callable[[], Config]) -> int:
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(Supervisor(cfg, argv, loader, loop).run())
    finally:
        loop.close()
