"""Regression tests, issues 11.2, 11.4, 11.10 and 10.7: subscriptions the upstream refuses, protocol or user switched
while subscribed, RESP3 subscribers with CLIENT REPLY OFF, and subscriptions released when their clients leave.

Each scenario runs on a direct connection and through the sidecar, and the frames the client receives are compared
byte for byte (HELLO's reply names the connection, so only its shape is compared)."""

from __future__ import annotations

import asyncio

import pytest

from conftest import UPSTREAM_PASSWORD, sidecar_config, wait_until
from proxy.wire.resp import ReplyFramer, encode_command
from regress_support import OK, acl_user, bulk_text, call, client_fields, direct, proxied, read, unique

HELLO3 = [b"HELLO", b"3", b"AUTH", b"default", UPSTREAM_PASSWORD.encode()]


@pytest.fixture
def sidecar_ps(any_upstream, make_sidecar):
    return make_sidecar(sidecar_config(any_upstream))


def numsub(server, channel: bytes) -> int:
    with direct(server) as d:
        frame = call(d, [b"PUBSUB", b"NUMSUB", channel])[0]
    return int(frame.rsplit(b":", 1)[1].strip())


def publish(server, channel: bytes, message: bytes) -> None:
    with direct(server) as d:
        call(d, [b"PUBLISH", channel, message])


# -- 11.2 / 10.7: a SUBSCRIBE the upstream refuses -------------------------------------------------------------------

@pytest.mark.parametrize("proto", [2, 3])
def test_subscribe_refused_upstream_gets_the_same_error_and_the_client_goes_on(any_upstream, sidecar_ps, proto):
    """issue 11.2: an ACL user without channel permissions (resetchannels): SUBSCRIBE gets the same -NOPERM bytes
    as direct, no hang; later commands are answered as direct; CLIENT INFO shows sub=0."""
    channel, key = unique("ps:refused").encode(), unique("ps:k").encode()
    with acl_user(any_upstream, "~*", "resetchannels", "+@all") as (user, pw):
        login = [b"HELLO", b"3", b"AUTH", user.encode(), pw.encode()] if proto == 3 else \
            [b"AUTH", user.encode(), pw.encode()]
        seen = {}
        for where, conn in (("direct", direct(any_upstream, timeout=5, auth=False)),
                            ("proxied", proxied(sidecar_ps, timeout=5, auth=None))):
            with conn:
                call(conn, login)
                replies = call(conn, [b"SUBSCRIBE", channel], [b"GET", key], [b"PING"],
                               what=f"{where}: SUBSCRIBE refused upstream, then GET and PING")
                info = call(conn, [b"CLIENT", b"INFO"])[0]
                seen[where] = (replies, dict(client_fields(bulk_text(info)))["sub"])
        assert seen["direct"][0][0].startswith(b"-NOPERM")
        assert seen["proxied"] == seen["direct"]


def test_refused_subscribe_does_not_poison_the_channel_for_later_subscribers(any_upstream, sidecar_ps):
    """issues 11.2, 10.7: after a user's SUBSCRIBE was refused upstream, another user with permission, and the same
    user once `ACL SETUSER u allchannels` ran, subscribe to the same channel through the sidecar and receive its
    messages; once everyone left, nothing stays subscribed upstream."""
    channel = unique("ps:poison").encode()
    with acl_user(any_upstream, "~*", "resetchannels", "+@all") as (user, pw), \
            acl_user(any_upstream, "~*", "allchannels", "+@all") as (other, other_pw):
        refused = proxied(sidecar_ps, timeout=5, auth=[b"AUTH", user.encode(), pw.encode()])
        refused.send(encode_command([b"SUBSCRIBE", channel]))  # its reply is the previous test's subject
        confirm = b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(channel), channel)
        with proxied(sidecar_ps, timeout=5, auth=[b"AUTH", other.encode(), other_pw.encode()]) as second:
            assert call(second, [b"SUBSCRIBE", channel], what="another user's SUBSCRIBE") == [confirm]
            publish(any_upstream, channel, b"to the other user")
            assert read(second, "message for the other user") == [
                b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$17\r\nto the other user\r\n" % (len(channel), channel)]
        any_upstream.client().execute_command("ACL", "SETUSER", user, "allchannels")
        with proxied(sidecar_ps, timeout=5, auth=[b"AUTH", user.encode(), pw.encode()]) as again:
            assert call(again, [b"SUBSCRIBE", channel], what="the same user's SUBSCRIBE after allchannels") == \
                [confirm]
            publish(any_upstream, channel, b"now allowed")
            assert read(again, "message for the same user") == [
                b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$11\r\nnow allowed\r\n" % (len(channel), channel)]
        refused.close()
    wait_until(lambda: numsub(any_upstream, channel) == 0,
               lambda: f"{numsub(any_upstream, channel)} subscriptions to {channel!r} left upstream")


# -- 11.4 / 10.7: HELLO and AUTH while subscribed ---------------------------------------------------------------------

def test_resp2_subscriber_sending_hello_3_is_answered_as_direct(upstream, make_sidecar):
    """issue 11.4 (the literal case): a RESP2 subscriber's HELLO 3 and the SET after it are refused by Redis and
    Valkey alike (RESP2 subscribed mode): the same bytes through the sidecar; then a message, then nothing left."""
    sidecar = make_sidecar(sidecar_config(upstream))
    channel, key = unique("ps:r2hello").encode(), unique("ps:k").encode()
    seen = {}
    for where, conn in (("direct", direct(upstream, timeout=5)), ("proxied", proxied(sidecar, timeout=5))):
        with conn:
            replies = call(conn, [b"SUBSCRIBE", channel], [b"HELLO", b"3"], [b"SET", key, b"v"])
            publish(upstream, channel, b"after hello")
            seen[where] = replies + read(conn, f"{where}: message after HELLO")
            call(conn, [b"QUIT"])
    assert seen["proxied"] == seen["direct"]
    wait_until(lambda: numsub(upstream, channel) == 0, f"{channel!r} still subscribed upstream after QUIT")


@pytest.mark.parametrize("switch", ["hello-auth-other-user", "auth-other-user", "hello-2"])
def test_resp3_subscriber_switching_user_or_protocol_keeps_the_stream_right(upstream, make_sidecar, switch):
    """issues 11.4, 10.7: a RESP3 subscriber switches user (HELLO 3 AUTH, AUTH) or protocol (HELLO 2) while
    subscribed, then SETs: the SET's reply and the next message are the bytes a direct connection gets (+OK then a
    RESP3 push; or, in RESP2, Redis's subscribed-mode error then a RESP2 message); after QUIT nothing is left
    subscribed upstream."""
    sidecar = make_sidecar(sidecar_config(upstream))
    channel, key = unique("ps:switch").encode(), unique("ps:k").encode()
    with acl_user(upstream, "~*", "&*", "+@all") as (user, pw):
        change = {"hello-auth-other-user": [b"HELLO", b"3", b"AUTH", user.encode(), pw.encode()],
                  "auth-other-user": [b"AUTH", user.encode(), pw.encode()], "hello-2": [b"HELLO", b"2"]}[switch]
        seen = {}
        for where, conn in (("direct", direct(upstream, timeout=5, auth=False)),
                            ("proxied", proxied(sidecar, timeout=5, auth=None))):
            with conn:
                call(conn, HELLO3)
                subscribed = call(conn, [b"SUBSCRIBE", channel])
                switched = call(conn, change, what=f"{where}: {switch} while subscribed")[0]
                after = call(conn, [b"SET", key, b"v"], [b"PING"], what=f"{where}: SET and PING after the switch")
                publish(upstream, channel, b"after the switch")
                message = read(conn, f"{where}: message after the switch")
                seen[where] = (subscribed, switched[:1], after, message)
                assert call(conn, [b"QUIT"]) == [OK]
        assert seen["proxied"] == seen["direct"]
        wait_until(lambda: numsub(upstream, channel) == 0,
                   lambda: f"{numsub(upstream, channel)} subscriptions to {channel!r} left upstream after QUIT",
                   timeout=10)


@pytest.mark.timeout(180)
def test_1000_subscribers_switching_then_leaving_leave_no_subscription_upstream(upstream, make_sidecar):
    """issue 10.7: 1000 RESP3 clients subscribe to 10 channels each, switch protocol (HELLO 2) or user (HELLO 3 AUTH
    another user) while subscribed, then disconnect: the upstream is left with no subscription at all."""
    sidecar = make_sidecar(sidecar_config(upstream))
    prefix = unique("ps:mass").encode()

    async def one(i: int, user: str, pw: str, limit: asyncio.Semaphore) -> None:
        async with limit:
            reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.port)
            framer = ReplyFramer()

            async def frames(n: int) -> list[bytes]:
                out = []
                while len(out) < n:
                    frame = framer.next()
                    if frame is None:
                        chunk = await asyncio.wait_for(reader.read(1 << 16), 20)
                        assert chunk, f"client {i}: closed by the sidecar"
                        framer.feed(chunk)
                    else:
                        out.append(frame)
                return out

            channels = [b"%s:%d:%d" % (prefix, i, n) for n in range(10)]
            writer.write(encode_command(HELLO3) + encode_command([b"SUBSCRIBE", *channels]))
            got = await frames(11)
            assert got[0][:1] == b"%" and all(f.startswith(b">3\r\n$9\r\nsubscribe") for f in got[1:]), got[:2]
            change = [b"HELLO", b"2"] if i % 2 else [b"HELLO", b"3", b"AUTH", user.encode(), pw.encode()]
            writer.write(encode_command(change))
            await frames(1)
            writer.close()

    def upstream_channels() -> int:
        return len(upstream.client().pubsub_channels(prefix + b":*"))

    with acl_user(upstream, "~*", "&*", "+@all") as (user, pw):
        async def main() -> None:
            limit = asyncio.Semaphore(200)
            await asyncio.gather(*(one(i, user, pw, limit) for i in range(1000)))

        asyncio.run(asyncio.wait_for(main(), 120))
        wait_until(lambda: upstream_channels() == 0,
                   lambda: f"{upstream_channels()} of 10000 channels still subscribed upstream after every client "
                           "left", timeout=30)


# -- 11.10: RESP3 and CLIENT REPLY OFF -------------------------------------------------------------------------------

def test_resp3_subscriber_with_client_reply_off_still_gets_its_pushes(upstream, make_sidecar):
    """issue 11.10: HELLO 3, CLIENT REPLY OFF, SUBSCRIBE ch: the subscribe confirmation and the messages are pushes,
    not replies; the client receives them, the same bytes as direct."""
    sidecar = make_sidecar(sidecar_config(upstream))
    channel = unique("ps:replyoff").encode()
    seen = {}
    for where, conn in (("direct", direct(upstream, timeout=5, auth=False)),
                        ("proxied", proxied(sidecar, timeout=5, auth=None))):
        with conn:
            call(conn, HELLO3)
            conn.send(encode_command([b"CLIENT", b"REPLY", b"OFF"]) + encode_command([b"SUBSCRIBE", channel]))
            confirmation = read(conn, f"{where}: subscribe push with CLIENT REPLY OFF")
            publish(upstream, channel, b"pushed anyway")
            seen[where] = confirmation + read(conn, f"{where}: message with CLIENT REPLY OFF")
    assert seen["direct"][0].startswith(b">3\r\n$9\r\nsubscribe")
    assert seen["proxied"] == seen["direct"]


# -- a message published before the subscriber leaves ---------------------------------------------------------------

BIG_MESSAGE = b"m" * (4 << 20)  # the hub connection is still reading it when the UNSUBSCRIBE arrives


@pytest.mark.parametrize("proto", [2, 3])
def test_message_published_before_unsubscribe_arrives_before_its_confirmation(any_upstream, sidecar_ps, proto):
    """Another client's PUBLISH is answered, then the subscriber sends UNSUBSCRIBE: a direct connection gets the
    message, then the confirmation. Through the sidecar the UNSUBSCRIBE used to be answered at once, while the hub
    connection was still reading the message, which was then dropped."""
    channel = unique("ps:before").encode()
    seen = {}
    for where, conn in (("direct", direct(any_upstream, timeout=10, auth=False)),
                        ("proxied", proxied(sidecar_ps, timeout=10, auth=None))):
        with conn:
            call(conn, [b"HELLO", str(proto).encode(), b"AUTH", b"default", UPSTREAM_PASSWORD.encode()])
            call(conn, [b"SUBSCRIBE", channel])
            with direct(any_upstream) as publisher:
                assert call(publisher, [b"PUBLISH", channel, BIG_MESSAGE]) == [b":1\r\n"]
                conn.send(encode_command([b"UNSUBSCRIBE", channel]))
            seen[where] = read(conn, f"{where}: the message and the unsubscribe confirmation", 2)
    assert BIG_MESSAGE in seen["direct"][0]
    assert seen["proxied"] == seen["direct"], f"proxied: {[f[:40] for f in seen['proxied']]}"


@pytest.mark.parametrize("leaving,last", [
    ([b"UNSUBSCRIBE"], b">3\r\n$11\r\nunsubscribe\r\n"), ([b"RESET"], b"+RESET\r\n"), ([b"QUIT"], b"+OK\r\n")],
    ids=["unsubscribe", "reset", "quit"])
def test_own_message_published_in_the_leaving_pipeline_reaches_the_client(any_upstream, sidecar_ps, leaving, last):
    """RESP3 SUBSCRIBE ch, then PUBLISH ch <4 MB> and UNSUBSCRIBE ch (or RESET, or QUIT) in one write: the message
    comes before the last reply, as direct (whether it comes before PUBLISH's own reply is the README's PUBLISH
    row)."""
    channel = unique("ps:own").encode()
    leave = leaving + [channel] if leaving == [b"UNSUBSCRIBE"] else leaving
    seen = {}
    for where, conn in (("direct", direct(any_upstream, timeout=10, auth=False)),
                        ("proxied", proxied(sidecar_ps, timeout=10, auth=None))):
        with conn:
            call(conn, HELLO3)
            call(conn, [b"SUBSCRIBE", channel])
            seen[where] = call(conn, [b"PUBLISH", channel, BIG_MESSAGE], leave, what=f"{where}: the pipeline")
            seen[where] += read(conn, f"{where}: the third frame (the message is one of the three)")
    for where, frames in seen.items():
        assert frames[2].startswith(last), f"{where}: {[f[:40] for f in frames]}"
    assert sorted(seen["proxied"]) == sorted(seen["direct"])


@pytest.mark.parametrize("proto", [2, 3])
def test_unsubscribe_of_a_user_who_may_not_ping_is_answered_as_direct(any_upstream, sidecar_ps, proto):
    """The hub's PING behind which an UNSUBSCRIBE waits is refused for a user without +ping: the refusal marks the
    same point in the stream, so the client is answered at once, as direct, and its later commands run."""
    channel = unique("ps:noping").encode()
    with acl_user(any_upstream, "~*", "&*", "+@all", "-ping") as (user, pw):
        hello = [b"HELLO", str(proto).encode(), b"AUTH", user.encode(), pw.encode()]
        seen = {}
        for where, conn in (("direct", direct(any_upstream, timeout=5, auth=False)),
                            ("proxied", proxied(sidecar_ps, timeout=5, auth=None))):
            with conn:
                call(conn, hello)
                seen[where] = call(conn, [b"SUBSCRIBE", channel], [b"UNSUBSCRIBE", channel], [b"ECHO", b"after"],
                                   what=f"{where}: subscribe, unsubscribe, echo")
    assert seen["proxied"] == seen["direct"]
    assert seen["direct"][2] == b"$5\r\nafter\r\n"
