"""A minimal RESP2 client on asyncio streams for the generators that must cost next to nothing per command (and for
reading INFO without a client library's own handshake): AUTH, then commands, then whole replies as bytes."""

from __future__ import annotations

import asyncio


def encode(*args: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    """One RESP2 reply, whole (simple, error, integer, bulk, or an array of those, nested)."""
    line = await reader.readuntil(b"\r\n")
    kind = line[:1]
    if kind == b"$":
        n = int(line[1:-2])
        return line if n < 0 else line + await reader.readexactly(n + 2)
    if kind == b"*":
        n = int(line[1:-2])
        parts = [line]
        for _ in range(max(n, 0)):
            parts.append(await read_reply(reader))
        return b"".join(parts)
    return line


async def connect(host: str, port: int, password: str | None, username: str | None = None):
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
    if password:
        writer.write(encode("AUTH", *([username] if username else []), password))
        reply = await read_reply(reader)
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"AUTH refused: {reply[:100]!r}")
    return reader, writer
