"""The sidecar behind Sentinel, against real sentinels (Redis with and without a sentinel password, Valkey with one):
commands reach the master the sentinels name; a SENTINEL FAILOVER under load moves the pools to the new master
within seconds, no request hangs and every acknowledged write is on the new master; a reload keeps the master."""

from __future__ import annotations

import signal

import pytest
import redis

from conftest import UPSTREAM_PASSWORD, wait_until
from harness.servers import SidecarProcess
from test_cluster_failover import REQUEST_TIMEOUT, Load, readable

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def sidecar(sentinel_setup):
    upstream = {"url": sentinel_setup.url()}
    if sentinel_setup.sentinel_password:
        upstream["sentinel_password"] = sentinel_setup.sentinel_password
    with SidecarProcess(config={"upstream": upstream, "log": {"level": "info"}}) as proc:
        yield proc


def info(sidecar) -> dict:
    client = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD)
    try:
        return client.info("sidecar")
    finally:
        client.close()


def test_commands_reach_the_master_the_sentinels_name(sidecar, sentinel_setup):
    master = sentinel_setup.master_address()
    client = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, protocol=3)
    assert client.set("sentinel:key", "v") and client.get("sentinel:key") == b"v"
    assert sentinel_setup.server_call(master, "GET", "sentinel:key") == b"v"
    fields = info(sidecar)
    assert (fields["upstream_mode"], fields["upstream_address"]) == ("sentinel", f"{master[0]}:{master[1]}")
    assert fields["sentinel_master_name"] == sentinel_setup.master_name
    client.close()


def test_a_failover_under_load_moves_the_pools_within_seconds(sidecar, sentinel_setup):
    old = sentinel_setup.master_address()
    with Load(sidecar.port, "sentinel") as load:
        new = sentinel_setup.failover()  # SENTINEL FAILOVER: returns once every sentinel names the promoted replica
        wait_until(lambda: info(sidecar)["upstream_address"] == f"{new[0]}:{new[1]}",
                   "the sidecar did not move to the new master", timeout=10)
        before = load.successes()
        wait_until(lambda: load.successes() > before + 100, "writes did not resume on the new master", timeout=10)
    assert new != old
    assert load.wrong == []
    assert max(w.slowest for w in load.workers) < REQUEST_TIMEOUT  # no request hung
    errors = {text.split(":")[0] for _, text in load.failures}
    assert errors <= {"ReadOnlyError", "ConnectionError", "ResponseError"}, errors  # (the instant of promotion)
    assert readable(sidecar.port, load.acked()) == []  # every acknowledged write is on the new master
    assert sentinel_setup.server_call(new, "DBSIZE") >= len(load.acked())
    assert info(sidecar)["sentinel_switches"] >= 1


def test_a_reload_keeps_the_master_in_use(sidecar, sentinel_setup):
    master = sentinel_setup.master_address()
    sidecar.config["pool"] = {"size": 3}
    sidecar.write_config()
    reloads = info(sidecar)["config_reloads"]
    sidecar.signal(signal.SIGHUP)
    wait_until(lambda: info(sidecar)["config_reloads"] > reloads, "the reload did not happen")
    assert info(sidecar)["upstream_address"] == f"{master[0]}:{master[1]}"
    client = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD)
    assert client.set("after-reload", 1) and sentinel_setup.server_call(master, "GET", "after-reload") == b"1"
    client.close()
