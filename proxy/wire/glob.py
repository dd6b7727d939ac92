"""Redis's glob patterns (stringmatchlen), for PSUBSCRIBE matching and for CONFIG GET parameter patterns."""

from __future__ import annotations

import functools
import re


@functools.lru_cache(maxsize=4096)
def _glob_regex(pattern: bytes) -> re.Pattern[bytes]:
    """Redis's glob (stringmatchlen): * ? [set] [^set] [a-z] and backslash escapes."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i:i + 1]
        if c == b"*":
            out.append(b".*")
        elif c == b"?":
            out.append(b".")
        elif c == b"\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i:i + 1]))
        elif c == b"[":
            j = pattern.find(b"]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                negate = body[:1] == b"^"
                if negate:
                    body = body[1:]
                escaped = re.sub(rb"([\\\]\[^])", rb"\\\1", body)
                out.append(b"[" + (b"^" if negate else b"") + escaped + b"]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile(b"".join(out) + rb"\Z", re.DOTALL)


def glob_match(pattern: bytes, text: bytes) -> bool:
    try:
        return _glob_regex(pattern).match(text) is not None
    except re.error:
        return False
