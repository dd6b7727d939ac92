"""Regression tests, issue 10.2: when leased connections run out, a transaction is never half run (what was queued
after a failed MULTI or WATCH does not run; EXEC gets EXECABORT), and idle blocking calls cannot starve transactions.

Config: `pool.lease_max` bounds transaction and session leases, the new `pool.blocking_max` blocking-call leases."""

from __future__ import annotations

import time

import pytest

from conftest import sidecar_config, wait_until
from regress_support import OK, call, proxied, read, unique

NO_LEASE = b"-ERR no upstream connection free"
EXECABORT = b"-EXECABORT Transaction discarded because of previous errors.\r\n"


def blocked_upstream(server) -> list[dict]:
    return [c for c in server.client().client_list() if "b" in c["flags"]]


@pytest.fixture
def accounts(upstream):
    """Two keys a transfer moves 10 between; deleted afterwards."""
    acct, other = unique("lease:acct"), unique("lease:other")
    upstream.client().mset({acct: 100, other: 0})
    yield acct.encode(), other.encode()
    upstream.client().delete(acct, other)


def balances(upstream, acct: bytes, other: bytes) -> list[bytes]:
    return upstream.client().mget(acct, other)


def hold_watches(sidecar, upstream, key: bytes, n: int) -> list:
    """``n`` clients each holding a WATCH (a transaction lease) until closed."""
    holders = [proxied(sidecar) for _ in range(n)]
    for h in holders:
        assert call(h, [b"WATCH", key]) == [OK]
    return holders


def test_blocking_calls_use_their_own_budget_and_do_not_starve_transactions(upstream, make_sidecar, accounts):
    """issue 10.2 (a): two idle `BLPOP k 0` use up pool.blocking_max (2); a third BLPOP gets `-ERR no upstream
    connection free ...` after about pool.lease_wait; a MULTI/INCRBY/EXEC from another client still runs."""
    sidecar = make_sidecar(sidecar_config(upstream, pool={"lease_max": 2, "blocking_max": 2, "lease_wait": 0.5}))
    acct, _ = accounts
    queue = unique("lease:queue").encode()
    blockers = [proxied(sidecar) for _ in range(2)]
    try:
        for b in blockers:
            b.send(b"*3\r\n$5\r\nBLPOP\r\n$%d\r\n%s\r\n$1\r\n0\r\n" % (len(queue), queue))
        wait_until(lambda: len(blocked_upstream(upstream)) >= 2, "the two BLPOPs never both blocked upstream")
        with proxied(sidecar) as third, proxied(sidecar) as tx:
            started = time.monotonic()
            reply = call(third, [b"BLPOP", queue + b":third", b"0"], what="a third BLPOP past pool.blocking_max")[0]
            waited = time.monotonic() - started
            assert reply.startswith(NO_LEASE), reply
            assert 0.4 <= waited < 5, f"refused after {waited:.2f}s, pool.lease_wait is 0.5s"
            assert call(tx, [b"MULTI"], [b"INCRBY", acct, b"5"], [b"EXEC"], what="MULTI while blocking calls wait") \
                == [OK, b"+QUEUED\r\n", b"*1\r\n:105\r\n"]
        upstream.client().rpush(queue, "a", "b")
        assert sorted(read(b, "the BLPOPs' replies")[0] for b in blockers) == sorted(
            b"*2\r\n$%d\r\n%s\r\n$1\r\n%s\r\n" % (len(queue), queue, v) for v in (b"a", b"b"))
    finally:
        for b in blockers:
            b.close()
        upstream.client().delete(queue)


def test_a_multi_that_gets_no_lease_runs_nothing_it_queued(upstream, make_sidecar, accounts):
    """issue 10.2 (b): two clients each holding a WATCH use up pool.lease_max (2); a third pipelines MULTI,
    DECRBY acct 10, INCRBY other 10, EXEC: MULTI gets `-ERR no upstream connection free ...`, each queued command an
    -ERR (it does not run), EXEC `-EXECABORT ...`, and both keys are unchanged (checked direct)."""
    sidecar = make_sidecar(sidecar_config(upstream, pool={"lease_max": 2, "lease_wait": 0.5}))
    acct, other = accounts
    holders = hold_watches(sidecar, upstream, unique("lease:w").encode(), 2)
    try:
        with proxied(sidecar) as c:
            replies = call(c, [b"MULTI"], [b"DECRBY", acct, b"10"], [b"INCRBY", other, b"10"], [b"EXEC"],
                           what="a transfer while every lease is taken")
            assert replies[0].startswith(NO_LEASE), replies
            assert all(r.startswith(b"-ERR") for r in replies[1:3]), f"queued commands answered {replies[1:3]}"
            assert replies[3] == EXECABORT, replies[3]
            assert balances(upstream, acct, other) == [b"100", b"0"], "a half-run transaction landed"
            assert call(c, [b"EXEC"]) == [b"-ERR EXEC without MULTI\r\n"]  # the failed transaction is over
    finally:
        for h in holders:
            h.close()


def test_a_watch_that_gets_no_lease_keeps_the_transaction_after_it_from_running(upstream, make_sidecar, accounts):
    """issue 10.2 (b, WATCH): WATCH fails to get a lease (-ERR no upstream connection free ...); the MULTI ..
    EXEC pipelined after it must not run (EXEC -> -EXECABORT, keys unchanged); UNWATCH clears that state, and the
    same transfer then runs once leases are free again."""
    sidecar = make_sidecar(sidecar_config(upstream, pool={"lease_max": 2, "lease_wait": 0.5}))
    acct, other = accounts
    holders = hold_watches(sidecar, upstream, unique("lease:w").encode(), 2)
    transfer = [[b"MULTI"], [b"DECRBY", acct, b"10"], [b"INCRBY", other, b"10"], [b"EXEC"]]
    try:
        with proxied(sidecar) as c:
            replies = call(c, [b"WATCH", acct], *transfer, what="WATCH and a transfer while every lease is taken")
            assert replies[0].startswith(NO_LEASE), replies
            assert replies[-1] == EXECABORT, f"EXEC after a failed WATCH answered {replies[-1]!r}"
            assert not any(r.startswith(b":") for r in replies), f"queued commands ran: {replies}"
            assert balances(upstream, acct, other) == [b"100", b"0"], "the transfer ran without its WATCH"
            for h in holders:
                h.close()
            holders = []
            assert call(c, [b"UNWATCH"]) == [OK]
            assert call(c, *transfer, what="the transfer once leases are free") == \
                [OK, b"+QUEUED\r\n", b"+QUEUED\r\n", b"*2\r\n:90\r\n:10\r\n"]
            assert balances(upstream, acct, other) == [b"90", b"10"]
    finally:
        for h in holders:
            h.close()


def test_unwatch_after_a_failed_watch_lets_the_next_transaction_run(upstream, make_sidecar, accounts):
    """issue 10.2 (b, UNWATCH): after a WATCH that got no lease, UNWATCH (+OK) clears the failed state: a MULTI ..
    EXEC sent while leases are free runs normally."""
    sidecar = make_sidecar(sidecar_config(upstream, pool={"lease_max": 2, "lease_wait": 0.5}))
    acct, other = accounts
    holders = hold_watches(sidecar, upstream, unique("lease:w").encode(), 2)
    with proxied(sidecar) as c:
        try:
            assert call(c, [b"WATCH", acct])[0].startswith(NO_LEASE)
        finally:
            for h in holders:
                h.close()
        assert call(c, [b"UNWATCH"], [b"MULTI"], [b"INCRBY", other, b"1"], [b"EXEC"]) == \
            [OK, OK, b"+QUEUED\r\n", b"*1\r\n:1\r\n"]
