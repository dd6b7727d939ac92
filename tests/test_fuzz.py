"""Hostile input: property-based and coverage-guided fuzzing of the request parser and the local command handlers.

Three oracles, each independent of the code under test:

- ``redis_read``: a line-by-line port of Redis 7's ``processMultibulkBuffer``/``processInlineBuffer``/
  ``sdssplitargs``/``string2ll``. Every request the sidecar accepts is forwarded upstream as the client's raw bytes,
  so the property that matters most is that Redis reads those bytes as exactly the same command, no more, no less:
  otherwise one client could desynchronise (or get closed) a connection shared with other clients;
- the real server: random sequences of handshake commands (AUTH, HELLO, SELECT, CLIENT ..., PING, ECHO, RESET) go
  to the sidecar, which answers them itself, and to the upstream directly; the replies must agree;
- the RESP framing: every byte the sidecar writes back, whatever came in, parses as complete RESP frames, and every
  error carries a Redis error code.

Inputs worth keeping are in ``tests/corpus/`` and replayed on every run (parser and wire). ``python tests/test_fuzz.py
--atheris [libFuzzer flags]`` runs the coverage-guided fuzzer by hand; ``test_atheris_coverage_guided_run`` runs it
briefly in the suite when atheris is installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import hiredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(__file__))

from proxy.wire import resp  # noqa: E402
from harness.servers import find_binaries  # noqa: E402
from proxy.access.permissions import PROBES  # noqa: E402
from proxy.wire.resp import INLINE_MAX, ProtocolError, ReplyFramer, RequestLimits, RequestParser  # noqa: E402
from wire import FRAMERS, PARSERS, parse_all  # noqa: E402

CORPUS = Path(__file__).parent / "corpus"
ARTIFACTS = Path(__file__).parent / "artifacts"
FIXED = dict(database=None, deadline=None, suppress_health_check=list(HealthCheck))

PROTOCOL_ERRORS = re.compile(
    r"Protocol error: (invalid multibulk length|invalid bulk length|too big mbulk count string|"
    r"too big bulk count string|too big inline request|unbalanced quotes in request|expected '\$', got '.')\Z",
    re.S)


# -- the oracle: how Redis 7 reads a request stream -------------------------------------------------------------------

def string2ll(text: bytes) -> int | None:
    """util.c string2ll: no sign but '-', no spaces, no leading zeros, at most 20 characters, 64-bit range."""
    if not text or len(text) >= 21:
        return None
    if text == b"0":
        return 0
    neg = text[:1] == b"-"
    digits = text[1:] if neg else text
    if not digits or not 49 <= digits[0] <= 57 or not all(48 <= c <= 57 for c in digits):
        return None
    value = -int(digits) if neg else int(digits)
    return value if -(1 << 63) <= value <= (1 << 63) - 1 else None


_SPACE = b" \n\r\t\v\f"


def sdssplitargs(line: bytes) -> list[bytes] | None:
    """sds.c sdssplitargs, byte for byte (None: unbalanced quotes), but for NUL: Redis finds line ends with strchr,
    so an inline line holding a NUL never completes there; here, as in the sidecar, NUL is an ordinary byte."""
    p, n, out = 0, len(line), []
    while True:
        while p < n and line[p] in _SPACE:
            p += 1
        if p >= n:
            return out
        inq = insq = done = False
        cur = bytearray()
        while not done:
            c = line[p] if p < n else None
            if inq:
                nxt = line[p + 1] if p + 1 < n else None
                if c == 92 and nxt == ord("x") and p + 3 < n and all(
                        chr(line[q]) in "0123456789abcdefABCDEF" for q in (p + 2, p + 3)):
                    cur.append(int(line[p + 2:p + 4], 16))
                    p += 3
                elif c == 92 and nxt is not None:
                    p += 1
                    cur += {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b",
                            ord("a"): b"\a"}.get(line[p], bytes([line[p]]))
                elif c == 34:
                    if p + 1 < n and line[p + 1] not in _SPACE:
                        return None
                    done = True
                elif c is None:
                    return None
                else:
                    cur.append(c)
            elif insq:
                nxt = line[p + 1] if p + 1 < n else None
                if c == 92 and nxt == 39:
                    p += 1
                    cur.append(39)
                elif c == 39:
                    if p + 1 < n and line[p + 1] not in _SPACE:
                        return None
                    done = True
                elif c is None:
                    return None
                else:
                    cur.append(c)
            else:
                if c is None or c in b" \n\r\t":  # \v and \f do not end a word (they are skipped before one)
                    done = True
                elif c == 34:
                    inq = True
                elif c == 39:
                    insq = True
                else:
                    cur.append(c)
            if p < n:
                p += 1
        out.append(bytes(cur))


def redis_read(stream: bytes, limits: RequestLimits = RequestLimits(), faithful: bool = True
               ) -> tuple[list[list[bytes]], list[int], str | None]:
    """The commands Redis reads from ``stream`` (an authenticated client), where each ends, and the protocol error
    it stops at (None: it read everything it could and waits for more).

    ``faithful=False`` applies the sidecar's two documented strictenings: a length line ends at CRLF only (Redis ends
    it at the first CR and skips the byte after it), and a bulk header that does not start with '$' is refused as soon
    as that byte arrives (Redis first waits for the line's end). No real client sends either.
    """
    pos, n = 0, len(stream)
    commands, ends = [], []

    def line_end(start: int) -> int:
        return stream.find(b"\r", start) if faithful else stream.find(b"\r\n", start)

    while pos < n:
        if stream[pos] == 42:  # '*': multibulk
            nl = line_end(pos)
            if nl < 0:
                if n - pos > INLINE_MAX:
                    return commands, ends, "Protocol error: too big mbulk count string"
                break
            if nl > n - 2:
                break
            count = string2ll(stream[pos + 1:nl])
            if count is None or count > limits.max_multibulk_len:
                return commands, ends, "Protocol error: invalid multibulk length"
            p = nl + 2
            if count <= 0:
                pos = p
                continue
            args, incomplete = [], False
            for _ in range(count):
                if not faithful and p < n and stream[p] != 36:
                    return commands, ends, f"Protocol error: expected '$', got '{chr(stream[p])}'"
                nl = line_end(p)
                if nl < 0:
                    if n - p > INLINE_MAX:
                        return commands, ends, "Protocol error: too big bulk count string"
                    incomplete = True
                    break
                if nl > n - 2:
                    incomplete = True
                    break
                if stream[p] != 36:
                    return commands, ends, f"Protocol error: expected '$', got '{chr(stream[p])}'"
                size = string2ll(stream[p + 1:nl])
                if size is None or size < 0 or size > limits.max_bulk_len:
                    return commands, ends, "Protocol error: invalid bulk length"
                p = nl + 2
                if n - p < size + 2:
                    incomplete = True
                    break
                args.append(stream[p:p + size])
                p += size + 2
            if incomplete:
                break
            commands.append(args)
            ends.append(p)
            pos = p
        else:  # inline
            nl = stream.find(b"\n", pos)
            if nl < 0:
                if n - pos > INLINE_MAX:
                    return commands, ends, "Protocol error: too big inline request"
                break
            end = nl - 1 if nl != pos and stream[nl - 1] == 13 else nl
            args = sdssplitargs(stream[pos:end])
            if args is None:
                return commands, ends, "Protocol error: unbalanced quotes in request"
            pos = nl + 1
            if args:
                commands.append(args)
                ends.append(pos)
    return commands, ends, None


# -- what the sidecar's parser does with the same bytes ---------------------------------------------------------------

def sidecar_read(chunks: list[bytes], authenticated: bool = True, limits: RequestLimits | None = None,
                 parser_cls: type | None = None):
    parser = (parser_cls or RequestParser)(limits)
    parser.authenticated = authenticated
    out, peak, error = [], 0, None
    for chunk in chunks:
        commands, error = parse_all(parser, chunk)
        out += commands
        peak = max(peak, parser.buffered)
        if error is not None:
            break
    return out, error, peak


def buffer_bound(limits: RequestLimits, authenticated: bool) -> int:
    """The most a parser may hold for one client: one incomplete request at the limits, or one overlong line."""
    count = limits.max_multibulk_len if authenticated else limits.preauth_max_multibulk_len
    bulk = limits.max_bulk_len if authenticated else limits.preauth_max_bulk_len
    return 32 + count * (bulk + 2 + 32) + INLINE_MAX


def check_parser_properties(chunks: list[bytes], authenticated: bool = True,
                            limits: RequestLimits | None = None, parser_cls: type | None = None) -> None:
    """Every property of the parser (``parser_cls``, else the one in use) that must hold for any input, split into
    any chunks."""
    limits = limits or RequestLimits()
    stream = b"".join(chunks)
    got, error, peak = sidecar_read(chunks, authenticated, limits, parser_cls)
    # 1. bad input is a ProtocolError with one of Redis's own texts, never an exception out of feed()
    assert error is None or (isinstance(error, ProtocolError) and PROTOCOL_ERRORS.match(str(error))), error
    # 2. memory: what the parser keeps is bounded by the limits, whatever the input
    assert peak <= buffer_bound(limits, authenticated), peak
    # 3. each command forwarded as raw bytes is read by Redis as the same command, ending exactly there
    for args, raw in got:
        assert args and all(isinstance(a, bytes) for a in args)
        if raw[:1] == b"*":
            commands, ends, err = redis_read(raw, limits)
            assert (commands, ends, err) == ([args], [len(raw)], None), (args, raw)
            again, _, rerr = redis_read(raw + b"*1\r\n$4\r\nPING\r\n", limits)  # and nothing after it leaks in
            assert again == [args, [b"PING"]] and rerr is None
        else:
            assert raw == resp.encode_command(args)  # inline: forwarded re-encoded
    # 4. any split of the same bytes gives the same commands and the same error
    whole, whole_error, _ = sidecar_read([stream], authenticated, limits, parser_cls)
    if len(stream) <= INLINE_MAX:  # (past that, "too big" errors depend on the split, in Redis too)
        assert [a for a, _ in got] == [a for a, _ in whole]
        assert str(error) == str(whole_error)
    # 5. differential: the same commands Redis reads (with the two documented strictenings), the same error
    if authenticated and b"\0" not in stream and len(stream) <= INLINE_MAX:
        commands, _, err = redis_read(stream, limits, faithful=False)
        assert [a for a, _ in whole] == commands
        assert (str(whole_error) if whole_error else None) == err
        # and against Redis exactly: the sidecar reads a prefix of what Redis reads, never something else
        exact, _, _ = redis_read(stream, limits)
        assert [a for a, _ in whole] == exact[:len(whole)]


# -- generators -------------------------------------------------------------------------------------------------------

KEYWORDS = [b"PING", b"ECHO", b"SET", b"GET", b"AUTH", b"HELLO", b"SELECT", b"CLIENT", b"MULTI", b"EXEC", b"QUIT"]
NASTY = [b"\r", b"\n", b"\r\n", b"\r\r\n", b"*", b"$", b"*-1\r\n", b"*0\r\n", b"$-1\r\n", b"+", b"-", b":", b"0",
         b"00", b"-0", b"+3", b" 3", b"1_0", b"\t", b" ", b'"', b"'", b"\\", b"\\x4", b"\\x41", b'\\"', b"\x00",
         b"\xff", b"99999999999999999999", b"9223372036854775808", b"*1\r\n", b"$4\r\n", b"$3\r\n", b"*2\r\n$3\r\n"]

args_strategy = st.lists(st.sampled_from(KEYWORDS) | st.binary(max_size=12), min_size=1, max_size=5)


def multibulk(args: list[bytes]) -> bytes:
    return resp.encode_command(args)


def inline(args: list[bytes], style: int) -> bytes | None:
    """An inline request redis-cli or telnet could send for ``args`` (None: not expressible that way)."""
    if style == 0:  # bare words
        if args[0][:1] == b"*" or any(not a or any(c in _SPACE or c in b"\"'\0" for c in a) for a in args):
            return None
        return b" ".join(args) + b"\r\n"
    if style == 1:  # double quotes, hex escapes for everything unusual
        return b" ".join(b'"' + b"".join(bytes([c]) if 32 <= c < 127 and c not in b'"\\' else b"\\x%02x" % c
                                         for c in a) + b'"' for a in args) + b"\n"
    # single quotes: only \' is an escape; a newline ends the line
    if any(b"\\" in a or b"\n" in a or b"\0" in a for a in args):
        return None
    return b" ".join(b"'" + a.replace(b"'", b"\\'") + b"'" for a in args) + b"\r\n"


@st.composite
def request_streams(draw, corrupt: bool) -> list[bytes]:
    """A pipeline of well-formed requests (multibulk and inline), maybe corrupted, cut into random chunks."""
    parts = []
    for args in draw(st.lists(args_strategy, min_size=1, max_size=6)):
        style = draw(st.integers(0, 3))
        encoded = multibulk(args) if style == 3 else inline(args, style)
        parts.append(encoded if encoded is not None else multibulk(args))
    stream = bytearray(b"".join(parts))
    if corrupt:
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.integers(0, 4))
            at = draw(st.integers(0, len(stream)))
            if op == 0 and stream:
                stream[min(at, len(stream) - 1)] = draw(st.integers(0, 255))
            elif op == 1:
                stream[at:at] = draw(st.sampled_from(NASTY))
            elif op == 2:
                stream[at:at] = draw(st.binary(max_size=8))
            elif op == 3:
                del stream[at:at + draw(st.integers(1, 6))]
            else:
                stream[at:at] = stream[at:at + draw(st.integers(1, 30))]
    data = bytes(stream)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=5)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


# -- parser properties ------------------------------------------------------------------------------------------------

with_parsers = pytest.mark.parametrize("parser_cls", PARSERS)  # the Python reference and the C extension


@with_parsers
@settings(max_examples=500, **FIXED)
@given(request_streams(corrupt=False))
def test_well_formed_pipelines_come_out_exactly_as_sent(parser_cls, chunks):
    got, error, _ = sidecar_read(chunks, parser_cls=parser_cls)
    assert error is None
    expected, ends, err = redis_read(b"".join(chunks))
    assert err is None and [a for a, _ in got] == expected
    check_parser_properties(chunks, parser_cls=parser_cls)


@with_parsers
@settings(max_examples=1500, **FIXED)
@given(request_streams(corrupt=True), st.booleans())
def test_corrupted_pipelines_never_crash_and_never_desynchronise(parser_cls, chunks, authenticated):
    check_parser_properties(chunks, authenticated, parser_cls=parser_cls)


@with_parsers
@settings(max_examples=1500, **FIXED)
@given(st.lists(st.binary(max_size=40) | st.sampled_from(NASTY), max_size=12), st.booleans())
def test_random_bytes_never_crash_and_never_desynchronise(parser_cls, pieces, authenticated):
    check_parser_properties(pieces, authenticated, parser_cls=parser_cls)


@with_parsers
@settings(max_examples=200, **FIXED)
@given(st.integers(1, 64), st.integers(0, 1023), st.sampled_from([b"*", b"*1\r\n$", b"", b"PING ", b"*1\r\n$3\r\n"]))
def test_memory_is_bounded_for_endless_lines_and_headers(parser_cls, chunk_kb, odd, prefix):
    """A client that never ends its line (or its length header) is cut off at 64 KB, however it sends it."""
    limits = RequestLimits(max_bulk_len=1000, max_multibulk_len=8)
    size, total = chunk_kb * 1024 + odd, 70000
    parser = parser_cls(limits)
    parser.authenticated = True
    sent, peak = 0, 0
    _, error = parse_all(parser, prefix)
    while error is None and sent < total + INLINE_MAX + size:
        _, error = parse_all(parser, b"9" * size)
        sent += size
        peak = max(peak, parser.buffered)
    assert peak <= INLINE_MAX + size + len(prefix)
    assert error is not None or sent < INLINE_MAX


@with_parsers
def test_lengths_are_read_as_redis_reads_them(parser_cls):
    """The regression that made this suite: ``+1``, `` 1``, ``01`` and ``1_0`` are not lengths to Redis; the
    sidecar used to accept them and forward the bytes, so the upstream closed the shared connection."""
    for bad in (b"+1", b" 1", b"1 ", b"01", b"1_0", b"-0", b"\xd9\xa1", b"1\x00", b"9223372036854775808",
                b"-9223372036854775809", b"99999999999999999999"):
        for stream, message in ((b"*" + bad + b"\r\n$4\r\nPING\r\n", "invalid multibulk length"),
                                (b"*2\r\n$3\r\nGET\r\n$" + bad + b"\r\nk\r\n", "invalid bulk length")):
            got, error, _ = sidecar_read([stream], parser_cls=parser_cls)
            assert got == [] and str(error) == f"Protocol error: {message}", (stream, got, error)
            assert redis_read(stream)[2] is not None or b"\x00" in bad  # Redis refuses them too
    assert string2ll(b"9223372036854775807") == resp.redis_int(b"9223372036854775807")
    assert resp.redis_int(b"9223372036854775808") is None and string2ll(b"9223372036854775808") is None


# -- framer properties ------------------------------------------------------------------------------------------------

_line = st.binary(max_size=12).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@st.composite
def replies(draw, depth: int = 0) -> bytes:
    """One reply as a RESP2/RESP3 server writes it: every type, nulls, nested aggregates, maps, attributes."""
    kind = draw(st.integers(0, 15 if depth < 3 else 10))
    if kind == 0:
        return b"+" + draw(_line) + b"\r\n"
    if kind == 1:
        return b"-ERR " + draw(_line) + b"\r\n"
    if kind == 2:
        return b":%d\r\n" % draw(st.integers(-(1 << 63), (1 << 63) - 1))
    if kind == 3:
        return b"," + draw(st.sampled_from([b"1.5", b"inf", b"-inf", b"nan", b"0", b"-1e-10"])) + b"\r\n"
    if kind == 4:
        return draw(st.sampled_from([b"#t\r\n", b"#f\r\n", b"_\r\n", b"$-1\r\n", b"*-1\r\n"]))
    if kind == 5:
        return b"(%d\r\n" % draw(st.integers(-(1 << 200), 1 << 200))
    if kind in (6, 7, 8):  # bulk string, verbatim string, bulk error: any bytes, CRLF included
        value = draw(st.binary(max_size=20))
        value = b"txt:" + value if kind == 7 else value
        return b"%s%d\r\n%s\r\n" % (b"$=!"[kind - 6:kind - 5], len(value), value)
    if kind in (9, 10):
        return b"$0\r\n\r\n" if kind == 9 else b"*0\r\n"
    count = draw(st.integers(0, 4))
    if kind in (11, 12, 13):  # array, set, push
        head = b"*~>"[kind - 11:kind - 10] + b"%d\r\n" % count
        return head + b"".join(draw(replies(depth + 1)) for _ in range(count))
    pairs = b"".join(draw(replies(depth + 1)) for _ in range(2 * count))
    if kind == 14:
        return b"%%%d\r\n" % count + pairs
    return b"|%d\r\n" % count + pairs + draw(replies(depth + 1))  # an attribute, then the reply it annotates


with_framers = pytest.mark.parametrize("framer_cls", FRAMERS)


@with_framers
@settings(max_examples=500, **FIXED)
@given(st.lists(replies(), min_size=1, max_size=8), st.data())
def test_reply_streams_split_anywhere_come_out_as_the_replies_sent(framer_cls, sent, data):
    """Frames are the server's replies, byte for byte, at the same boundaries however the stream is split; what the
    framer holds is exactly what it has not yet returned."""
    stream = b"".join(sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    framer, frames = framer_cls(), []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        framer.feed(stream[start:end])
        while (frame := framer.next()) is not None:
            frames.append(frame)
        assert framer.buffered == end - sum(map(len, frames))
    assert frames == sent


# -- the corpus: inputs worth keeping ----------------------------------------------------------------------------------

def corpus_inputs(kind: str) -> list[tuple[str, bytes]]:
    folder = CORPUS / kind
    return [(p.name, p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()] if folder.exists() else []


@with_parsers
@pytest.mark.parametrize("name,data", corpus_inputs("parser"), ids=lambda v: v if isinstance(v, str) else "")
def test_corpus_parser(parser_cls, name, data):
    for authenticated in (True, False):
        check_parser_properties([data], authenticated, parser_cls=parser_cls)
        check_parser_properties([data[i:i + 3] for i in range(0, len(data), 3)], authenticated, parser_cls=parser_cls)


# -- the local command handlers, in process ----------------------------------------------------------------------------

class FakeTransport:
    """Collects what a session writes; enough of asyncio.Transport for Session."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.data += data

    def writelines(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 6380)}.get(name, default)


LOCAL_NAMES = {b"auth", b"hello", b"select", b"ping", b"echo", b"quit", b"reset", b"client", b"sidecar"}
ERROR_CODES = (b"-ERR ", b"-NOAUTH ", b"-WRONGPASS ", b"-NOPROTO ", b"-NOPERM ")


class LocalHarness:
    """A real ``Server`` and ``Session`` on an event loop that never reaches an upstream: password mode, so every
    AUTH is checked locally; commands that would go upstream are skipped, local ones dispatched as the sidecar does.
    """

    def __init__(self) -> None:
        from proxy import config
        from proxy.server import Server, new_event_loop

        cfg = config.build({
            "upstream": {"url": "redis://:upstream-secret@127.0.0.1:1/0"},
            "client_auth": {"mode": "password", "users": [
                {"name": "app", "password": "app-secret"}, {"name": "ops", "password": "ops-secret", "admin": True}]},
            "limits": {"auth_failures_per_minute": 1000},
        }, environ={})
        self.loop = new_event_loop()
        self.server = Server(cfg, self.loop)
        rt = self.server.handle.current
        rt.manager.info_known.set_result(None)  # no upstream here: HELLO answers with what the sidecar knows
        for label in PROBES:  # the sidecar's login may run every local command: nothing to ask an upstream here
            rt.permissions._known[(rt.manager.login, label)] = (None, float("inf"))
        self.session = None
        self.runs = 0
        self.new_session()

    def new_session(self) -> None:
        from proxy.client.session import Session

        if self.session is not None:
            self.session.connection_lost(None)
        self.session = Session(self.server.handle)
        self.transport = FakeTransport()
        self.session.connection_made(self.transport)

    def run(self, data: bytes) -> bytes:
        """Feed one input to a fresh client; return every byte written back (all checked as RESP frames)."""
        from proxy.commands.table import Route

        self.runs += 1
        self.new_session()
        s = self.session
        rt = self.server.handle.current
        parser = RequestParser(rt.limits)
        parser.authenticated = True
        for args, raw in parse_all(parser, data)[0]:
            name = args[0].lower()
            if name not in LOCAL_NAMES or rt.table.route(args) is not Route.LOCAL:
                continue
            if name == b"sidecar" and len(args) > 1 and args[1].lower() == b"reload":
                continue  # rereads the config file: not a parser or handler matter
            if s.closing:
                break
            s.dispatch(args, raw)
        self.loop.run_until_complete(asyncio.sleep(0))  # let the session flush its coalesced writes
        out = bytes(self.transport.data)
        check_frames(out)
        return out


def check_frames(out: bytes) -> None:
    framer = ReplyFramer()
    framer.feed(out)
    while (frame := framer.next()) is not None:
        if frame[:1] == b"-":
            assert frame.startswith(ERROR_CODES), frame
    assert not framer.buffered, f"incomplete reply frame: {out[-framer.buffered:][:80]!r}"


local_word = st.sampled_from([b"AUTH", b"HELLO", b"SELECT", b"PING", b"ECHO", b"RESET", b"QUIT", b"CLIENT",
                              b"SIDECAR", b"auth", b"hello", b"client"])
local_arg = st.sampled_from([b"SETNAME", b"GETNAME", b"ID", b"SETINFO", b"LIB-NAME", b"LIB-VER", b"INFO", b"LIST",
                             b"REPLY", b"ON", b"OFF", b"SKIP", b"TYPE", b"normal", b"pubsub", b"AUTH", b"2", b"3",
                             b"0", b"-1", b"+1", b"01", b"16", b"app", b"app-secret", b"ops", b"ops-secret",
                             b"default", b"CONFIG", b"POOLS", b"CLIENTS", b"HELP"]) | st.binary(max_size=6)


@st.composite
def local_inputs(draw) -> bytes:
    return b"".join(resp.encode_command([draw(local_word), *draw(st.lists(local_arg, max_size=5))])
                    for _ in range(draw(st.integers(1, 12))))


@pytest.fixture(scope="module")
def harness():
    h = LocalHarness()
    yield h
    h.loop.close()


@settings(max_examples=1000, **FIXED)
@given(local_inputs())
def test_local_handlers_answer_every_input_with_well_formed_replies(harness, data):
    harness.run(data)


@pytest.mark.parametrize("name,data", corpus_inputs("local"), ids=lambda v: v if isinstance(v, str) else "")
def test_corpus_local(harness, name, data):
    harness.run(data)


# -- end to end: the sidecar's answers against the upstream's, on the wire ---------------------------------------------

def exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` then QUIT; everything the server writes until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data + b"*1\r\n$4\r\nQUIT\r\n")
        out = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        else:
            raise AssertionError(f"no end of replies within {timeout}s: {bytes(out[-200:])!r}")
    return bytes(out)


def normalise(out: bytes) -> list:
    """Reply frames with what legitimately differs between the sidecar and a direct connection taken out:
    connection ids (CLIENT ID, HELLO's id), and CLIENT INFO/LIST lines reduced to the client's own state."""
    reader = hiredis.Reader(notEnoughData=Ellipsis)
    reader.feed(out)
    frames = []
    while True:
        try:
            value = reader.gets()
        except hiredis.ProtocolError as exc:  # pragma: no cover - the sidecar wrote bad RESP
            raise AssertionError(f"unparseable reply stream: {out[:300]!r}") from exc
        if value is Ellipsis:
            break
        frames.append(_norm(value))
    return frames


def _norm(value):
    if isinstance(value, Exception):  # hiredis.ReplyError
        return ("error", str(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return ("int",)
    if isinstance(value, bytes) and value.startswith(b"id="):
        keep = ("name", "db", "user", "resp", "lib-name", "lib-ver", "multi", "sub", "psub")
        lines = value.decode(errors="replace").strip().split("\n")
        if len(lines) > 1:
            return ("client list",)
        fields = dict(f.split("=", 1) for f in lines[0].split(" ") if "=" in f)
        return ("client info", {k: fields.get(k, "") for k in keep})  # (Redis 7.0 has no lib-name, lib-ver)
    if isinstance(value, dict):
        return {k: (0 if k == b"id" else _norm(v)) for k, v in value.items()}
    if isinstance(value, list):
        if len(value) % 2 == 0 and b"id" in value[::2] and b"server" in value[::2]:  # HELLO in RESP2
            return _norm(dict(zip(value[::2], value[1::2])))
        return [_norm(v) for v in value]
    return value


INTS = [b"0", b"1", b"3", b"15", b"16", b"-1", b"+1", b" 1", b"01", b"1_0", b"abc", b"", b"99999999999999999999",
        b"2", b"4"]
NAMES = [b"app-1", b"my lib", b"", b"x\ny", b"n\xc3\xa9", b"ok_name", b"a" * 40]


@st.composite
def handshake_command(draw, password: bytes, acl: tuple[bytes, bytes], setinfo: bool) -> list[bytes]:
    creds = st.sampled_from([(None, password), (b"default", password), acl, (acl[0], b"wrong"), (None, b"wrong"),
                             (b"nobody", b"x"), (b"default", b""), (None, b"\x80"), (acl[0], acl[1] + b"\xff"),
                             (b"\xff", password)])
    kind = draw(st.integers(0, 8))
    if kind == 0:
        user, pw = draw(creds)
        cmd = [b"AUTH", pw] if user is None else [b"AUTH", user, pw]
        return cmd + draw(st.sampled_from([[], [], [], [b"extra"]]))
    if kind == 1:
        # HELLO as clients send it: AUTH before SETNAME, each at most once. (Other forms differ between servers:
        # Redis 7.0 runs the options one by one, so an AUTH or a SETNAME before a failing option stays done; Valkey
        # checks them all, then authenticates once with the last AUTH.)
        cmd = [b"HELLO"]
        if draw(st.booleans()):
            cmd.append(draw(st.sampled_from([b"2", b"3", b"1", b"4", b"x", b"+3", b"03"])))
            options = []
            if draw(st.booleans()):
                user, pw = draw(creds)
                options.append([b"AUTH", user or b"default", pw])
            if draw(st.booleans()):
                options.append([draw(st.sampled_from([b"SETNAME", b"setname"])), draw(st.sampled_from(NAMES))])
            if not any(o[0] == b"AUTH" for o in options) and draw(st.integers(0, 3)) == 0:
                options.append([draw(st.sampled_from([b"AUTH", b"SETNAME", b"bogus"]))])  # incomplete or unknown
            cmd += [word for option in options for word in option]
        return cmd
    if kind == 2:
        return [b"SELECT", *draw(st.lists(st.sampled_from(INTS), min_size=0, max_size=2))]
    if kind == 3:
        subs = [b"SETNAME", b"GETNAME", b"ID", b"INFO", b"setname", b"getname"] + ([b"SETINFO"] if setinfo else [])
        sub = draw(st.sampled_from(subs))
        if sub.upper() == b"SETNAME":
            extra = [draw(st.sampled_from(NAMES))] + draw(st.sampled_from([[], [], [b"more"]]))
        elif sub == b"SETINFO":
            extra = [draw(st.sampled_from([b"LIB-NAME", b"lib-ver", b"LIB-X"])), draw(st.sampled_from(NAMES))]
            extra = extra[:draw(st.integers(0, 2))] if draw(st.integers(0, 4)) == 0 else extra
        else:
            extra = draw(st.sampled_from([[], [], [b"x"]]))
        return [b"CLIENT", sub, *extra]
    if kind == 4:
        return [b"PING", *draw(st.lists(st.sampled_from([b"hi", b"", b"a b"]), max_size=2))]
    if kind == 5:
        return [b"ECHO", *draw(st.lists(st.sampled_from([b"hi", b"", b"\r\n"]), max_size=2))]
    if kind == 6:
        return [b"RESET", *draw(st.sampled_from([[], [], [], [b"x"]]))]
    if kind == 7:
        # (not CLIENT LIST ID <not a number>: Redis 7 says "Invalid client ID", Valkey 8 "syntax error")
        return [b"CLIENT", b"LIST", *draw(st.sampled_from([[b"TYPE", b"bogus"], [b"bogus"], [b"TYPE"]]))]
    return [b"CLIENT", b"REPLY", draw(st.sampled_from([b"ON", b"OFF", b"SKIP", b"maybe"]))]


@pytest.fixture(scope="module", params=sorted(find_binaries()))
def diff_pair(request):
    """Each server flavour installed here (redis, valkey) with a sidecar in front of it."""
    from conftest import _server, sidecar_config
    from harness.servers import SidecarProcess

    with _server(request.param) as server:
        with SidecarProcess(config=sidecar_config(server, limits={"auth_failures_per_minute": 1000})) as sidecar:
            exchange(sidecar.port, b"")  # the sidecar has its upstream's HELLO before the first comparison
            # CLIENT SETINFO came with Redis 7.2; the sidecar accepts it whatever the upstream (clients send it)
            setinfo = b"unknown subcommand" not in exchange(
                server.port, resp.encode_command([b"AUTH", server.password.encode()]) +
                resp.encode_command([b"CLIENT", b"SETINFO", b"LIB-NAME", b"x"]))
            yield server, sidecar, setinfo


DIFF_FIGURES = {"sequences": 0, "commands": 0}


@settings(max_examples=300, **FIXED)
@given(st.data())
def test_local_handshake_commands_answer_as_the_upstream_does(diff_pair, data):
    from conftest import ACL_PASSWORD, ACL_USER, UPSTREAM_PASSWORD

    server, sidecar, setinfo = diff_pair
    cmd = handshake_command(UPSTREAM_PASSWORD.encode(), (ACL_USER.encode(), ACL_PASSWORD.encode()), setinfo)
    commands = data.draw(st.lists(cmd, min_size=1, max_size=10))
    payload = b"".join(resp.encode_command(c) for c in commands)
    direct, proxied = normalise(exchange(server.port, payload)), normalise(exchange(sidecar.port, payload))
    DIFF_FIGURES["sequences"] += 1
    DIFF_FIGURES["commands"] += len(commands)
    assert same_replies(proxied, direct), "\n".join(repr(c) for c in commands)


NOAUTH = ("error", "NOAUTH Authentication required.")


def same_replies(proxied: list, direct: list) -> bool:
    """Equal, but for one deliberate difference: before authentication the sidecar answers NOAUTH to every command
    but AUTH, HELLO, QUIT and RESET, where Redis first reports an unknown (sub)command or a wrong argument count."""
    if len(proxied) != len(direct):
        return False
    for p, d in zip(proxied, direct):
        if p != d and not (p == NOAUTH and isinstance(d, tuple) and d[0] == "error" and d[1].startswith(
                ("ERR wrong number of arguments for ", "ERR unknown subcommand ", "ERR unknown command "))):
            return False
    return True


@pytest.mark.parametrize("name,data", corpus_inputs("wire"), ids=lambda v: v if isinstance(v, str) else "")
def test_corpus_wire_same_answer_direct_and_proxied(diff_pair, name, data):
    """Raw byte streams (malformed included) sent to the upstream and to the sidecar: the same replies and the same
    protocol error. Each file is the whole stream a client sends, its AUTH included."""
    server, sidecar, _ = diff_pair
    direct, proxied = exchange(server.port, data), exchange(sidecar.port, data)
    assert same_replies(normalise(proxied), normalise(direct)), (direct[-300:], proxied[-300:])


# -- coverage-guided: atheris (libFuzzer) ------------------------------------------------------------------------------

def atheris_main(argv: list[str]) -> None:
    """Fuzz the request parser (with the Redis oracle) and the local handlers; libFuzzer flags in ``argv``. Atheris
    instruments Python code, so the sidecar runs its pure-Python parser here; the C parser, when built, gets every
    parser input too, checked against the same oracle."""
    import atheris
    import prometheus_client  # noqa: F401  # pyflakes: ignore (imported first: only the sidecar's code is instrumented)
    import uvloop  # noqa: F401
    import yaml  # noqa: F401
    del prometheus_client, uvloop, yaml

    import proxy.config  # noqa: F401
    import proxy.ops.metrics  # noqa: F401
    import proxy.server  # noqa: F401
    os.environ["REDIS_SIDECAR_NO_EXTENSIONS"] = "1"  # the instrumented module serves its Python classes
    for name in ("proxy.ops.admin", "proxy.client.local", "proxy.client.client_command", "proxy.wire.resp",
                 "proxy.client.session"):
        sys.modules.pop(name, None)  # (imported again below, instrumented)
    with atheris.instrument_imports():
        import proxy.client.client_command  # noqa: F401
        import proxy.client.local  # noqa: F401
        import proxy.client.session  # noqa: F401
        import proxy.ops.admin  # noqa: F401
        import proxy.wire.resp  # noqa: F401
    globals().update(resp=proxy.wire.resp, RequestParser=proxy.wire.resp.RequestParser, ReplyFramer=proxy.wire.resp.ReplyFramer,
                     ProtocolError=proxy.wire.resp.ProtocolError)  # the checks use the instrumented parser
    import wire

    wire.ProtocolError = proxy.wire.resp.ProtocolError  # parse_all catches the instrumented module's error
    if wire.C_PARSER is not None:  # and the C parser raises it
        wire._speedups.bind(proxy.wire.resp.ProtocolError, proxy.wire.resp.RequestLimits)
    harness = LocalHarness()

    def one_input(data: bytes) -> None:
        if not data:
            return
        mode, body = data[0], data[1:]
        if mode & 1:
            harness.run(body)
        else:
            cut = body[:1][0] if body else 0
            cut = cut % (len(body) + 1)
            check_parser_properties([body[:cut], body[cut:]], authenticated=bool(mode & 2))
            if wire.C_PARSER is not None:
                check_parser_properties([body[:cut], body[cut:]], bool(mode & 2), parser_cls=wire.C_PARSER)

    atheris.Setup([sys.argv[0], *argv], one_input)
    atheris.Fuzz()


def test_atheris_coverage_guided_run(tmp_path):
    """A bounded libFuzzer run (20,000 inputs) seeded with the corpus: no crash, no hang, no leak past 2 GB."""
    pytest.importorskip("atheris")
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for kind, mode in (("parser", b"\x00"), ("local", b"\x01")):
        for name, data in corpus_inputs(kind):
            (seeds / f"{kind}-{name}").write_bytes(mode + data)
    runs = int(os.environ.get("SIDECAR_FUZZ_RUNS", "20000"))
    proc = subprocess.run(
        [sys.executable, __file__, "--atheris", f"-runs={runs}", "-max_total_time=90", "-timeout=10",
         "-rss_limit_mb=2048", "-max_len=4096", f"-artifact_prefix={tmp_path}/", str(seeds)],
        capture_output=True, text=True, timeout=240, cwd=Path(__file__).parent.parent)
    tail = proc.stderr[-3000:]
    assert proc.returncode == 0, tail
    done = re.findall(r"Done (\d+) runs", proc.stderr)
    cov = re.findall(r"cov: (\d+)", proc.stderr)
    ARTIFACTS.mkdir(exist_ok=True)
    figures = {"runs": int(done[-1]) if done else None, "coverage_edges": int(cov[-1]) if cov else None,
               "crashes": len(list(tmp_path.glob("crash-*"))) + len(list(tmp_path.glob("timeout-*")))}
    (ARTIFACTS / "fuzz_atheris.json").write_text(json.dumps(figures))
    print("atheris:", figures)
    assert figures["crashes"] == 0 and figures["runs"], tail


def test_zz_record_fuzz_figures():
    """Write the run's figures (inputs tried per property) for the closing note."""
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fuzz_differential.json").write_text(json.dumps(DIFF_FIGURES))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--atheris"]:
        sys.path.insert(0, str(Path(__file__).parent.parent))
        atheris_main(sys.argv[2:])
