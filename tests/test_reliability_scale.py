"""Scale: 10,000 concurrent client connections on one sidecar, memory per idle client, and the upstream still sees
only the pool. Figures go to tests/artifacts/reliability_scale.json.

The sidecar is started with a soft open-file limit of 1024 (inherited from this process): it must raise its own
limit to the hard one to hold 10,000 clients.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import time
from pathlib import Path

import pytest

from conftest import UPSTREAM_PASSWORD, sidecar_config, sidecar_connections
from harness.servers import SidecarProcess
from wire import RawClient

CLIENTS = 10_000
POOL = 4
ARTIFACTS = Path(__file__).parent / "artifacts"


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (peak) in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v) * 1024 for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M)}


def open_files_limit(pid: int) -> int:
    line = next(x for x in Path(f"/proc/{pid}/limits").read_text().splitlines() if x.startswith("Max open files"))
    return int(line.split()[3])


def raise_own_limit(needed: int) -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.fail(f"this test holds {CLIENTS} connections from this process and {CLIENTS} in the sidecar: it needs "
                    f"an open-file hard limit of at least {needed} (ulimit -Hn is {hard}); raise it (ulimit -Hn, "
                    "LimitNOFILE=, or the container's nofile ulimit)")
    target = needed if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return soft, hard


@pytest.fixture
def fd_headroom():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raise_own_limit(CLIENTS + 500)
    yield resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def hold_clients(port: int, count: int, batch: int = 500):
    """Open ``count`` connections, each authenticated and answered PING, ``batch`` at a time."""
    auth_ping = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(UPSTREAM_PASSWORD),
                                                                           UPSTREAM_PASSWORD.encode())

    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(auth_ping)
        assert await asyncio.wait_for(reader.readexactly(12), 30) == b"+OK\r\n+PONG\r\n"
        return reader, writer

    conns = []
    for start in range(0, count, batch):
        conns += await asyncio.gather(*(one() for _ in range(min(batch, count - start))))
    return conns


def test_10k_concurrent_clients(upstream, fd_headroom):
    hard = fd_headroom
    cfg = sidecar_config(upstream, limits={"max_clients": CLIENTS + 100}, pool={"size": POOL},
                         log={"level": "warning"})
    sidecar = SidecarProcess(config=cfg)
    others = len(sidecar_connections(upstream))
    soft_before, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # the sidecar inherits 1024 ...
    try:
        sidecar.start()  # (not ``with sidecar``: that would start a second one)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft_before, hard))
    try:
        pid = sidecar.proc.pid
        assert open_files_limit(pid) == hard, "the sidecar did not raise its open-file limit"  # ... and raises it
        with RawClient(sidecar.port) as warm:  # a first client and the first upstream round trips
            warm.call([b"AUTH", UPSTREAM_PASSWORD.encode()], [b"SET", b"scale:warm", b"1"], [b"GET", b"scale:warm"])
        time.sleep(0.2)
        base = proc_status(pid)

        async def main() -> dict:
            t0 = time.monotonic()
            conns = await hold_clients(sidecar.port, CLIENTS)
            connect_s = time.monotonic() - t0
            await asyncio.sleep(0.5)
            held = proc_status(pid)
            # all of them, connected and idle, are the sidecar's clients
            with RawClient(sidecar.port) as c:
                c.call([b"AUTH", UPSTREAM_PASSWORD.encode()])
                listed = c.call([b"CLIENT", b"LIST"])[0].count(b"id=")
            # then every one of them sends a command at once: each gets its own reply, through the pool only
            t1 = time.monotonic()
            for i, (_, writer) in enumerate(conns):
                writer.write(b"*2\r\n$4\r\nINCR\r\n$9\r\nscale:ctr\r\n*2\r\n$4\r\nECHO\r\n$%d\r\n%d\r\n"
                             % (len(str(i)), i))
            values = []
            for i, (reader, _) in enumerate(conns):
                head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 60)
                echo = await asyncio.wait_for(reader.readuntil(b"\r\n"), 60) + \
                    await asyncio.wait_for(reader.readuntil(b"\r\n"), 60)
                assert head[:1] == b":" and echo == b"$%d\r\n%d\r\n" % (len(str(i)), i), (i, head, echo)
                values.append(int(head[1:-2]))
            burst_s = time.monotonic() - t1
            upstream_conns = sidecar_connections(upstream)[others:]
            busy = proc_status(pid)
            for _, writer in conns:
                writer.close()
            return {"connect_s": connect_s, "held": held, "listed": listed, "values": values, "burst_s": burst_s,
                    "upstream_conns": len(upstream_conns), "busy": busy}

        import uvloop

        result = uvloop.run(main())
        deadline = time.monotonic() + 30
        while True:  # they all go away again
            with RawClient(sidecar.port) as c:
                c.call([b"AUTH", UPSTREAM_PASSWORD.encode()])
                remaining = c.call([b"CLIENT", b"LIST"])[0].count(b"id=") - 1
            if remaining == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        after = proc_status(pid)

        async def again() -> None:  # a second round: a per-client leak would show as growth from here
            conns = await hold_clients(sidecar.port, CLIENTS)
            for _, writer in conns:
                writer.close()
            await asyncio.sleep(1.0)

        uvloop.run(again())
        second = proc_status(pid)
    finally:
        sidecar.stop()
    per_client = (result["held"]["VmRSS"] - base["VmRSS"]) / CLIENTS
    figures = {
        "clients": CLIENTS, "connect_and_auth_s": round(result["connect_s"], 2),
        "rss_before_mb": round(base["VmRSS"] / 2**20, 1), "rss_10k_idle_mb": round(result["held"]["VmRSS"] / 2**20, 1),
        "rss_per_idle_client_kb": round(per_client / 1024, 2),
        "rss_after_burst_mb": round(result["busy"]["VmRSS"] / 2**20, 1),
        "peak_rss_mb": round(max(after["VmHWM"], result["busy"]["VmHWM"]) / 2**20, 1),
        "rss_after_all_left_mb": round(after["VmRSS"] / 2**20, 1),
        "rss_after_second_10k_round_mb": round(second["VmRSS"] / 2**20, 1),
        "burst_10k_commands_s": round(result["burst_s"], 2), "upstream_connections": result["upstream_conns"],
        "sidecar_open_file_limit": hard,
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "reliability_scale.json").write_text(json.dumps(figures, indent=2))
    print("10k clients:", figures)
    assert result["listed"] == CLIENTS + 1
    assert sorted(result["values"]) == list(range(1, CLIENTS + 1))  # each INCR ran once, each reply went to its client
    assert result["upstream_conns"] <= POOL + 2, result["upstream_conns"]  # the pool (and one idle lease)
    assert remaining == 0
    # no per-client leak: 10,000 more clients coming and going leave the memory where the first 10,000 left it
    assert second["VmRSS"] - after["VmRSS"] < CLIENTS * 512, (after["VmRSS"], second["VmRSS"])


def test_a_max_clients_beyond_the_open_file_limit_is_warned_about(upstream):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard open-file limit here")
    cfg = sidecar_config(upstream, limits={"max_clients": hard + 1000}, log={"level": "info"})
    with SidecarProcess(config=cfg) as sidecar:
        time.sleep(0.2)
        log = sidecar.log_text()
    assert f"limits.max_clients is {hard + 1000} but this process may open only {hard} files" in log, log[-2000:]
