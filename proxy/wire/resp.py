"""RESP2/RESP3 on the wire: request parsing, reply framing, and encoding of replies the sidecar makes itself.

Requests are parsed into argument lists (the router needs them) but forwarded as the client's own bytes. Replies from
upstream are never decoded into objects: ``ReplyFramer`` only finds where each reply ends, so every byte reaches the
client exactly as the server wrote it (a RESP3 double ``,1.50`` stays ``,1.50``).

``RequestParser`` and ``ReplyFramer`` are the C classes of ``proxy.wire._speedups`` when that extension was built at
install time, else the pure-Python ``PyRequestParser`` and ``PyReplyFramer`` below, which are the reference: the same
API, limits, error texts and bytes, checked against each other by tests/test_speedups.py. ``SPEEDUPS`` says which;
``REDIS_SIDECAR_NO_EXTENSIONS=1`` forces the Python ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType

CRLF = b"\r\n"
INLINE_MAX = 64 * 1024  # Redis's PROTO_INLINE_MAX_SIZE: longest inline command or header line


class ProtocolError(Exception):
    """Malformed input: the text follows Redis's own ``Protocol error: ...`` messages."""


@dataclass(frozen=True)
class RequestLimits:
    """Redis's proto-max-bulk-len and friends; the tighter pre-auth limits stop unauthenticated floods early."""

    max_bulk_len: int = 512 * 1024 * 1024
    max_multibulk_len: int = 1024 * 1024
    preauth_max_bulk_len: int = 16384
    preauth_max_multibulk_len: int = 10


class PyRequestParser:
    """Incremental parser of client requests (multibulk and inline), one instance per client connection.

    ``feed`` buffers bytes; ``next`` returns one complete command as ``(args, raw)``, where ``raw`` is the exact
    request bytes to forward upstream, or None until more bytes arrive. Commands are parsed one at a time, when the
    session is ready for them, so the limits in force (``authenticated``) are those after every earlier command
    took effect: a big SET pipelined behind a successful AUTH is judged by the authenticated limits. Malformed input
    raises ``ProtocolError`` (the client is then closed, as Redis does).
    """

    __slots__ = ("_buf", "_pos", "limits", "authenticated", "_need", "_partial")

    def __init__(self, limits: RequestLimits | None = None) -> None:
        self._buf: bytes | bytearray = b""  # unparsed input starts at _pos
        self._pos = 0
        self.limits = limits or RequestLimits()
        self.authenticated = False
        self._need = 0  # bytes (from _pos) needed before parsing can progress: a big value is not re-parsed per read
        self._partial: tuple[list[bytes], int, int] | None = None  # (args so far, offset from _pos, args left)

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        buf = self._buf
        if self._pos >= len(buf):
            self._buf, self._pos = data, 0  # the common case: no copy until a command is split across reads
            return
        if type(buf) is not bytearray:
            self._buf = buf = bytearray(memoryview(buf)[self._pos:])
            self._pos = 0
        elif self._pos > 65536:
            del buf[:self._pos]
            self._pos = 0
        buf += data

    def next(self) -> tuple[list[bytes], bytes] | None:
        buf, pos = self._buf, self._pos
        n = len(buf)
        while pos < n:
            if n - pos < self._need:
                return None
            if buf[pos] == 42:  # '*'
                end, command = self._multibulk(buf, pos, n)
            else:
                end, command = self._inline(buf, pos, n)
            if end < 0:
                return None
            self._need = 0
            if end >= n:
                self._buf, self._pos = b"", 0
                return command
            self._pos = pos = end
            if command is not None:
                return command
        return None

    def _multibulk(self, buf: bytes | bytearray, pos: int, n: int) -> tuple[int, tuple[list[bytes], bytes] | None]:
        limits = self.limits
        partial = self._partial
        if partial is not None:  # resume a command whose arguments are still arriving
            args, offset, left = partial
            self._partial = None
            p = pos + offset
        else:
            eol = buf.find(CRLF, pos)
            if eol < 0:
                if n - pos > INLINE_MAX:
                    raise ProtocolError("Protocol error: too big mbulk count string")
                self._need = n - pos + 1
                return -1, None
            text = bytes(buf[pos + 1:eol])
            count = _LENGTHS.get(text)
            if count is None:
                count = redis_int(text)
                if count is None:
                    raise ProtocolError("Protocol error: invalid multibulk length")
            cap = limits.max_multibulk_len if self.authenticated else limits.preauth_max_multibulk_len
            if count > cap:
                raise ProtocolError("Protocol error: invalid multibulk length")
            p = eol + 2
            if count <= 0:  # Redis ignores empty and null multibulks
                return p, None
            args, left = [], count
        max_bulk = limits.max_bulk_len if self.authenticated else limits.preauth_max_bulk_len
        copy = type(buf) is bytearray  # slices of a bytearray must become bytes
        while left:
            if p >= n:
                return self._incomplete(args, p, left, pos, p + 1), None
            if buf[p] != 36:  # '$'
                raise ProtocolError(f"Protocol error: expected '$', got '{chr(buf[p])}'")
            eol = buf.find(CRLF, p)
            if eol < 0:
                if n - p > INLINE_MAX:
                    raise ProtocolError("Protocol error: too big bulk count string")
                return self._incomplete(args, p, left, pos, n + 1), None
            text = bytes(buf[p + 1:eol])
            size = _LENGTHS.get(text)
            if size is None:
                size = redis_int(text)
            if size is None or size < 0 or size > max_bulk:
                raise ProtocolError("Protocol error: invalid bulk length")
            start = eol + 2
            end = start + size + 2
            if end > n:
                return self._incomplete(args, p, left, pos, end), None
            args.append(bytes(buf[start:start + size]) if copy else buf[start:start + size])  # type: ignore[arg-type]
            p = end
            left -= 1
        if not copy and pos == 0 and p == n:
            raw = buf  # the whole read is this one command: forward it without a copy
        else:
            raw = bytes(buf[pos:p])
        return p, (args, raw)  # type: ignore[return-value]

    def _incomplete(self, args: list[bytes], p: int, left: int, pos: int, need: int) -> int:
        """Remember a partly received command, with offsets relative to its start."""
        self._partial = (args, p - pos, left)
        self._need = need - pos
        return -1

    def _inline(self, buf: bytes | bytearray, pos: int, n: int) -> tuple[int, tuple[list[bytes], bytes] | None]:
        eol = buf.find(b"\n", pos)
        if eol < 0:
            if n - pos > INLINE_MAX:
                raise ProtocolError("Protocol error: too big inline request")
            self._need = n - pos + 1
            return -1, None
        line = bytes(buf[pos:eol])
        if line.endswith(b"\r"):
            line = line[:-1]
        args = split_inline(line)
        return eol + 1, ((args, encode_command(args)) if args else None)


# Canonical decimal lengths up to 16 KiB: one dict lookup instead of a validated int() per argument.
_LENGTHS: dict[bytes, int] = {b"%d" % i: i for i in range(16385)}


def redis_int(text: bytes) -> int | None:
    """A length as Redis's string2ll reads it: ``0``, or an optional ``-`` and digits without a leading zero.

    Python's ``int()`` also takes ``+3``, `` 3``, ``03`` and ``1_0``; Redis refuses them, so a request the sidecar
    accepted that way would make the upstream drop the shared connection with every other client's commands on it.
    """
    digits = text[1:] if text[:1] == b"-" else text
    if not digits.isdigit() or (digits[0] == 48 and len(text) > 1) or len(digits) > 19:
        return None
    value = int(text)
    return value if -(1 << 63) <= value < (1 << 63) else None


_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("a"): b"\a"}


def split_inline(line: bytes) -> list[bytes]:
    """Split an inline command like redis-cli and telnet users type it, with Redis's quoting rules (sdssplitargs)."""
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in b" \t\n\r\v\f":
            i += 1
        if i >= n:
            return args
        cur = bytearray()
        while i < n and line[i] not in b" \t\n\r\"'":  # a word; like Redis, \v and \f do not end it
            cur.append(line[i])
            i += 1
        if i < n and line[i] == 34:  # double quotes, with escapes (Redis opens them mid-word too: a"b c" is ab c)
            i += 1
            while True:
                if i >= n:
                    raise ProtocolError("Protocol error: unbalanced quotes in request")
                c = line[i]
                if c == 92 and i + 3 < n and line[i + 1] == 120 and _ishex(line[i + 2]) and _ishex(line[i + 3]):
                    cur.append(int(line[i + 2:i + 4], 16))
                    i += 4
                elif c == 92 and i + 1 < n:
                    cur += _ESCAPES.get(line[i + 1], bytes([line[i + 1]]))
                    i += 2
                elif c == 34:
                    i += 1
                    if i < n and line[i] not in b" \t\n\r\v\f":
                        raise ProtocolError("Protocol error: unbalanced quotes in request")
                    break
                else:
                    cur.append(c)
                    i += 1
        elif i < n and line[i] == 39:  # single quotes, only \' escaped
            i += 1
            while True:
                if i >= n:
                    raise ProtocolError("Protocol error: unbalanced quotes in request")
                c = line[i]
                if c == 92 and i + 1 < n and line[i + 1] == 39:
                    cur.append(39)
                    i += 2
                elif c == 39:
                    i += 1
                    if i < n and line[i] not in b" \t\n\r\v\f":
                        raise ProtocolError("Protocol error: unbalanced quotes in request")
                    break
                else:
                    cur.append(c)
                    i += 1
        args.append(bytes(cur))


def _ishex(c: int) -> bool:
    return c in b"0123456789abcdefABCDEF"


# -- replies from upstream --------------------------------------------------------------------------------------------

_LINE_TYPES = frozenset(b"+-:,#_(")
_BULK_TYPES = frozenset(b"$=!")
_ARRAY_TYPES = frozenset(b"*~>")
_MAP_TYPES = frozenset(b"%")


class PyReplyFramer:
    """Cuts an upstream byte stream into complete replies without decoding them.

    ``feed`` buffers bytes; ``next`` returns the exact bytes of one complete reply (or push), or None until more
    arrive. Resumable: a large aggregate arriving in pieces is scanned once, element by element, never from its start
    again.
    """

    __slots__ = ("_buf", "_pos", "_scan", "_remaining")

    def __init__(self) -> None:
        self._buf: bytes | bytearray = b""
        self._pos = 0        # start of the first incomplete reply
        self._scan = 0       # where scanning of that reply resumes
        self._remaining = 0  # elements still missing in it (0: not started)

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        buf = self._buf
        if self._pos >= len(buf):
            self._buf, self._pos, self._scan = data, 0, 0
            return
        if type(buf) is not bytearray:
            start = self._pos
            self._buf = buf = bytearray(memoryview(buf)[start:])
            self._pos, self._scan = 0, self._scan - start
        elif self._pos > 65536:
            start = self._pos
            del buf[:start]
            self._pos, self._scan = 0, self._scan - start
        buf += data

    def next(self) -> bytes | None:
        buf, start = self._buf, self._pos
        n = len(buf)
        if start >= n:
            return None
        pos, need = (self._scan, self._remaining) if self._remaining else (start, 1)
        while need:
            if pos >= n:
                self._scan, self._remaining = pos, need
                return None
            t = buf[pos]
            eol = buf.find(CRLF, pos)
            if eol < 0:
                self._scan, self._remaining = pos, need
                return None
            need -= 1
            if t in _LINE_TYPES:
                pos = eol + 2
            elif t in _BULK_TYPES:
                size = int(buf[pos + 1:eol])
                end = eol + 2 + size + 2 if size >= 0 else eol + 2
                if end > n:
                    self._scan, self._remaining = pos, need + 1
                    return None
                pos = end
            elif t in _ARRAY_TYPES:
                count = int(buf[pos + 1:eol])
                pos = eol + 2
                if count > 0:
                    need += count
            elif t in _MAP_TYPES:
                need += 2 * int(buf[pos + 1:eol])
                pos = eol + 2
            elif t == 124:  # '|' attribute: a map, then the reply it annotates
                need += 2 * int(buf[pos + 1:eol]) + 1
                pos = eol + 2
            else:
                raise ProtocolError(f"Protocol error: unexpected reply type byte {t!r} from upstream")
        self._remaining = 0
        if pos >= n:
            frame = buf if (start == 0 and type(buf) is bytes) else bytes(buf[start:pos])
            self._buf, self._pos, self._scan = b"", 0, 0
        else:
            frame = bytes(buf[start:pos])
            self._pos = self._scan = pos
        return frame


# -- the implementation in use -----------------------------------------------------------------------------------------

def _extensions_disabled(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def _load_speedups() -> ModuleType | None:
    if _extensions_disabled(os.environ.get("REDIS_SIDECAR_NO_EXTENSIONS")):
        return None
    try:
        from proxy.wire import _speedups
    except ImportError:  # not built (no compiler at install time): the pure-Python classes serve
        return None
    _speedups.bind(ProtocolError, RequestLimits)  # the C classes raise this module's ProtocolError
    return _speedups


_speedups = _load_speedups()
#: True when ``RequestParser`` and ``ReplyFramer`` are the C classes (reported by INFO and the benchmarks).
SPEEDUPS: bool = _speedups is not None
RequestParser: type[PyRequestParser] = _speedups.RequestParser if _speedups is not None else PyRequestParser
ReplyFramer: type[PyReplyFramer] = _speedups.ReplyFramer if _speedups is not None else PyReplyFramer


# -- replies the sidecar makes --------------------------------------------------------------------------------------

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
QUEUED = b"+QUEUED\r\n"


def simple(text: str) -> bytes:
    return b"+" + text.encode() + CRLF


def error(text: str) -> bytes:
    """An error reply; ``text`` starts with its code (ERR, WRONGPASS, NOAUTH ...). Newlines would break framing."""
    return b"-" + text.replace("\r", " ").replace("\n", " ").encode() + CRLF


def integer(value: int) -> bytes:
    return b":%d\r\n" % value


def bulk(value: bytes | str | None, proto: int = 2) -> bytes:
    if value is None:
        return null(proto)
    if isinstance(value, str):
        value = value.encode()
    return b"$%d\r\n%s\r\n" % (len(value), value)


def verbatim(text: str, proto: int) -> bytes:
    """RESP3 verbatim string (``=``, format ``txt``); a bulk string for RESP2, like Redis's INFO and CLIENT LIST."""
    data = text.encode()
    if proto == 3:
        return b"=%d\r\ntxt:%s\r\n" % (len(data) + 4, data)
    return bulk(data)


def null(proto: int) -> bytes:
    return b"_\r\n" if proto == 3 else b"$-1\r\n"


def array(items: list[bytes]) -> bytes:
    """An array of already-encoded elements."""
    return b"*%d\r\n" % len(items) + b"".join(items)


def push(items: list[bytes], proto: int) -> bytes:
    """Out-of-band data (pub/sub messages): ``>`` for RESP3, a plain array for RESP2."""
    return (b">%d\r\n" if proto == 3 else b"*%d\r\n") % len(items) + b"".join(items)


def mapping(pairs: list[tuple[bytes, bytes]], proto: int) -> bytes:
    """A map of already-encoded keys and values: ``%`` for RESP3, a flat array for RESP2."""
    body = b"".join(k + v for k, v in pairs)
    return (b"%%%d\r\n" % len(pairs) if proto == 3 else b"*%d\r\n" % (2 * len(pairs))) + body


def value(obj: object, proto: int) -> bytes:
    """Encode a parsed value (as hiredis returns it) for a client of ``proto``: dicts become maps (flat in RESP2)."""
    if isinstance(obj, dict):
        return mapping([(value(k, proto), value(v, proto)) for k, v in obj.items()], proto)
    if isinstance(obj, (list, tuple)):
        return array([value(v, proto) for v in obj])
    if isinstance(obj, bool):
        return integer(int(obj))
    if isinstance(obj, int):
        return integer(obj)
    assert obj is None or isinstance(obj, (bytes, str)), obj
    return bulk(obj, proto)


def encode_command(args: list[bytes] | tuple[bytes, ...]) -> bytes:
    """A request as a multibulk, for commands the sidecar sends itself (handshakes, inline requests)."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
