"""A raw RESP client for tests that compare reply bytes: what was sent is exactly what a client would send; and the
two implementations of the parser and framer, for tests that run on both."""

from __future__ import annotations

import socket

import pytest

from proxy.wire import resp
from proxy.wire.resp import ProtocolError, ReplyFramer, RequestLimits, RequestParser, encode_command

try:
    from proxy.wire import _speedups
except ImportError:
    _speedups = None
else:  # (resp.py binds it too, unless REDIS_SIDECAR_NO_EXTENSIONS kept it from importing the extension)
    _speedups.bind(ProtocolError, RequestLimits)

NOT_BUILT = "the C extension proxy.wire._speedups is not built (pip install -e . builds it)"
C_PARSER = getattr(_speedups, "RequestParser", None)
C_FRAMER = getattr(_speedups, "ReplyFramer", None)
_needs_c = pytest.mark.skipif(_speedups is None, reason=NOT_BUILT)

#: for ``pytest.mark.parametrize``: the pure-Python reference and the C class (skipped when not built)
PARSERS = [pytest.param(resp.PyRequestParser, id="py"), pytest.param(C_PARSER, id="c", marks=_needs_c)]
FRAMERS = [pytest.param(resp.PyReplyFramer, id="py"), pytest.param(C_FRAMER, id="c", marks=_needs_c)]


class RawClient:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.framer = ReplyFramer()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_reply(self) -> bytes:
        """Exactly one reply frame (or push frame), as the bytes the server wrote."""
        while True:
            frame = self.framer.next()
            if frame is not None:
                return frame
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"connection closed; {self.framer.buffered} bytes unparsed")
            self.framer.feed(chunk)

    def call(self, *commands) -> list[bytes]:
        """Pipeline the commands (lists of args, or raw bytes) and return one reply frame per command."""
        out = b"".join(c if isinstance(c, bytes) else encode_command(list(c)) for c in commands)
        self.send(out)
        return [self.read_reply() for _ in commands]

    def closed_by_peer(self) -> bool:
        """True once the server has closed the connection (after any remaining bytes)."""
        try:
            return self.sock.recv(1 << 16) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def parse_all(parser: RequestParser, data: bytes) -> tuple[list[tuple[list[bytes], bytes]], ProtocolError | None]:
    """Feed ``data`` and pull every complete command: (commands, the protocol error that stopped parsing, if any)."""
    parser.feed(data)
    out = []
    try:
        while (command := parser.next()) is not None:
            out.append(command)
    except ProtocolError as exc:
        return out, exc
    return out, None
