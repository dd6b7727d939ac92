"""The chatroom web app: aiohttp serves the page, python-socketio carries the chat, Redis holds the shared state.

Socket.IO events from the page (each answers through its acknowledgement with ``{"ok": True, ...}`` or
``{"ok": False, "error": "text to show"}``; a refusal of what the person typed adds ``"cause": "input"``, and
``"maxLength"`` when only the length is wrong, so the page can drop the notice once the text is fixed):
  newUser(name)       join under a name (the article's event); the answer carries the history and who is online
  newMessage(text)    say something to everyone in the room
  leave()             leave the room but stay connected
  whoIsOnline()       ask for the current list of who is online
Events the server sends:
  whoIsOnline({version, names})      to every connected page whenever someone joins or leaves
  presence({name, event})            "joined" or "left", to the room
  newMessage({id, name, text, ts})   to the room

Several processes on one Redis share rooms and broadcasts through Socket.IO's Redis message queue
(AsyncRedisManager); the data itself goes through ``connect_per_request``, one fresh connection per event.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import socketio
from aiohttp import web
from redis.exceptions import RedisError

from chatroom.connect_per_request import Presence, fresh_connection
from chatroom.validation import InvalidInput, clean_message, clean_name

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
SOCKETIO_CLIENT = PACKAGE_DIR / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
SOCKETIO_CLIENT_ROUTE = "/vendor/socket.io.min.js"
ROOM = "chat"
HEARTBEAT_INTERVAL = 4  # seconds between the server's pings to each page
HEARTBEAT_TIMEOUT = 4  # seconds a page waits past a missed ping before it calls the connection lost
MESSAGE_QUEUE_CHANNEL = "chatroom"

# Everything the page needs comes from this server; the browser refuses anything else.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

log = logging.getLogger("chatroom")
Handler = Callable[..., Awaitable[dict | None]]


def _ok(**fields) -> dict:
    return {"ok": True, **fields}


def _error(text: str, **details: object) -> dict:
    return {"ok": False, "error": text, **details}


def _refused_input(text: str, max_length: int | None = None) -> dict:
    """A refusal that editing the name or message can fix (the page clears it then)."""
    return _error(text, cause="input", **({"maxLength": max_length} if max_length else {}))


class Chatroom:
    """The Socket.IO event handlers, plus who joined through this process."""

    def __init__(self, sio: socketio.AsyncServer, redis_url: str) -> None:
        self.sio = sio
        self.redis_url = redis_url
        self.names: dict[str, str] = {}  # sid -> name, for the people who joined through this process
        self._joining: set[str] = set()  # sids with a newUser in progress
        for event in ("newUser", "newMessage", "leave", "whoIsOnline", "disconnect"):
            sio.on(event, _reporting_store_failures(getattr(self, f"on_{event}")))

    async def on_whoIsOnline(self, sid: str, *_: object) -> dict:
        async with fresh_connection(self.redis_url) as db:
            return _ok(**(await db.presence()).as_dict())

    async def on_newUser(self, sid: str, name: object = None, *_: object) -> dict:
        if sid in self.names or sid in self._joining:
            return _error("You have already joined.")
        try:
            name = clean_name(name)
        except InvalidInput as exc:
            return _refused_input(str(exc), exc.max_length)
        self._joining.add(sid)  # a second newUser (a double click) must not join twice under two names
        try:
            return await self._join(sid, name)
        finally:
            self._joining.discard(sid)

    async def _join(self, sid: str, name: str) -> dict:
        async with fresh_connection(self.redis_url) as db:
            presence = await db.join(name)
            if presence is None:
                return _refused_input(f"Someone called {name} is already here; please pick another name.")
            if sid not in self._joining:  # the page disconnected meanwhile: do not leave a ghost behind
                await db.leave(name)
                return _error("Disconnected while joining.")
            self.names[sid] = name
            # In the room before reading the history, so no message falls between the two (the page drops repeats).
            await self.sio.enter_room(sid, ROOM)
            history = await db.history()
        await self._announce(presence, name, "joined")
        return _ok(name=name, history=history, online=presence.as_dict())

    async def on_newMessage(self, sid: str, text: object = None, *_: object) -> dict:
        name = self.names.get(sid)
        if name is None:
            return _error("Join the chat before sending messages.")
        try:
            text = clean_message(text)
        except InvalidInput as exc:
            return _refused_input(str(exc), exc.max_length)
        message = {"id": uuid.uuid4().hex, "name": name, "text": text, "ts": int(time.time() * 1000)}
        async with fresh_connection(self.redis_url) as db:
            await db.add_message(message)
        await self.sio.emit("newMessage", message, to=ROOM)
        return _ok(message=message)

    async def on_leave(self, sid: str, *_: object) -> dict:
        if sid not in self.names:
            return _error("You have not joined.")
        await self.sio.leave_room(sid, ROOM)
        await self._remove(sid)
        return _ok()

    async def on_disconnect(self, sid: str, *_: object) -> None:
        self._joining.discard(sid)
        await self._remove(sid)

    async def leave_all(self) -> None:
        """Take everyone connected here off the list, so a stopped process leaves no ghosts behind."""
        for sid in list(self.names):
            await self._remove(sid)

    async def _remove(self, sid: str) -> None:
        name = self.names.pop(sid, None)
        if name is None:
            return
        async with fresh_connection(self.redis_url) as db:
            presence = await db.leave(name)
        await self._announce(presence, name, "left")

    async def _announce(self, presence: Presence, name: str, event: str) -> None:
        await self.sio.emit("whoIsOnline", presence.as_dict())
        await self.sio.emit("presence", {"name": name, "event": event}, to=ROOM)


def _reporting_store_failures(handler: Handler) -> Handler:
    """Turn a Redis outage into an answer the page can show, instead of an event that never gets one."""

    @functools.wraps(handler)
    async def answer(sid: str, *args: object) -> dict | None:
        try:
            return await handler(sid, *args)
        except (RedisError, OSError) as exc:
            log.error("Redis failed during %s: %s", handler.__name__, exc)
            return _error("The chat's storage is unavailable right now; please try again.")

    return answer


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def _socketio_client(request: web.Request) -> web.FileResponse:
    if not SOCKETIO_CLIENT.is_file():
        raise web.HTTPNotFound(text="socket.io-client is not installed: run ./dev setup (npm ci in chatroom/)")
    return web.FileResponse(SOCKETIO_CLIENT)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


def create_app(redis_url: str) -> web.Application:
    """The aiohttp application with Socket.IO attached; ``redis_url`` may name the sidecar or Redis itself."""
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=socketio.AsyncRedisManager(redis_url, channel=MESSAGE_QUEUE_CHANNEL),
        # A page notices a server that stopped answering (frozen, or its host gone without closing the connection)
        # after ping_interval + ping_timeout: 8 s, instead of Socket.IO's default 45 s of showing "Connected".
        ping_interval=HEARTBEAT_INTERVAL,
        ping_timeout=HEARTBEAT_TIMEOUT,
    )
    app = web.Application()
    sio.attach(app)
    chatroom = Chatroom(sio, redis_url)

    async def shutdown(_: web.Application) -> None:
        await chatroom.leave_all()
        if sio.eio.sockets:  # close every socket now, or aiohttp waits for the pages to hang up
            await sio.eio.disconnect()
        await sio.shutdown()

    app.on_shutdown.append(shutdown)
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/", _index)
    app.router.add_get("/frontend-app", _index)  # the article's address for the page
    app.router.add_get(SOCKETIO_CLIENT_ROUTE, _socketio_client)
    app.router.add_static("/static/", STATIC_DIR)
    if not SOCKETIO_CLIENT.is_file():
        log.warning("%s is missing: run ./dev setup so the page gets its Socket.IO client", SOCKETIO_CLIENT)
    return app
