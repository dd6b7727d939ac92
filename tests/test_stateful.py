"""Stateful commands keep their meaning without giving up multiplexing (transactions, blocking calls, leases)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import pytest
import redis
import redis.asyncio as aioredis

from benchmarks.wan import WanRelayProcess
from conftest import ARTIFACTS, UPSTREAM_PASSWORD, sidecar_config, sidecar_connections, wait_until
from harness.servers import SidecarProcess
from wire import RawClient

AUTH = [b"AUTH", UPSTREAM_PASSWORD.encode()]


def client(sidecar, **kw) -> redis.Redis:
    return redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, **kw)


def upstream_clients(upstream) -> list[dict]:
    return upstream.client().client_list()


def blocked_upstream(upstream) -> list[dict]:
    return [c for c in upstream_clients(upstream) if "b" in c["flags"]]


@pytest.mark.parametrize("protocol", [2, 3])
def test_pipeline_transactions(sidecar, protocol):
    c = client(sidecar, protocol=protocol)
    c.delete("tx", "txh")
    pipe = c.pipeline(transaction=True)
    pipe.exists("tx").incr("tx").incrbyfloat("tx", 0.5).get("tx").hset("txh", "a", 1).hgetall("txh")
    assert pipe.execute() == [0, 1, 1.5, b"1.5", 1, {b"a": b"1"}]


def test_watch_optimistic_locking_under_concurrent_writers_loses_no_increment(upstream, sidecar):
    upstream.client().set("balance", 0)
    conflicts = []

    def writer() -> None:
        c = client(sidecar)
        for _ in range(40):
            with c.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch("balance")
                        value = int(pipe.get("balance"))
                        time.sleep(0.001)  # let other writers interleave
                        pipe.multi()
                        pipe.set("balance", value + 1)
                        pipe.execute()
                        break
                    except redis.WatchError:
                        conflicts.append(1)

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert int(upstream.client().get("balance")) == 240
    assert conflicts, "six writers never conflicted: WATCH is not being exercised"


def test_queue_time_errors_abort_the_transaction_as_redis_does(sidecar):
    with RawClient(sidecar.port) as c:
        c.call(AUTH, [b"DEL", b"qa"])
        replies = c.call([b"MULTI"], [b"SET", b"qa", b"1"], [b"SET"], [b"EXEC"], [b"GET", b"qa"])
        assert replies == [b"+OK\r\n", b"+QUEUED\r\n",
                           b"-ERR wrong number of arguments for 'set' command\r\n",
                           b"-EXECABORT Transaction discarded because of previous errors.\r\n", b"$-1\r\n"]
        # a command the sidecar cannot queue (SELECT inside MULTI) aborts the same way
        replies = c.call([b"MULTI"], [b"SET", b"qa", b"1"], [b"SELECT", b"2"], [b"EXEC"], [b"GET", b"qa"])
        assert replies[2].startswith(b"-ERR 'SELECT' inside MULTI is not supported")
        assert replies[3:] == [b"-EXECABORT Transaction discarded because of previous errors.\r\n", b"$-1\r\n"]
        assert c.call([b"EXEC"], [b"DISCARD"]) == [b"-ERR EXEC without MULTI\r\n", b"-ERR DISCARD without MULTI\r\n"]


def test_client_leaving_mid_transaction_leaves_nothing_behind(upstream, sidecar):
    with RawClient(sidecar.port) as c:
        c.call(AUTH, [b"WATCH", b"wk"], [b"MULTI"], [b"SET", b"left", b"1"])
    upstream.client().set("wk", "changed")  # would fail a transaction that inherited the stale WATCH
    time.sleep(0.2)
    for _ in range(5):  # the next transactions start clean, whichever lease they get
        with RawClient(sidecar.port) as c:
            assert c.call(AUTH, [b"MULTI"], [b"SET", b"right", b"1"], [b"EXEC"]) == \
                [b"+OK\r\n", b"+OK\r\n", b"+QUEUED\r\n", b"*1\r\n+OK\r\n"]
    assert upstream.client().get("left") is None
    assert not [c for c in upstream_clients(upstream) if "x" in c["flags"]]  # nobody upstream is still in MULTI


def test_blocking_pop_with_a_producer_and_with_a_timeout(upstream, sidecar):
    c = client(sidecar, socket_timeout=10)
    threading.Timer(0.3, lambda: upstream.client().rpush("jobs", "job-1")).start()
    assert c.blpop(["jobs"], 5) == (b"jobs", b"job-1")
    assert c.brpop(["empty-queue"], 1) is None
    c.zadd("zq", {"a": 1})
    assert c.bzpopmin(["zq"], 1) == (b"zq", b"a", 1.0)
    assert c.xread({"nostream": "$"}, block=200) == []  # XREAD ... BLOCK is a blocking call too


def test_client_leaving_while_blocked_does_not_leave_a_lease_blocked(upstream, sidecar):
    with RawClient(sidecar.port) as c:
        c.call(AUTH)
        c.send(b"*3\r\n$5\r\nBLPOP\r\n$5\r\norphq\r\n$1\r\n0\r\n")  # blocks forever
        wait_until(lambda: blocked_upstream(upstream), "the BLPOP never reached the upstream")
    wait_until(lambda: not blocked_upstream(upstream), lambda: f"left blocked: {blocked_upstream(upstream)}")
    upstream.client().rpush("orphq", "must-stay")
    # if the abandoned BLPOP were still blocked upstream it would have taken the item
    assert upstream.client().lrange("orphq", 0, -1) == [b"must-stay"]
    assert not [c for c in upstream_clients(upstream) if c["cmd"] == "blpop"]


def test_one_long_blpop_does_not_hold_up_200_clients(upstream, sidecar):
    """Head of line: 200 clients GET in a loop while one client blocks 3 s; they all keep getting replies.

    The same loop runs first without the BLPOP, so the figures written to tests/artifacts compare like with like.
    """
    upstream.client().set("hot", "v")

    async def main() -> dict:
        clients = [aioredis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD) for _ in range(200)]
        await asyncio.gather(*(c.ping() for c in clients))

        async def round_of_gets(blocked: asyncio.Task | None) -> tuple[list[float], list[int]]:
            latencies, done_while_blocked = [], [0] * 200

            async def loop(i: int) -> None:
                for _ in range(25):
                    start = time.perf_counter()
                    assert await clients[i].get("hot") == b"v"
                    latencies.append(time.perf_counter() - start)
                    if blocked is not None and not blocked.done():
                        done_while_blocked[i] += 1

            await asyncio.gather(*(loop(i) for i in range(200)))
            return sorted(latencies), done_while_blocked

        baseline, _ = await round_of_gets(None)
        blocker = aioredis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, socket_timeout=10)
        blocked = asyncio.create_task(blocker.blpop(["never-filled"], 3))
        during, done_while_blocked = await round_of_gets(blocked)
        assert await blocked is None
        await asyncio.gather(blocker.aclose(), *(c.aclose() for c in clients))
        return {"baseline": baseline, "during": during, "done_while_blocked": done_while_blocked}

    result = asyncio.run(main())
    assert min(result["done_while_blocked"]) == 25  # every GET of every client completed while the BLPOP blocked
    pct = lambda xs, q: round(xs[int(len(xs) * q)] * 1000, 2)  # noqa: E731
    figures = {"gets_per_phase": len(result["during"]),
               "baseline_p50_ms": pct(result["baseline"], 0.5), "baseline_p99_ms": pct(result["baseline"], 0.99),
               "during_blpop_p50_ms": pct(result["during"], 0.5), "during_blpop_p99_ms": pct(result["during"], 0.99)}
    os.makedirs(ARTIFACTS, exist_ok=True)
    with open(os.path.join(ARTIFACTS, "head_of_line.json"), "w") as f:
        json.dump(figures, f)
    print("GET latency, 200 clients, without and during a 3 s BLPOP:", figures)


def test_lease_pool_is_bounded_and_says_so(upstream):
    cfg = sidecar_config(upstream, pool={"blocking_max": 2, "lease_wait": 0.5})
    with SidecarProcess(config=cfg) as sidecar:
        raws = [RawClient(sidecar.port) for _ in range(3)]
        try:
            for r in raws:
                r.call(AUTH)
            for r in raws[:2]:
                r.send(b"*3\r\n$5\r\nBLPOP\r\n$4\r\nlq:x\r\n$1\r\n3\r\n")
            wait_until(lambda: len(blocked_upstream(upstream)) >= 2, "the two BLPOPs never both blocked upstream")
            reply = raws[2].call([b"BLPOP", b"lq:y", b"1"])[0]
            assert reply.startswith(b"-ERR no upstream connection free for this command: all 2 connections for "
                                    b"blocking calls are in use (pool.blocking_max)"), reply
            assert raws[2].call([b"GET", b"lq"]) == [b"$-1\r\n"]  # shared traffic is unaffected
            assert [r.read_reply() for r in raws[:2]] == [b"*-1\r\n", b"*-1\r\n"]
            assert raws[2].call([b"BLPOP", b"lq:y", b"1"]) == [b"*-1\r\n"]  # leases came back
        finally:
            for r in raws:
                r.close()


def test_the_lease_opened_at_start_counts_against_no_bound(own_upstream, make_sidecar):
    """The sidecar opens one idle lease at start. Over a slow link a client's BLPOP arrives while that lease is still
    opening and opens its own: only lent connections count against pool.blocking_max, so the bound still holds
    once the start-up one turns idle."""
    with WanRelayProcess(own_upstream.port, delay_ms=100) as relay:
        slow_link = f"redis://:{UPSTREAM_PASSWORD}@127.0.0.1:{relay.port}/0"
        sidecar = make_sidecar(sidecar_config(own_upstream, client_auth={"mode": "none"}, upstream={"url": slow_link},
                                              pool={"blocking_max": 1, "lease_wait": 1.5}))
        with RawClient(sidecar.port) as first, RawClient(sidecar.port) as second:
            first.send(b"*3\r\n$5\r\nBLPOP\r\n$8\r\nlp:first\r\n$1\r\n4\r\n")
            wait_until(lambda: blocked_upstream(own_upstream), "the first BLPOP never blocked upstream")
            reply = second.call([b"BLPOP", b"lp:second", b"1"])[0]
            assert reply.startswith(b"-ERR no upstream connection free for this command: all 1 connections for "
                                    b"blocking calls"), reply
            assert first.read_reply() == b"*-1\r\n"
        opened = sidecar_connections(own_upstream)
        assert len(opened) <= 1 + 2, opened  # the shared connection, the start-up idle one and the one lent


def test_monitor_gets_a_connection_of_its_own(upstream, sidecar):
    with RawClient(sidecar.port) as mon:
        assert mon.call(AUTH, [b"MONITOR"]) == [b"+OK\r\n", b"+OK\r\n"]
        client(sidecar).set("monitored", "1")
        line = mon.read_reply()
        while b"monitored" not in line:
            line = mon.read_reply()
        assert line.startswith(b"+") and b'"set" "monitored" "1"' in line.lower()


def test_client_reply_off_and_skip(sidecar):
    with RawClient(sidecar.port) as c:
        c.call(AUTH)
        c.send(b"CLIENT REPLY OFF\r\nSET r1 1\r\nGET r1\r\nCLIENT REPLY ON\r\nCLIENT REPLY SKIP\r\nGET r1\r\nGET r1\r\n")
        assert c.read_reply() == b"+OK\r\n"  # the ON
        assert c.read_reply() == b"$1\r\n1\r\n"  # only the GET after the skipped one


def test_client_list_shows_the_sidecars_own_clients(upstream, sidecar):
    with RawClient(sidecar.port) as a, RawClient(sidecar.port) as b:
        a.call(AUTH, [b"CLIENT", b"SETNAME", b"alpha"], [b"CLIENT", b"SETINFO", b"LIB-NAME", b"mylib"])
        b.call(AUTH, [b"CLIENT", b"SETNAME", b"beta"], [b"SELECT", b"4"])
        listing = a.call([b"CLIENT", b"LIST"])[0].decode()
        info = b.call([b"CLIENT", b"INFO"])[0].decode()
    assert "name=alpha" in listing and "name=beta" in listing and "lib-name=mylib" in listing
    assert "name=beta" in info and " db=4 " in info and "name=alpha" not in info
    assert "redis-sidecar" not in listing  # not the upstream's view of the sidecar's own connections


def test_reset_leaves_transactions_and_returns_to_defaults(sidecar):
    with RawClient(sidecar.port) as c:
        replies = c.call(AUTH, [b"SELECT", b"3"], [b"CLIENT", b"SETNAME", b"n"], [b"MULTI"], [b"SET", b"rz", b"1"],
                         [b"RESET"], [b"GET", b"rz"], [b"AUTH", UPSTREAM_PASSWORD.encode()], [b"CLIENT", b"GETNAME"],
                         [b"EXEC"])
        assert replies[5:] == [b"+RESET\r\n", b"-NOAUTH Authentication required.\r\n", b"+OK\r\n", b"$-1\r\n",
                               b"-ERR EXEC without MULTI\r\n"]


def test_select_while_watching_runs_the_transaction_in_the_selected_db(upstream, sidecar):
    with RawClient(sidecar.port) as c:
        replies = c.call(AUTH, [b"SELECT", b"0"], [b"WATCH", b"wsel"], [b"SELECT", b"7"], [b"MULTI"],
                         [b"SET", b"wsel:target", b"in-7"], [b"EXEC"], [b"GET", b"wsel:target"], [b"SELECT", b"0"],
                         [b"GET", b"wsel:target"])
    assert replies[1:] == [b"+OK\r\n", b"+OK\r\n", b"+OK\r\n", b"+OK\r\n", b"+QUEUED\r\n", b"*1\r\n+OK\r\n",
                           b"$4\r\nin-7\r\n", b"+OK\r\n", b"$-1\r\n"]
    assert upstream.client(db=7).get("wsel:target") == b"in-7"
    time.sleep(0.2)
    for _ in range(4):  # the lease that switched to db 7 was not handed to the next transaction
        with RawClient(sidecar.port) as c:
            assert c.call(AUTH, [b"MULTI"], [b"GET", b"wsel:target"], [b"EXEC"])[3] == b"*1\r\n$-1\r\n"
