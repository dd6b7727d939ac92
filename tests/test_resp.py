"""The RESP module alone: request parsing with Redis's limits and error texts, reply framing at every split point.
Each parser and framer test runs on both implementations, the pure-Python reference and the C extension."""

from __future__ import annotations

import pytest

from proxy.wire import resp
from proxy.wire.resp import ProtocolError, RequestLimits
from wire import FRAMERS, PARSERS
from wire import parse_all as pull

with_parsers = pytest.mark.parametrize("parser_cls", PARSERS)
with_framers = pytest.mark.parametrize("framer_cls", FRAMERS)


def parse_all(parser_cls: type, data: bytes, authenticated: bool = True
              ) -> tuple[list[list[bytes]], ProtocolError | None]:
    parser = parser_cls()
    parser.authenticated = authenticated
    commands, error = pull(parser, data)
    return [args for args, _ in commands], error


@with_parsers
def test_multibulk_keeps_the_clients_exact_bytes(parser_cls):
    raw = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv\r\nv!\r\n"
    parser = parser_cls()
    parser.authenticated = True
    [(args, forwarded)] = pull(parser, raw)[0]
    assert args == [b"SET", b"k", b"v\r\nv!"]
    assert forwarded == raw and forwarded is raw  # the whole read is the command: forwarded without a copy


@with_parsers
def test_pipelined_commands_split_at_every_byte_come_out_whole_and_in_order(parser_cls):
    stream = b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$3\r\nkey\r\nECHO \"a b\"\r\n*0\r\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"
    for cut in range(len(stream) + 1):
        parser = parser_cls()
        parser.authenticated = True
        first, error1 = pull(parser, stream[:cut])
        second, error2 = pull(parser, stream[cut:])
        got = first + second
        assert [a for a, _ in got] == [[b"PING"], [b"GET", b"key"], [b"ECHO", b"a b"], [b"ECHO", b""]], cut
        assert error1 is None and error2 is None and parser.buffered == 0


@with_parsers
@pytest.mark.parametrize("line,expected", [
    (b"PING", [b"PING"]),
    (b"  set  k   v ", [b"set", b"k", b"v"]),
    (b'SET k "a\\nb\\x41"', [b"SET", b"k", b"a\nbA"]),
    (b"SET k 'it\\'s'", [b"SET", b"k", b"it's"]),
    (b'ECHO ""', [b"ECHO", b""]),
])
def test_inline_commands_follow_redis_quoting(parser_cls, line, expected):
    assert parse_all(parser_cls, line + b"\r\n") == ([expected], None)


@with_parsers
@pytest.mark.parametrize("data,message", [
    (b"*1\r\n+PING\r\n", "Protocol error: expected '$', got '+'"),
    (b"*x\r\n", "Protocol error: invalid multibulk length"),
    (b"*1\r\n$-5\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$abc\r\n", "Protocol error: invalid bulk length"),
    (b'SET k "unterminated\r\n', "Protocol error: unbalanced quotes in request"),
    (b'SET k "a"b\r\n', "Protocol error: unbalanced quotes in request"),
    (b"x" * (64 * 1024 + 1), "Protocol error: too big inline request"),
    (b"*1\r\n$" + b"9" * (64 * 1024 + 1), "Protocol error: too big bulk count string"),
])
def test_malformed_requests_get_redis_protocol_errors(parser_cls, data, message):
    commands, error = parse_all(parser_cls, data)
    assert commands == []
    assert str(error) == message


@with_parsers
def test_commands_before_the_bad_input_still_count(parser_cls):
    commands, error = parse_all(parser_cls, b"*1\r\n$4\r\nPING\r\n*1\r\n:1\r\n")
    assert commands == [[b"PING"]]
    assert "expected '$'" in str(error)


@with_parsers
def test_unauthenticated_clients_get_redis_tighter_limits(parser_cls):
    many_args = b"*11\r\n" + b"$1\r\na\r\n" * 11
    assert parse_all(parser_cls, many_args, authenticated=False)[1] is not None
    assert parse_all(parser_cls, many_args, authenticated=True)[1] is None
    big = b"*2\r\n$4\r\nAUTH\r\n$20000\r\n" + b"x" * 20000 + b"\r\n"
    assert str(parse_all(parser_cls, big, authenticated=False)[1]) == "Protocol error: invalid bulk length"


@with_parsers
def test_limits_follow_the_authenticated_flag_and_the_limits_set_between_commands(parser_cls):
    """The flag and the limits in force when a command is parsed decide, as a session changes them mid-pipeline."""
    parser = parser_cls()
    assert parser.authenticated is False and parser.limits == RequestLimits()
    five = resp.encode_command([b"x"] * 5)
    parser.feed(five + resp.encode_command([b"x"] * 11) + five + five)
    assert parser.next()[0] == [b"x"] * 5
    parser.authenticated = True
    assert parser.next()[0] == [b"x"] * 11
    parser.limits = RequestLimits(max_multibulk_len=4)
    assert parser.limits.max_multibulk_len == 4
    with pytest.raises(ProtocolError, match="invalid multibulk length"):
        parser.next()


@with_parsers
def test_configured_bulk_limit_is_enforced_before_the_bulk_arrives(parser_cls):
    parser = parser_cls(RequestLimits(max_bulk_len=10))
    parser.authenticated = True
    commands, error = pull(parser, b"*2\r\n$3\r\nGET\r\n$11\r\n")
    assert commands == [] and str(error) == "Protocol error: invalid bulk length"


REPLIES = [
    b"+OK\r\n", b"-ERR x\r\n", b":42\r\n", b"$5\r\nhello\r\n", b"$-1\r\n", b"*-1\r\n", b"*0\r\n",
    b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", b"_\r\n", b",1.50\r\n", b"(3492890328409238509324850943850943825024385\r\n",
    b"#t\r\n", b"=15\r\ntxt:Some string\r\n", b"!21\r\nSYNTAX invalid syntax\r\n",
    b"%2\r\n+first\r\n:1\r\n+second\r\n*2\r\n_\r\n,inf\r\n", b"~2\r\n+a\r\n+b\r\n",
    b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
    b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*1\r\n:2\r\n",
    b"*3\r\n$1\r\nx\r\n|1\r\n+ttl\r\n:3\r\n:7\r\n$0\r\n\r\n",
]


@with_framers
def test_reply_framer_frames_every_resp3_type_byte_exact(framer_cls):
    framer = framer_cls()
    framer.feed(b"".join(REPLIES))
    frames = []
    while (frame := framer.next()) is not None:
        frames.append(frame)
    assert frames == REPLIES and framer.buffered == 0


@with_framers
def test_reply_framer_returns_a_frame_that_is_the_whole_read_without_a_copy(framer_cls):
    framer = framer_cls()
    for reply in REPLIES:
        framer.feed(reply)
        assert framer.next() is reply and framer.buffered == 0


@with_framers
def test_reply_framer_resumes_when_replies_arrive_in_pieces(framer_cls):
    """Feed one byte at a time, as a slow link would deliver them."""
    stream = b"".join(REPLIES)
    framer = framer_cls()
    frames = []
    for i in range(len(stream)):
        framer.feed(stream[i:i + 1])
        while (frame := framer.next()) is not None:
            frames.append(frame)
    assert frames == REPLIES


@with_framers
@pytest.mark.parametrize("reply", [b"%x\r\n", b"*\r\n", b"$1.5\r\nab\r\n"])
def test_reply_framer_refuses_a_malformed_length_from_upstream(framer_cls, reply):
    """(int()'s ValueError, which upstream.py catches along with ProtocolError to drop the connection.)"""
    framer = framer_cls()
    framer.feed(reply)
    with pytest.raises(ValueError, match="invalid literal for int"):
        framer.next()


@with_framers
def test_reply_framer_refuses_an_unknown_type_byte(framer_cls):
    framer = framer_cls()
    framer.feed(b"+OK\r\n@x\r\n")
    assert framer.next() == b"+OK\r\n"
    with pytest.raises(ProtocolError, match="unexpected reply type byte 64 from upstream"):
        framer.next()


def test_local_reply_encoding_per_protocol():
    assert resp.null(2) == b"$-1\r\n" and resp.null(3) == b"_\r\n"
    assert resp.mapping([(resp.bulk("a"), resp.integer(1))], 3) == b"%1\r\n$1\r\na\r\n:1\r\n"
    assert resp.mapping([(resp.bulk("a"), resp.integer(1))], 2) == b"*2\r\n$1\r\na\r\n:1\r\n"
    assert resp.push([resp.bulk("x")], 3) == b">1\r\n$1\r\nx\r\n"
    assert resp.verbatim("id=1\n", 3) == b"=9\r\ntxt:id=1\n\r\n"
    assert resp.error("ERR a\r\nb") == b"-ERR a  b\r\n"
    assert resp.encode_command([b"SELECT", b"3"]) == b"*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"


@with_parsers
def test_a_large_value_arriving_in_pieces_waits_for_its_end_instead_of_reparsing(parser_cls):
    parser = parser_cls()
    parser.authenticated = True
    header = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n"
    assert pull(parser, header + b"x" * 10) == ([], None)
    assert parser._need == len(header) + 100_000 + 2  # nothing is parsed again before the value is complete
    assert parser._partial is not None and parser._partial[0] == [b"SET", b"k"]  # the two arguments are kept
    body = b"x" * 99_990 + b"\r\n"
    got = []
    for i in range(0, len(body), 1000):
        got += pull(parser, body[i:i + 1000])[0]
    assert [args for args, _ in got] == [[b"SET", b"k", b"x" * 100_000]]
    assert got[0][1] == header + b"x" * 100_000 + b"\r\n" and parser.buffered == 0
