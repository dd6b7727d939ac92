"""A test server's own answers, decoded by hiredis as the sidecar would receive them, in either protocol; and
what its CONFIG GET should answer, for the glob and login-guard differentials."""

from __future__ import annotations

import hiredis
from hypothesis import strategies as st

from proxy.wire.glob import glob_match
from wire import RawClient


def hello(server, proto: int = 2) -> RawClient:
    """A raw connection to ``server``, authenticated as the default user, speaking RESP``proto``."""
    client = RawClient(server.port)
    reply = client.call([b"HELLO", str(proto).encode(), b"AUTH", b"default", server.password.encode()])[0]
    assert not reply.startswith(b"-"), reply
    return client


def ask(client: RawClient, *commands) -> list:
    """Pipeline ``commands`` and return each reply decoded (errors as ``hiredis.ReplyError`` values, not raised)."""
    reader = hiredis.Reader()
    out = []
    for frame in client.call(*commands):
        reader.feed(frame)
        out.append(reader.gets())
    return out


@st.composite
def mutated(draw, names: list[bytes]) -> bytes:
    """A real name, bent the ways a pattern can be: stars, ?, classes (negated, reversed ranges), escapes, case."""
    out = bytearray(draw(st.sampled_from(names)))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, max(len(out) - 1, 0)))
        c = out[i:i + 1] or b"a"
        out[i:i + 1] = draw(st.sampled_from([
            b"*", b"?", b"[" + c + b"]", b"[^" + c + b"]", b"[" + c + b"-z]", b"[z-" + c + b"]", b"\\" + c,
            c.upper(), b"[" + c, b"*" + c, b"[" + c + b"\\]]", b"[^]" + c, b"", c + b"[^"]))
    return bytes(out)


def config_get_model(pattern: bytes, names: set[bytes]) -> set[bytes]:
    """configGetCommand: a name looked up as is without [*?, else the glob matched with nocase (up to a NUL)."""
    head = pattern.split(b"\0", 1)[0]
    if not any(c in head for c in b"[*?"):
        return {n for n in names if n == pattern.lower()}
    return {n for n in names if glob_match(head, n, nocase=True)}
