"""A tiny HTTP/1.x endpoint on the sidecar's own event loop: GET and HEAD only, one request per connection.

It serves the operating endpoints (``/metrics``, ``/healthz``, ``/readyz``) and needs no web framework: a handler
takes the request path and returns ``(status, content type, body)``. ``fetch_unix`` is the matching client the
``--workers`` supervisor uses to read each worker's endpoint over its unix socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

log = logging.getLogger("sidecar.http")

Handler = Callable[[str], Awaitable[tuple[int, str, bytes]]]
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 431: "Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}
MAX_HEAD = 8192


class _Request(asyncio.Protocol):
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.task is not None:
            return
        self.buf += data
        if b"\r\n\r\n" not in self.buf and b"\n\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                self._send(431, "text/plain", b"request head too large\n", True)
            return
        line = self.buf.split(b"\n", 1)[0].decode("latin-1").strip().split()
        if len(line) != 3 or not line[2].startswith("HTTP/"):
            self._send(400, "text/plain", b"bad request\n", True)
            return
        method, target = line[0], line[1]
        if method not in ("GET", "HEAD"):
            self._send(405, "text/plain", b"only GET and HEAD\n", True)
            return
        self.task = asyncio.get_running_loop().create_task(self._respond(urlsplit(target).path, method == "GET"))

    async def _respond(self, path: str, body: bool) -> None:
        try:
            status, ctype, data = await self.handler(path)
        except Exception:
            log.exception("HTTP handler failed for %s", path)
            status, ctype, data = 500, "text/plain", b"internal error\n"
        self._send(status, ctype, data, body)

    def _send(self, status: int, ctype: str, data: bytes, body: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode()
        self.transport.write(head + data if body else head)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(handler: Handler, host: str | None = None, port: int | None = None,
                path: str | None = None) -> asyncio.AbstractServer:
    """Listen on HOST:PORT, or on the unix socket ``path``."""
    loop = asyncio.get_running_loop()
    factory = lambda: _Request(handler)  # noqa: E731
    if path is not None:
        return await loop.create_unix_server(factory, path)
    assert host is not None and port is not None
    return await loop.create_server(factory, host, port, reuse_address=True)


async def fetch_unix(path: str, target: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET ``target`` from an endpoint on a unix socket: (status, body)."""

    async def get() -> bytes:
        reader, writer = await asyncio.open_unix_connection(path)
        try:
            writer.write(f"GET {target} HTTP/1.0\r\nHost: sidecar\r\n\r\n".encode())
            return await reader.read()
        finally:
            writer.close()

    raw = await asyncio.wait_for(get(), timeout)
    head, _, body = raw.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ConnectionError(f"bad HTTP answer from {path}")
    return int(parts[1]), body
