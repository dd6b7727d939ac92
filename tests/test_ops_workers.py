"""``--workers 2``: two processes share the port, each serves clients, a killed one is restarted, metrics add up."""

from __future__ import annotations

import os
import signal

import redis

from conftest import UPSTREAM_PASSWORD, sidecar_config, wait_until
from harness.servers import free_port
from test_ops_metrics import http_get, scrape, value


def who(port: int) -> tuple[int, int]:
    """(worker index, pid) of the worker that accepted a new connection."""
    with redis.Redis(port=port, password=UPSTREAM_PASSWORD) as c:
        info = c.info("sidecar")
    return info["sidecar_worker"], info["process_id"]


def test_two_workers_serve_clients_and_a_killed_one_is_restarted(upstream, make_sidecar):
    mport = free_port()
    sidecar = make_sidecar(sidecar_config(upstream, metrics={"listen": f"127.0.0.1:{mport}"}, shutdown_timeout=5),
                           args=["--workers", "2"])
    wait_until(lambda: value(scrape(mport), "workers_ready") == 2, "both workers never became ready", timeout=30)

    seen: dict[int, int] = {}
    for _ in range(300):  # the kernel spreads new connections over both processes
        index, pid = who(sidecar.port)
        seen[index] = pid
        if len(seen) == 2:
            break
    assert set(seen) == {0, 1} and seen[0] != seen[1] != sidecar.proc.pid

    total, per_worker = scrape(mport), scrape_workers(mport)
    accepted = [value(per_worker, "clients_accepted_total", worker=str(i)) for i in (0, 1)]
    assert all(n >= 1 for n in accepted)
    assert value(total, "clients_accepted_total") == sum(accepted)
    assert value(total, "upstream_connections", state="shared") >= 2  # a pool in each

    os.kill(seen[1], signal.SIGKILL)
    wait_until(lambda: value(scrape(mport), "worker_restarts_total", worker="1") == 1, "worker 1 not restarted",
               timeout=30)
    for _ in range(10):  # served meanwhile
        assert who(sidecar.port)[0] in (0, 1)

    def new_worker_1() -> bool:
        index, pid = who(sidecar.port)
        return index == 1 and pid != seen[1]

    wait_until(new_worker_1, "the restarted worker 1 serves no client", timeout=30)
    assert http_get(mport, "/readyz")[0] == 200

    sidecar.signal(signal.SIGTERM)
    assert sidecar.proc.wait(20) == 0
    for pid in (seen[0],):
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
    log = sidecar.log_text()
    assert "worker died (signal SIGKILL)" in log and "worker=1" in log


def scrape_workers(port: int) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    status, text = http_get(port, "/metrics/workers")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_worker_that_cannot_start_stops_the_supervisor(upstream):
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:  # a port held by another program, without SO_REUSEPORT
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "proxy", "--upstream", upstream.url(), "--listen",
                               f"127.0.0.1:{port}", "--workers", "2"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "failed to start" in proc.stderr
