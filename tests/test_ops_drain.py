"""SIGTERM under load: every command the sidecar read is answered, transactions finish, subscribers close cleanly.

Each load client INCRs a key of its own and remembers the last value it was told. After the sidecar exits, the
upstream's value must equal that: one more would be a command executed whose reply was lost (a failed in-flight
command), one less a reply for a command never executed. A client whose next command the sidecar never read sees
its connection closed, which is what a drain is.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
import redis

from conftest import UPSTREAM_PASSWORD, sidecar_config
from proxy.wire.resp import encode_command
from wire import RawClient

AUTH = [b"AUTH", UPSTREAM_PASSWORD.encode()]
# INCR, then keep the upstream busy for a millisecond: a client pipelining these always has replies pending
SLOW_INCR = b"""local v = redis.call('INCR', KEYS[1]) local t0 = redis.call('TIME')
repeat local t = redis.call('TIME') until (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) >= 1000 return v"""


class Loader(threading.Thread):
    """One client connection INCRing its own key, one command, a pipeline or a transaction at a time."""

    def __init__(self, port: int, key: str, mode: str) -> None:
        super().__init__(daemon=True)
        self.port, self.key, self.mode = port, key.encode(), mode
        self.last = 0  # the last value a reply told this client
        self.errors: list[bytes] = []
        self.rounds = 0
        self.stop = False

    def run(self) -> None:
        incr = [b"INCR", self.key]
        try:
            with RawClient(self.port) as c:
                assert c.call(AUTH) == [b"+OK\r\n"]
                while not self.stop:
                    if self.mode == "single":
                        replies = c.call(incr)
                    elif self.mode == "stream":  # a writer keeps commands in flight at every moment
                        self._stream(c, encode_command(incr), 500, 20)
                        return
                    elif self.mode == "upstream-bound":  # the same with slow commands: the sidecar is never idle
                        self._stream(c, encode_command([b"EVAL", SLOW_INCR, b"1", self.key]), 50, 4)
                        return
                    elif self.mode == "pipeline":
                        c.send(encode_command(incr) * 20)
                        for _ in range(20):  # noted one by one: the drain may close us between two of them
                            self._note(c.read_reply())
                        self.rounds += 1
                        continue
                    else:  # transaction, sent in three writes so drains can find it open
                        assert c.call([b"MULTI"]) == [b"+OK\r\n"]
                        assert c.call(incr) == [b"+QUEUED\r\n"]
                        replies = c.call([b"EXEC"])
                        assert replies[0].startswith(b"*1\r\n:"), replies
                        replies = [replies[0][4:]]
                    for reply in replies:
                        self._note(reply)
                    self.rounds += 1
        except (ConnectionError, OSError):
            pass  # the drain closed us between commands

    def _stream(self, c: RawClient, command: bytes, batch: int, batches: int) -> None:
        sent = threading.Semaphore(batches)  # at most this many batches unanswered

        def write() -> None:
            data = command * batch
            try:
                while not self.stop:
                    if sent.acquire(timeout=0.5):
                        c.send(data)
            except OSError:
                pass

        threading.Thread(target=write, daemon=True).start()
        while True:
            for _ in range(batch):
                self._note(c.read_reply())
            sent.release()
            self.rounds += 1

    def _note(self, reply: bytes) -> None:
        if reply.startswith(b":"):
            self.last = int(reply[1:])
        else:
            self.errors.append(reply)


def test_sigterm_under_load_answers_every_command_it_read(upstream, make_sidecar):
    direct = upstream.client()
    keys = [f"drain:{i}" for i in range(15)]
    direct.delete(*keys, "drain:list")
    sidecar = make_sidecar(sidecar_config(upstream, shutdown_timeout=5, log={"level": "info", "format": "json"}))
    modes = ["single"] * 6 + ["pipeline"] * 3 + ["transaction"] * 3 + ["stream"] * 2 + ["upstream-bound"]
    loaders = [Loader(sidecar.port, key, mode) for key, mode in zip(keys, modes)]
    for t in loaders:
        t.start()

    deadline = time.monotonic() + 30
    while min(t.rounds for t in loaders) < 3:  # every client is into its load
        assert time.monotonic() < deadline, "load did not start"
        time.sleep(0.01)
    # in flight at the signal: a blocking pop, an open transaction, a subscriber with messages queued
    blocked = RawClient(sidecar.port)
    blocked.call(AUTH)
    blocked.send(encode_command([b"BLPOP", b"drain:list", b"10"]))
    open_tx = RawClient(sidecar.port)
    assert open_tx.call(AUTH, [b"MULTI"], [b"INCR", b"drain:tx"]) == [b"+OK\r\n", b"+OK\r\n", b"+QUEUED\r\n"]
    sub = redis.Redis(host="127.0.0.1", port=sidecar.port, password=UPSTREAM_PASSWORD).pubsub()
    sub.subscribe("drain:chan")
    assert sub.get_message(timeout=5)["type"] == "subscribe"

    direct.publish("drain:chan", "before-sigterm")
    assert sub.get_message(timeout=5)["data"] == b"before-sigterm"
    sidecar.signal(signal.SIGTERM)
    time.sleep(0.3)  # the drain is under way; the busy clients are still being served
    direct.rpush("drain:list", "late")
    assert blocked.read_reply() == b"*2\r\n$10\r\ndrain:list\r\n$4\r\nlate\r\n"
    assert open_tx.call([b"EXEC"])[0].startswith(b"*1\r\n:")
    assert sidecar.proc.wait(20) == 0

    for t in loaders:
        t.stop = True
        t.join(10)
    assert all(not t.errors for t in loaders), [t.errors for t in loaders]
    for t in loaders:
        assert int(direct.get(t.key) or 0) == t.last, f"{t.mode} client {t.key}: a command ran but its reply was lost"
    with pytest.raises(redis.ConnectionError):  # the subscriber was closed, at a frame boundary
        sub.get_message(timeout=5)
    assert '"msg": "stopped"' in sidecar.log_text()
    blocked.close()
    open_tx.close()


def test_second_signal_exits_at_once(upstream, make_sidecar):
    sidecar = make_sidecar(sidecar_config(upstream, shutdown_timeout=60))
    with RawClient(sidecar.port) as c:
        c.call(AUTH)
        c.send(encode_command([b"BLPOP", b"drain:never", b"0"]))  # keeps the drain waiting for the whole timeout
        time.sleep(0.2)
        sidecar.signal(signal.SIGTERM)
        time.sleep(0.2)
        assert sidecar.proc.poll() is None  # still draining
        sidecar.signal(signal.SIGTERM)
        assert sidecar.proc.wait(10) == 1
    assert "second signal" in sidecar.log_text()
