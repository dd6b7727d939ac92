"""PHP, for real: phpredis and Predis in real ``php`` processes, against Redis directly and through the sidecar.

PHP apps are the sidecar's first users: every PHP-FPM request builds a client (``new Redis(); connect; auth``, or
``new Predis\\Client``), works and throws the connection away. Each scenario in tests/php/ records every reply in a
canonical JSON form (phpredis's ``false`` for a nil and Predis's ``null`` kept as they are); the run through the
sidecar must print exactly what the direct run printed, against the same upstream with the same keys. phpredis also
reaches the sidecar over its unix socket (``unix_socket:``), the way PHP apps on the same host use
``/run/redis/redis.sock``.

Debian's php-cli, php-redis (phpredis 5.3) and php-nrk-predis (Predis 1.1), installed by ./dev; both speak RESP2.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from benchmarks.config import BenchConfig
from conftest import ACL_PASSWORD, ACL_USER, UPSTREAM_PASSWORD, sidecar_config, wait_until
from harness.servers import EmbeddedServer, SidecarProcess

SCRIPTS = Path(__file__).resolve().parent / "php"
PREDIS_AUTOLOADER = Path("/usr/share/php/Predis/Autoloader.php")
PHP_TIMEOUT = 30.0  # seconds one scenario may take; the slowest waits out a 1 s read timeout
SCENARIOS = ("auth", "select", "chatroom", "multi", "pipeline", "subscribe", "nulls", "per_request")
CHANNEL = "php:channel"  # rkey('channel') in tests/php/common.php
PUBLISHED = ("one", "two", "three")
DBS = (0, 1, 2)  # the databases the scenarios write to

pytestmark = pytest.mark.timeout(120)


@functools.cache
def _missing(client: str) -> str | None:
    """Why ``client`` cannot run here, or None."""
    php = shutil.which("php")
    if not php:
        return "php is not installed (./dev setup installs Debian's php-cli)"
    if client == "phpredis":
        loaded = subprocess.run([php, "-r", "exit(extension_loaded('redis') ? 0 : 1);"], capture_output=True)
        return None if loaded.returncode == 0 else "phpredis is not installed (./dev setup installs php-redis)"
    if not PREDIS_AUTOLOADER.exists():
        return "Predis is not installed (./dev setup installs php-nrk-predis)"
    return None


@dataclass(frozen=True)
class Route:
    """Where a PHP run connects: the upstream itself, or the sidecar over TCP or its unix socket."""

    label: str
    port: int = 0
    socket: str = ""

    def env(self) -> dict[str, str]:
        where = {"REDIS_SOCKET": self.socket} if self.socket else {"REDIS_PORT": str(self.port)}
        # Credentials travel in the environment, as a PHP app's config would give them (never on a command line).
        return {**os.environ, **where, "REDIS_HOST": "127.0.0.1", "REDIS_PASSWORD": UPSTREAM_PASSWORD,
                "REDIS_USER": ACL_USER, "REDIS_USER_PASSWORD": ACL_PASSWORD}

    def client(self) -> redis.Redis:
        """A redis-py client on the same route, for the test's publisher."""
        if self.socket:
            return redis.Redis(unix_socket_path=self.socket, password=UPSTREAM_PASSWORD)
        return redis.Redis(port=self.port, password=UPSTREAM_PASSWORD)


@pytest.fixture(scope="module")
def php_sidecar(upstream: EmbeddedServer, tmp_path_factory):
    """A passthrough sidecar listening on TCP and on a unix socket."""
    sock = str(tmp_path_factory.mktemp("php") / "sidecar.sock")
    with SidecarProcess(config=sidecar_config(upstream, unix_socket=sock)) as sidecar:
        yield sidecar


def routes(upstream: EmbeddedServer, sidecar: SidecarProcess) -> dict[str, Route]:
    return {"direct": Route("direct", port=upstream.port),
            "proxied": Route("proxied", port=sidecar.port),
            "proxied-unix": Route("proxied-unix", socket=sidecar.config["unix_socket"])}


def forget_keys(upstream: EmbeddedServer) -> None:
    """Each run starts from the same empty keys, so the direct and proxied runs see the same data."""
    for db in DBS:
        with upstream.client(db=db) as client:
            keys = list(client.scan_iter("php:*"))
            if keys:
                client.delete(*keys)


def run_php(client: str, scenario: str, route: Route, upstream: EmbeddedServer) -> list:
    """One scenario in a fresh ``php`` process; its replies as [label, value] pairs."""
    argv = ["php", str(SCRIPTS / f"{client}.php"), scenario]
    if scenario != "subscribe":
        done = subprocess.run(argv, env=route.env(), capture_output=True, text=True, timeout=PHP_TIMEOUT)
        return _replies(done.returncode, done.stdout, done.stderr)
    with subprocess.Popen(argv, env=route.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            published = _publish_when_subscribed(proc, route, upstream)
            out, err = proc.communicate(timeout=PHP_TIMEOUT)
        finally:
            proc.kill()
    return _replies(proc.returncode, out, err) + [["PUBLISH receivers (the test's publisher)", published]]


def _publish_when_subscribed(proc: subprocess.Popen, route: Route, upstream: EmbeddedServer) -> list[int]:
    """Publish once the subscription stands at the upstream and on the route, then let the read timeout end it."""
    publisher = route.client()
    upstream_view = upstream.client()

    def subscribed() -> bool:
        assert proc.poll() is None, f"php exited early: {proc.communicate()}"
        return all(dict(c.pubsub_numsub(CHANNEL)).get(CHANNEL.encode(), 0) >= 1 for c in (upstream_view, publisher))

    wait_until(subscribed, f"the PHP subscriber never subscribed to {CHANNEL} via {route.label}")
    try:
        return [publisher.publish(CHANNEL, message) for message in PUBLISHED]
    finally:
        publisher.close()
        upstream_view.close()


def _replies(code: int, out: str, err: str) -> list:
    assert code == 0 and out.strip(), f"php failed ({code}):\n{err}\n{out}"
    return json.loads(out)


def differences(expected: list, got: list) -> str:
    """The replies that differ, one per line, for a readable failure."""
    lines = [f"  {e[0]}: direct {json.dumps(e[1])} != proxied {json.dumps(g[1])}"
             for e, g in zip(expected, got) if e != g]
    if len(expected) != len(got):
        lines.append(f"  {len(expected)} replies direct, {len(got)} proxied")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def direct_replies(upstream: EmbeddedServer) -> Callable[[str, str], list]:
    """What a scenario prints against Redis itself: run once per module, whichever routes are compared with it."""
    seen: dict[tuple[str, str], list] = {}

    def replies(client: str, scenario: str) -> list:
        if (client, scenario) not in seen:
            forget_keys(upstream)
            seen[client, scenario] = run_php(client, scenario, Route("direct", port=upstream.port), upstream)
        return seen[client, scenario]

    return replies


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("client, route", [("phpredis", "proxied"), ("phpredis", "proxied-unix"),
                                           ("predis", "proxied")])
def test_php_replies_are_the_same_through_the_sidecar(client: str, route: str, scenario: str,
                                                      upstream: EmbeddedServer, php_sidecar: SidecarProcess,
                                                      direct_replies: Callable[[str, str], list]):
    reason = _missing(client)
    if reason:
        pytest.skip(reason)
    expected = direct_replies(client, scenario)
    forget_keys(upstream)
    got = run_php(client, scenario, routes(upstream, php_sidecar)[route], upstream)
    assert got == expected, f"{client} {scenario} via {route} differs from direct:\n{differences(expected, got)}"


def _upstream_counts(client: redis.Redis) -> tuple[int, int]:
    """Connections the upstream accepted and AUTH or HELLO calls it ran (the sidecar logs in with HELLO), since it
    started: its own INFO."""
    stats, commands = client.info("stats"), client.info("commandstats")
    logins = sum(int(commands.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("auth", "hello"))
    return int(stats["total_connections_received"]), logins


@pytest.mark.parametrize("client", ["phpredis", "predis"])
def test_php_fpm_requests_reach_the_upstream_as_a_few_connections(client: str, upstream: EmbeddedServer,
                                                                   php_sidecar: SidecarProcess):
    """20 requests, each with a client of its own (half with the password, half as the ACL user): direct, the
    upstream accepts 20 connections and runs 20 AUTHs; through the sidecar, only what its pools open."""
    reason = _missing(client)
    if reason:
        pytest.skip(reason)
    seen = {}
    monitor = upstream.client()  # one connection, opened by the first INFO: it counts in neither run
    for label in ("direct", "proxied"):
        forget_keys(upstream)
        before = _upstream_counts(monitor)
        run_php(client, "per_request", routes(upstream, php_sidecar)[label], upstream)
        after = _upstream_counts(monitor)
        seen[label] = (after[0] - before[0], after[1] - before[1])
    monitor.close()
    # 20 requests and the clean-up one, each connecting and logging in (and the odd pool connection of the sidecar).
    assert seen["direct"][0] >= 21 and seen["direct"][1] >= 21, seen
    # Two credentials (password, ACL user) in db 1: a pool connection or two each, logged in once, if not yet open.
    assert seen["proxied"][0] <= 6 and seen["proxied"][1] <= 6, seen


def test_php_benchmark_scenario_measures_each_mode_with_the_upstreams_counters(tmp_path):
    """``python -m benchmarks --scenarios php``, tiny: direct, proxied and persistent at RTT 0 and 2 ms, each with
    what the upstream saw (its INFO): a connection and an AUTH per direct request, none per proxied one."""
    reason = _missing("phpredis")
    if reason:
        pytest.skip(reason)
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--scenarios", "php", "--repeats", "1", "--seconds",
                           "0.2", "--max-requests", "40", "--quiet", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    assert {(r["mode"], r["rtt_ms"]) for r in records} == {(mode, rtt) for mode in ("direct", "proxied", "persistent")
                                                           for rtt in (0.0, 2.0)}
    for r in records:
        where = f"{r['mode']} at RTT {r['rtt_ms']:g} ms: {r}"
        assert r["workload"] == "php-get" and r["client"].startswith("phpredis ") and r["error"] is None, where
        assert r["errors"] == 0 and r["requests"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"], where
        up = r["upstream"]
        if r["mode"] == "direct":
            assert up["connections_received"] == up["auth_calls"] == r["requests"], where
        elif r["mode"] == "proxied":  # at most the sidecar's pool, opened once (by the warm-up, if not before)
            bound = BenchConfig().pool_size
            assert up["connections_received"] <= bound and up["auth_calls"] + up["hello_calls"] <= bound, where
        else:  # the persistent client connects once, before its clock starts
            assert up["connections_received"] == up["auth_calls"] == 1, where
    assert "| php-get | RESP2 | 1 |" in (tmp_path / "report.md").read_text()
