"""RESP2/RESP3 on the wire: request parsing, reply framing, and encoding of replies the sidecar makes itself.

Requests are parsed into argument lists (the router needs them) but forwarded as the client's own bytes. Replies from
upstream are never decoded into objects: ``ReplyScanner`` only finds where each reply ends, so every byte reaches the
client exactly as the server wrote it (a RESP3 double ``,1.50`` stays ``,1.50``).
"""

from __future__ import annotations

from dataclasses import dataclass

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


class RequestParser:
    """Incremental parser of client requests (multibulk and inline), one instance per client connection.

    ``feed`` returns the complete commands in the data so far as ``(args, raw)`` pairs, where ``raw`` is the exact
    request bytes to forward upstream. Partial input stays buffered. Malformed input sets ``error`` (the client is
    then closed, as Redis does).
    """

    __slots__ = ("buf", "limits", "authenticated", "error", "need", "partial")

    def __init__(self, limits: RequestLimits | None = None) -> None:
        self.buf = bytearray()  # an incomplete command, from its first byte
        self.limits = limits or RequestLimits()
        self.authenticated = False
        self.error: ProtocolError | None = None  # set once; the commands before the bad input are still returned
        self.need = 0  # buffered bytes needed before parsing can progress (a bulk's end), so big values arrive in
        self.partial: tuple[list[bytes], int, int] | None = None  # O(n); (args so far, next offset, args left)

    @property
    def buffered(self) -> int:
        return len(self.buf)

    def feed(self, data: bytes) -> list[tuple[list[bytes], bytes]]:
        if self.buf:
            self.buf += data
            if len(self.buf) < self.need:
                return []
            buf: bytes | bytearray = self.buf
        else:
            buf = data
        out: list[tuple[list[bytes], bytes]] = []
        pos, n = 0, len(buf)
        try:
            while pos < n:
                if buf[pos] == 42:  # '*'
                    end = self._multibulk(buf, pos, out)
                else:
                    end = self._inline(buf, pos, out)
                if end < 0:
                    break
                pos = end
        except ProtocolError as exc:
            self.error = exc
            self.buf, self.partial = bytearray(), None
            return out
        if buf is self.buf:
            del self.buf[:pos]
        else:
            self.buf = bytearray(buf[pos:])
        if not self.buf:
            self.need = 0
        return out

    def _multibulk(self, buf: bytes | bytearray, pos: int, out: list) -> int:
        limits = self.limits
        if self.partial is not None:  # resume a command whose arguments are still arriving (pos is 0)
            args, p, left = self.partial
            self.partial = None
        else:
            eol = buf.find(CRLF, pos)
            if eol < 0:
                if len(buf) - pos > INLINE_MAX:
                    raise ProtocolError("Protocol error: too big mbulk count string")
                self.need = len(buf) - pos + 1
                return -1
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
                return p
            args, left = [], count
        max_bulk = limits.max_bulk_len if self.authenticated else limits.preauth_max_bulk_len
        copy = buf is self.buf  # slices of the bytearray must become bytes
        n = len(buf)
        while left:
            if p >= n:
                return self._incomplete(args, p, left, pos, p + 1)
            if buf[p] != 36:  # '$'
                raise ProtocolError(f"Protocol error: expected '$', got '{chr(buf[p])}'")
            eol = buf.find(CRLF, p)
            if eol < 0:
                if n - p > INLINE_MAX:
                    raise ProtocolError("Protocol error: too big bulk count string")
                return self._incomplete(args, p, left, pos, n + 1)
            text = bytes(buf[p + 1:eol]) if copy else buf[p + 1:eol]
            size = _LENGTHS.get(text)
            if size is None:
                size = redis_int(text)
            if size is None or size < 0 or size > max_bulk:
                raise ProtocolError("Protocol error: invalid bulk length")
            start = eol + 2
            end = start + size + 2
            if end > n:
                return self._incomplete(args, p, left, pos, end)
            args.append(bytes(buf[start:start + size]) if copy else buf[start:start + size])
            p = end
            left -= 1
        out.append((args, bytes(buf[pos:p]) if copy else buf[pos:p]))
        return p

    def _incomplete(self, args: list[bytes], p: int, left: int, pos: int, need: int) -> int:
        """Remember a partly received command; offsets become relative to its start, where the buffer will begin."""
        self.partial = (args, p - pos, left)
        self.need = need - pos
        return -1

    def _inline(self, buf: bytes | bytearray, pos: int, out: list) -> int:
        eol = buf.find(b"\n", pos)
        if eol < 0:
            if len(buf) - pos > INLINE_MAX:
                raise ProtocolError("Protocol error: too big inline request")
            self.need = len(buf) - pos + 1
            return -1
        line = bytes(buf[pos:eol])
        if line.endswith(b"\r"):
            line = line[:-1]
        args = split_inline(line)
        if args:
            out.append((args, encode_command(args)))
        return eol + 1


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


class ReplyScanner:
    """Finds complete replies in an upstream byte stream without decoding them.

    Resumable: when a large aggregate arrives in pieces, scanning continues where it stopped instead of starting over.
    """

    __slots__ = ("pos", "remaining")

    def __init__(self) -> None:
        self.pos = 0        # where scanning of the current (incomplete) reply resumes
        self.remaining = 0  # elements still missing in the current reply (0: at a reply boundary)

    def reset(self) -> None:
        self.pos = 0
        self.remaining = 0

    def next_end(self, buf: bytes | bytearray, start: int) -> int:
        """End offset of the reply starting at ``start``, or -1 if it is not complete yet."""
        pos, need = (self.pos, self.remaining) if self.remaining else (start, 1)
        n = len(buf)
        while need:
            if pos >= n:
                self.pos, self.remaining = pos, need
                return -1
            t = buf[pos]
            eol = buf.find(CRLF, pos)
            if eol < 0:
                self.pos, self.remaining = pos, need
                return -1
            need -= 1
            if t in _LINE_TYPES:
                pos = eol + 2
            elif t in _BULK_TYPES:
                size = int(buf[pos + 1:eol])
                end = eol + 2 + size + 2 if size >= 0 else eol + 2
                if end > n:
                    self.pos, self.remaining = pos, need + 1
                    return -1
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
        self.pos, self.remaining = 0, 0
        return pos


def is_push(frame: bytes) -> bool:
    return frame[:1] == b">"


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
    return bulk(obj, proto)  # bytes, str or None


def encode_command(args: list[bytes] | tuple[bytes, ...]) -> bytes:
    """A request as a multibulk, for commands the sidecar sends itself (handshakes, inline requests)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = b"%d" % a
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)
