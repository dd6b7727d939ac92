"""Regression tests, issue 11.9 and "Test suites pointed at the sidecar": what the sidecar emulates about connections
(CLIENT TRACKING REDIRECT, CLIENT LIST / CLIENT INFO, PUBSUB NUMSUB, CLIENT KILL / UNBLOCK) means the sidecar's own
clients, as a direct connection's would mean the server's; and `commands.profile: development` runs what a test
suite needs (DEBUG, CLIENT PAUSE ...)."""

from __future__ import annotations

import pytest

from conftest import sidecar_config, wait_until
from proxy.wire.resp import encode_command
from regress_support import OK, acl_user, bulk_text, call, client_fields, direct, gone, proxied, read, unique

INVALIDATE = b"__redis__:invalidate"
NO_SUCH_CLIENT = b"-ERR The client ID you want redirect to does not exist\r\n"


def client_id(c) -> bytes:
    return call(c, [b"CLIENT", b"ID"])[0][1:-2]


def blocked_upstream(server) -> list[dict]:
    return [c for c in server.client().client_list() if "b" in c["flags"]]


# -- CLIENT TRACKING ... REDIRECT ---------------------------------------------------------------------------------------

def test_tracking_redirect_to_another_sidecar_client_delivers_invalidations(upstream, make_sidecar):
    """issue 11.9: the RESP2 pattern: client B `CLIENT ID`, `SUBSCRIBE __redis__:invalidate`; client A
    `CLIENT TRACKING on REDIRECT <B>`, `GET k`; a third client `SET k v2`: B receives the invalidation for k, the
    same bytes as direct."""
    sidecar = make_sidecar(sidecar_config(upstream))
    key = unique("emu:tracked").encode()
    seen = {}
    for where, connect in (("direct", lambda: direct(upstream, timeout=5)),
                           ("proxied", lambda: proxied(sidecar, timeout=5))):
        with connect() as b, connect() as a, connect() as writer:
            b_id = client_id(b)
            subscribed = call(b, [b"SUBSCRIBE", INVALIDATE])
            tracking = call(a, [b"CLIENT", b"TRACKING", b"on", b"REDIRECT", b_id], [b"GET", key])
            assert call(writer, [b"SET", key, b"v2"], [b"DEL", key]) == [OK, b":1\r\n"]
            seen[where] = (subscribed, tracking, read(b, f"{where}: the invalidation message"))
    assert seen["direct"][2] == [b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$%d\r\n%s\r\n"
                                 % (len(key), key)]
    assert seen["proxied"] == seen["direct"]


def test_tracking_redirect_to_unknown_ids_is_refused_as_direct(upstream, make_sidecar):
    """issue 11.9: `CLIENT TRACKING on REDIRECT 999999` gets Redis's error, as direct; so does the id of one of the
    sidecar's own upstream connections (it is no client of the sidecar)."""
    for _ in range(60):  # the upstream's next connection ids are above every id the sidecar gives its few clients
        direct(upstream, auth=False).close()
    sidecar = make_sidecar(sidecar_config(upstream))
    with direct(upstream) as d, proxied(sidecar) as p:
        command = [b"CLIENT", b"TRACKING", b"on", b"REDIRECT", b"999999"]
        assert call(p, command) == call(d, command) == [NO_SUCH_CLIENT]
        assert call(p, [b"GET", b"warm"]) == [b"$-1\r\n"]
        ours = [c["id"] for c in upstream.client().client_list() if c.get("name") == "redis-sidecar"]
        assert ours and all(int(i) > 50 for i in ours)
        assert call(p, [b"CLIENT", b"TRACKING", b"on", b"REDIRECT", ours[0].encode()]) == [NO_SUCH_CLIENT]


# -- CLIENT LIST / CLIENT INFO -------------------------------------------------------------------------------------------

def test_client_info_and_list_have_the_servers_fields_in_its_order(any_upstream, make_sidecar):
    """issue 11.9: CLIENT INFO and CLIENT LIST lines through the sidecar have the same field names, in the same
    order, as the server's own (lib-name and lib-ver may follow on a server without them: CLIENT SETINFO is answered
    on Redis 7.0 too, README); `cmd=` is the client's last command."""
    sidecar = make_sidecar(sidecar_config(any_upstream))
    key = unique("emu:cmd").encode()
    lines = {}
    for where, connect in (("direct", lambda: direct(any_upstream)), ("proxied", lambda: proxied(sidecar))):
        with connect() as me, connect() as other:
            call(other, [b"GET", key], [b"EXISTS", key])
            other_id = client_id(other)
            call(other, [b"EXISTS", key])  # its last command
            info = bulk_text(call(me, [b"CLIENT", b"INFO"])[0])
            listing = bulk_text(call(me, [b"CLIENT", b"LIST", b"ID", other_id])[0])
            lines[where] = (client_fields(info), client_fields(listing))
    for which, (d, p) in zip(("CLIENT INFO", "CLIENT LIST"), zip(lines["direct"], lines["proxied"])):
        names_d, names_p = [k for k, _ in d], [k for k, _ in p]
        if "lib-name" not in names_d and names_p[len(names_d):] == ["lib-name", "lib-ver"]:
            names_p = names_p[:len(names_d)]
        assert names_p == names_d, f"{which}: proxied fields {names_p}, direct {names_d}"
    assert dict(lines["proxied"][0])["cmd"] == dict(lines["direct"][0])["cmd"] == "client|info"
    assert dict(lines["proxied"][1])["cmd"] == dict(lines["direct"][1])["cmd"] == "exists"


def test_client_list_shows_an_acl_user_only_its_own_clients(upstream, make_sidecar):
    """issue 11.9: in passthrough mode with ACL users, user u1's CLIENT LIST through the sidecar does not show u2's
    clients (nor their addresses and last commands)."""
    sidecar = make_sidecar(sidecar_config(upstream))
    with acl_user(upstream, "~*", "&*", "+@all") as (u1, pw1), acl_user(upstream, "~*", "&*", "+@all") as (u2, pw2):
        with proxied(sidecar, auth=[b"AUTH", u2.encode(), pw2.encode()]) as theirs, \
                proxied(sidecar, auth=[b"AUTH", u1.encode(), pw1.encode()]) as mine:
            call(theirs, [b"GET", b"secret-key-name"])
            their_id = client_id(theirs).decode()
            my_id = client_id(mine).decode()
            entries = [dict(client_fields(line)) for line in bulk_text(call(mine, [b"CLIENT", b"LIST"])[0])
                       .splitlines() if line]
    assert my_id in [e["id"] for e in entries]
    assert their_id not in [e["id"] for e in entries], f"{u1} sees {u2}'s client"
    assert {e["user"] for e in entries} == {u1}


# -- PUBSUB NUMSUB -------------------------------------------------------------------------------------------------------

def test_pubsub_numsub_counts_the_sidecars_subscribers(upstream, make_sidecar):
    """issue 11.9: 3 subscribers of ch through the sidecar: `PUBSUB NUMSUB ch` through the sidecar answers 3, the
    bytes 3 direct subscribers give."""
    sidecar = make_sidecar(sidecar_config(upstream))
    channel = unique("emu:numsub").encode()
    seen = {}
    for where, connect in (("direct", lambda: direct(upstream)), ("proxied", lambda: proxied(sidecar))):
        subscribers = [connect() for _ in range(3)]
        try:
            for s in subscribers:
                assert call(s, [b"SUBSCRIBE", channel])[0].startswith(b"*3\r\n$9\r\nsubscribe")
            with connect() as asker:
                seen[where] = call(asker, [b"PUBSUB", b"NUMSUB", channel])
        finally:
            for s in subscribers:
                s.close()
        wait_until(lambda: upstream.client().pubsub_numsub(channel) == [(channel, 0)], "subscribers left behind")
    assert seen["direct"] == [b"*2\r\n$%d\r\n%s\r\n:3\r\n" % (len(channel), channel)]
    assert seen["proxied"] == seen["direct"]


# -- commands.profile: development -----------------------------------------------------------------------------------------

@pytest.fixture
def dev_sidecar(own_upstream, make_sidecar):
    return make_sidecar(sidecar_config(own_upstream, commands={"profile": "development"}))


def test_development_profile_runs_debug_and_client_pause_as_direct(own_upstream, dev_sidecar):
    """issue 11, test suites: with `commands.profile: development`, DEBUG SLEEP 0 and CLIENT PAUSE 100 WRITE /
    CLIENT UNPAUSE get the direct replies (+OK)."""
    script = [[b"DEBUG", b"SLEEP", b"0"], [b"CLIENT", b"PAUSE", b"100", b"WRITE"], [b"CLIENT", b"UNPAUSE"]]
    with direct(own_upstream) as d, proxied(dev_sidecar) as p:
        expected = call(d, *script)
        assert expected == [OK, OK, OK]
        assert call(p, *script) == expected
        assert call(p, [b"SET", b"after-unpause", b"1"]) == [OK]


def test_development_profile_client_kill_id_acts_on_sidecar_clients(own_upstream, dev_sidecar):
    """issue 11, test suites: `CLIENT KILL ID <another sidecar client's CLIENT ID>` answers :1 (as direct for a
    direct client's id) and that client is disconnected."""
    for where, connect in (("direct", lambda: direct(own_upstream)), ("proxied", lambda: proxied(dev_sidecar))):
        with connect() as killer, connect() as victim:
            assert call(killer, [b"CLIENT", b"KILL", b"ID", client_id(victim)]) == [b":1\r\n"], where
            wait_until(lambda: gone(victim), f"{where}: the killed client is still connected", timeout=5)


def test_development_profile_client_unblock_releases_a_sidecar_clients_blpop(own_upstream, dev_sidecar):
    """issue 11, test suites: `CLIENT UNBLOCK <id of a sidecar client blocked in BLPOP>` answers :1 and the BLPOP
    returns null, as direct."""
    queue = unique("emu:unblock").encode()
    for where, connect in (("direct", lambda: direct(own_upstream)), ("proxied", lambda: proxied(dev_sidecar))):
        with connect() as blocked, connect() as other:
            blocked_id = client_id(blocked)
            blocked.send(encode_command([b"BLPOP", queue, b"0"]))
            wait_until(lambda: blocked_upstream(own_upstream), f"{where}: the BLPOP never blocked upstream")
            assert call(other, [b"CLIENT", b"UNBLOCK", blocked_id]) == [b":1\r\n"], where
            assert read(blocked, f"{where}: the unblocked BLPOP") == [b"*-1\r\n"]
        wait_until(lambda: not blocked_upstream(own_upstream), f"{where}: still blocked upstream")


def test_without_the_profile_debug_is_refused(own_upstream, make_sidecar):
    """issue 11, test suites: without the development profile the safe default holds: DEBUG is refused with an
    `-ERR ... not allowed through the sidecar` text."""
    sidecar = make_sidecar(sidecar_config(own_upstream))
    with proxied(sidecar) as p:
        reply = call(p, [b"DEBUG", b"SLEEP", b"0"])[0]
    assert reply.startswith(b"-ERR ") and b"not allowed through the sidecar" in reply, reply
