"""Regression tests, issue 11.1: a client's commands take effect upstream in the order it sent them, even when a
command in the middle of its pipeline changes its protocol (HELLO), its db (SELECT) or its identity (AUTH).

Each pipeline goes out in one write, once on a direct connection and once through the sidecar; the replies must be
the same bytes (HELLO's reply names the connection, so only its shape is compared)."""

from __future__ import annotations

import pytest

from conftest import UPSTREAM_PASSWORD, sidecar_config
from regress_support import AUTH, OK, acl_user, call, direct, proxied, unique

BIG = 16 * 1024 * 1024


@pytest.fixture
def sidecar_ord(upstream, make_sidecar):
    return make_sidecar(sidecar_config(upstream))


def run_both(upstream, sidecar, commands, prelude=()):
    """The same pipeline direct and proxied (each after ``prelude``): (direct replies, proxied replies)."""
    with direct(upstream, timeout=30) as d, proxied(sidecar, timeout=30) as p:
        for c in (d, p):
            if prelude:
                call(c, *prelude)
        return call(d, *commands, what="direct pipeline"), call(p, *commands, what="proxied pipeline")


@pytest.mark.parametrize("proto_from,proto_to", [(2, 3), (3, 2)])
def test_hello_switching_protocol_mid_pipeline_keeps_order(upstream, sidecar_ord, proto_from, proto_to):
    """issue 11.1: SET big <16 MB>, HELLO 3, STRLEN big in one write: STRLEN sees the SET (:16777216), as direct."""
    key = unique("ord:hello")
    hello_from = [b"HELLO", str(proto_from).encode(), b"AUTH", b"default", UPSTREAM_PASSWORD.encode()]
    commands = [[b"SET", key.encode(), b"v" * BIG], [b"HELLO", str(proto_to).encode()], [b"STRLEN", key.encode()],
                [b"DEL", key.encode()]]
    with proxied(sidecar_ord, auth=None) as warm:  # the RESP{proto_to} pool exists and is idle
        call(warm, [b"HELLO", str(proto_to).encode(), b"AUTH", b"default", UPSTREAM_PASSWORD.encode()])
        assert call(warm, [b"EXISTS", key.encode()]) == [b":0\r\n"]
        d, p = run_both(upstream, sidecar_ord, commands, prelude=[hello_from])
    assert d[2] == b":%d\r\n" % BIG
    assert p[0] == d[0] == OK
    assert p[1][:1] == d[1][:1] == (b"%" if proto_to == 3 else b"*")  # HELLO's reply, in the new protocol
    assert p[2] == d[2], f"STRLEN ran before the SET it follows: {p[2]!r}"
    assert p[3] == d[3] == b":1\r\n"


@pytest.mark.parametrize("size", [1, BIG], ids=["small", "16MB"])
def test_move_then_select_mid_pipeline_keeps_order(upstream, sidecar_ord, size):
    """issue 11.1: SET k x, MOVE k 1, SELECT 1, STRLEN k in one write: STRLEN finds the moved key, as direct."""
    key = unique("ord:move").encode()
    with proxied(sidecar_ord) as warm:  # the db-1 pool exists and is idle: the reorder needs no connect to show
        assert call(warm, [b"SELECT", b"1"], [b"EXISTS", key]) == [OK, b":0\r\n"]
        commands = [[b"SET", key, b"x" * size], [b"MOVE", key, b"1"], [b"SELECT", b"1"], [b"STRLEN", key],
                    [b"DEL", key], [b"SELECT", b"0"]]
        d, p = run_both(upstream, sidecar_ord, commands)
    assert d == [OK, b":1\r\n", OK, b":%d\r\n" % size, b":1\r\n", OK]
    assert p == d, f"proxied: {[r[:40] for r in p]}"


def test_auth_as_another_user_mid_pipeline_keeps_order(upstream, sidecar_ord):
    """issue 11.1: SET k <16 MB> as default, AUTH as an ACL user, STRLEN k: the user sees the SET, as direct; for a
    credential the sidecar checks upstream first (the first AUTH) and one it already knows (the second)."""
    with acl_user(upstream, "~*", "&*", "+@all") as (user, pw):
        for attempt in ("first AUTH as the user", "cached credential"):
            key = unique("ord:auth").encode()
            commands = [[b"SET", key, b"v" * BIG], [b"AUTH", user.encode(), pw.encode()], [b"STRLEN", key],
                        [b"ACL", b"WHOAMI"], AUTH, [b"DEL", key]]
            d, p = run_both(upstream, sidecar_ord, commands)
            whoami = b"$%d\r\n%s\r\n" % (len(user), user.encode())
            assert d == [OK, OK, b":%d\r\n" % BIG, whoami, OK, b":1\r\n"]
            assert p == d, f"{attempt}: proxied {[r[:40] for r in p]}"


def test_hello_auth_as_another_user_and_protocol_mid_pipeline_keeps_order(upstream, sidecar_ord):
    """issue 11.1: SET k <16 MB>, HELLO 3 AUTH user pw, STRLEN k, DEL k: identity and protocol change together,
    the order still holds (the first time, checked upstream, and again with the credential known)."""
    with acl_user(upstream, "~*", "&*", "+@all") as (user, pw):
        for attempt in ("first AUTH as the user", "cached credential"):
            key = unique("ord:hello-auth").encode()
            commands = [[b"SET", key, b"v" * BIG], [b"HELLO", b"3", b"AUTH", user.encode(), pw.encode()],
                        [b"STRLEN", key], [b"DEL", key]]
            d, p = run_both(upstream, sidecar_ord, commands)
            assert d[2] == b":%d\r\n" % BIG and d[3] == b":1\r\n"
            assert p[0] == OK and p[1][:1] == b"%"
            assert p[2:] == d[2:], f"{attempt}: proxied {[r[:40] for r in p]}"


def test_select_mid_pipeline_with_many_writes_keeps_order(upstream, sidecar_ord):
    """issue 11.1: 200 INCRs in db 0, SELECT 5, a GET of the same key in db 5, SELECT 0, GET: every command in the
    order sent (the db-5 GET sees no key, the db-0 GET sees all 200 increments)."""
    key = unique("ord:many").encode()
    commands = [[b"INCR", key]] * 200 + [[b"SELECT", b"5"], [b"GET", key], [b"SELECT", b"0"], [b"GET", key],
                                         [b"DEL", key]]
    d, p = run_both(upstream, sidecar_ord, commands)
    assert d[-4:] == [b"$-1\r\n", OK, b"$3\r\n200\r\n", b":1\r\n"]
    assert p == d, f"proxied tail: {p[-5:]}"


def test_replies_held_for_switched_off_ones_still_leave_and_quit_closes(upstream, sidecar_ord):
    """A local +OK held back for a shared command in flight, whose own reply is switched off (CLIENT REPLY OFF),
    still leaves when that reply comes, and QUIT then closes: the client never waits forever. A wrong AUTH answered
    from the sidecar's memory (the second and later runs) made the turn in which this used to hang."""
    import socket

    from proxy.wire import resp

    payload = b"".join(resp.encode_command(c) for c in (
        [b"AUTH", UPSTREAM_PASSWORD.encode()], [b"CLIENT", b"REPLY", b"OFF"], [b"PING"],
        [b"AUTH", b"app", b"wrong"], [b"QUIT"]))
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", sidecar_ord.port), timeout=5) as sock:
            sock.sendall(payload)
            out = b""
            while chunk := sock.recv(65536):  # a hang fails here with TimeoutError
                out += chunk
        assert out == b"+OK\r\n"
