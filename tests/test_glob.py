"""Redis's glob, differentially: the port must answer as the running servers do.

Case-insensitive matching is checked against ``CONFIG GET pattern`` (the parameter names the server returns, out
of those ``CONFIG GET *`` lists), case-sensitive matching against ``PUBSUB CHANNELS pattern`` over channels a
connection of the test subscribed to. Patterns are hand-picked edge cases plus hypothesis-generated ones."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.wire.glob import compile_glob, glob_match, stringmatchlen
from serverside import ask, config_get_model, hello, mutated

FIXED = dict(database=None, deadline=None, suppress_health_check=list(HealthCheck))

# (pattern, string, nocase, Redis's answer): the quirks, each also sent to the servers below.
QUIRKS = [
    (b"[z-a]equirepass", b"requirepass", True, True),  # reversed range ends are swapped
    (b"requirepas[s", b"requirepass", True, True),     # an unclosed class takes the rest of the pattern
    (b"requirepas[^", b"requirepass", True, True),     # ... and [^ with nothing after matches any byte
    (b"requirepas[", b"requirepass", True, False),     # ... but [ with nothing after matches none
    (b"\\r*", b"requirepass", True, True), (b"\\R*", b"requirepass", True, True),
    (b"*[", b"abc", False, False), (b"*", b"", False, False), (b"", b"", False, True), (b"**", b"x", False, True),
    (b"[]]", b"]", False, False),                      # ']' right after '[' closes an empty class
    (b"[^]", b"x", False, True), (b"[\\]", b"]", False, True), (b"[\\]]", b"]", False, True),
    (b"[a-]", b"_", False, True),                      # the range runs from 'a' to ']', swapped
    (b"[\\A]", b"a", True, False), (b"[A]", b"a", True, True),  # escaped bytes in a class ignore nocase
    (b"[a-\xff]", b"\x00", False, True), (b"[a-\xff]", b"b", False, False),  # C's signed char: \xff is -1
    (b"[\x7f-\x80]", b"a", False, True), (b"[\x7f-\x80]", b"a", True, False),  # nocase: tolower unsigns -128
    (b"a\\", b"a\\", False, True), (b"a*", b"a", False, True), (b"a*?", b"a", False, False),
    (b"a*" * 1000 + b"b", b"a" * 1000 + b"b", False, True),    # 1000 nested stars: still matched
    (b"a*" * 1001 + b"b", b"a" * 1001 + b"b", False, False),   # 1001: Redis gives up
]


@pytest.mark.parametrize("pattern,string,nocase,expected", QUIRKS, ids=[repr(q[0][:24]) for q in QUIRKS])
def test_quirks(pattern, string, nocase, expected):
    assert stringmatchlen(pattern, string, nocase) is expected
    assert compile_glob(pattern, nocase)(string) is expected and glob_match(pattern, string, nocase) is expected


glob_bytes = st.binary(max_size=10) | st.lists(st.sampled_from(
    [b"*", b"?", b"[", b"]", b"^", b"-", b"\\", b"a", b"b", b"A", b"z", b"\xff", b"\x00", b"[a-c]", b"[^b]"]),
    max_size=8).map(b"".join)


@settings(max_examples=3000, **FIXED)
@given(glob_bytes, st.binary(max_size=8) | st.lists(st.sampled_from([b"a", b"b", b"A", b"z", b"]", b"-", b"\\",
                                                                     b"*", b"\xff"]), max_size=8).map(b"".join),
       st.booleans())
def test_compiled_matcher_agrees_with_the_port(pattern, string, nocase):
    assert compile_glob(pattern, nocase)(string) is stringmatchlen(pattern, string, nocase)


# -- against the servers -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def config_view(any_upstream):
    with hello(any_upstream) as client:
        names = set(ask(client, [b"CONFIG", b"GET", b"*"])[0][0::2])
        yield client, names


HAND_PICKED_CONFIG = [q[0] for q in QUIRKS if len(q[0]) < 100] + [
    b"REQUIREPASS", b"RequirePass", b"*PASS", b"*pass*", b"*auth", b"masterauth", b"primaryauth", b"tls-*-pass",
    b"tls-key-file-pas?", b"[^a]equirepass", b"[q-s]equirepass", b"[Q-S]EQUIREPASS", b"[r-r]*", b"requirepas\\s",
    b"requirepas\\s*", b"*\0zzz", b"requirepas*\0x", b"max*", b"*-*-*-*", b"?", b"??????????", b"*[", b"[*",
    b"[]]*", b"[^]*", b"[\\]*", b"*\\", b"\\*", b"[a-]*", b"*[!-/]*", b"*[\x7f-\x80]*", b"[a-z]*[0-9]",
]


def check_config_get(client, names: set[bytes], patterns: list[bytes]) -> None:
    replies = ask(client, *[[b"CONFIG", b"GET", p] for p in patterns])
    returned = [{n.lower() for n in r[0::2]} for r in replies]  # a name looked up is echoed as the client wrote it
    wrong = [(p, r ^ config_get_model(p, names)) for p, r in zip(patterns, returned) if r != config_get_model(p, names)]
    assert not wrong, wrong[:5]


def test_nocase_matches_as_config_get(config_view, any_upstream):
    client, names = config_view
    check_config_get(client, names, HAND_PICKED_CONFIG)

    seen: set[bytes] = set()

    @settings(max_examples=100, **FIXED)
    @given(st.lists(mutated(sorted(names)), min_size=50, max_size=50))
    def generated(patterns):
        seen.update(patterns)
        check_config_get(client, names, patterns)

    generated()
    print(f"{any_upstream.flavour}: CONFIG GET agrees on {len(HAND_PICKED_CONFIG)} hand-picked and {len(seen)} "
          f"distinct generated patterns over {len(names)} parameters")


CHANNELS = [b"", b"a", b"b", b"ab", b"abc", b"aXc", b"news.sport", b"news.tech", b"News.Sport", b"a*b", b"a?b",
            b"a[b", b"a]b", b"a\\b", b"]", b"]]", b"[", b"\\", b"^", b"-", b"_", b"*", b"?", b"x" * 40, b"\xff\xfe",
            b"\x00", b"a\x00b", b"UPPER", b"mixedCase", b"123", b"a.b.c.d", "été".encode(), b"requirepass",
            b"a" * 1000 + b"b", b"a" * 1001 + b"b"]


@pytest.fixture(scope="module")
def channels_view(any_upstream):
    with hello(any_upstream, 3) as subscriber, hello(any_upstream) as client:
        confirmations = ask(subscriber, [b"SUBSCRIBE", *CHANNELS])
        assert len(confirmations) == 1  # RESP3: the confirmations are pushes, read one per channel below
        for _ in CHANNELS[1:]:
            subscriber.read_reply()
        yield client


def check_channels(client, patterns: list[bytes]) -> None:
    replies = ask(client, *[[b"PUBSUB", b"CHANNELS", p] for p in patterns])
    ours = set(CHANNELS)
    wrong = [(p, r) for p, r in zip(patterns, replies)
             if set(r) & ours != {c for c in CHANNELS if glob_match(p, c)}]
    assert not wrong, wrong[:5]


def test_case_sensitive_matches_as_pubsub_channels(channels_view, any_upstream):
    client = channels_view
    hand_picked = [q[0] for q in QUIRKS] + [b"*", b"a*", b"A*", b"[aA]*", b"*b", b"a[*?]b", b"a\\*b", b"a[\\]]b",
                                            b"news.*", b"News.*", b"[nN]ews.[sS]*", b"*\x00*", b"\xff*", b"*[^a-z]*",
                                            b"?", b"??", b"[^]", b"[]]", b"\\]", b"[z-a]*", b"*[!-/]*"]
    check_channels(client, hand_picked)

    seen: set[bytes] = set()

    @settings(max_examples=100, **FIXED)
    @given(st.lists(glob_bytes | mutated(CHANNELS[1:30]), min_size=50, max_size=50))
    def generated(patterns):
        seen.update(patterns)
        check_channels(client, patterns)

    generated()
    print(f"{any_upstream.flavour}: PUBSUB CHANNELS agrees on {len(hand_picked)} hand-picked and {len(seen)} "
          f"distinct generated patterns over {len(CHANNELS)} channels")
