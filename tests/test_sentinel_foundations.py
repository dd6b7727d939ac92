"""Sentinel foundations against real sentinels (with and without their own password, Redis and Valkey): the master's
address as the sentinels name it and ROLE confirms it, before and after a SENTINEL FAILOVER, and the real
``+switch-master`` announcement."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from conftest import ACL_PASSWORD, ACL_USER, redis_fetch
from harness.servers import free_port
from proxy.cluster import DiscoveryError, SwitchMaster, parse_switch_master, sentinel_master


def run(coro, timeout: float = 30.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def sentinel_fetch(setup):
    return redis_fetch(password=setup.sentinel_password)


def find_master(setup, **kw):
    return run(sentinel_master(setup.sentinel_addresses, setup.master_name, sentinel_fetch(setup),
                               fetch_node=redis_fetch(), **kw))


@pytest.mark.parametrize("payload,expected", [
    (b"mymaster 127.0.0.1 6380 127.0.0.1 6381", SwitchMaster("mymaster", ("127.0.0.1", 6380), ("127.0.0.1", 6381))),
    ("orders ::1 7000 10.0.0.2 7001", SwitchMaster("orders", ("::1", 7000), ("10.0.0.2", 7001))),
    (b"mymaster 127.0.0.1 6380", None),
    (b"mymaster a b c d", None),
])
def test_parse_switch_master(payload, expected):
    assert parse_switch_master(payload) == expected


def test_the_master_is_what_the_sentinels_name_and_role_confirms(sentinel_setup):
    master = sentinel_setup.master_address()
    assert find_master(sentinel_setup) == master
    as_acl_user = run(sentinel_master(sentinel_setup.sentinel_addresses, sentinel_setup.master_name,
                                      sentinel_fetch(sentinel_setup),
                                      fetch_node=redis_fetch(username=ACL_USER, password=ACL_PASSWORD, protocol=3)))
    assert as_acl_user == master


def test_dead_sentinels_are_skipped_and_an_unknown_name_is_refused_clearly(sentinel_setup):
    dead = ("127.0.0.1", free_port())
    found = run(sentinel_master([dead, *sentinel_setup.sentinel_addresses], sentinel_setup.master_name,
                                sentinel_fetch(sentinel_setup), fetch_node=redis_fetch(), timeout=1.0))
    assert found == sentinel_setup.master_address()
    with pytest.raises(DiscoveryError, match="does not monitor a master named 'nope'"):
        run(sentinel_master(sentinel_setup.sentinel_addresses, "nope", sentinel_fetch(sentinel_setup)))
    with pytest.raises(DiscoveryError, match=f"no sentinel gave .*sentinel 127.0.0.1:{dead[1]}: .*Connect"):
        run(sentinel_master([dead], sentinel_setup.master_name, sentinel_fetch(sentinel_setup), timeout=1.0))


def test_without_the_sentinel_password_discovery_fails_clearly(sentinel_setup):
    if not sentinel_setup.sentinel_password:
        pytest.skip("these sentinels take no password")
    for fetch in (redis_fetch(password=None), redis_fetch(password="wrong")):
        with pytest.raises(DiscoveryError, match="NOAUTH|WRONGPASS|invalid username-password|Authentication"):
            run(sentinel_master(sentinel_setup.sentinel_addresses, sentinel_setup.master_name, fetch,
                                fetch_node=redis_fetch()))


def test_a_sentinel_naming_a_replica_is_passed_over(sentinel_setup):
    """A sentinel that lags behind a failover names the old master, now a replica: here the first sentinel's answer
    is replaced by the real replica's address, and the real replica's ROLE says so."""
    real = sentinel_fetch(sentinel_setup)
    first = sentinel_setup.sentinel_addresses[0]
    replica = sentinel_setup.replica_address()

    async def lagging(address, args):
        if address == first and args[0] == "SENTINEL":
            return [replica[0].encode(), str(replica[1]).encode()]
        return await real(address, args)

    found = run(sentinel_master(sentinel_setup.sentinel_addresses, sentinel_setup.master_name, lagging,
                                fetch_node=redis_fetch()))
    assert found == sentinel_setup.master_address()
    with pytest.raises(DiscoveryError, match=f"names 127.0.0.1:{replica[1]}, which is a slave"):
        run(sentinel_master([first], sentinel_setup.master_name, lagging, fetch_node=redis_fetch()))


def test_discovery_follows_a_sentinel_failover_and_switch_master_is_parsed(sentinel_setup):
    before = find_master(sentinel_setup)
    host, port = sentinel_setup.sentinel_addresses[1]
    watcher = redis.Redis(host=host, port=port, password=sentinel_setup.sentinel_password, socket_timeout=5)
    pubsub = watcher.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("+switch-master")
    try:
        promoted = sentinel_setup.failover()
        deadline = time.monotonic() + 20
        while (message := pubsub.get_message(timeout=0.2)) is None:
            assert time.monotonic() < deadline, "no +switch-master announcement"
    finally:
        pubsub.close()
        watcher.close()
    assert promoted != before
    assert parse_switch_master(message["data"]) == SwitchMaster(sentinel_setup.master_name, before, promoted)
    deadline = time.monotonic() + 20
    while (found := find_master(sentinel_setup)) != promoted:  # every sentinel already agrees; this is the bound
        assert time.monotonic() < deadline, f"discovery still finds {found}, not {promoted}"
        time.sleep(0.05)
