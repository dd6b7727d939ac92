"""Redis's glob patterns, exactly as ``stringmatchlen`` (util.c) matches them.

Used where the sidecar must agree with the server to the byte: a PUBLISH's receivers counted against PSUBSCRIBE
patterns, and the login guard deciding whether ``CONFIG GET <pattern>`` would return a password. The quirks are
Redis's own and kept on purpose:

- ``[z-a]`` is ``[a-z]`` (the ends of a range are swapped), bytes compare as C's signed ``char``, and with
  ``nocase`` the ends and the byte then go through glibc's ``tolower``, which reads negative chars as unsigned
  again (``[\\x7f-\\x80]`` matches every byte, but nothing with ``nocase``);
- an unclosed ``[`` takes the rest of the pattern as its set (``requirepas[s`` matches ``requirepass``);
- ``\\`` escapes the next byte; inside ``[...]`` the escaped byte compares case-sensitively even with ``nocase``;
- ``*`` never matches the empty string when the whole string is empty (``*`` does not match ``""``);
- past 1000 nested ``*`` a match fails (Redis's protection against abusive patterns).

``stringmatchlen`` is the reference port, ``compile_glob`` the per-pattern matcher built once and called per
PUBLISH for each pattern; they agree on every input (tests/test_glob.py).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

_STAR, _QUESTION, _OPEN, _BACKSLASH, _CLOSE, _CARET, _DASH = b"*?[\\]^-"
MAX_NESTING = 1000  # Redis's stringmatchlen_impl gives up beyond this many nested '*'


def _signed(byte: int) -> int:
    """A byte as C's (signed) ``char``: range ends and the byte tested compare this way."""
    return byte - 256 if byte > 127 else byte


def _lower(c: int) -> int:
    """glibc's ``tolower`` in the C locale: ASCII letters lowered, and a negative ``char`` other than EOF (-1) read
    as the unsigned byte it is (-128..-2 become 128..254); every other value unchanged."""
    if 65 <= c <= 90:
        return c + 32
    return c + 256 if -128 <= c <= -2 else c


def _equal(want: int) -> Callable[[int], bool]:
    return lambda b: b == want


def _equal_nocase(want: int) -> Callable[[int], bool]:
    return lambda b: _lower(b) == want


def _class(pattern: bytes, i: int, nocase: bool) -> tuple[Callable[[int], bool], int]:
    """The ``[...]`` starting at ``pattern[i] == '['``: a test for one byte and the index after the class."""
    n = len(pattern)

    def at(k: int) -> int:  # C reads the terminating NUL past the end
        return pattern[k] if k < n else 0
    i += 1
    negate = at(i) == _CARET
    if negate:
        i += 1
    exact: set[int] = set()  # escaped bytes: compared case-sensitively even with nocase
    loose: set[int] = set()  # plain bytes: compared with tolower under nocase
    ranges: list[tuple[int, int]] = []
    while True:
        if at(i) == _BACKSLASH and n - i >= 2:
            i += 1
            exact.add(pattern[i])
        elif at(i) == _CLOSE:
            break
        elif i == n:  # unclosed: Redis steps back onto the last byte, the loop's increment then ends the pattern
            i -= 1
            break
        elif n - i >= 3 and pattern[i + 1] == _DASH:
            start, end = _signed(pattern[i]), _signed(pattern[i + 2])
            if start > end:
                start, end = end, start
            ranges.append((_lower(start), _lower(end)) if nocase else (start, end))
            i += 2
        else:
            loose.add(_lower(pattern[i]) if nocase else pattern[i])
        i += 1

    def accepts(byte: int) -> bool:
        c = _signed(byte)
        if nocase:
            c = _lower(c)
        hit = byte in exact or (_lower(byte) if nocase else byte) in loose or any(a <= c <= b for a, b in ranges)
        return hit != negate

    return accepts, i + 1


def _tokens(pattern: bytes, nocase: bool) -> list[Callable[[int], bool] | None]:
    """The pattern as Redis walks it: ``None`` for each run of ``*``, else a test that consumes one byte.

    How far each element reaches in the pattern never depends on the string, so the pattern is parsed once."""
    out: list[Callable[[int], bool] | None] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == _STAR:
            while i + 1 < n and pattern[i + 1] == _STAR:
                i += 1
            out.append(None)
            i += 1
        elif c == _QUESTION:
            out.append(lambda _b: True)
            i += 1
        elif c == _OPEN:
            test, i = _class(pattern, i, nocase)
            out.append(test)
        else:
            if c == _BACKSLASH and n - i >= 2:
                i += 1
            want = pattern[i]
            out.append(_equal_nocase(_lower(want)) if nocase else _equal(want))
            i += 1
    return out


def stringmatchlen(pattern: bytes, string: bytes, nocase: bool = False) -> bool:
    """Redis's ``stringmatchlen``, without recursion.

    Redis recurses at each ``*`` but, once a deeper ``*`` has failed (``skipLongerMatches``), no shallower ``*``
    retries: only the innermost star ever moves on. So one backtrack point is enough."""
    if not string:
        return not pattern  # Redis's loop never runs on an empty string: only the empty pattern matches it
    tokens = _tokens(pattern, nocase)
    t, s, n, m = 0, 0, len(tokens), len(string)
    star_t = star_s = -1
    nesting = 0
    while True:
        if t < n and s < m:
            token = tokens[t]
            if token is None:
                if t == n - 1:
                    return True  # a trailing '*' takes the rest
                nesting += 1
                if nesting > MAX_NESTING:
                    return False
                star_t, star_s = t + 1, s
                t += 1
                continue
            if token(string[s]):
                t += 1
                s += 1
                if s == m:
                    while t < n and tokens[t] is None:  # stars left when the string ends match nothing
                        t += 1
                    if t == n:
                        return True
                else:
                    continue
        # a mismatch, or one side ran out: the innermost star takes one more byte, if it has any
        if star_t < 0:
            return False
        star_s += 1
        if star_s >= m:
            return False
        t, s = star_t, star_s


def _byte_class(test: Callable[[int], bool]) -> bytes:
    """A regex atom matching exactly the bytes ``test`` accepts."""
    members = [b for b in range(256) if test(b)]
    if len(members) == 256:
        return b"[\\x00-\\xff]"
    if not members:
        return b"(?!)"
    return b"[" + b"".join(b"\\x%02x" % b for b in members) + b"]"


def _segment(tokens: list[Callable[[int], bool] | None]) -> re.Pattern[bytes]:
    return re.compile(b"".join(_byte_class(t) for t in tokens if t is not None), re.DOTALL)


@functools.lru_cache(maxsize=4096)
def compile_glob(pattern: bytes, nocase: bool = False) -> Callable[[bytes], bool]:
    """A matcher for one pattern, equal to ``stringmatchlen`` but cheap to call many times.

    Plain names compare as bytes, ``prefix*`` with ``startswith``; the rest match segment by segment (the parts
    between stars, each of fixed length): the first at the start, the last at the end, each middle one at its
    earliest place. That is linear in the string, as Redis's matcher is, whatever the pattern."""
    tokens = _tokens(pattern, nocase)
    stars = sum(t is None for t in tokens)
    special = any(c in pattern for c in b"*?[\\")
    if not special and not nocase:
        return pattern.__eq__
    if stars > MAX_NESTING:
        return lambda string: stringmatchlen(pattern, string, nocase)
    if not nocase and tokens and tokens[-1] is None and not any(c in pattern[:-1] for c in b"*?[\\"):
        prefix = pattern.rstrip(b"*")
        return (lambda string: string.startswith(prefix)) if prefix else (lambda string: bool(string))
    parts: list[list[Callable[[int], bool] | None]] = [[]]
    for token in tokens:
        if token is None:
            parts.append([])
        else:
            parts[-1].append(token)
    if len(parts) == 1:
        whole = _segment(parts[0])
        return lambda string: bool(string or not pattern) and whole.fullmatch(string) is not None
    head, middle, tail = _segment(parts[0]), [_segment(p) for p in parts[1:-1]], _segment(parts[-1])
    head_len, tail_len = len(parts[0]), len(parts[-1])

    def match(string: bytes) -> bool:
        if not string or head.match(string) is None:
            return False
        pos = head_len
        for seg in middle:
            found = seg.search(string, pos)
            if found is None:
                return False
            pos = found.end()
        tail_at = len(string) - tail_len
        return tail_at >= pos and tail.fullmatch(string, tail_at) is not None

    return match


def glob_match(pattern: bytes, text: bytes, nocase: bool = False) -> bool:
    """Whether Redis's glob ``pattern`` matches ``text`` (PSUBSCRIBE, KEYS; ``nocase`` as CONFIG GET matches)."""
    return compile_glob(pattern, nocase)(text)
