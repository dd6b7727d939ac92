"""The Prometheus exposition of the sidecar's counters and snapshots, and the health probes.

The hot path only bumps plain integers (``services.stats``) and samples one forwarded command in
``metrics.latency_sample`` through the session's hook; everything else is read from typed snapshots at scrape time.
``routes`` answers ``/metrics``, ``/healthz`` (the process is alive) and ``/readyz`` (an upstream connection answers
PING, and the sidecar is not draining).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from ..services.stats import LATENCY_BUCKETS, Latency
from ..upstream.connection import ConnState, UpstreamError, Waiter
from ..wire import resp
from .admin import SidecarView

PREFIX = "redis_sidecar_"


def histogram(latency: Latency, name: str, doc: str) -> HistogramMetricFamily:
    buckets, total = [], 0
    for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), latency.counts):
        total += count
        buckets.append((bound, total))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=latency.sum)


class SidecarCollector:
    """Reads the runtime's counters and snapshots at scrape time."""

    def __init__(self, view: SidecarView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        rt = self.view.handle.current
        st, registry = rt.stats, rt.registry
        snap, hub = rt.manager.snapshot(), rt.hub.snapshot()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(PREFIX + name, doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(PREFIX + name, doc, value=value)

        yield gauge("clients_connected", "Client connections open now.", len(registry))
        yield counter("clients_accepted", "Client connections accepted.", registry.accepted)
        yield counter("clients_disconnected", "Client connections closed.", registry.departed)
        yield counter("clients_rejected", "Client connections refused at limits.max_clients.", registry.rejected)
        yield counter("commands", "Commands received from clients, all routes.", st.commands)
        routes = CounterMetricFamily(PREFIX + "commands_routed", "Commands by routing class.", labels=["route"])
        for route, value in sorted(st.by_route.items(), key=lambda item: item[0].value):
            routes.add_metric([route.value], value)
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
        yield counter("auth_rate_limited", "AUTH attempts refused by limits.auth_failures_per_minute.",
                      st.auth_rate_limited)
        yield counter("credential_checks", "Credential checks and permission probes sent upstream.",
                      rt.control.checks)
        yield counter("protocol_errors", "Clients closed for malformed requests.", st.protocol_errors)
        yield counter("output_overflows", "Clients closed for exceeding an output buffer limit.", st.output_overflows)
        yield gauge("output_buffered_bytes", "Replies queued for all clients together.", rt.output.total)

        conns = GaugeMetricFamily(PREFIX + "upstream_connections", "Upstream connections by state.", labels=["state"])
        for state in ConnState:
            if state is not ConnState.CLOSED:
                conns.add_metric([state.value], snap.by_state.get(state.value, 0))
        yield conns
        yield counter("upstream_connects", "Upstream connections opened and logged in.", snap.connects)
        yield counter("upstream_disconnects", "Ready upstream connections lost (network or server).",
                      snap.disconnects)
        errors = CounterMetricFamily(PREFIX + "upstream_errors", "Upstream failures by kind.", labels=["kind"])
        errors.add_metric(["connect_failure"], snap.connect_failures)
        errors.add_metric(["lease_timeout"], snap.lease_timeouts)
        errors.add_metric(["reply_timeout"], snap.reply_timeouts)
        yield errors
        yield gauge("upstream_up", "1 while an upstream connection is ready.", 1 if snap.up else 0)
        lent = GaugeMetricFamily(PREFIX + "leases_in_use", "Upstream connections lent to one client, by class "
                                 "(held: transactions and sessions; call: blocking calls and WAIT).", labels=["class"])
        waiting = GaugeMetricFamily(PREFIX + "lease_waiters", "Clients waiting for a lent connection, by class.",
                                    labels=["class"])
        for cls, value in snap.lent.items():
            lent.add_metric([cls], value)
            waiting.add_metric([cls], snap.lease_waiters.get(cls, 0))
        yield lent
        yield waiting
        yield gauge("leases_idle", "Authenticated connections kept ready for the next lease.", snap.idle_leases)
        yield counter("leases", "Leases granted.", st.leases)

        yield gauge("pubsub_channels", "Channels (and shard channels) with a local subscriber.",
                    hub.channels + hub.shard_channels)
        yield gauge("pubsub_patterns", "Patterns with a local subscriber.", hub.patterns)
        yield gauge("pubsub_subscribers", "Clients subscribed through the hub.", hub.subscribers)
        yield counter("pubsub_messages", "Messages received from upstream for local subscribers.", hub.messages)

        reloads = CounterMetricFamily(PREFIX + "config_reloads", "Configuration reloads (SIGHUP, SIDECAR RELOAD).",
                                      labels=["result"])
        reloads.add_metric(["ok"], st.reloads_ok)
        reloads.add_metric(["refused"], st.reloads_failed)
        yield reloads
        yield gauge("draining", "1 once SIGTERM started the graceful drain.", 1 if self.view.draining else 0)
        sampler = rt.sampler
        yield histogram(sampler.proxy, PREFIX + "proxy_seconds", "Sampled: time from the sidecar reading a command "
                        "to writing it upstream (parsing, routing, waiting for a connection).")
        yield histogram(sampler.upstream, PREFIX + "upstream_seconds", "Sampled: time from writing a command "
                        "upstream to its reply arriving (network, upstream execution, queueing).")
        yield histogram(sampler.loop_lag, PREFIX + "event_loop_lag_seconds", "How late the event loop ran a timer: "
                        "the wait every client sees before the sidecar reads its command.")


def registry(view: SidecarView) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SidecarCollector(view))
    ProcessCollector(registry=reg)
    return reg


async def readiness(view: SidecarView) -> str | None:
    """None when ready; else why not. Ready: listening, not draining, and a shared connection answers PING."""
    if view.draining:
        return "draining"
    if not view.listening:
        return "starting"
    rt = view.handle.current
    try:
        conn = rt.manager.shared_conn(rt.default_key)
    except UpstreamError as exc:
        return str(exc)
    probe = Waiter(rt.loop)
    conn.send(resp.encode_command([b"PING"]), probe)
    timeout = rt.cfg.upstream.connect_timeout
    try:
        frame = await asyncio.wait_for(probe.future, timeout)
    except asyncio.TimeoutError:
        return f"no PING reply from the upstream within upstream.connect_timeout ({timeout:g}s)"
    except UpstreamError as exc:
        return str(exc)
    return frame[1:].decode(errors="replace").strip() if frame.startswith(b"-") else None


def routes(view: SidecarView) -> Callable[[str], Awaitable[tuple[int, str, bytes]]]:
    """The HTTP endpoint's handler for one process (``httpd.serve`` calls it with the request path)."""
    reg = registry(view)

    async def handle(path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(reg)
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            why = await readiness(view)
            return (200, "text/plain", b"ready\n") if why is None else (503, "text/plain", why.encode() + b"\n")
        return 404, "text/plain", b"not found: try /metrics, /healthz or /readyz\n"

    return handle
