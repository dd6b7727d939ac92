"""A raw RESP client for tests that compare reply bytes: what was sent is exactly what a client would send."""

from __future__ import annotations

import socket

from proxy.wire.resp import ProtocolError, ReplyFramer, RequestParser, encode_command


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
