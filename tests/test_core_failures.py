"""Failures are clear and cost only the client or command concerned: bad input, lost upstream, slow upstream, drain."""

from __future__ import annotations

import signal
import socket
import time

import pytest
import redis

from conftest import UPSTREAM_PASSWORD, sidecar_config, stall_upstream
from harness.servers import SidecarProcess
from wire import RawClient

AUTH = [b"AUTH", UPSTREAM_PASSWORD.encode()]


@pytest.mark.parametrize("garbage,message", [
    (b"*1\r\n+PING\r\n", b"-ERR Protocol error: expected '$', got '+'\r\n"),
    (b"*2\r\n$3\r\nGET\r\n$-9\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    (b'SET k "open\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n"),
])
def test_malformed_input_closes_only_that_client(upstream, sidecar, garbage, message):
    with RawClient(sidecar.port) as good, RawClient(sidecar.port) as bad:
        good.call(AUTH)
        good.send(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n" * 50)  # in flight while the bad client misbehaves
        bad.call(AUTH)
        bad.send(b"PING\r\n" + garbage)
        assert bad.read_reply() == b"+PONG\r\n"
        error = bad.read_reply()
        assert error == message
        assert bad.closed_by_peer()
        assert all(good.read_reply()[:1] in b"$" for _ in range(50))
        assert good.call([b"PING"]) == [b"+PONG\r\n"]


def test_oversized_frames_are_refused_before_they_are_buffered(upstream):
    with SidecarProcess(config=sidecar_config(upstream, limits={"proto_max_bulk_len": 1000})) as sidecar:
        with RawClient(sidecar.port) as c:
            c.call(AUTH)
            assert c.call([b"SET", b"small", b"x" * 1000]) == [b"+OK\r\n"]
            c.send(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$1001\r\n")  # the header alone is refused
            assert c.read_reply() == b"-ERR Protocol error: invalid bulk length\r\n"
            assert c.closed_by_peer()
        with RawClient(sidecar.port) as pre:  # before AUTH, Redis's tighter limits apply
            pre.send(b"*2\r\n$4\r\nAUTH\r\n$20000\r\n")
            assert pre.read_reply() == b"-ERR Protocol error: invalid bulk length\r\n"


def test_lost_upstream_fails_in_flight_commands_then_recovers(own_upstream):
    cfg = sidecar_config(own_upstream, upstream={"url": own_upstream.url(), "connect_timeout": 1.0})
    with SidecarProcess(config=cfg) as sidecar:
        client = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, socket_timeout=10)
        assert client.set("before", 1)
        stall_upstream(own_upstream, 5)
        with RawClient(sidecar.port) as c:
            c.call(AUTH)
            c.send(b"*2\r\n$4\r\nINCR\r\n$7\r\ncounter\r\n")  # waits behind the stalled server
            time.sleep(0.3)
            own_upstream.kill()
            reply = c.read_reply()
        assert reply.startswith(b"-ERR upstream connection lost"), reply
        # while it is down: a clear error within the connect timeout, never a hang
        for _ in range(3):
            with pytest.raises(redis.exceptions.ResponseError, match="upstream"):
                client.get("before")
        own_upstream.start()  # same port: the sidecar reconnects by itself
        for _ in range(100):
            try:
                assert client.set("after", 1)
                break
            except redis.exceptions.ResponseError:
                time.sleep(0.1)
        else:
            pytest.fail("sidecar did not reconnect after the upstream came back")
        assert own_upstream.client().get("counter") is None  # the lost INCR was not replayed
        assert "upstream connection lost" in sidecar.log_text()


def test_slow_upstream_gets_a_timeout_error_not_a_hang(own_upstream):
    """A server that stops answering altogether (a fresh connection's PING gets nothing either): commands waiting
    past upstream.reply_timeout get a clear error, long before the server comes back."""
    cfg = sidecar_config(own_upstream, upstream={"url": own_upstream.url(), "reply_timeout": 1.0,
                                                 "connect_timeout": 0.5})
    with SidecarProcess(config=cfg) as sidecar:
        client = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, socket_timeout=10)
        assert client.ping()
        client.get("warm")
        stalled = stall_upstream(own_upstream, 5)
        started = time.monotonic()
        with pytest.raises(redis.exceptions.ResponseError, match=r"upstream.reply_timeout \(1s\)"):
            client.get("k")
        assert time.monotonic() - started < 4, "the error came only when the server answered again"
        stalled.join(10)
        assert client.set("k", "after the stall")


def test_max_clients(upstream):
    with SidecarProcess(config=sidecar_config(upstream, limits={"max_clients": 2})) as sidecar:
        with RawClient(sidecar.port) as a, RawClient(sidecar.port) as b, RawClient(sidecar.port) as c:
            assert a.call([b"PING"]) == [b"-NOAUTH Authentication required.\r\n"]
            assert b.call([b"PING"]) == [b"-NOAUTH Authentication required.\r\n"]
            assert c.read_reply() == b"-ERR max number of clients reached\r\n"


def test_client_that_does_not_read_is_cut_off_by_the_output_limit(upstream):
    cfg = sidecar_config(upstream, limits={"client_output_buffer": 2 * 1024 * 1024})
    upstream.client().set("big", b"x" * 512 * 1024)
    with SidecarProcess(config=cfg) as sidecar:
        with RawClient(sidecar.port) as slow, RawClient(sidecar.port) as fine:
            slow.call(AUTH)
            slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.send(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 200)  # 100 MB of replies it never reads
            fine.call(AUTH)
            for _ in range(20):
                assert fine.call([b"GET", b"big"])[0].startswith(b"$524288\r\n")
            deadline = time.monotonic() + 20
            while "output buffer over limits.client_output_buffer" not in sidecar.log_text():
                assert time.monotonic() < deadline, "slow client was not disconnected"
                time.sleep(0.1)


def test_sigterm_finishes_in_flight_commands_then_exits(own_upstream):
    with SidecarProcess(config=sidecar_config(own_upstream, upstream={"url": own_upstream.url()})) as sidecar:
        with RawClient(sidecar.port) as c:
            c.call(AUTH, [b"SET", b"x", b"1"])
            stall_upstream(own_upstream, 1.5)
            c.send(b"*2\r\n$4\r\nINCR\r\n$1\r\nx\r\n")  # in flight when the signal arrives
            time.sleep(0.2)
            sidecar.signal(signal.SIGTERM)
            assert c.read_reply() == b":2\r\n"
            assert c.closed_by_peer()
        assert sidecar.proc.wait(15) == 0
        assert "draining" in sidecar.log_text()
