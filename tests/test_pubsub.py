"""Pub/Sub through the shared hub: one upstream subscriber connection serves every local subscriber."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import redis

from benchmarks.wan import WanRelayProcess
from conftest import UPSTREAM_PASSWORD, sidecar_config, wait_until
from harness.servers import SidecarProcess
from wire import RawClient

AUTH = [b"AUTH", UPSTREAM_PASSWORD.encode()]


def pubsub_connections(upstream) -> int:
    """Upstream connections in subscribed mode (what the article's dashboard would count)."""
    return sum(1 for c in upstream.client().client_list() if "P" in c["flags"])


def test_500_subscribers_on_20_channels_use_one_upstream_connection(upstream):
    async def main(port: int) -> list[bytes]:
        conns = []
        for i in range(500):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"AUTH %s\r\nSUBSCRIBE news:%d\r\n" % (UPSTREAM_PASSWORD.encode(), i % 20))
            conns.append((reader, writer))
        expected_confirm = [b"+OK\r\n*3\r\n$9\r\nsubscribe\r\n$%d\r\nnews:%d\r\n:1\r\n" % (len(b"news:%d" % (i % 20)),
                                                                                          i % 20) for i in range(500)]
        for (reader, _), expected in zip(conns, expected_confirm):
            assert await asyncio.wait_for(reader.readexactly(len(expected)), 10) == expected
        assert pubsub_connections(upstream) == 1
        publisher = redis.Redis(port=port, password=UPSTREAM_PASSWORD)
        for ch in range(20):
            assert publisher.publish(f"news:{ch}", f"headline {ch}") == 25  # as if each subscriber were direct
        got = []
        for i, (reader, writer) in enumerate(conns):
            ch = b"news:%d" % (i % 20)
            payload = b"headline %d" % (i % 20)
            frame = b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(ch), ch, len(payload), payload)
            got.append(await asyncio.wait_for(reader.readexactly(len(frame)), 10) == frame)
            writer.close()
        return got

    with SidecarProcess(config=sidecar_config(upstream)) as sidecar:
        assert all(asyncio.run(main(sidecar.port)))


def test_publish_counts_receivers_as_a_direct_connection_would(upstream, sidecar):
    subs = [redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD).pubsub() for _ in range(3)]
    for p in subs:
        p.subscribe("fan")
        assert p.get_message(timeout=2)["type"] == "subscribe"
    subs[0].psubscribe("f?n", "nomatch*")
    subs[0].get_message(timeout=2), subs[0].get_message(timeout=2)
    assert pubsub_connections(upstream) == 1
    with RawClient(upstream.port) as direct:  # one direct subscriber too: the upstream counts it, as it should
        direct.call([b"AUTH", UPSTREAM_PASSWORD.encode()], [b"SUBSCRIBE", b"fan"])
        publisher = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD)
        assert publisher.publish("fan", "to all") == 3 + 1 + 1  # 3 channel + 1 pattern here, 1 direct
        assert upstream.client().publish("fan", "direct view") == 1 + 2  # the hub: channel + pattern, and direct
    for p in subs:
        assert p.get_message(timeout=2)["data"] == b"to all"
    subs[0].punsubscribe()
    for p in subs:
        p.unsubscribe("fan")
        p.close()
    # the last one left: the hub unsubscribes upstream
    wait_until(lambda: upstream.client().pubsub_numsub("fan") == [(b"fan", 0)], "the hub kept 'fan' subscribed")
    assert publisher.publish("fan", "nobody") == 0


def test_psubscribe_patterns_and_subscribed_mode_rules(upstream, sidecar):
    with RawClient(sidecar.port) as c:
        assert c.call(AUTH, [b"PSUBSCRIBE", b"user:*"]) == [
            b"+OK\r\n", b"*3\r\n$10\r\npsubscribe\r\n$6\r\nuser:*\r\n:1\r\n"]
        redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD).publish("user:42", "hi")
        assert c.read_reply() == b"*4\r\n$8\r\npmessage\r\n$6\r\nuser:*\r\n$7\r\nuser:42\r\n$2\r\nhi\r\n"
        assert c.call([b"GET", b"x"]) == [
            b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed "
            b"in this context\r\n"]
        assert c.call([b"PING"]) == [b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"]
        assert c.call([b"PUNSUBSCRIBE"]) == [b"*3\r\n$12\r\npunsubscribe\r\n$6\r\nuser:*\r\n:0\r\n"]
        assert c.call([b"GET", b"x"]) == [b"$-1\r\n"]  # no longer subscribed: normal commands again
        assert c.call([b"UNSUBSCRIBE"]) == [b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"]


def test_resp3_push_frames_interleave_with_normal_commands(upstream, sidecar):
    with RawClient(sidecar.port) as c:
        c.call([b"HELLO", b"3", b"AUTH", b"default", UPSTREAM_PASSWORD.encode()])
        assert c.call([b"SUBSCRIBE", b"r3"], [b"SET", b"r3k", b"v"]) == [
            b">3\r\n$9\r\nsubscribe\r\n$2\r\nr3\r\n:1\r\n", b"+OK\r\n"]
        upstream.client().publish("r3", "pushed")
        assert c.read_reply() == b">3\r\n$7\r\nmessage\r\n$2\r\nr3\r\n$6\r\npushed\r\n"
        assert c.call([b"GET", b"r3k"], [b"ZSCORE", b"nokey", b"m"]) == [b"$1\r\nv\r\n", b"_\r\n"]
        # the same bytes a direct RESP3 subscriber gets
        with RawClient(upstream.port) as direct:
            direct.call([b"HELLO", b"3", b"AUTH", b"default", UPSTREAM_PASSWORD.encode()])
            direct.call([b"SUBSCRIBE", b"r3"])
            upstream.client().publish("r3", "both")
            assert direct.read_reply() == c.read_reply()


def test_slow_subscriber_is_disconnected_and_the_others_get_everything(upstream):
    cfg = sidecar_config(upstream, limits={"pubsub_output_buffer": 256 * 1024})
    with SidecarProcess(config=cfg) as sidecar:
        with RawClient(sidecar.port) as slow, RawClient(sidecar.port) as fast:
            slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.call(AUTH, [b"SUBSCRIBE", b"firehose"])
            fast.call(AUTH, [b"SUBSCRIBE", b"firehose"])
            publisher = upstream.client()
            payload = b"x" * 10_000
            # The fast one reads each message as it comes; the slow one reads nothing. Kernel socket buffers absorb
            # a little first, then the sidecar's own buffer for the slow one grows past the limit.
            for i in range(4000):
                publisher.publish("firehose", payload)
                assert fast.read_reply() == b"*3\r\n$7\r\nmessage\r\n$8\r\nfirehose\r\n$10000\r\n" + payload + b"\r\n"
                if i % 50 == 49 and "output buffer over limits.pubsub_output_buffer" in sidecar.log_text():
                    break
            else:
                pytest.fail("the slow subscriber was never disconnected")
            # the slow one is gone from the sidecar's client list (its socket's small receive window would take
            # minutes to drain what the kernel still holds for it); the fast one is still subscribed and served
            with RawClient(sidecar.port) as watcher:
                watcher.call(AUTH)
                wait_until(lambda: watcher.call([b"CLIENT", b"LIST"])[0].count(b"id=") == 2,
                           lambda: f"still connected: {watcher.call([b'CLIENT', b'LIST'])[0]!r}")
            assert fast.call([b"PING"]) == [b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"]


def test_hub_resubscribes_after_losing_its_upstream_connection(upstream, sidecar):
    p = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD).pubsub()
    p.subscribe("survivor")
    assert p.get_message(timeout=2)["type"] == "subscribe"
    upstream.client().client_kill_filter(_type="pubsub")
    wait_until(lambda: upstream.client().pubsub_numsub("survivor") == [(b"survivor", 1)], "hub did not resubscribe")
    upstream.client().publish("survivor", "still here")
    assert p.get_message(timeout=2)["data"] == b"still here"
    p.close()


def test_a_resubscribe_is_confirmed_only_once_the_upstream_has_it_again(upstream, make_sidecar):
    """With the way back instant, a confirmation of an old SUBSCRIBE reaches the sidecar before a later UNSUBSCRIBE
    and SUBSCRIBE of the same channel have reached the upstream: the window a subscriber must not be confirmed in."""
    with WanRelayProcess(upstream.port, delay_ms=300, return_delay_ms=0) as relay:
        sidecar = make_sidecar(sidecar_config(upstream, upstream={
            "url": f"redis://:{UPSTREAM_PASSWORD}@127.0.0.1:{relay.port}/0"}))
        with RawClient(sidecar.port) as other, RawClient(sidecar.port) as client, \
                RawClient(upstream.port) as direct:
            assert other.call([*AUTH], [b"SUBSCRIBE", b"warmup"])[0] == b"+OK\r\n"  # the hub connection is up
            assert client.call([*AUTH]) == [b"+OK\r\n"]
            direct.call([*AUTH])
            # SUBSCRIBE + UNSUBSCRIBE reach the upstream together; the second SUBSCRIBE travels in a later write.
            client.send(b"SUBSCRIBE news\r\nUNSUBSCRIBE news\r\n")
            time.sleep(0.1)
            client.send(b"SUBSCRIBE news\r\n")
            confirmations = [client.read_reply() for _ in range(3)]
            assert confirmations[2] == b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
            # The client has its confirmation: a message published now must reach it, as with a direct connection.
            assert direct.call([b"PUBLISH", b"news", b"after the confirmation"]) == [b":1\r\n"]
            assert client.read_reply() == \
                b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$22\r\nafter the confirmation\r\n"
