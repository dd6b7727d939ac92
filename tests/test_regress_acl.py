"""Regression tests, issues 10.5, 10.6 and 11.11: what the sidecar answers itself obeys the upstream's ACLs, an admin
of the sidecar cannot read the sidecar's own upstream login, and a user without +select keeps the db it was in."""

from __future__ import annotations

import pytest

from conftest import UPSTREAM_PASSWORD, sidecar_config
from regress_support import AUTH, OK, acl_user, bulk_text, call, direct, proxied, unique

# The commands the sidecar answers locally, which the upstream would check against the user's ACL.
LOCAL_COMMANDS = [[b"CLIENT", b"LIST"], [b"CLIENT", b"INFO"], [b"PING"], [b"ECHO", b"hello"], [b"SELECT", b"1"],
                  [b"INFO", b"sidecar"], [b"CLIENT", b"SETNAME", b"named"], [b"CLIENT", b"GETNAME"],
                  [b"CLIENT", b"ID"], [b"PING", b"with-arg"]]


@pytest.fixture
def sidecar_acl(any_upstream, make_sidecar):
    return make_sidecar(sidecar_config(any_upstream))


def test_locally_answered_commands_are_refused_as_the_upstream_refuses_them(any_upstream, sidecar_acl):
    """issue 10.5: a user `on >pw ~* &* -@all +get +set`: CLIENT LIST, CLIENT INFO, PING, ECHO, SELECT 1,
    INFO sidecar, CLIENT SETNAME/GETNAME/ID through the sidecar get exactly the direct bytes (the NOPERM texts), and
    the SELECT refused does not move the client: its SET and GET still run in db 0."""
    key = unique("acl:limited").encode()
    with acl_user(any_upstream, "~*", "&*", "-@all", "+get", "+set") as (user, pw):
        script = [*LOCAL_COMMANDS, [b"SET", key, b"v"], [b"GET", key]]
        seen = {}
        for where, conn in (("direct", direct(any_upstream, auth=False)), ("proxied", proxied(sidecar_acl, auth=None))):
            with conn:
                assert call(conn, [b"AUTH", user.encode(), pw.encode()]) == [OK]
                seen[where] = call(conn, *script, what=f"{where}: local commands as a -@all user")
        assert all(r.startswith(b"-NOPERM") for r in seen["direct"][:len(LOCAL_COMMANDS)]), seen["direct"]
        for command, d, p in zip(script, seen["direct"], seen["proxied"]):
            assert p == d, f"{b' '.join(command).decode()}: proxied {p[:80]!r}, direct {d!r}"
    assert any_upstream.client().get(key) == b"v"  # in db 0
    any_upstream.client().delete(key)


def test_a_user_allowed_the_local_commands_gets_the_normal_answers(any_upstream, sidecar_acl):
    """issue 10.5 (the other side): a user allowed them gets the normal answers: PING, ECHO, SELECT, CLIENT SETNAME
    and GETNAME as direct, CLIENT INFO/LIST its lines and INFO sidecar the sidecar's section."""
    key = unique("acl:allowed").encode()
    with acl_user(any_upstream, "~*", "&*", "-@all", "+get", "+set", "+ping", "+echo", "+select", "+info",
                  "+client") as (user, pw):
        with direct(any_upstream, auth=False) as d, proxied(sidecar_acl, auth=None) as p:
            for conn in (d, p):
                assert call(conn, [b"AUTH", user.encode(), pw.encode()]) == [OK]
            same = [[b"PING"], [b"ECHO", b"hello"], [b"CLIENT", b"SETNAME", b"named"], [b"CLIENT", b"GETNAME"],
                    [b"SELECT", b"1"], [b"SET", key, b"in-1"], [b"GET", key]]
            assert call(p, *same) == call(d, *same) == [b"+PONG\r\n", b"$5\r\nhello\r\n", OK, b"$5\r\nnamed\r\n",
                                                        OK, OK, b"$4\r\nin-1\r\n"]
            info, listing, section = call(p, [b"CLIENT", b"INFO"], [b"CLIENT", b"LIST"], [b"INFO", b"sidecar"])
            assert bulk_text(info).startswith("id=") and " name=named " in bulk_text(info)
            assert f"user={user} " in bulk_text(listing)
            assert "# Sidecar" in bulk_text(section)
    assert any_upstream.client(db=1).get(key) == b"in-1"
    any_upstream.client(db=1).delete(key)


@pytest.mark.parametrize("command", [[b"CONFIG", b"GET", b"requirepass"], [b"ACL", b"GETUSER", b"default"],
                                     [b"CONFIG", b"GET", b"*"], [b"ACL", b"LIST"]],
                         ids=["config-get-requirepass", "acl-getuser-default", "config-get-star", "acl-list"])
def test_admin_in_passthrough_mode_cannot_read_the_sidecars_upstream_login(upstream, make_sidecar, command):
    """issue 10.6: in passthrough mode a sidecar admin user (client_auth.users, admin: true) runs on the sidecar's
    own upstream login: what would show that login is refused, with an error naming protect_upstream_login."""
    ops_pw = unique("ops-pw")
    sidecar = make_sidecar(sidecar_config(upstream, client_auth={
        "mode": "passthrough", "users": [{"name": "ops", "password": ops_pw, "admin": True}]}))
    with proxied(sidecar, auth=[b"AUTH", b"ops", ops_pw.encode()]) as ops:
        reply = call(ops, command)[0]
        refused = reply.startswith(b"-ERR ") and b"protect_upstream_login" in reply
        assert refused, f"the admin got {reply[:60]!r}... ({len(reply)} bytes)"
        assert UPSTREAM_PASSWORD.encode() not in reply
        assert call(ops, [b"SIDECAR", b"INFO"])[0][:1] in (b"$", b"=")  # still an admin
    with proxied(sidecar) as client:  # a passthrough client authenticated as the upstream's user is not affected
        assert call(client, command)[0][:1] == b"*"


def test_select_then_auth_as_a_user_without_select_keeps_the_db(upstream, make_sidecar):
    """issue 11.11: `SELECT 9` as default, then `AUTH limited pw` (a user whose ACL lacks SELECT), `SET k v`,
    `GET k`: the same replies as direct, and the key lands in db 9."""
    sidecar = make_sidecar(sidecar_config(upstream))
    key = unique("acl:db9").encode()
    with acl_user(upstream, "~*", "&*", "-@all", "+get", "+set", "+auth") as (user, pw):
        script = [AUTH, [b"SELECT", b"9"], [b"AUTH", user.encode(), pw.encode()], [b"SET", key, b"v"],
                  [b"GET", key]]
        with direct(upstream, auth=False) as d:
            expected = call(d, *script)
        assert expected == [OK, OK, OK, OK, b"$1\r\nv\r\n"]
        assert upstream.client(db=9).get(key) == b"v"
        upstream.client(db=9).delete(key)
        with proxied(sidecar, auth=None) as p:
            assert call(p, *script, what="SELECT 9, AUTH limited, SET, GET") == expected
        assert upstream.client(db=9).get(key) == b"v", "the key did not land in db 9"
        assert upstream.client(db=0).get(key) is None
    upstream.client(db=9).delete(key)
