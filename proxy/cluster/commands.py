"""Where each command goes on a cluster, decided from the server's own key positions, and how split replies merge.

A command whose keys (``CommandSpec.keys``: the server's key specs, SPUBLISH's channel included) share a slot goes
to the primary serving it; a keyless one to the home node. MGET, MSET, DEL, UNLINK, EXISTS and TOUCH across slots
are split into one command per slot and their replies reassembled as one node would answer (elements in key order,
byte for byte, counts summed); any other command whose keys span slots gets Redis's own ``-CROSSSLOT``. A few keyless
commands describe or change the whole dataset, so they run on every primary and their replies are merged (``FANOUT``);
SCAN walks the primaries one after the other, its cursor carrying the node (``scan_*``).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass

from ..commands.table import CommandTable
from ..wire import resp
from .slots import SLOTS, key_slot

CROSSSLOT = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
SHARD_CHANNELS = frozenset({b"spublish", b"ssubscribe", b"sunsubscribe"})

Merge = Callable[[list[bytes]], bytes]


class Kind(enum.Enum):
    NODE = "node"            # one node: the slot's primary, or home when keyless
    SPLIT = "split"          # one command per slot, replies reassembled
    FANOUT = "fanout"        # every primary, replies merged
    SCAN = "scan"            # the primaries in turn, the cursor naming the node
    CROSSSLOT = "crossslot"  # keys in several slots, and the command cannot be split


@dataclass(frozen=True, slots=True)
class Plan:
    kind: Kind
    slot: int | None = None
    parts: tuple[tuple[int, list[bytes]], ...] = ()  # SPLIT: (slot, command) per part
    merge: Merge | None = None  # SPLIT and FANOUT


KEYLESS = Plan(Kind.NODE)
CROSS = Plan(Kind.CROSSSLOT)
SCANNING = Plan(Kind.SCAN)
_BY_SLOT = tuple(Plan(Kind.NODE, slot) for slot in range(SLOTS))


def plan(table: CommandTable, args: list[bytes]) -> Plan:
    """Where ``args`` goes (see the module docstring); a command the server does not know is keyless."""
    name = args[0].lower()
    merge = FANOUT.get(table.label(args))
    if merge is not None:
        return Plan(Kind.FANOUT, merge=merge)
    if name == b"scan":
        return SCANNING
    spec = table.spec(args)
    if spec is None:
        return KEYLESS
    positions = spec.keys(args, include_not_keys=name in SHARD_CHANNELS)
    if not positions:
        return KEYLESS
    slot = key_slot(args[positions[0]])
    for position in positions[1:]:
        if key_slot(args[position]) != slot:
            split = SPLIT.get(name)
            return split(args, positions) if split is not None else CROSS
    return _BY_SLOT[slot]


# -- splitting multi-key commands ----------------------------------------------------------------------------------

def _groups(args: list[bytes], positions: list[int]) -> dict[int, list[int]]:
    """Indexes into ``positions`` by slot, slots in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for i, position in enumerate(positions):
        groups.setdefault(key_slot(args[position]), []).append(i)
    return groups


def _split_keys(merge: Callable[[list[list[int]], int], Merge]) -> Callable[[list[bytes], list[int]], Plan]:
    def split(args: list[bytes], positions: list[int]) -> Plan:
        groups = _groups(args, positions)
        parts = tuple((slot, [args[0], *(args[positions[i]] for i in idx)]) for slot, idx in groups.items())
        return Plan(Kind.SPLIT, parts=parts, merge=merge(list(groups.values()), len(positions)))
    return split


def _split_mset(args: list[bytes], positions: list[int]) -> Plan:
    if len(args) % 2 == 0:  # a key without its value: a node's own arity error (for MSET and its first key alone)
        return Plan(Kind.SPLIT, parts=((key_slot(args[1]), args[:2]),), merge=all_ok)
    groups = _groups(args, positions)
    parts = tuple((slot, [args[0], *(a for i in idx for a in args[positions[i]:positions[i] + 2])])
                  for slot, idx in groups.items())
    return Plan(Kind.SPLIT, parts=parts, merge=all_ok)


def _in_key_order(groups: list[list[int]], total: int) -> Merge:
    """MGET: each part's elements back at their keys' places, as the nodes sent them."""
    def merge(replies: list[bytes]) -> bytes:
        out: list[bytes] = [b""] * total
        for indexes, reply in zip(groups, replies):
            items = elements(reply)
            if items is None or len(items) != len(indexes):
                return first_error(replies) or reply
            for index, item in zip(indexes, items):
                out[index] = item
        return b"*%d\r\n" % total + b"".join(out)
    return merge


def _summed(groups: list[list[int]], total: int) -> Merge:
    return sum_integers


SPLIT: dict[bytes, Callable[[list[bytes], list[int]], Plan]] = {
    b"mget": _split_keys(_in_key_order), b"mset": _split_mset,
    **{name: _split_keys(_summed) for name in (b"del", b"unlink", b"exists", b"touch")},
}


# -- merging replies ---------------------------------------------------------------------------------------------------

def elements(frame: bytes) -> list[bytes] | None:
    """The element frames of an array reply, byte for byte; None if it is not an array."""
    if frame[:1] != b"*":
        return None
    eol = frame.index(b"\r\n")
    count = int(frame[1:eol])
    framer = resp.ReplyFramer()
    framer.feed(frame[eol + 2:])
    out = []
    for _ in range(max(count, 0)):
        item = framer.next()
        if item is None:
            return None
        out.append(item)
    return out


def first_error(replies: list[bytes]) -> bytes | None:
    return next((r for r in replies if r[:1] == b"-"), None)


def sum_integers(replies: list[bytes]) -> bytes:
    """DEL, UNLINK, EXISTS, TOUCH, DBSIZE: the counts added up."""
    if all(r[:1] == b":" for r in replies):
        return resp.integer(sum(int(r[1:-2]) for r in replies))
    return first_error(replies) or next(r for r in replies if r[:1] != b":")


def all_ok(replies: list[bytes]) -> bytes:
    """MSET, FLUSHALL, SCRIPT FLUSH ...: +OK when every node said so, else the first error."""
    return first_error(replies) or replies[0]


def same_reply(replies: list[bytes]) -> bytes:
    """SCRIPT LOAD, FUNCTION LOAD: every node answers the same (the SHA, the library's name)."""
    return first_error(replies) or replies[0]


def concatenated(replies: list[bytes]) -> bytes:
    """KEYS: every node's keys in one array."""
    parts = [elements(r) for r in replies]
    if any(p is None for p in parts):
        return first_error(replies) or next(r for r, p in zip(replies, parts) if p is None)
    return b"*%d\r\n" % sum(len(p) for p in parts if p) + b"".join(item for p in parts if p for item in p)


def all_flags(replies: list[bytes]) -> bytes:
    """SCRIPT EXISTS: a script exists when it exists on every node (where EVALSHA may be sent)."""
    parts = [elements(r) for r in replies]
    if any(p is None for p in parts):
        return first_error(replies) or replies[0]
    return b"*%d\r\n" % len(parts[0] or []) + b"".join(min(column) for column in zip(*parts))


def random_pick(replies: list[bytes]) -> bytes:
    """RANDOMKEY: a key of a random node that has one; the null reply when none has."""
    error = first_error(replies)
    if error is not None:
        return error
    keys = [r for r in replies if r[:1] == b"$" and not r.startswith(b"$-1")]
    return random.choice(keys) if keys else replies[0]


FANOUT: dict[bytes, Merge] = {
    b"dbsize": sum_integers, b"keys": concatenated, b"flushall": all_ok, b"flushdb": all_ok,
    b"randomkey": random_pick, b"script|load": same_reply, b"script|flush": all_ok, b"script|exists": all_flags,
    b"function|load": same_reply, b"function|flush": all_ok, b"function|delete": all_ok,
    b"function|restore": all_ok,
}


# -- SCAN across nodes -------------------------------------------------------------------------------------------------
# The client's cursor is node_cursor * 16384 + the first slot of the node it is on: the node is found again by that
# slot (after a failover, the replica that took it over continues the scan), and 0 is the start and the end.

def scan_position(cursor: bytes) -> tuple[int, int] | None:
    """(node cursor, slot) of a client's cursor; None if it is not a plain unsigned number (the node says why)."""
    if not cursor.isdigit():
        return None
    return divmod(int(cursor), SLOTS)


def scan_cursor(node_cursor: int, first_slot: int) -> int:
    return node_cursor * SLOTS + first_slot


def scan_split(frame: bytes) -> tuple[int, bytes] | None:
    """A node's SCAN reply as (its next cursor, the elements array's bytes); None for an error or another shape."""
    if not frame.startswith(b"*2\r\n$"):
        return None
    eol = frame.index(b"\r\n", 4)
    start = eol + 2
    end = start + int(frame[5:eol])
    return int(frame[start:end]), frame[end + 2:]


def scan_reply(cursor: int, rest: bytes) -> bytes:
    return b"*2\r\n" + resp.bulk(b"%d" % cursor) + rest
