"""The chatroom end to end: simulated Socket.IO users join and chat while the chatroom connects per event.

The chatroom (``python -m chatroom``) runs twice, once with REDIS_URL naming the upstream across the WAN and once
naming the sidecar. Each user is a python-socketio client on a WebSocket: it joins (``newUser``), sends a few
messages (``newMessage``) and leaves; the latency is the time to each event's acknowledgement, which includes the
chatroom's fresh Redis connection and its commands.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time

from benchmarks.stack import Endpoint
from benchmarks.stats import Sample

EVENT_TIMEOUT = 15.0
_names = itertools.count()
_RUN = secrets.token_hex(3)  # names from an earlier, interrupted run cannot clash


def available() -> bool:
    try:
        import socketio  # noqa: F401

        import chatroom.process  # noqa: F401
    except ImportError:
        return False
    return True


class ChatroomUsers:
    """One chatroom process for the block; per repeat, ``users`` concurrent users each join and send ``messages``."""

    def __init__(self, endpoint: Endpoint, users: int, messages: int) -> None:
        self.endpoint = endpoint
        self.users = users
        self.messages = messages

    async def __aenter__(self) -> "ChatroomUsers":
        from chatroom.process import ChatroomProcess

        self.chatroom = ChatroomProcess(self.endpoint.url)
        await asyncio.to_thread(self.chatroom.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.chatroom.stop)

    async def warm(self) -> None:
        await self._user(0, [], [0])

    async def measure(self) -> Sample:
        latencies: list[float] = []
        errors = [0]
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.wait_for(
            asyncio.gather(*(self._user(self.messages, latencies, errors) for _ in range(self.users))),
            EVENT_TIMEOUT * (self.messages + 2),
        )
        wall = time.perf_counter() - started
        # the simulated users run in the benchmark's own process (its CPU here includes the upstream monitor's)
        return Sample.from_latencies(latencies, wall, errors[0]).with_extra(
            generator_cpu_s=time.process_time() - cpu, generator_wall_s=wall,
            generator_peak_process=min(1.0, (time.process_time() - cpu) / wall), generator_processes=1.0)

    async def _user(self, messages: int, latencies: list[float], errors: list[int]) -> None:
        """Connect, join, chat, disconnect (the chatroom then takes the name off the online list)."""
        import socketio

        client = socketio.AsyncClient(reconnection=False)
        try:
            await client.connect(self.chatroom.url, transports=["websocket"], wait_timeout=EVENT_TIMEOUT)
            events = [("newUser", f"bench-{_RUN}-{next(_names)}")]
            events += [("newMessage", f"hello {i}") for i in range(messages)]
            for event, payload in events:
                began = time.perf_counter()
                answer = await client.call(event, payload, timeout=EVENT_TIMEOUT)
                if isinstance(answer, dict) and answer.get("ok"):
                    latencies.append(time.perf_counter() - began)
                else:
                    errors[0] += 1
        except (socketio.exceptions.SocketIOError, OSError, asyncio.TimeoutError):
            errors[0] += 1
        finally:
            await client.disconnect()
