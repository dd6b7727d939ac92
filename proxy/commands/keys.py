"""Which arguments of a command are keys, found as the server finds them (``COMMAND GETKEYS``, Cluster slot checks).

The server's own order, followed here:

1. the key specs from COMMAND, when at least one names real keys and none has ``variable_flags``: the search
   begins at an index or after a keyword (``startfrom`` counted from the end when negative), and keys are a range
   (``lastkey``/``keystep``/``limit``) or counted by an argument (``keynumidx``/``firstkey``/``keystep``; the count
   is of keys, as Valkey 9 reads it: Redis 7.0 reads it as a count of arguments, the same for its commands, which
   all step by 1);
2. when a spec is ``unknown`` or ``incomplete`` (SORT's BY/GET/STORE, MIGRATE ... KEYS), when a key count does not
   parse, or when the specs' flags vary with the arguments (SET, BITFIELD; GEORADIUS* on Valkey), Redis runs the
   command's own key parser instead: those parsers are ported below (``KEY_PROCS``). A command outside that table
   whose specs fail (a module command without a getkeys callback) has no keys, as in Redis;
3. servers before Redis 7 send no key specs: the legacy first/last/step range.

Arguments compare as C strings do (``strcasecmp``): case-insensitive, up to the first NUL byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .spec import CommandSpec, KeySpec

_LONG = re.compile(rb"0|-?[1-9][0-9]*")


def _word(arg: bytes) -> bytes:
    """An argument as ``strcasecmp`` sees it."""
    return arg.split(b"\0", 1)[0].lower()


def _cdiv(a: int, b: int) -> int:
    """C's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _int32(v: int) -> int:
    """C's ``(int)`` cast of a 64-bit value."""
    return (v + 2**31) % 2**32 - 2**31


def _string2ll(arg: bytes) -> int | None:
    """Redis's strict integer parse: no sign but '-', no leading zeros or spaces, within 64 bits."""
    if not _LONG.fullmatch(arg):
        return None
    value = int(arg)
    return value if -2**63 <= value < 2**63 else None


def _atoi(arg: bytes) -> int:
    """C's ``atoi``: leading blanks, a sign, digits up to the first other byte; 64-bit clamp, then ``(int)``."""
    match = re.match(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)", arg)
    if match is None:
        return 0
    return _int32(max(-2**63, min(2**63 - 1, int(match.group(1)))))


# -- key specs ---------------------------------------------------------------------------------------------------------

def _begin(spec: KeySpec, args: list[bytes]) -> int | None:
    """Where the keys start: an index, or just after the keyword; 0 when the keyword is absent, None if unknown."""
    kind = spec.begin[0]
    if kind == "index":
        return int(spec.begin[1])
    if kind != "keyword":
        return None
    _, keyword, startfrom = spec.begin
    argc = len(args)
    start, end = (startfrom, argc - 1) if startfrom > 0 else (argc + startfrom, 1)
    i = start
    while i != end:  # forward to argc-2, or backward down to 2, as Redis scans
        if i >= argc or i < 1:
            break
        if _word(args[i]) == keyword:
            return int(i) + 1
        i = i + 1 if start <= end else i - 1
    return 0


def _from_specs(specs: list[KeySpec], args: list[bytes]) -> list[int] | None:
    """Redis's getKeysUsingKeySpecs; None where it reports an invalid or incomplete spec."""
    argc = len(args)
    found: list[int] = []
    for spec in specs:
        first = _begin(spec, args)
        if first is None:
            return None
        if first == 0:
            continue
        how = spec.find
        if how[0] == "range":
            _, lastkey, step, limit = how
            if lastkey >= 0:
                last = first + lastkey
            elif not limit:
                last = argc + lastkey
            else:
                last = first + (_cdiv(argc - first, limit) + lastkey)
        elif how[0] == "keynum":
            _, numidx, firstkey, step = how
            if first + numidx >= argc:
                return None
            numkeys = _string2ll(args[first + numidx])
            if numkeys is None or numkeys < 0:
                return None
            first += firstkey
            last = first + (_int32(numkeys) - 1) * step  # the count is of keys: Valkey 9's MSETEX steps by 2
        else:
            return None
        if last >= argc or last < first or first >= argc:
            return None
        found.extend(range(first, last + 1, max(step, 1)))
        if "incomplete" in spec.flags:
            return None
    return found


def _legacy(spec: CommandSpec, argc: int) -> list[int]:
    """First/last/step from COMMAND (servers without key specs); no keys if the range runs past the arguments."""
    if spec.first <= 0:
        return []
    last = spec.last if spec.last >= 0 else argc + spec.last
    positions = list(range(spec.first, last + 1, max(spec.step, 1)))
    return [] if positions and positions[-1] >= argc else positions


# -- the commands' own key parsers (db.c), for when their specs cannot say ---------------------------------------------

def _numkeys(store: int, count: int, first: int, step: int) -> Callable[[list[bytes]], list[int]]:
    """genericGetKeys: ``count`` keys from ``first``, the destination (if any) last."""
    def keys(args: list[bytes]) -> list[int]:
        num = _atoi(args[count])
        if num < 1 or num > _cdiv(len(args) - first, step):
            return []
        return [first + i * step for i in range(num)] + ([store] if store else [])
    return keys


def _sort(args: list[bytes]) -> list[int]:
    """The sorted key, and the last STORE's destination (LIMIT/GET/BY skip their arguments)."""
    out, store = [1], None
    skips = {b"limit": 2, b"get": 1, b"by": 1}
    i = 2
    while i < len(args):
        word = _word(args[i])
        if word in skips:
            i += skips[word]
        elif word == b"store" and i + 1 < len(args):
            store = i + 1  # the destination itself is scanned next, as Redis does
        i += 1
    return [*out, store] if store is not None else out


def _migrate(args: list[bytes]) -> list[int]:
    """The key argument, or everything after KEYS when the key argument is empty."""
    skips = {b"copy": 0, b"replace": 0, b"auth": 1, b"auth2": 2}
    i = 6
    while len(args) > 6 and i < len(args):
        word = _word(args[i])
        if word == b"keys":
            return [] if args[3] else list(range(i + 1, len(args)))
        i += skips.get(word, 0) + 1
    return [3]


def _georadius(args: list[bytes]) -> list[int]:
    """The key, and the last STORE/STOREDIST destination."""
    stored, i = None, 5
    while i < len(args):
        if _word(args[i]) in (b"store", b"storedist") and i + 1 < len(args):
            stored = i + 1
            i += 1
        i += 1
    return [1] if stored is None else [1, stored]


def _xread(args: list[bytes]) -> list[int]:
    """The keys after the STREAMS that options (BLOCK, COUNT, GROUP, NOACK) lead to; half of what follows it."""
    skips = {b"block": 1, b"count": 1, b"group": 2, b"noack": 0}
    i, streams = 1, -1
    while i < len(args):
        word = _word(args[i])
        if word == b"streams":
            streams = i
            break
        if word not in skips:
            break
        i += skips[word] + 1
    num = len(args) - streams - 1
    if streams < 0 or num == 0 or num % 2:
        return []
    return list(range(streams + 1, streams + 1 + num // 2))


KEY_PROCS: dict[str, Callable[[list[bytes]], list[int]]] = {
    "sort": _sort, "sort_ro": lambda _args: [1], "migrate": _migrate,
    "georadius": _georadius, "georadiusbymember": _georadius,
    "set": lambda _args: [1], "bitfield": lambda _args: [1],
    "xread": _xread, "xreadgroup": _xread,
    **{name: _numkeys(0, 2, 3, 1) for name in ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro",
                                               "blmpop", "bzmpop")},
    **{name: _numkeys(1, 2, 3, 1) for name in ("zunionstore", "zinterstore", "zdiffstore")},
    **{name: _numkeys(0, 1, 2, 1) for name in ("zunion", "zinter", "zdiff", "zintercard", "sintercard", "lmpop",
                                               "zmpop")},
}


def key_positions(spec: CommandSpec, args: list[bytes], include_not_keys: bool = False) -> list[int]:
    """The positions of ``args`` that are keys for this command (see the module's docstring for the order)."""
    if not spec.accepts_argc(len(args)):
        return []
    if not spec.key_specs:
        return _legacy(spec, len(args))
    usable = [k for k in spec.key_specs if include_not_keys or "not_key" not in k.flags]
    if usable and not any("variable_flags" in k.flags for k in spec.key_specs):
        found = _from_specs(usable, args)
        if found is not None:
            return found
    proc = KEY_PROCS.get(spec.name)
    return proc(args) if proc is not None else []
