"""Upstream faults under load: 100 clients write through the sidecar while the upstream is killed and restarted, the
link to it stalls, or every reply takes 500 ms.

For every request, the right reply or a clear ``-ERR`` within upstream.connect_timeout + upstream.reply_timeout: no
hang, no reply delivered to another client, nothing executed twice, and every write acknowledged with ``+OK`` is in
the upstream afterwards (benchmarks/soak.py has the workload and its ledger; ``python -m benchmarks.soak`` is the long
run). Figures go to tests/artifacts/reliability_upstream.json.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from benchmarks.soak import Totals, Workload
from benchmarks.wan import WanRelayProcess
from conftest import UPSTREAM_PASSWORD, _server, busy_connections, sidecar_connections, wait_until
from harness.servers import SidecarProcess
from wire import RawClient

CLIENTS = 100
CONNECT_TIMEOUT, REPLY_TIMEOUT = 1.0, 1.5
SLACK = 1.5  # this 2-core machine runs the clients, the sidecar, the relay and the upstream at once
DEADLINE = CONNECT_TIMEOUT + REPLY_TIMEOUT + SLACK
POOL = 4
BACKOFF_MAX = 5.0  # pool.reconnect_backoff_max (the default): how long the sidecar may wait before it retries
RECOVERY_BOUND = BACKOFF_MAX + CONNECT_TIMEOUT + SLACK
ARTIFACTS = Path(__file__).parent / "artifacts"
FIGURES: dict[str, dict] = {}


@pytest.fixture
def durable_upstream():
    """An upstream that keeps what it acknowledged across SIGKILL (AOF, fsync before every reply)."""
    with _server(None, extra_config=["appendonly yes", "appendfsync always"]) as server:
        yield server


def start_sidecar(port: int) -> SidecarProcess:
    """A sidecar (not started: ``with`` starts it) whose upstream is at ``port`` (the upstream, or the relay)."""
    return SidecarProcess(config={
        "upstream": {"url": f"redis://:{UPSTREAM_PASSWORD}@127.0.0.1:{port}/0", "connect_timeout": CONNECT_TIMEOUT,
                     "reply_timeout": REPLY_TIMEOUT},
        "pool": {"size": POOL}, "log": {"level": "warning"}})


def run_with_fault(sidecar: SidecarProcess, fault) -> tuple[Workload, dict]:
    """Run the workload; after 1 s apply ``fault`` (a coroutine function); once it is over, wait for the first
    acknowledged write (recovery, bounded), run 1 s more and stop."""
    async def main():
        work = Workload(sidecar.port, UPSTREAM_PASSWORD, CLIENTS, DEADLINE)
        await work.start()
        await asyncio.sleep(1.0)
        before = work.acked_so_far()
        started = time.monotonic()
        await fault()
        window = {"fault_s": round(time.monotonic() - started, 2), "acked_before": before,
                  "acked_during": work.acked_so_far() - before}
        after_fault = work.acked_so_far()
        ended = time.monotonic()
        while work.acked_so_far() == after_fault and time.monotonic() - ended < RECOVERY_BOUND:
            await asyncio.sleep(0.05)
        window["recovery_s"] = round(time.monotonic() - ended, 2)  # fault over -> first acknowledged write
        await asyncio.sleep(1.0)
        window["acked_after"] = work.acked_so_far() - after_fault
        await work.stop()
        return work, window
    return asyncio.run(main())


def check(name: str, work: Workload, window: dict, upstream, sidecar: SidecarProcess, expect_errors: bool) -> Totals:
    totals = work.finish(upstream.client())
    FIGURES[name] = {**window, **{k: v for k, v in totals.__dict__.items() if k != "examples"}}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "reliability_upstream.json").write_text(json.dumps(FIGURES, indent=2))
    print(f"{name}: {FIGURES[name]}")
    assert totals.wrong == 0, totals.examples  # no reply to the wrong client, nothing out of order
    assert totals.lost == 0, totals.examples  # every acknowledged write is there
    assert totals.incr_violations == 0, totals.examples  # nothing ran twice
    assert totals.hung == 0 and totals.max_latency_s <= DEADLINE, totals  # no hang
    assert totals.disconnects == 0, totals  # the sidecar kept every client connected through the fault
    assert window["recovery_s"] < RECOVERY_BOUND and window["acked_after"] > 0, window  # and it recovered
    if expect_errors:
        assert totals.errors > 0, "the fault never reached the clients: the test proves nothing"
    else:
        assert totals.errors == 0, totals.error_kinds
    # nothing left behind: the sidecar lists only the checking client, the upstream holds the pools only (both
    # learn of the last closes a moment after the workload's clients have gone)
    with RawClient(sidecar.port) as c:
        c.call([b"AUTH", UPSTREAM_PASSWORD.encode()])
        wait_until(lambda: c.call([b"CLIENT", b"LIST"])[0].count(b"id=") == 1,
                   lambda: f"clients left in the sidecar: {c.call([b'CLIENT', b'LIST'])[0]!r}", timeout=10)

    def leftovers() -> list[dict]:
        view = sidecar_connections(upstream)
        # beyond the shared pool, the idle leases and the hub, or still in a transaction, blocked, subscribed, MONITOR
        return view if len(view) > POOL + 4 + 1 else busy_connections(view)
    wait_until(lambda: not leftovers(), lambda: f"upstream connections left behind: {leftovers()}", timeout=10)
    return totals


def test_upstream_killed_and_restarted_while_100_clients_write(durable_upstream):
    up = durable_upstream
    with start_sidecar(up.port) as sidecar:
        async def kill_and_restart():
            up.kill()  # SIGKILL: connections reset, nothing flushed beyond what was fsynced
            await asyncio.sleep(1.0)
            await asyncio.get_running_loop().run_in_executor(None, up.start)

        work, window = run_with_fault(sidecar, kill_and_restart)
        totals = check("kill_restart", work, window, up, sidecar, expect_errors=True)
    assert set(totals.error_kinds) <= {"upstream connection lost", "upstream unavailable", "cannot connect to upstream",
                                       "upstream connection closed", "LOADING", "upstream.connect_timeout"}, \
        totals.error_kinds


def test_link_to_the_upstream_stalls_then_resumes(durable_upstream):
    up = durable_upstream
    with WanRelayProcess(target_port=up.port) as relay, start_sidecar(relay.port) as sidecar:
        async def stall():
            relay.pause()  # SIGSTOP: the kernel still accepts and buffers, nothing moves
            await asyncio.sleep(REPLY_TIMEOUT + CONNECT_TIMEOUT + 0.5)
            relay.resume()

        work, window = run_with_fault(sidecar, stall)
        totals = check("link_stall", work, window, up, sidecar, expect_errors=True)
    assert "upstream.reply_timeout" in totals.error_kinds, totals.error_kinds  # the in-flight ones timed out
    assert set(totals.error_kinds) <= {"upstream.reply_timeout", "upstream.connect_timeout", "upstream unavailable",
                                       "upstream connection lost", "upstream connection closed"}, totals.error_kinds


def test_upstream_slowed_to_500ms_per_reply(durable_upstream):
    """Slow is not broken: 500 ms round trips stay under the reply timeout, so every request succeeds, just late."""
    up = durable_upstream
    with WanRelayProcess(target_port=up.port) as relay, start_sidecar(relay.port) as sidecar:
        async def slow():
            await asyncio.get_running_loop().run_in_executor(None, relay.set_delay, 250)  # each way: 500 ms RTT
            await asyncio.sleep(3.0)
            await asyncio.get_running_loop().run_in_executor(None, relay.set_delay, 0)

        work, window = run_with_fault(sidecar, slow)
        totals = check("slow_500ms", work, window, up, sidecar, expect_errors=False)
    assert totals.max_latency_s >= 0.5, totals  # the slowness really applied
