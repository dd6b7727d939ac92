"""Regression tests, issues 11.7, 11.12, 11.8 and 11.3: control commands reach a busy server out of band, PING does
not hide a busy or lost upstream, a slow command or an oversize argument costs only its own client, the pub/sub hub
does not retry a rejected login forever, and WAIT counts only replicas that acknowledged the client's writes."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from conftest import UPSTREAM_PASSWORD, sidecar_config, wait_until
from harness.servers import EmbeddedServer
from proxy.wire.resp import encode_command
from regress_support import AUTH, OK, call, direct, gone, proxied, read, unique
from wire import RawClient

BUSY_LOOP = b"while true do end"
BUSY_LIBRARY = b"#!lua name=busylib\nredis.register_function('busy', function(keys, args) while true do end end)"
SLOW_2S = b"""local t = redis.call('TIME')
local stop = tonumber(t[1]) * 1000000 + tonumber(t[2]) + 2000000
repeat local n = redis.call('TIME') until tonumber(n[1]) * 1000000 + tonumber(n[2]) >= stop
return 1"""


def busy(server) -> bytes | None:
    """The -BUSY error a direct PING gets while a script runs, else None."""
    with direct(server, timeout=5) as d:
        reply = call(d, [b"PING"])[0]
    return reply if reply.startswith(b"-BUSY") else None


def kill_scripts(server) -> None:
    with direct(server, timeout=5) as d:
        call(d, [b"SCRIPT", b"KILL"], [b"FUNCTION", b"KILL"])


def stalled(server) -> bool:
    """True while the server answers nobody (a long script below the BUSY threshold)."""
    try:
        with RawClient(server.port, timeout=0.3) as c:
            c.call([b"AUTH", server.password.encode()], [b"PING"])
        return False
    except TimeoutError:
        return True


def run_killed(server, port: int, start: list[bytes], kill: list[bytes]) -> tuple[bytes, bytes]:
    """Client A starts a busy script, client B kills it once the server is BUSY: (B's reply, A's reply). Both
    connect to ``port``: the server itself, or the sidecar."""
    a, b = RawClient(port, timeout=10), RawClient(port, timeout=5)
    try:
        assert a.call(AUTH) == b.call(AUTH) == [OK]
        a.send(encode_command(start))
        wait_until(lambda: busy(server), "the script never made the server BUSY")
        killed = call(b, kill, what=f"{kill[0].decode()} KILL while the script runs")[0]
        return killed, read(a, "the killed script's reply")[0]
    finally:
        kill_scripts(server)
        a.close()
        b.close()


@pytest.fixture
def busy_upstream(own_upstream):
    """own_upstream with scripts reported BUSY (and killable) after 100 ms."""
    own_upstream.client().config_set("busy-reply-threshold", 100)
    return own_upstream


# -- 11.7: SCRIPT KILL and FUNCTION KILL out of band --------------------------------------------------------------------

@pytest.mark.parametrize("pool_size", [1, 4])
@pytest.mark.parametrize("kind", ["script", "function"])
def test_script_and_function_kill_reach_a_busy_server(busy_upstream, make_sidecar, kind, pool_size):
    """issue 11.7: client A runs a busy EVAL (or FCALL of a busy function); client B sends SCRIPT KILL (FUNCTION
    KILL) through the sidecar: +OK, and A gets the script-killed error, the same bytes as direct."""
    server = busy_upstream
    if kind == "function":
        server.client().execute_command("FUNCTION", "LOAD", "REPLACE", BUSY_LIBRARY)
    start = [b"EVAL", BUSY_LOOP, b"0"] if kind == "script" else [b"FCALL", b"busy", b"0"]
    kill = [b"SCRIPT", b"KILL"] if kind == "script" else [b"FUNCTION", b"KILL"]
    expected = run_killed(server, server.port, start, kill)
    assert expected[0] == OK and expected[1].startswith(b"-")
    sidecar = make_sidecar(sidecar_config(server, pool={"size": pool_size}))
    assert run_killed(server, sidecar.port, start, kill) == expected


# -- 11.12: PING while the upstream cannot answer ---------------------------------------------------------------------

def test_ping_while_the_upstream_is_busy_gets_the_busy_error(busy_upstream, make_sidecar):
    """issue 11.12: while the upstream is BUSY in a script, PING through the sidecar returns the same -BUSY bytes
    as a direct PING (for a client that was already connected and for a new one)."""
    server = busy_upstream
    sidecar = make_sidecar(sidecar_config(server))
    with proxied(sidecar) as runner, proxied(sidecar, timeout=5) as before:
        assert call(before, [b"PING"]) == [b"+PONG\r\n"]
        runner.send(encode_command([b"EVAL", BUSY_LOOP, b"0"]))
        try:
            expected = wait_until(lambda: busy(server), "the script never made the server BUSY")
            assert call(before, [b"PING"], what="PING while BUSY") == [expected]
            with proxied(sidecar, timeout=5) as new:
                assert call(new, [b"PING"], what="a new client's PING while BUSY") == [expected]
        finally:
            kill_scripts(server)


def test_ping_with_the_upstream_down_gets_an_error(own_upstream, make_sidecar):
    """issue 11.12: with the upstream killed, PING through the sidecar gets an -ERR, not PONG."""
    sidecar = make_sidecar(sidecar_config(own_upstream, upstream={"url": own_upstream.url(), "connect_timeout": 1}))
    with proxied(sidecar, timeout=5) as before:
        assert call(before, [b"PING"], [b"GET", b"k"]) == [b"+PONG\r\n", b"$-1\r\n"]
        own_upstream.kill()

        def ping_fails() -> bool:
            with proxied(sidecar, timeout=5) as c:
                return call(c, [b"PING"])[0].startswith(b"-ERR")

        wait_until(ping_fails, "a new client's PING still says PONG with the upstream down", timeout=5)
        assert call(before, [b"PING"])[0].startswith(b"-ERR")


# -- 11.8: a slow command, an oversize argument, a rejected hub login --------------------------------------------------

def test_a_slow_command_past_reply_timeout_fails_nobody(own_upstream, make_sidecar):
    """issue 11.8: upstream.reply_timeout 1; client A runs a 2 s EVAL through the sidecar while clients B send
    GETs at the same time: every GET is answered (late), and A gets its reply (:1), as direct."""
    key = unique("ctl:slow").encode()
    own_upstream.client().set(key, "v")
    sidecar = make_sidecar(sidecar_config(own_upstream, upstream={"url": own_upstream.url(), "reply_timeout": 1}))
    with proxied(sidecar) as a:
        others = [proxied(sidecar) for _ in range(3)]
        try:
            a.send(encode_command([b"EVAL", SLOW_2S, b"0"]))
            wait_until(lambda: stalled(own_upstream), "the slow EVAL never started", timeout=1.5)
            for b in others:
                b.send(encode_command([b"GET", key]) * 20)
            assert read(a, "the slow EVAL") == [b":1\r\n"]
            for b in others:
                assert read(b, "GETs sent during the slow EVAL", 20) == [b"$1\r\nv\r\n"] * 20
        finally:
            for b in others:
                b.close()


def send_anyway(c, data: bytes) -> threading.Thread:
    """Send ``data`` from a thread while the caller reads: the server may answer and close (even reset) mid-way."""
    def send() -> None:
        try:
            c.sock.sendall(data)
        except OSError:
            pass

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_an_argument_over_the_upstreams_bulk_limit_costs_only_its_client(own_upstream, make_sidecar):
    """issue 11.8: with `proto-max-bulk-len 1mb` upstream, a 2 MB SET through the sidecar gets Redis's
    `-ERR Protocol error: invalid bulk length` (as direct) and that client is closed; other clients pipelining on
    the same shared connection at that moment get every reply."""
    own_upstream.client().config_set("proto-max-bulk-len", "1mb")
    key = unique("ctl:bulk").encode()
    own_upstream.client().set(key, "v")
    big = encode_command([b"SET", key + b":big", b"x" * (2 * 1024 * 1024)])
    with direct(own_upstream) as d:
        sending = send_anyway(d, big)
        expected = read(d, "direct 2 MB SET")
        assert gone(d, wait=5)
        sending.join(10)
    assert expected == [b"-ERR Protocol error: invalid bulk length\r\n"]
    sidecar = make_sidecar(sidecar_config(own_upstream, pool={"size": 1}))
    others = [proxied(sidecar) for _ in range(3)]
    rounds, problems, stop = [0] * len(others), [], threading.Event()

    def traffic(i: int) -> None:  # pipelines of GETs, back to back, on the one shared connection
        try:
            while not stop.is_set():
                replies = others[i].call(*[[b"GET", key]] * 50)
                problems.extend(r for r in replies if r != b"$1\r\nv\r\n")
                rounds[i] += 1
        except OSError as exc:
            problems.append(repr(exc))

    threads = [threading.Thread(target=traffic, args=(i,), daemon=True) for i in range(len(others))]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: min(rounds) >= 2 or problems, "the other clients' traffic never got going")
        with proxied(sidecar) as bad:
            sending = send_anyway(bad, big)
            assert read(bad, "the 2 MB SET") == expected
            done = list(rounds)
            wait_until(lambda: all(r >= d + 3 for r, d in zip(rounds, done)) or problems,
                       "the other clients' traffic stopped")
            assert not problems, f"other clients got {problems[:2]}"
            assert gone(bad, wait=5), "the client that sent the oversize argument was not closed"
            sending.join(10)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        for b in others:
            b.close()


def test_hub_rejected_by_the_upstream_does_not_retry_forever_and_tells_subscribers(own_upstream, make_sidecar):
    """issue 11.8: subscribers on the sidecar; the upstream's password changes and the hub's connection is killed:
    the sidecar does not reconnect every 100 ms (upstream total_connections_received over 3 s stays < 15) and the
    subscribers are told (an error frame or a disconnect), not left subscribed to nothing."""
    sidecar = make_sidecar(sidecar_config(own_upstream))
    channel = unique("ctl:hub").encode()
    subscribers = [proxied(sidecar, timeout=5) for _ in range(3)]
    try:
        for s in subscribers:
            assert call(s, [b"SUBSCRIBE", channel])[0].startswith(b"*3\r\n$9\r\nsubscribe")
        with direct(own_upstream) as d:  # stays authenticated after the password changes
            assert call(d, [b"CONFIG", b"SET", b"requirepass", unique("rotated").encode()]) == [OK]

            told: dict[int, bool] = {}

            def was_told(i: int, s) -> bool:
                if not told.get(i):
                    try:
                        s.sock.settimeout(0.1)
                        told[i] = s.read_reply().startswith(b"-")
                    except TimeoutError:
                        pass
                    except OSError:  # closed or reset by the sidecar
                        told[i] = True
                return told.get(i, False)

            def received() -> int:
                stats = call(d, [b"INFO", b"stats"])[0]
                return int(stats.split(b"total_connections_received:")[1].split(b"\r")[0])

            before, after = received(), None
            killed_at = time.monotonic()
            assert call(d, [b"CLIENT", b"KILL", b"TYPE", b"pubsub"]) == [b":1\r\n"]
            # poll (bounded) until every subscriber was told, counting connections over the first 3 s
            while time.monotonic() < killed_at + 10:
                if after is None and time.monotonic() >= killed_at + 3:
                    after = received()
                if all([was_told(i, s) for i, s in enumerate(subscribers)]) and after is not None:
                    break
                time.sleep(0.05)
        assert after is not None and after - before < 15, f"{after - before} upstream connections in 3 s"
        assert all(told.get(i) for i in range(len(subscribers))), \
            "the subscribers were never told their subscription is gone"
    finally:
        for s in subscribers:
            s.close()


# -- 11.3: WAIT ---------------------------------------------------------------------------------------------------------

@pytest.fixture
def replica(own_upstream):
    """A replica of own_upstream, online; resumed (SIGCONT) and stopped at teardown."""
    with EmbeddedServer(password=None, extra_config=[f"replicaof 127.0.0.1 {own_upstream.port}",
                                                     f"masterauth {UPSTREAM_PASSWORD}"]) as server:
        wait_until(lambda: own_upstream.client().info("replication").get("slave0", {}).get("state") == "online",
                   "the replica never came online")
        yield server
        server.proc.send_signal(signal.SIGCONT)


def replica_caught_up(master) -> bool:
    info = master.client().info("replication")
    return info.get("slave0", {}).get("offset") == info["master_repl_offset"]


def test_wait_counts_only_replicas_that_acknowledged_the_clients_writes(own_upstream, replica, make_sidecar):
    """issue 11.3: with the replica stopped (SIGSTOP), `SET k v; WAIT 1 500` gives :0 after ~500 ms through the
    sidecar, as direct (not :1 at once, from a leased connection whose own last write the replica had seen); with
    the replica running again, `SET k v; WAIT 1 2000` gives :1."""
    sidecar = make_sidecar(sidecar_config(own_upstream))
    key = unique("ctl:wait").encode()
    with direct(own_upstream) as d, proxied(sidecar) as p:
        assert call(p, [b"SET", key, b"warm"]) == [OK]  # the sidecar's connections are up ...
        wait_until(lambda: replica_caught_up(own_upstream), "the replica never acknowledged everything")  # ... seen
        replica.proc.send_signal(signal.SIGSTOP)
        for where, c in (("direct", d), ("proxied", p)):
            started = time.monotonic()
            replies = call(c, [b"SET", key, where.encode()], [b"WAIT", b"1", b"500"])
            waited = time.monotonic() - started
            assert replies == [OK, b":0\r\n"], f"{where}, replica stopped: {replies} after {waited:.3f}s"
            assert waited >= 0.4, f"{where}: WAIT returned after {waited:.3f}s"
        replica.proc.send_signal(signal.SIGCONT)
        for where, c in (("direct", d), ("proxied", p)):
            replies = call(c, [b"SET", key, b"v"], [b"WAIT", b"1", b"5000"])
            assert replies == [OK, b":1\r\n"], f"{where}, replica running: {replies}"
    own_upstream.client().delete(key)
