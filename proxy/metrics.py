"""Counters the sidecar keeps about itself, and their Prometheus exposition with the health probes.

The hot path only bumps plain integers (``Stats``) and, for one forwarded command in ``metrics.latency_sample``, two
histogram observations; everything else (connections by state, leases, pub/sub) is read from the live objects at
scrape time by ``SidecarCollector``. ``routes`` answers the HTTP endpoint's paths: ``/metrics``, ``/healthz`` (the
process is alive) and ``/readyz`` (an upstream connection answers PING, and the sidecar is not draining).
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .wire import resp
from .commands.table import Route
from .upstream import PoolKey, UpstreamError, Waiter

if TYPE_CHECKING:
    from .server import Server


@dataclass
class Stats:
    accepted: int = 0
    rejected: int = 0
    commands: int = 0
    auth_ok: int = 0
    auth_failures: int = 0
    leases: int = 0
    output_overflows: int = 0
    protocol_errors: int = 0
    by_route: dict[str, int] = field(default_factory=lambda: {r.value: 0 for r in Route})
    local: dict[str, int] = field(default_factory=dict)  # commands answered by the sidecar, by name
    reloads_ok: int = 0
    reloads_failed: int = 0

    def count_route(self, route: Route) -> None:
        self.by_route[route.value] += 1

    def count_local(self, name: bytes, args: list[bytes]) -> None:
        """One command answered locally: an upstream round trip saved (CLIENT counted by subcommand)."""
        if name == b"info":  # routed locally only to append the # Sidecar section; it still goes upstream
            return
        key = name if name != b"client" or len(args) < 2 else b"client|" + args[1].lower()
        text = key.decode(errors="replace")
        self.local[text] = self.local.get(text, 0) + 1


# -- latency ----------------------------------------------------------------------------------------------------------

LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0)


class Latency:
    """A histogram as plain integers: a bisect and three additions per observation, made cumulative at scrape time."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        buckets, total = [], 0
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.counts):
            total += count
            buckets.append((bound, total))
        return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=self.sum)


class Sampler:
    """Times one forwarded command in ``every`` (0: none): time in the sidecar before it goes upstream, and upstream."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.seen = 0
        self.proxy = Latency()
        self.upstream = Latency()
        self.loop_lag = Latency()

    def reply(self, received: float, sent: float, frame: bytes) -> bytes:
        """A slot transform: called with the reply's bytes when they arrive from upstream, returns them unchanged."""
        self.upstream.observe(time.perf_counter() - sent)
        self.proxy.observe(sent - received)
        return frame

    async def watch_loop(self, interval: float = 0.25) -> None:
        """How late the event loop runs a timer: every client waits that long before the sidecar reads it."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(interval)
            self.loop_lag.observe(max(0.0, loop.time() - start - interval))


@functools.cache
def timed_session_class() -> type:
    """``Session`` plus sampling; used only when metrics are on, so the sidecar without metrics pays nothing."""
    from .session import Session

    class TimedSession(Session):
        received = 0.0

        def data_received(self, data: bytes) -> None:
            self.received = time.perf_counter()
            super().data_received(data)

        def forward(self, raw: bytes, blocking: bool = False):
            slot = super().forward(raw, blocking)
            if slot is not None and not blocking:
                sampler = self.server.sampler
                sampler.seen += 1
                if sampler.seen == sampler.every:
                    sampler.seen = 0
                    slot.transform = functools.partial(sampler.reply, self.received, time.perf_counter())
            return slot

    return TimedSession


# -- exposition -------------------------------------------------------------------------------------------------------

PREFIX = "redis_sidecar_"
PURPOSES = ("shared", "lease", "pubsub", "verify")
STATES = ("connecting", "ready")


class SidecarCollector:
    """Reads the server's counters and live objects at scrape time."""

    def __init__(self, server: "Server") -> None:
        self.server = server

    def collect(self):
        srv, st = self.server, self.server.stats
        snap = srv.manager.snapshot()
        hub = srv.hub.snapshot()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(PREFIX + name, doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(PREFIX + name, doc, value=value)

        yield gauge("clients_connected", "Client connections open now.", len(srv.sessions))
        yield counter("clients_accepted", "Client connections accepted.", st.accepted)
        yield counter("clients_rejected", "Client connections refused at limits.max_clients.", st.rejected)
        yield counter("commands", "Commands received from clients, all routes.", st.commands)
        routes = CounterMetricFamily(PREFIX + "commands_routed", "Commands by routing class (commands.py).",
                                     labels=["route"])
        for route, value in st.by_route.items():
            routes.add_metric([route], value)
        yield routes
        local = CounterMetricFamily(
            PREFIX + "local_commands",
            "Commands the sidecar answered itself (AUTH, HELLO, SELECT, CLIENT SETNAME ...): each one is an upstream "
            "round trip saved.", labels=["command"])
        for name, value in sorted(st.local.items()):
            local.add_metric([name], value)
        yield local
        yield counter("auth_successes", "Successful AUTH/HELLO AUTH from clients.", st.auth_ok)
        yield counter("auth_failures", "Failed AUTH/HELLO AUTH from clients.", st.auth_failures)
        yield counter("protocol_errors", "Clients closed for malformed requests.", st.protocol_errors)
        yield counter("output_overflows", "Clients closed for exceeding their output buffer limit.",
                      st.output_overflows)

        conns = GaugeMetricFamily(PREFIX + "upstream_connections", "Upstream connections by purpose and state.",
                                  labels=["purpose", "state"])
        by_state = dict(snap.get("by_state", {}))
        for purpose in PURPOSES:
            for state in STATES:
                conns.add_metric([purpose, state], by_state.pop(f"{purpose}_{state}", 0))
        for label, value in sorted(by_state.items()):
            purpose, _, state = label.partition("_")
            conns.add_metric([purpose, state], value)
        yield conns
        yield counter("upstream_connects", "Upstream connections opened and authenticated (first fills and "
                      "reconnects alike).", snap.get("connects", 0))
        yield counter("upstream_disconnects", "Ready upstream connections that closed (lost, timed out, or retired "
                      "by the sidecar).", snap.get("disconnects", 0))
        errors = CounterMetricFamily(PREFIX + "upstream_errors", "Upstream failures by kind.", labels=["kind"])
        errors.add_metric(["connect_failure"], snap.get("connect_failures", 0))
        errors.add_metric(["lease_timeout"], snap.get("lease_timeouts", 0))
        yield errors
        yield gauge("upstream_up", "1 while at least one upstream connection is ready.",
                    1 if srv.manager.healthy else 0)
        yield gauge("leases_in_use", "Upstream connections leased to one client (transaction, blocking call, "
                    "session).", snap.get("leased", 0))
        yield gauge("lease_waiters", "Clients waiting for a leased connection (pool.lease_max reached).",
                    snap.get("lease_waiters", 0))
        yield gauge("leases_idle", "Authenticated connections kept ready for the next lease.",
                    snap.get("idle_leases", 0))
        yield counter("leases", "Leases granted.", st.leases)

        yield gauge("pubsub_channels", "Channels (and shard channels) with at least one local subscriber.",
                    hub.get("channels", 0))
        yield gauge("pubsub_patterns", "Patterns with at least one local subscriber.", hub.get("patterns", 0))
        yield gauge("pubsub_subscribers", "Clients subscribed to at least one channel or pattern.",
                    hub.get("subscribers", 0))
        yield counter("pubsub_messages", "Messages received from upstream for local subscribers.",
                      hub.get("messages", 0))

        reloads = CounterMetricFamily(PREFIX + "config_reloads", "Configuration reloads (SIGHUP, SIDECAR RELOAD).",
                                      labels=["result"])
        reloads.add_metric(["ok"], st.reloads_ok)
        reloads.add_metric(["refused"], st.reloads_failed)
        yield reloads
        yield gauge("draining", "1 once SIGTERM started the graceful drain.", 1 if srv.draining else 0)

        sampler = srv.sampler
        yield sampler.proxy.family(PREFIX + "proxy_seconds",
                                   "Sampled: time from the sidecar reading a command to writing it upstream "
                                   "(parsing, routing, waiting for a leased connection).")
        yield sampler.upstream.family(PREFIX + "upstream_seconds",
                                      "Sampled: time from writing a command upstream to its reply arriving "
                                      "(network, upstream execution, queueing on the shared connection).")
        yield sampler.loop_lag.family(PREFIX + "event_loop_lag_seconds",
                                      "How late the event loop ran a timer: the wait every client sees before "
                                      "the sidecar reads its command.")


def registry(server: "Server") -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SidecarCollector(server))
    ProcessCollector(registry=reg)
    return reg


async def readiness(server: "Server") -> str | None:
    """None when ready; else why not. Ready: not draining, and a shared upstream connection answers PING."""
    if server.draining:
        return "draining"
    if not server.listening:
        return "starting"
    manager = server.manager
    try:
        conn = manager.shared_for(PoolKey(manager.credential, server.cfg.upstream.db, 2))
    except UpstreamError as exc:
        return str(exc)
    probe = Waiter(server.loop)  # the sink the sidecar uses for its own commands
    conn.send(resp.encode_command([b"PING"]), probe)
    timeout = server.cfg.upstream.connect_timeout
    try:
        frame = await asyncio.wait_for(probe.future, timeout)
    except asyncio.TimeoutError:
        return f"no PING reply from the upstream within upstream.connect_timeout ({timeout:g}s)"
    except UpstreamError as exc:
        return str(exc)
    if frame.startswith(b"-"):
        return frame[1:].decode(errors="replace").strip()
    return None


def routes(server: "Server"):
    """The HTTP endpoint's handler for one process (``httpd.serve`` calls it with the request path)."""
    reg = registry(server)

    async def handle(path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(reg)
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            why = await readiness(server)
            return (200, "text/plain", b"ready\n") if why is None else (503, "text/plain", why.encode() + b"\n")
        return 404, "text/plain", b"not found: try /metrics, /healthz or /readyz\n"

    return handle
