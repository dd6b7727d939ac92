"""Key positions from the learned specs agree with the server's own ``COMMAND GETKEYS``, command by command.

The corpus covers every way Redis finds keys: an index and a range (GET, MSET, DEL), a key count (EVAL, ZUNIONSTORE,
LMPOP, SINTERCARD), a keyword (XREAD ... STREAMS, GEORADIUS ... STORE), specs Redis gives up on and parses itself
instead (SORT ... STORE, MIGRATE ... KEYS, SET and BITFIELD whose flags vary), subcommands (OBJECT ENCODING, XINFO
STREAM), malformed key counts Redis's fallback parsers still read, and arguments that end at a NUL byte."""

from __future__ import annotations

import hiredis
import pytest

from proxy.commands.spec import parse_command_reply
from proxy.commands.table import CommandTable
from serverside import ask, hello


def _args(text: str) -> list[bytes]:
    return [a.encode().replace(b"\\0", b"\0") if a != "''" else b"" for a in text.split()]


CORPUS = [_args(line) for line in """
    GET k
    SET k v
    SET k v GET
    SET k v EX 10 NX GET
    MSET k1 v1 k2 v2 k3 v3
    MSETNX k1 v1 k2 v2
    MGET k1 k2 k3
    DEL a b c
    UNLINK a b
    EXISTS a b a
    TOUCH a b
    RENAME src dst
    COPY src dst DB 1
    LMOVE src dst LEFT RIGHT
    BLMOVE src dst LEFT RIGHT 0
    RPOPLPUSH src dst
    SMOVE src dst member
    SINTERSTORE dst a b c
    PFMERGE dst a b
    PFCOUNT a b
    BITOP AND dst a b
    BITFIELD k GET u8 0
    BITFIELD k SET u8 0 1 GET u8 0
    BITFIELD_RO k GET u8 0
    LCS a b
    GETEX k EX 10
    OBJECT ENCODING k
    OBJECT FREQ k
    MEMORY USAGE k SAMPLES 5
    XINFO STREAM s FULL
    XINFO GROUPS s
    XGROUP CREATE s g $ MKSTREAM
    XGROUP CREATECONSUMER s g c
    EVAL script 2 k1 k2 arg
    EVAL script 0
    EVAL script 0 arg
    EVALSHA sha 1 k arg
    EVAL_RO script 1 k
    EVALSHA_RO sha 2 k1 k2
    FCALL fn 2 k1 k2 arg
    FCALL_RO fn 1 k
    ZUNIONSTORE dst 2 s1 s2 WEIGHTS 1 2
    ZINTERSTORE dst 1 s1
    ZDIFFSTORE dst 2 s1 s2
    ZUNION 2 s1 s2 WITHSCORES
    ZINTER 3 s1 s2 s3
    ZDIFF 1 s1
    ZINTERCARD 2 s1 s2 LIMIT 1
    SINTERCARD 3 s1 s2 s3
    LMPOP 2 l1 l2 LEFT
    BLMPOP 0 2 l1 l2 LEFT COUNT 1
    ZMPOP 1 z MIN
    BZMPOP 0 2 z1 z2 MAX
    EVAL script 02 k1 k2
    EVAL script +1 k1
    EVAL script 3 k1
    EVAL script -1 k1
    EVAL script abc k1
    EVAL script 4294967297 k1 k2
    ZUNIONSTORE dst 02 s1 s2
    LMPOP 01 l1 LEFT
    XREAD STREAMS s1 s2 0 0
    XREAD COUNT 1 BLOCK 0 STREAMS s 0
    XREAD streams s1 s2 s3 0 0
    XREAD STREAMS s
    XREAD COUNT STREAMS STREAMS k 0
    XREAD STREAMS\\0junk s 0
    XREADGROUP GROUP g c COUNT 1 STREAMS s1 s2 > >
    XREADGROUP GROUP g c NOACK STREAMS s >
    XREADGROUP STREAMS a b c d STREAMS x
    SORT k
    SORT k STORE dst
    SORT k BY w_* GET o_* STORE dst LIMIT 0 10
    SORT k STORE d1 STORE d2
    SORT k LIMIT 0 1 STORE dst
    SORT k store dst ALPHA
    SORT k STORE limit 0 1
    SORT k GET STORE STORE dst
    SORT k store\\0x dst
    SORT k STORE
    SORT_RO k BY w_* GET o_*
    GEORADIUS g 0 0 1 km
    GEORADIUS g 0 0 1 km STORE dst
    GEORADIUS g 0 0 1 km STOREDIST dst
    GEORADIUS g 0 0 1 km STORE a STOREDIST b
    GEORADIUS g 0 0 1 km WITHDIST STORE
    GEORADIUSBYMEMBER g m 1 km STORE dst
    GEORADIUSBYMEMBER g m 1 km STORE a STORE b
    GEORADIUS_RO g 0 0 1 km
    GEOSEARCHSTORE dst src FROMMEMBER m BYRADIUS 1 km
    MIGRATE host 6379 k 0 1000
    MIGRATE host 6379 '' 0 1000 KEYS a b
    MIGRATE host 6379 '' 0 1000 COPY REPLACE AUTH pw KEYS a b c
    MIGRATE host 6379 '' 0 1000 AUTH2 user pw KEYS a
    MIGRATE host 6379 '' 0 1000 AUTH keys KEYS a
    MIGRATE host 6379 k 0 1000 KEYS a
    MIGRATE keys 6379 k 0 1000
    SPUBLISH channel message
    PUBLISH channel message
    SSUBSCRIBE a b
    RESTORE k 0 payload
    EXPIRE k 10
    HSET h f v
    HGETEX h EX 10 FIELDS 1 f
    HSETEX h FIELDS 1 f v
    MSETEX 2 k1 v1 k2 v2 EX 10
    DELIFEQ k v
    WAIT 0 0
    PING
    MGET
    GET a b
    OBJECT NOSUCHSUB k
    NOSUCHCOMMAND k
""".strip().splitlines()]


@pytest.fixture(scope="module")
def server_view(any_upstream):
    with hello(any_upstream, 3) as client:
        table = CommandTable().learn(ask(client, [b"COMMAND"])[0])
        answers = ask(client, *[[b"COMMAND", b"GETKEYS", *args] for args in CORPUS])
    return table, answers


def test_key_positions_match_command_getkeys(server_view, any_upstream):
    table, answers = server_view
    mismatches, compared = [], 0
    for args, answer in zip(CORPUS, answers):
        spec = table.spec(args)
        ours = [args[i] for i in spec.keys(args)] if spec is not None else []
        theirs = [] if isinstance(answer, hiredis.ReplyError) else answer
        compared += spec is not None
        if ours != theirs:
            mismatches.append((b" ".join(args), ours, answer))
    assert not mismatches, mismatches
    print(f"{any_upstream.flavour}: {len(CORPUS)} commands, {compared} known to the server: key positions equal "
          "to COMMAND GETKEYS")


def test_every_command_with_generated_arguments(server_view, any_upstream):
    """Each command and subcommand the server has, with as many arguments as its arity asks and a few more, made of
    distinct names or of small numbers (read as key counts)."""
    table, _ = server_view
    cases = []
    for name in table.classified():
        head = [part.encode() for part in name.split("|")]
        spec = table.spec(head)
        if spec is None:
            continue
        counts = [abs(spec.arity)] if spec.arity > 0 else [-spec.arity + extra for extra in (0, 1, 2, 5)]
        for count in counts:
            rest = range(len(head), count)
            cases += [(spec, head + [b"k%d" % i for i in rest]), (spec, head + [b"%d" % (i % 3 + 1) for i in rest])]
    with hello(any_upstream, 2) as client:
        answers = ask(client, *[[b"COMMAND", b"GETKEYS", *args] for _, args in cases])
    mismatches = [(args, answer) for (spec, args), answer in zip(cases, answers)
                  if [args[i] for i in spec.keys(args)] != ([] if isinstance(answer, hiredis.ReplyError) else answer)]
    assert not mismatches, mismatches[:10]
    print(f"{any_upstream.flavour}: {len(cases)} generated commands, key positions equal to COMMAND GETKEYS")


def test_channels_come_with_not_keys_for_cluster_routing(server_view):
    table, _ = server_view
    for args, positions in (([b"SPUBLISH", b"ch", b"m"], [1]), ([b"SSUBSCRIBE", b"a", b"b"], [1, 2]),
                            ([b"SUNSUBSCRIBE"], []), ([b"GET", b"k"], [1])):
        assert table.spec(args).keys(args, include_not_keys=True) == positions


def test_incomplete_specs_are_the_ones_redis_parses_itself(server_view):
    """Where COMMAND's key specs cannot say (documented in proxy/commands/keys.py), a port of Redis's parser does."""
    table, _ = server_view
    from proxy.commands.keys import KEY_PROCS

    uncertain = {}
    for args in ([name.encode()] for name in table.classified() if "|" not in name):
        spec = table.spec(args)
        if spec is None:
            continue
        flags = {f for k in spec.key_specs for f in k.flags} | {k.begin[0] for k in spec.key_specs}
        if flags & {"incomplete", "variable_flags", "unknown"}:
            uncertain[spec.name] = sorted(flags & {"incomplete", "variable_flags", "unknown"})
    assert set(uncertain) <= set(KEY_PROCS), uncertain
    assert {"sort", "sort_ro", "migrate", "set", "bitfield"} <= set(uncertain)


def test_older_servers_use_first_last_step():
    legacy = parse_command_reply([[b"mset", -3, [b"write"], 1, -1, 2], [b"get", 2, [b"readonly"], 1, 1, 1],
                                  [b"eval", -3, [b"movablekeys"], 0, 0, 0], [b"del", -2, [b"write"], 1, -1, 1],
                                  [b"mod.pair", -2, [b"write"], 1, 2, 1]])
    assert legacy["mset"].keys([b"MSET", b"a", b"1", b"b", b"2"]) == [1, 3]
    assert legacy["mod.pair"].keys([b"mod.pair", b"a"]) == []  # a range past the arguments: no keys, as Redis
    assert legacy["get"].keys([b"GET", b"k"]) == [1] and legacy["get"].keys([b"GET"]) == []
    assert legacy["eval"].keys([b"EVAL", b"s", b"1", b"k"]) == []  # movable keys need the specs
    assert legacy["del"].keys([b"DEL", b"a", b"b"]) == [1, 2]
