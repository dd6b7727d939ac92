"""The chatroom as its users see it: real Socket.IO clients against ``python -m chatroom`` on a real Redis.

Every test runs twice, with the app's REDIS_URL pointing at the password-protected upstream directly and at the
sidecar in front of it; the app cannot tell the difference, and neither should its users.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import socketio

from chatroom.app import SOCKETIO_CLIENT_ROUTE
from chatroom.connect_per_request import HISTORY_LENGTH, MESSAGES_KEY, ONLINE_KEY
from chatroom.process import ChatroomProcess
from chatroom.validation import MAX_MESSAGE_LENGTH, MAX_NAME_LENGTH
from harness.servers import free_port

pytestmark = pytest.mark.timeout(60)

WAIT_SECONDS = 5.0
_loopback = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module", params=["direct", "sidecar"])
def redis_url(request, upstream) -> str:
    """What the app gets as REDIS_URL: the upstream itself, or the sidecar (passthrough auth: same password)."""
    if request.param == "direct":
        return upstream.url()
    return request.getfixturevalue("sidecar").url(password=upstream.password)


@pytest.fixture(scope="module")
def chatroom(redis_url):
    with ChatroomProcess(redis_url) as proc:
        yield proc


@pytest.fixture(autouse=True)
def empty_room(upstream):
    """Each test starts with nobody online and no history (the upstream is shared by the whole session).

    The previous test's tabs are closed, but the app takes them off the list in its own time: wait for that rather
    than wiping the set under it, or a late SREM would remove a newcomer who reuses a name. The presence version is
    never reset, as in a real deployment: pages drop snapshots older than the newest they saw, so a late broadcast
    from the previous test must never carry a higher version than this test's joins.
    """
    deadline = time.monotonic() + WAIT_SECONDS
    while online_in_redis(upstream) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert online_in_redis(upstream) == set(), "the previous test's closed tabs are still listed as online"
    upstream.client().delete(MESSAGES_KEY)


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario, 40))


class Visitor:
    """One person's browser tab: a Socket.IO client that records what the page would show."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.client = socketio.AsyncClient(reconnection=False)
        self.online: list[str] = []
        self.online_version = -1
        self.messages: list[dict] = []
        self.notices: list[tuple[str, str]] = []
        self.client.on("whoIsOnline", self._on_online)
        self.client.on("newMessage", self.messages.append)
        self.client.on("presence", lambda change: self.notices.append((change["name"], change["event"])))

    def _on_online(self, snapshot: dict) -> None:
        if snapshot["version"] >= self.online_version:
            self.online_version, self.online = snapshot["version"], snapshot["names"]

    async def ask(self, event: str, data: object = None) -> dict:
        """Send an event and return the server's answer (None sends the event without an argument)."""
        return await self.client.call(event, data, timeout=WAIT_SECONDS)

    async def join(self, name: str | None = None) -> dict:
        answer = await self.ask("newUser", name or self.name)
        assert answer["ok"], answer
        return answer

    async def say(self, text: str) -> dict:
        answer = await self.ask("newMessage", text)
        assert answer["ok"], answer
        return answer["message"]

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages]

    async def sees(self, what: str, condition: Callable[[], bool]) -> None:
        """Wait (bounded) until the condition holds, as a person would wait for the page to update."""
        for _ in range(int(WAIT_SECONDS / 0.02)):
            if condition():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{self.name} never saw {what}: online={self.online} messages={self.texts()}")


@asynccontextmanager
async def visitors(chatroom: ChatroomProcess, *names: str) -> AsyncIterator[list[Visitor]]:
    """Open a tab per name (connected, not yet joined); close them all afterwards."""
    people = [Visitor(name) for name in names]
    try:
        for person in people:
            await person.client.connect(chatroom.url, transports=["websocket"], wait_timeout=WAIT_SECONDS)
        yield people
    finally:
        for person in people:
            await person.client.disconnect()


def online_in_redis(upstream) -> set[str]:
    return {name.decode() for name in upstream.client().smembers(ONLINE_KEY)}


def test_the_page_and_its_socketio_client_come_from_the_app(chatroom):
    for path in ("/", "/frontend-app"):
        with _loopback.open(chatroom.url + path, timeout=WAIT_SECONDS) as response:
            page = response.read().decode()
            assert response.headers["Content-Type"].startswith("text/html")
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert 'id="name"' in page and f'src="{SOCKETIO_CLIENT_ROUTE}"' in page
        assert "://" not in page, "the page must not load anything from another machine"
    with _loopback.open(chatroom.url + SOCKETIO_CLIENT_ROUTE, timeout=WAIT_SECONDS) as response:
        script = response.read().decode()
        assert "javascript" in response.headers["Content-Type"]
    assert "Socket.IO v4" in script, "socket.io-client 4.x missing: run ./dev setup (npm ci in chatroom/)"


def test_joining_shows_the_name_to_everyone(chatroom, upstream):
    async def scenario():
        async with visitors(chatroom, "alice", "bob") as (alice, bob):
            answer = await alice.join()
            assert answer["online"]["names"] == ["alice"] and answer["history"] == []
            await bob.sees("alice online before joining", lambda: bob.online == ["alice"])
            assert online_in_redis(upstream) == {"alice"}

            await bob.join()
            await alice.sees("bob online", lambda: alice.online == ["alice", "bob"])
            await alice.sees("that bob joined", lambda: ("bob", "joined") in alice.notices)
            assert online_in_redis(upstream) == {"alice", "bob"}

            asked = await bob.ask("whoIsOnline")
            assert asked["ok"] and asked["names"] == ["alice", "bob"]

    run(scenario())


def test_messages_reach_everyone_and_newcomers_get_the_history(chatroom):
    async def scenario():
        async with visitors(chatroom, "alice", "bob", "carol") as (alice, bob, carol):
            await alice.join()
            await bob.join()
            await alice.say("hello bob")
            await bob.say("hi alice")
            for person in (alice, bob):
                await person.sees("both messages", lambda p=person: p.texts() == ["hello bob", "hi alice"])
            assert carol.messages == [], "messages go to the room, not to people who have not joined"

            history = (await carol.join())["history"]
            assert [(m["name"], m["text"]) for m in history] == [("alice", "hello bob"), ("bob", "hi alice")]

    run(scenario())


def test_history_keeps_the_last_50_messages(chatroom, upstream):
    async def scenario():
        async with visitors(chatroom, "alice", "late") as (alice, late):
            await alice.join()
            for i in range(HISTORY_LENGTH + 5):
                await alice.say(f"message {i}")
            history = (await late.join())["history"]
            assert [m["text"] for m in history] == [f"message {i}" for i in range(5, HISTORY_LENGTH + 5)]

    run(scenario())
    assert upstream.client().llen(MESSAGES_KEY) == HISTORY_LENGTH


def test_leaving_and_disconnecting_take_people_off_the_list(chatroom, upstream):
    async def scenario():
        async with visitors(chatroom, "alice", "bob", "carol") as (alice, bob, carol):
            for person in (alice, bob, carol):
                await person.join()
            await alice.sees("everyone", lambda: alice.online == ["alice", "bob", "carol"])

            assert (await bob.ask("leave"))["ok"]
            await alice.sees("bob leave", lambda: alice.online == ["alice", "carol"])
            await alice.sees("the notice", lambda: ("bob", "left") in alice.notices)
            refused = await bob.ask("newMessage", "still here?")
            assert not refused["ok"] and "Join" in refused["error"]

            await carol.client.disconnect()
            for person in (alice, bob):
                await person.sees("carol go away", lambda p=person: p.online == ["alice"])
            assert online_in_redis(upstream) == {"alice"}

    run(scenario())
    deadline = time.monotonic() + WAIT_SECONDS
    while online_in_redis(upstream) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert online_in_redis(upstream) == set(), "closing every tab must empty who_is_online"


BAD_NAMES = {
    "empty": "",
    "blank": "   ",
    "too-long": "x" * (MAX_NAME_LENGTH + 1),
    "number": 42,
    "missing": None,
    "object": {"name": "alice"},
    "control-character": "bell\x07",
    "line-break": "two\nlines",
}


@pytest.mark.parametrize("bad_name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_bad_names_are_refused_with_a_reason(chatroom, upstream, bad_name):
    async def scenario():
        async with visitors(chatroom, "someone") as (person,):
            answer = await person.ask("newUser", bad_name)
            assert not answer["ok"] and answer["error"]
            assert online_in_redis(upstream) == set()
            await person.join("fine after all")  # the connection survived the bad input

    run(scenario())


def test_bad_messages_and_out_of_turn_events_are_refused(chatroom, upstream):
    async def scenario():
        async with visitors(chatroom, "alice", "bob") as (alice, bob):
            early = await alice.ask("newMessage", "before joining")
            assert not early["ok"] and "Join" in early["error"]
            await alice.join()
            again = await alice.ask("newUser", "alice2")
            assert not again["ok"] and "already joined" in again["error"]
            taken = await bob.ask("newUser", " alice ")
            assert not taken["ok"] and "already here" in taken["error"]

            for bad in ["", "  \n ", "x" * (MAX_MESSAGE_LENGTH + 1), 42, ["a"]]:
                answer = await alice.ask("newMessage", bad)
                assert not answer["ok"] and answer["error"], bad
            too_long = await alice.ask("newMessage", "y" * (MAX_MESSAGE_LENGTH + 1))
            assert str(MAX_MESSAGE_LENGTH) in too_long["error"]
            assert too_long["cause"] == "input" and too_long["maxLength"] == MAX_MESSAGE_LENGTH  # the page's cue

            await bob.join("b" * MAX_NAME_LENGTH)  # exactly at the limits is fine
            await alice.say("z" * MAX_MESSAGE_LENGTH)
            await bob.sees("the long message", lambda: bob.texts() == ["z" * MAX_MESSAGE_LENGTH])
            assert online_in_redis(upstream) == {"alice", "b" * MAX_NAME_LENGTH}

    run(scenario())
    assert upstream.client().llen(MESSAGES_KEY) == 1


def test_markup_is_kept_as_plain_text(chatroom, upstream):
    name, text = "<img src=x onerror=alert(1)>", '<b>bold</b> & "quoted" <script>alert(2)</script>'

    async def scenario():
        async with visitors(chatroom, name, "bob") as (mallory, bob):
            await mallory.join()
            await bob.join()
            await mallory.say(text)
            await bob.sees("the message verbatim", lambda: [(m["name"], m["text"]) for m in bob.messages] == [(name, text)])
            assert bob.online == sorted([name, "bob"])

    run(scenario())
    stored = json.loads(upstream.client().lindex(MESSAGES_KEY, 0))
    assert (stored["name"], stored["text"]) == (name, text)


def test_each_event_opens_its_own_redis_connection(chatroom, upstream, redis_url):
    """The pattern the demo exists for: directly, Redis accepts a connection per event; via the sidecar, it does not."""
    events = 20
    watcher = upstream.client()

    def accepted() -> int:
        return int(watcher.info("stats")["total_connections_received"])

    async def scenario():
        async with visitors(chatroom, "alice") as (alice,):
            await alice.join()
            before = accepted()
            for i in range(events):
                await alice.say(f"event {i}")
            return accepted() - before

    new_connections = asyncio.run(asyncio.wait_for(scenario(), 40))
    if redis_url == upstream.url():
        assert new_connections >= events
    else:
        assert new_connections < events / 4, "the sidecar should reuse its upstream connections"


def test_two_processes_share_messages_and_presence(chatroom, redis_url, upstream):
    with ChatroomProcess(redis_url) as other:

        async def scenario():
            async with visitors(chatroom, "alice") as (alice,), visitors(other, "bob") as (bob,):
                await alice.join()
                await bob.join()
                for person in (alice, bob):
                    await person.sees("both online", lambda p=person: p.online == ["alice", "bob"])
                await alice.say("from the first process")
                await bob.say("from the second process")
                for person in (alice, bob):
                    await person.sees(
                        "both messages",
                        lambda p=person: sorted(p.texts()) == ["from the first process", "from the second process"],
                    )
                assert await asyncio.to_thread(other.stop) == 0  # a clean stop takes bob off the list for everyone
                await alice.sees("bob gone with his server", lambda: alice.online == ["alice"])
                assert online_in_redis(upstream) == {"alice"}

        run(scenario())


def test_an_unreachable_redis_gives_an_answer_not_a_hang():
    dead = f"redis://:nobody@127.0.0.1:{free_port()}/0"  # nothing listens there
    with ChatroomProcess(dead) as chatroom:

        async def scenario():
            async with visitors(chatroom, "alice") as (alice,):
                answer = await alice.ask("newUser", "alice")
                assert not answer["ok"] and "unavailable" in answer["error"]

        run(scenario())
        assert "nobody" not in chatroom.log_text(), "the Redis password must never be logged"
