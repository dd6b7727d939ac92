"""Regression tests, issues 11.5, 11.6, 10.3, 10.4 and 10.11: passthrough authentication follows the upstream (a
password turned on, set by a client, revoked), a big command pipelined behind AUTH is judged as authenticated, and
wrong passwords are rate limited without costing the upstream a connection each."""

from __future__ import annotations

import asyncio
import time

import pytest

from conftest import UPSTREAM_PASSWORD, sidecar_config, wait_until
from harness.servers import EmbeddedServer, free_port
from proxy.wire.resp import ReplyFramer, encode_command
from regress_support import OK, acl_user, call, connections_received, direct, metric, proxied, read, unique

NOAUTH = b"-NOAUTH Authentication required.\r\n"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"


@pytest.fixture
def open_upstream():
    """An upstream started without any password (a developer's local Redis); each test gets its own."""
    with EmbeddedServer(password=None) as server:
        yield server


def passthrough(server, ttl: float, **sections) -> dict:
    return sidecar_config(server, client_auth={"mode": "passthrough", "passthrough_ttl": ttl}, **sections)


def reset_requirepass(server, password: str) -> None:
    """Teardown: whatever a test left, the server is open again."""
    with direct(server, auth=False) as d:
        if call(d, [b"PING"])[0] == NOAUTH:
            call(d, [b"AUTH", password.encode()])
        assert call(d, [b"CONFIG", b"SET", b"requirepass", b""]) == [OK]


# -- 11.5 / 11.6: an upstream without a password that gets one ---------------------------------------------------------

def test_password_turned_on_upstream_is_required_of_new_clients(open_upstream, make_sidecar):
    """issue 11.5: in front of an upstream without requirepass (passthrough_ttl 1), `CONFIG SET requirepass foo`
    upstream: a new client sending no AUTH gets -NOAUTH within a few seconds, as direct; AUTH foo then works."""
    sidecar = make_sidecar(passthrough(open_upstream, ttl=1))
    key = unique("auth:open").encode()
    with proxied(sidecar, auth=None) as before:
        assert call(before, [b"SET", key, b"v"]) == [OK]  # no password needed yet, as direct
    try:
        with direct(open_upstream, auth=False) as d:
            assert call(d, [b"CONFIG", b"SET", b"requirepass", b"foo"]) == [OK]
        with direct(open_upstream, auth=False) as d:
            expected = call(d, [b"GET", key]) + call(d, [b"AUTH", b"foo"], [b"GET", key])
        assert expected == [NOAUTH, OK, b"$1\r\nv\r\n"]

        def refused() -> bool:
            with proxied(sidecar, timeout=5, auth=None) as c:
                return call(c, [b"GET", key]) == [NOAUTH]

        wait_until(refused, "a client without AUTH is still served after the upstream turned requirepass on",
                   timeout=1 + 5)
        with proxied(sidecar, timeout=5, auth=None) as c:
            assert call(c, [b"GET", key]) + call(c, [b"AUTH", b"foo"], [b"GET", key]) == expected
    finally:
        reset_requirepass(open_upstream, "foo")


def test_client_setting_a_password_can_then_authenticate_with_it(open_upstream, make_sidecar):
    """issue 11.6: a client runs `CONFIG SET requirepass password`, `AUTH password`, `SET`, then clears the password
    (a test suite's setup and teardown): every reply as direct, and a new client without AUTH is served again
    (within passthrough_ttl and a little)."""
    sidecar = make_sidecar(passthrough(open_upstream, ttl=1))
    key = unique("auth:suite").encode()
    script = [[b"CONFIG", b"SET", b"requirepass", b"password"], [b"AUTH", b"password"], [b"SET", key, b"v"],
              [b"CONFIG", b"SET", b"requirepass", b""], [b"GET", key]]
    try:
        with direct(open_upstream, auth=False) as d:
            expected = call(d, *script)
        assert expected == [OK, OK, OK, OK, b"$1\r\nv\r\n"]
        with proxied(sidecar, timeout=5, auth=None) as c:
            assert call(c, *script, what="CONFIG SET requirepass, AUTH ...") == expected

        def served() -> bool:  # the upstream is open again, and so is the sidecar (within passthrough_ttl)
            with proxied(sidecar, timeout=5, auth=None) as later:
                return call(later, [b"GET", key]) == [b"$1\r\nv\r\n"]

        wait_until(served, "a client without AUTH is refused after the password was cleared upstream", timeout=1 + 5)
    finally:
        reset_requirepass(open_upstream, "password")


# -- 10.3: revoked credentials ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("ttl", [1, 0])
@pytest.mark.parametrize("revoke", ["off", "new-password"])
def test_revoked_credentials_stop_working_within_the_ttl(upstream, make_sidecar, ttl, revoke):
    """issue 10.3: after `ACL SETUSER alice off` (or a new password) upstream, `AUTH alice oldpw` through the
    sidecar fails with WRONGPASS (as direct) within passthrough_ttl and a little; with passthrough_ttl 0 at once.
    The write pipelined behind a refused AUTH never lands."""
    sidecar = make_sidecar(passthrough(upstream, ttl=ttl))
    key = unique("auth:revoked").encode()
    with acl_user(upstream, "~*", "&*", "+@all") as (alice, oldpw):
        login = [b"AUTH", alice.encode(), oldpw.encode()]
        with proxied(sidecar, auth=login) as c:
            assert call(c, [b"SET", key, b"before"]) == [OK]  # accepted once: the sidecar now knows the credential
        rules = ["off"] if revoke == "off" else ["resetpass", f">{unique('newpw')}"]
        upstream.client().execute_command("ACL", "SETUSER", alice, *rules)
        revoked_at = time.monotonic()
        with direct(upstream, auth=False) as d:
            assert call(d, login) == [WRONGPASS]

        attempts = iter(range(1000))

        def attempt() -> tuple[bytes, bytes]:
            value = b"after-%d" % next(attempts)
            with proxied(sidecar, timeout=5, auth=None) as c:
                return call(c, login, [b"SET", key, value])[0], value

        if ttl == 0:
            reply, value = attempt()
            assert reply == WRONGPASS, "passthrough_ttl 0: a revoked credential was accepted"
        else:
            reply, value = wait_until(lambda: (r := attempt())[0] == WRONGPASS and r,
                                      "the revoked credential is still accepted", timeout=ttl + 3)
            assert time.monotonic() - revoked_at < ttl + 3
        assert upstream.client().get(key) != value, "the refused client's write landed"
    upstream.client().delete(key)


# -- 10.4: AUTH and a big command in one write --------------------------------------------------------------------------

@pytest.mark.parametrize("payload", ["set-20000-bytes", "mset-12-pairs"])
@pytest.mark.parametrize("login", ["auth-default", "auth-acl-user", "hello-auth-default", "hello-auth-acl-user"])
def test_big_command_pipelined_behind_auth_is_judged_as_authenticated(upstream, make_sidecar, login, payload):
    """issue 10.4: AUTH (or HELLO 3 AUTH) and, in the same write, `SET k <20000 bytes>` or an MSET of 12 pairs:
    +OK +OK as direct, not Redis's pre-auth `Protocol error`; for the upstream's password and for an ACL user the
    sidecar checks upstream first."""
    sidecar = make_sidecar(sidecar_config(upstream))
    key = unique("auth:big").encode()
    with acl_user(upstream, "~*", "&*", "+@all") as (user, pw):
        name, password = (b"default", UPSTREAM_PASSWORD.encode()) if login.endswith("default") else \
            (user.encode(), pw.encode())
        first = [b"HELLO", b"3", b"AUTH", name, password] if login.startswith("hello") else [b"AUTH", name, password]
        big = [b"SET", key, b"x" * 20000] if payload.startswith("set") else \
            [b"MSET", *[part for i in range(12) for part in (key + b":%d" % i, b"v%d" % i)]]
        replies = {}
        for where, conn in (("direct", direct(upstream, auth=False)), ("proxied", proxied(sidecar, auth=None))):
            with conn:
                conn.send(encode_command(first) + encode_command(big))
                replies[where] = read(conn, f"{where}: {login} + {payload} in one write", 2)
        assert replies["direct"][1] == OK
        assert replies["proxied"][0][:1] == replies["direct"][0][:1]  # +OK, or HELLO's map
        assert replies["proxied"][1] == OK, f"proxied: {replies['proxied'][1]!r}"
    upstream.client().delete(key, *[key + b":%d" % i for i in range(12)])


# -- 10.11: wrong passwords from many connections -----------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_wrong_passwords_from_many_connections_are_rate_limited(own_upstream, make_sidecar):
    """issue 10.11: 50 connections send 1000 wrong passthrough AUTHs for one user: the upstream's
    total_connections_received grows by at most ~10 (verification connections reused), most attempts are refused
    by a per-address / per-user rate limit error, and redis_sidecar_auth_failures_total counts the failures."""
    mport = free_port()
    sidecar = make_sidecar(sidecar_config(own_upstream, metrics={"listen": f"127.0.0.1:{mport}"}))
    with acl_user(own_upstream, "~*", "+@all") as (user, _pw):
        with proxied(sidecar) as warm:  # the sidecar's own pool is up before counting
            assert call(warm, [b"GET", b"warm"]) == [b"$-1\r\n"]
        connections_before = connections_received(own_upstream)
        failures_before = metric(mport, "auth_failures_total")

        async def attacker(i: int) -> list[bytes]:
            reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.port)
            writer.write(b"".join(encode_command([b"AUTH", user.encode(), b"wrong-%d-%d" % (i, n)])
                                  for n in range(20)))
            framer, replies = ReplyFramer(), []
            while len(replies) < 20:
                frame = framer.next()
                if frame is not None:
                    replies.append(frame)
                    continue
                chunk = await asyncio.wait_for(reader.read(1 << 16), 30)
                if not chunk:
                    break  # closed by the sidecar: the attempts it did not answer were not tried
                framer.feed(chunk)
            writer.close()
            return replies

        async def main() -> list[list[bytes]]:
            return await asyncio.gather(*(attacker(i) for i in range(50)))

        replies = [r for per_conn in asyncio.run(main()) for r in per_conn]
        opened = connections_received(own_upstream) - connections_before
    wrongpass = sum(r == WRONGPASS for r in replies)
    limited = [r for r in replies if r.startswith(b"-") and r != WRONGPASS]
    unanswered = 1000 - len(replies)
    assert not [r for r in replies if not r.startswith(b"-")], "a wrong password was accepted"
    assert opened <= 10, f"1000 wrong AUTHs opened {opened} upstream connections ({wrongpass} checked upstream)"
    assert len(limited) + unanswered >= 500, \
        f"only {len(limited)} refused by a rate limit and {unanswered} unanswered; {wrongpass} WRONGPASS"
    assert all(b"AUTH" in r.upper() for r in limited), limited[:3]
    counted = metric(mport, "auth_failures_total") - failures_before
    assert counted >= wrongpass + len(limited), f"auth_failures_total grew by {counted}"
