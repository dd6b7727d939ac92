"""The C extension against the pure-Python reference: the same commands, raw bytes, errors, frames and buffering for
any input, however it is split and whenever the session pulls; plus what only the C side promises (C speed per
element of a big reply, bounded memory) and how the implementation in use is chosen."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.wire import resp
from proxy.wire.resp import RequestLimits
from test_fuzz import FIXED, NASTY, replies, request_streams
from wire import C_FRAMER, C_PARSER, NOT_BUILT

needs_c = pytest.mark.skipif(C_PARSER is None, reason=NOT_BUILT)

ROOT = Path(__file__).resolve().parent.parent


def outcome(call, fed: object) -> tuple:
    """What one call returned or raised, comparable across the two implementations (``fed``: the last bytes object
    fed, to compare which results are that very object rather than a copy)."""
    try:
        value = call()
    except Exception as exc:  # noqa: BLE001 - the exception type and text are what is compared
        return ("raised", type(exc), str(exc))
    if isinstance(value, tuple):  # a command
        args, raw = value
        return ("command", args, raw, raw is fed)
    return ("frame", value, value is fed) if value is not None else (None,)


class Pair:
    """The same calls on a Python and a C object; every result and all visible state must agree."""

    def __init__(self, py: object, c: object, state: tuple[str, ...]) -> None:
        self.py, self.c, self.state, self.fed = py, c, state, None
        self.parser = isinstance(py, resp.PyRequestParser)
        self.steps: list[str] = []

    def check_state(self) -> None:
        for name in self.state:
            assert getattr(self.py, name) == getattr(self.c, name), (name, self.steps[-40:])

    def feed(self, data: bytes) -> None:
        self.fed = data
        self.steps.append(f"feed {data[:60]!r}{'...' if len(data) > 60 else ''} ({len(data)} bytes)")
        self.py.feed(data)
        self.c.feed(data)
        self.check_state()

    def next(self) -> tuple:
        got = outcome(self.py.next, self.fed)
        self.steps.append(f"next -> {got!r:.120}")
        assert outcome(self.c.next, self.fed) == got, self.steps[-40:]
        self.check_state()
        return got

    def drain(self) -> None:
        while self.next()[0] not in (None, "raised"):
            pass

    def set(self, name: str, value: object) -> None:
        self.steps.append(f"{name} = {value!r}")
        setattr(self.py, name, value)
        setattr(self.c, name, value)
        self.check_state()


def parsers(limits: RequestLimits | None = None) -> Pair:
    return Pair(resp.PyRequestParser(limits), C_PARSER(limits),
                ("buffered", "_need", "_partial", "authenticated", "limits"))


def framers() -> Pair:
    return Pair(resp.PyReplyFramer(), C_FRAMER(), ("buffered",))


# -- the request parser ------------------------------------------------------------------------------------------------

small_limits = st.builds(RequestLimits, max_bulk_len=st.sampled_from([0, 3, 12, 512 * 1024 * 1024]),
                         max_multibulk_len=st.sampled_from([0, 1, 3, 1024 * 1024]),
                         preauth_max_bulk_len=st.sampled_from([0, 4, 16384]),
                         preauth_max_multibulk_len=st.sampled_from([1, 2, 10]))


def run_script(pair: Pair, chunks: list[bytes], data: st.DataObject) -> None:
    """Feed the chunks (each maybe cut smaller still); between feeds pull some commands, all, or none, and now and
    then change what a session changes between commands: the authenticated flag and the limits."""
    for chunk in chunks:
        step = data.draw(st.sampled_from([len(chunk) or 1, len(chunk) or 1, 1, 2, 7]))
        for i in range(0, len(chunk) or 1, step):
            pair.feed(chunk[i:i + step])
            for _ in range(data.draw(st.integers(0, 3))):
                action = data.draw(st.integers(0, 9))
                if action == 0 and pair.parser:
                    pair.set("authenticated", not pair.py.authenticated)
                elif action == 1 and pair.parser:
                    pair.set("limits", data.draw(small_limits))
                elif action == 2:
                    pair.drain()
                else:
                    pair.next()
    pair.drain()


@needs_c
@settings(max_examples=600, **FIXED)
@given(st.booleans(), st.data())
def test_parsers_agree_on_any_request_stream_however_split_and_pulled(corrupt, data):
    pair = parsers(data.draw(st.none() | small_limits))
    pair.set("authenticated", data.draw(st.booleans()))
    run_script(pair, data.draw(request_streams(corrupt)), data)


@needs_c
@settings(max_examples=400, **FIXED)
@given(st.lists(st.binary(max_size=40) | st.sampled_from(NASTY), max_size=12), st.data())
def test_parsers_agree_on_random_bytes(pieces, data):
    pair = parsers(data.draw(st.none() | small_limits))
    pair.set("authenticated", data.draw(st.booleans()))
    run_script(pair, pieces, data)


@needs_c
@settings(max_examples=60, **FIXED)
@given(st.integers(0, 40), st.integers(60_000, 200_000), st.sampled_from([1460, 4096, 65536, 70_001]), st.data())
def test_parsers_agree_on_big_values_and_long_pipelines_in_pieces(small, size, piece, data):
    """Past 64 KiB both keep, compact and grow their buffers (differently): the results must not tell."""
    get = resp.encode_command([b"GET", b"user:1000:name"])
    stream = get * small + resp.encode_command([b"SET", b"blob", b"x" * size]) + get * data.draw(st.integers(0, 3000))
    pair = parsers()
    pair.set("authenticated", True)
    for i in range(0, len(stream), piece):
        pair.feed(stream[i:i + piece])
        for _ in range(data.draw(st.sampled_from([0, 1, 50, 10_000]))):
            if pair.next()[0] is None:
                break
    pair.drain()
    assert pair.py.buffered == 0


@needs_c
def test_parsers_agree_on_inline_lines_at_the_64k_limit():
    for line in (b"x" * 65535, b"x" * 65536, b"x" * 65537, b'SET k "' + b"\\x41" * 16000 + b'"'):
        for end in (b"", b"\r\n", b"\n"):
            pair = parsers()
            pair.set("authenticated", True)
            for i in range(0, len(line + end), 1460):
                pair.feed((line + end)[i:i + 1460])
                pair.drain()


# -- the reply framer -------------------------------------------------------------------------------------------------

BAD_REPLY_BYTES = [b"+3", b" 3", b"1_0", b"-5", b"-1", b"-2", b"x", b"", b"99999999999999999999", b"\xd9\xa1",
                   b"%-1\r\n", b"%-2\r\n", b"|-1\r\n", b"*3\r\n", b"$-7\r\n", b"@", b"\r\n", b"\r", b"\n", b"$",
                   b"007"]


@st.composite
def reply_streams(draw, corrupt: bool) -> list[bytes]:
    """Replies as a server writes them, maybe corrupted (malformed lengths, unknown types, cut bytes), in chunks."""
    stream = bytearray(b"".join(draw(st.lists(replies(), min_size=1, max_size=8))))
    if corrupt:
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(stream)))
            op = draw(st.integers(0, 3))
            if op == 0 and stream:
                stream[min(at, len(stream) - 1)] = draw(st.integers(0, 255))
            elif op == 1:
                stream[at:at] = draw(st.sampled_from(BAD_REPLY_BYTES))
            elif op == 2:
                del stream[at:at + draw(st.integers(1, 6))]
            else:
                stream[at:at] = draw(st.binary(max_size=8))
    data = bytes(stream)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


@needs_c
@settings(max_examples=600, **FIXED)
@given(st.booleans(), st.data())
def test_framers_agree_on_any_reply_stream_however_split_and_pulled(corrupt, data):
    """Same frames at the same boundaries, the same no-copy frames, the same errors (int()'s ValueError for a
    malformed length, as the Python framer raises it), the same bytes held."""
    run_script(framers(), data.draw(reply_streams(corrupt)), data)


@needs_c
@settings(max_examples=30, **FIXED)
@given(st.integers(1_000, 120_000), st.sampled_from([1460, 65536, 100_000]), st.data())
def test_framers_agree_on_big_aggregates_in_pieces(elements, piece, data):
    big = b"~%d\r\n" % elements + b"".join(b"$12\r\nmember:%05d\r\n" % (i % 100_000) for i in range(elements))
    stream = b"+OK\r\n" * data.draw(st.integers(0, 3)) + big + b"$5\r\nPeter\r\n" * data.draw(st.integers(0, 20_000))
    pair = framers()
    for i in range(0, len(stream), piece):
        pair.feed(stream[i:i + piece])
        for _ in range(data.draw(st.sampled_from([0, 1, 100, 100_000]))):
            if pair.next()[0] is None:
                break
    pair.drain()
    assert pair.py.buffered == 0


# -- what only the C side promises ------------------------------------------------------------------------------------

SET_100K = b"~100000\r\n" + b"".join(b"$13\r\nmember:%06d\r\n" % i for i in range(100_000))


def frame_in_pieces(framer_cls: type, data: bytes, piece: int) -> tuple[float, list[bytes]]:
    framer, frames = framer_cls(), []
    started = time.perf_counter()
    for i in range(0, len(data), piece):
        framer.feed(data[i:i + piece])
        while (frame := framer.next()) is not None:
            frames.append(frame)
    return time.perf_counter() - started, frames


@needs_c
@pytest.mark.parametrize("piece", [65536, 1460])
def test_a_100k_element_reply_costs_c_speed_per_element_however_split(piece):
    """One SMEMBERS of 100k members (1.9 MB) must not hold the event loop for tens of ms: the Python framer takes
    35 ms or more; C takes 1-3 ms, in 64 KiB reads or in 1460-byte segments (no rescan, no quadratic copy)."""
    best = min(frame_in_pieces(C_FRAMER, SET_100K, piece)[0] for _ in range(3))
    _, frames = frame_in_pieces(C_FRAMER, SET_100K, piece)
    assert frames == [SET_100K]
    assert best < 0.01, f"{best * 1000:.1f} ms for 100k elements"


@needs_c
def test_a_big_reply_in_pieces_holds_memory_in_proportion_and_gives_it_back():
    framer = C_FRAMER()
    pieces = [SET_100K[i:i + 1460] for i in range(0, len(SET_100K), 1460)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        frames = []
        for piece in pieces:
            framer.feed(piece)
            while (frame := framer.next()) is not None:
                frames.append(frame)
        held_after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frames == [SET_100K] and framer.buffered == 0
    assert peak - before < 4 * len(SET_100K), peak - before  # the growing buffer plus the frame, not a copy per piece
    assert held_after - before < len(SET_100K) + 300_000  # the frame; the buffer was given back


@needs_c
def test_the_c_classes_raise_the_python_protocol_error_and_refuse_bad_setup():
    parser = C_PARSER()
    parser.feed(b"*1\r\n+PING\r\n")
    with pytest.raises(resp.ProtocolError):
        parser.next()
    with pytest.raises(AttributeError):
        parser.limits = object()
    with pytest.raises(TypeError):
        C_FRAMER(1)


# -- choosing the implementation --------------------------------------------------------------------------------------

def implementation_with(value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_SIDECAR_NO_EXTENSIONS"}
    if value is not None:
        env["REDIS_SIDECAR_NO_EXTENSIONS"] = value
    code = "from proxy.wire import resp; print(resp.SPEEDUPS, resp.RequestParser.__name__, resp.ReplyFramer.__module__)"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


PYTHON = "False PyRequestParser proxy.wire.resp"
C_IF_BUILT = "True RequestParser proxy.wire._speedups" if C_PARSER is not None else PYTHON


@pytest.mark.parametrize("value,expected", [
    (None, C_IF_BUILT), ("0", C_IF_BUILT), ("", C_IF_BUILT), ("1", PYTHON), ("yes", PYTHON)])
def test_the_extension_serves_when_built_unless_REDIS_SIDECAR_NO_EXTENSIONS_says_no(value, expected):
    assert implementation_with(value) == expected
