"""A cluster changing under load, through the sidecar, with real nodes: a resharding (redis-cli --cluster reshard)
and a manual CLUSTER FAILOVER cost the app no failed and no wrong reply; a primary killed (SIGKILL) costs errors on
its slots for a few seconds, never a hang, and every write it acknowledged after replication caught up is there
afterwards. Order matters: the kill is last, it leaves the cluster without a replica for those slots."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest
import redis

from conftest import UPSTREAM_PASSWORD, wait_until
from harness.cluster import poll
from harness.servers import SidecarProcess
from proxy.cluster import key_slot

pytestmark = pytest.mark.timeout(180)

REQUEST_TIMEOUT = 5.0  # a request through the sidecar never takes longer: nothing hangs


@pytest.fixture(scope="module")
def sidecar(redis_cluster):
    config = {"upstream": {"url": redis_cluster.url()}, "log": {"level": "info"}}
    with SidecarProcess(config=config) as proc:
        yield proc


@dataclass
class Worker:
    """One app thread: SET, GET it back, INCR its counter, and every tenth time an MGET of its last ten keys,
    each reply checked; persistent or connecting per request."""

    port: int
    prefix: str
    index: int
    per_request: bool
    acked: dict[bytes, bytes] = field(default_factory=dict)
    failures: list[tuple[float, str]] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    successes: list[tuple[float, int]] = field(default_factory=list)  # (when, slot) of each acknowledged SET
    slowest: float = 0.0

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=UPSTREAM_PASSWORD, socket_timeout=REQUEST_TIMEOUT,
                           socket_connect_timeout=REQUEST_TIMEOUT)

    def run(self, stop: threading.Event, hold: threading.Event, held: threading.Semaphore) -> None:
        client, counter, i = self.client(), None, 0
        while not stop.is_set():
            if hold.is_set():
                held.release()
                while hold.is_set() and not stop.is_set():
                    time.sleep(0.005)
            key, value = f"{self.prefix}:{self.index}:{i}".encode(), f"{self.index}-{i}".encode()
            began = time.monotonic()
            try:
                if self.per_request:
                    client.close()
                    client = self.client()
                client.set(key, value)
                self.acked[key] = value
                self.successes.append((time.monotonic(), key_slot(key)))
                if client.get(key) != value:
                    self.wrong.append(f"GET {key!r}")
                count = client.incr(f"{self.prefix}:counter:{self.index}")
                if counter is not None and count != counter + 1:
                    self.wrong.append(f"INCR {self.prefix}:counter:{self.index}: {count} after {counter}")
                counter = count
                if i % 10 == 9:
                    keys = [f"{self.prefix}:{self.index}:{j}".encode() for j in range(i - 9, i + 1)]
                    got, expected = client.mget(keys), [self.acked.get(k) for k in keys]
                    if got != expected:
                        self.wrong.append(f"MGET {[(k, g, e) for k, g, e in zip(keys, got, expected) if g != e]}")
            except redis.RedisError as exc:
                self.failures.append((time.monotonic(), f"{type(exc).__name__}: {exc}"))
                counter = None  # an INCR whose outcome is unknown: read the counter afresh
                time.sleep(0.01)  # (an app does not retry in a tight loop either)
            self.slowest = max(self.slowest, time.monotonic() - began)
            i += 1
        client.close()


class Load:
    """Workers running until ``stop()``; ``pause()`` returns once every one of them is between requests."""

    def __init__(self, port: int, prefix: str, workers: int = 4) -> None:
        self.workers = [Worker(port, prefix, i, per_request=i % 2 == 1) for i in range(workers)]
        self._stop, self._hold, self._held = threading.Event(), threading.Event(), threading.Semaphore(0)
        self.threads = [threading.Thread(target=w.run, args=(self._stop, self._hold, self._held), daemon=True)
                        for w in self.workers]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        wait_until(lambda: all(len(w.successes) > 20 for w in self.workers), "the load did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pause(self) -> None:
        self._hold.set()
        for _ in self.workers:
            assert self._held.acquire(timeout=REQUEST_TIMEOUT + 2), "a worker hangs"

    def resume(self) -> None:
        self._hold.clear()

    def stop(self) -> None:
        self._stop.set()
        self._hold.clear()
        for thread in self.threads:
            thread.join(REQUEST_TIMEOUT + 2)
            assert not thread.is_alive(), "a worker hangs"

    @property
    def failures(self) -> list[tuple[float, str]]:
        return [f for w in self.workers for f in w.failures]

    @property
    def wrong(self) -> list[str]:
        return [x for w in self.workers for x in w.wrong]

    def acked(self) -> dict[bytes, bytes]:
        return {k: v for w in self.workers for k, v in w.acked.items()}

    def successes(self) -> int:
        return sum(len(w.successes) for w in self.workers)


def readable(port: int, acked: dict[bytes, bytes]) -> list[bytes]:
    """The acknowledged keys whose value is not what was acknowledged (read through the sidecar, in MGETs)."""
    client = redis.Redis(port=port, password=UPSTREAM_PASSWORD, socket_timeout=REQUEST_TIMEOUT)
    keys = list(acked)
    missing = []
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        missing += [k for k, v in zip(chunk, client.mget(chunk)) if v != acked[k]]
    client.close()
    return missing


def test_a_resharding_under_load_costs_no_reply(sidecar, redis_cluster):
    source, target = redis_cluster.primary_addresses()[:2]
    with Load(sidecar.port, "reshard") as load:
        before = load.successes()
        redis_cluster.reshard(source, target, 300)  # redis-cli --cluster reshard: MIGRATE, then SETSLOT
        wait_until(lambda: load.successes() > before + 200, "the load stalled after the resharding")
    assert load.failures == [] and load.wrong == []
    assert readable(sidecar.port, load.acked()) == []
    info = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD).info("sidecar")
    assert info["cluster_moved"] + info["cluster_ask"] > 0  # the layout did change under the app


def test_a_manual_failover_under_load_costs_no_reply(sidecar, redis_cluster):
    primary = redis_cluster.primary_addresses()[0]
    replica = redis_cluster.replica_of(primary)
    with Load(sidecar.port, "failover") as load:
        before = load.successes()
        redis_cluster.failover(replica)  # CLUSTER FAILOVER: the primary pauses writers until the replica took over
        wait_until(lambda: load.successes() > before + 200, "the load stalled after the failover")
    assert load.failures == [] and load.wrong == []
    assert readable(sidecar.port, load.acked()) == []


def test_a_killed_primary_costs_errors_for_seconds_and_loses_nothing_replicated(sidecar, redis_cluster):
    victim = redis_cluster.primary_addresses()[-1]
    replica = redis_cluster.replica_of(victim)
    victim_slots = {s for v in redis_cluster.view() if v.address == victim for a, b in v.slots
                    for s in range(a, b + 1)}
    with Load(sidecar.port, "kill") as load:
        load.pause()  # every write acknowledged so far must reach the replica before the crash

        def caught_up() -> bool:
            master = redis_cluster.call(victim, "ROLE")
            return redis_cluster.call(replica, "ROLE")[4] == master[1]

        poll(caught_up, 10, "the replica did not catch up")
        redis_cluster.kill(victim)
        killed = time.monotonic()
        load.resume()

        def resumed() -> bool:
            return any(t > killed and slot in victim_slots for w in load.workers for t, slot in w.successes[-50:])

        wait_until(resumed, "writes to the killed primary's slots did not resume", timeout=20)
        resumed_after = max(0.0, min(t for w in load.workers for t, slot in w.successes
                                     if t > killed and slot in victim_slots) - killed)
    assert resumed_after < 10, f"writes resumed only {resumed_after:.1f}s after the crash"
    assert load.wrong == []
    assert max(w.slowest for w in load.workers) < REQUEST_TIMEOUT  # no request hung
    errors = {text.split(":")[0] for _, text in load.failures}
    assert errors <= {"ConnectionError", "ResponseError", "ClusterDownError"}, errors
    assert readable(sidecar.port, load.acked()) == []  # everything acknowledged is there
