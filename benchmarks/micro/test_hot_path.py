"""The per-request work of the sidecar, timed in isolation so a change that slows it shows up.

Run ``python -m benchmarks micro`` (pytest-benchmark enabled); ``python -m benchmarks micro --benchmark-autosave``
then ``--benchmark-compare`` compares against the last saved run. Under the normal test options
(``--benchmark-disable``) each function runs once, which checks the benchmarks still work.

Parsing and framing run on both implementations, side by side in one group per input: ``py`` (the pure-Python
reference) and ``c`` (the extension, skipped when it is not built); ``resp.SPEEDUPS`` says which one the sidecar uses.
"""

from __future__ import annotations

import pytest

from proxy.wire import resp
from proxy.commands.table import CommandTable, Route

try:
    from proxy.wire import _speedups
except ImportError:
    _speedups = None
else:  # (resp.py binds it too, unless REDIS_SIDECAR_NO_EXTENSIONS kept it from importing the extension)
    _speedups.bind(resp.ProtocolError, resp.RequestLimits)

_NOT_BUILT = pytest.mark.skipif(_speedups is None, reason="the C extension proxy.wire._speedups is not built")
PARSERS = [pytest.param(resp.PyRequestParser, id="py"),
           pytest.param(getattr(_speedups, "RequestParser", None), id="c", marks=_NOT_BUILT)]
FRAMERS = [pytest.param(resp.PyReplyFramer, id="py"),
           pytest.param(getattr(_speedups, "ReplyFramer", None), id="c", marks=_NOT_BUILT)]

GET = resp.encode_command([b"GET", b"user:1000:name"])
SADD = resp.encode_command([b"SADD", b"who_is_online", b"Peter"])
HANDSHAKE = b"".join(resp.encode_command(c) for c in (
    [b"HELLO", b"3", b"AUTH", b"default", b"upstream-secret"],
    [b"CLIENT", b"MAINT_NOTIFICATIONS", b"ON", b"moving-endpoint-type", b"internal-ip"],
    [b"CLIENT", b"SETINFO", b"LIB-NAME", b"redis-py"],
    [b"CLIENT", b"SETINFO", b"LIB-VER", b"8.1.0"],
))
PIPELINE_16 = GET * 16
SET_64K = resp.encode_command([b"SET", b"blob", b"x" * 65536])


def _parse(parser_cls: type, data: bytes, chunk: int | None = None) -> int:
    parser = parser_cls()
    parser.authenticated = True
    count = 0
    for i in range(0, len(data), chunk or len(data)):
        parser.feed(data[i:i + (chunk or len(data))])
        while parser.next() is not None:
            count += 1
    return count


@pytest.mark.parametrize("parser_cls", PARSERS)
@pytest.mark.parametrize("name,data,expected", [
    pytest.param("get", GET, 1, id="get"),
    pytest.param("handshake", HANDSHAKE, 4, id="handshake"),
    pytest.param("pipeline16", PIPELINE_16, 16, id="pipeline16"),
    pytest.param("set64k", SET_64K, 1, id="set64k"),
])
def test_request_parsing(benchmark, parser_cls, name, data, expected):
    benchmark.group = f"parse {name}"
    assert benchmark(_parse, parser_cls, data) == expected


@pytest.mark.parametrize("parser_cls", PARSERS)
def test_request_parsing_of_a_large_value_arriving_in_pieces(benchmark, parser_cls):
    """A 64 KiB SET in 1460-byte segments, as TCP delivers it: the parser must not rescan what it has seen."""
    benchmark.group = "parse set64k in 1460-byte pieces"
    assert benchmark(_parse, parser_cls, SET_64K, 1460) == 1


REPLIES = {
    "ok": b"+OK\r\n",
    "bulk": b"$5\r\nPeter\r\n",
    "smembers64": b"~64\r\n" + b"".join(b"$7\r\nuser-%02d\r\n" % i for i in range(64)),
    "hello_map": b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n"
                 b"$2\r\nid\r\n:7\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
                 b"$7\r\nmodules\r\n*0\r\n",
    "pipeline16": b"$5\r\nPeter\r\n" * 16,
}
SMEMBERS_100K = b"~100000\r\n" + b"".join(b"$13\r\nmember:%06d\r\n" % i for i in range(100_000))  # 1.9 MB


def _frames(framer_cls: type, data: bytes, chunk: int | None = None) -> int:
    framer = framer_cls()
    count = 0
    for i in range(0, len(data), chunk or len(data)):
        framer.feed(data[i:i + (chunk or len(data))])
        while framer.next() is not None:
            count += 1
    return count


@pytest.mark.parametrize("framer_cls", FRAMERS)
@pytest.mark.parametrize("name", sorted(REPLIES))
def test_reply_framing(benchmark, framer_cls, name):
    benchmark.group = f"frame {name}"
    assert benchmark(_frames, framer_cls, REPLIES[name]) == (16 if name == "pipeline16" else 1)


@pytest.mark.parametrize("framer_cls", FRAMERS)
def test_reply_framing_of_a_100k_element_set_in_pieces(benchmark, framer_cls):
    """One 100k-member SMEMBERS reply in 64 KiB reads: the time the event loop is held by framing it."""
    benchmark.group = "frame smembers100k in 64 KiB pieces"
    assert benchmark(_frames, framer_cls, SMEMBERS_100K, 65536) == 1


TABLE = CommandTable()
COMMANDS = [[b"GET", b"k"], [b"sadd", b"s", b"m"], [b"CLIENT", b"SETINFO", b"LIB-NAME", b"x"], [b"BLPOP", b"q", b"0"],
            [b"MULTI"], [b"SUBSCRIBE", b"ch"], [b"XREAD", b"BLOCK", b"0", b"STREAMS", b"s", b"$"]]


def _route_all() -> list[Route]:
    return [TABLE.route(args) for args in COMMANDS]


def test_routing(benchmark):
    routes = benchmark(_route_all)
    assert routes[0] is Route.SHARED and routes[1] is Route.SHARED


def _hello_reply() -> bytes:
    pairs = [(resp.bulk(b"server", 3), resp.bulk(b"redis", 3)), (resp.bulk(b"version", 3), resp.bulk(b"7.0.15", 3)),
             (resp.bulk(b"proto", 3), resp.integer(3)), (resp.bulk(b"id", 3), resp.integer(7)),
             (resp.bulk(b"mode", 3), resp.bulk(b"standalone", 3)), (resp.bulk(b"role", 3), resp.bulk(b"master", 3)),
             (resp.bulk(b"modules", 3), resp.array([]))]
    return resp.mapping(pairs, 3)


def test_local_reply_encoding(benchmark):
    """The HELLO answer the sidecar builds for every connect-per-request client."""
    assert benchmark(_hello_reply).startswith(b"%7\r\n")
