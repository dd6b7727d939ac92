"""Who a connection logs in as upstream, what the server said about itself, and the pool key that follows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import hiredis


@dataclass(frozen=True, slots=True)
class Credential:
    """A login upstream. The password never appears in repr or logs; ``None`` password means no AUTH at all."""

    username: str | None
    password: str | None = field(repr=False, default=None)

    @property
    def user(self) -> str:
        return self.username or "default"

    def auth_args(self) -> list[bytes]:
        """``AUTH`` arguments for this login (surrogateescape: a client's non-UTF-8 password goes as its bytes)."""
        return [self.user.encode(errors="surrogateescape"), (self.password or "").encode(errors="surrogateescape")]


class PoolKey(NamedTuple):
    """What an upstream connection is bound to: a reply can only come from a connection with the client's login,
    db and protocol. ``login`` is the credential the connection authenticates as. (A tuple: made and hashed once
    per client, on the connection-per-request path.)"""

    login: Credential
    db: int
    proto: int


@dataclass(slots=True)
class ServerInfo:
    """What the upstream said about itself in its HELLO reply; the sidecar's local HELLO answers with it."""

    server: str = "redis"
    version: str = "7.0.0"
    mode: str = "standalone"
    role: str = "master"
    modules: list[Any] = field(default_factory=list)
    hello: bool = True  # the server knows HELLO (Redis 6+): RESP3 connections are possible

    @property
    def valkey(self) -> bool:
        return self.server == "valkey"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_hello(frame: bytes) -> ServerInfo:
    """The server's HELLO reply (a RESP3 map or a RESP2 flat array) as ``ServerInfo``."""
    reader = hiredis.Reader()
    reader.feed(frame)
    value = reader.gets()
    if isinstance(value, list):
        value = dict(zip(value[::2], value[1::2]))
    info = {_text(k): v for k, v in value.items()}
    # a module is a map in RESP3 and a flat array in RESP2: keep maps, so either protocol can be answered
    modules = [m if isinstance(m, dict) else dict(zip(m[::2], m[1::2])) for m in info.get("modules") or []]
    return ServerInfo(server=_text(info.get("server", "redis")), version=_text(info.get("version", "7.0.0")),
                      mode=_text(info.get("mode", "standalone")), role=_text(info.get("role", "master")),
                      modules=modules)
