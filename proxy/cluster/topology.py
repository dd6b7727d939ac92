"""The cluster's layout as data: which shard (primary and replicas) serves each slot, and the redirections that say
the layout changed.

Built from ``CLUSTER SHARDS`` (Redis 7+, Valkey) or ``CLUSTER SLOTS`` (older servers) as hiredis decodes them, in RESP2
(flat arrays) or RESP3 (maps), with keys and strings as bytes or str. Nothing here opens a socket: discovery
(``discovery.py``) asks the servers, the core routes with the resulting ``SlotMap``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .slots import SLOTS, key_slot

Address = tuple[str, int]

_generations = itertools.count(1)


@dataclass(frozen=True)
class Node:
    """One server of a shard, at the address clients should use."""

    address: Address
    node_id: str = ""  # "" when the reply does not carry it (CLUSTER SLOTS before Redis 4)
    healthy: bool = True  # CLUSTER SHARDS' health is "online"; CLUSTER SLOTS does not say, so assumed


@dataclass(frozen=True)
class Shard:
    """A primary, its replicas and the slot ranges (inclusive, sorted, merged) they serve."""

    primary: Node
    replicas: tuple[Node, ...] = ()
    slots: tuple[tuple[int, int], ...] = ()


class SlotMap:
    """Slot -> shard, immutable; a newer view of the cluster is a new ``SlotMap``.

    ``epoch`` is a process-wide generation number, larger for every map built later (including one patched by
    ``moved``): a caller that started a refresh under map N can tell whether someone already replaced N.
    Equality compares the layout only (shards, slots, addresses, ids, health), never the epoch.
    """

    __slots__ = ("shards", "epoch", "_owner")

    def __init__(self, shards: Iterable[Shard]) -> None:
        normal = [_normalized(s) for s in shards]
        normal.sort(key=lambda s: (s.slots[0][0] if s.slots else SLOTS, s.primary.address))
        self.shards: tuple[Shard, ...] = tuple(normal)
        self.epoch = next(_generations)
        owner: list[int] = [-1] * SLOTS
        for index, shard in enumerate(self.shards):
            for start, end in shard.slots:
                owner[start:end + 1] = [index] * (end - start + 1)
        self._owner = owner

    def shard_for_slot(self, slot: int) -> Shard | None:
        """The shard serving ``slot``, or None while no node claims it."""
        index = self._owner[slot]
        return self.shards[index] if index >= 0 else None

    def shard_for_key(self, key: bytes) -> Shard | None:
        return self.shard_for_slot(key_slot(key))

    def primary_for_slot(self, slot: int) -> Address | None:
        shard = self.shard_for_slot(slot)
        return shard.primary.address if shard else None

    def primaries(self) -> tuple[Address, ...]:
        """Every primary, including one that serves no slot (fan-out commands such as FLUSHALL reach it too)."""
        return tuple(s.primary.address for s in self.shards)

    def addresses(self) -> tuple[Address, ...]:
        """Every node the map names: the seeds for the next refresh."""
        return tuple(n.address for s in self.shards for n in (s.primary, *s.replicas))

    def uncovered(self) -> int:
        """How many slots no node serves (0 for a healthy cluster)."""
        return self._owner.count(-1)

    def moved(self, slot: int, address: Address) -> SlotMap:
        """This map with ``slot`` served by the primary at ``address``, as a MOVED says, until a refresh gives the
        whole truth; an address the map does not know becomes a shard of its own."""
        shards = list(self.shards)
        target = next((i for i, s in enumerate(shards) if s.primary.address == address), None)
        if target is None:
            shards.append(Shard(Node(address)))
            target = len(shards) - 1
        for i, shard in enumerate(shards):
            ranges = _remove_slot(shard.slots, slot)
            if i == target:
                ranges = (*ranges, (slot, slot))
            shards[i] = Shard(shard.primary, shard.replicas, ranges)
        return SlotMap(shards)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlotMap) and self.shards == other.shards

    def __hash__(self) -> int:
        return hash(self.shards)

    def __repr__(self) -> str:
        parts = ", ".join(f"{_slots_text(s.slots)}->{s.primary.address[0]}:{s.primary.address[1]}"
                          f"+{len(s.replicas)}" for s in self.shards)
        return f"SlotMap(epoch={self.epoch}, {parts})"


# -- parsing the servers' replies --------------------------------------------------------------------------------------

def from_cluster_shards(reply: Any, origin_host: str, tls: bool = False) -> SlotMap:
    """Parse ``CLUSTER SHARDS``. ``origin_host`` is the host the reply came from: a node with an unknown endpoint
    (empty) is reached there. With ``tls``, a node's ``tls-port`` is preferred to its ``port``."""
    shards = []
    for raw_shard in _list(reply, "CLUSTER SHARDS reply"):
        fields = _mapping(raw_shard)
        bounds = [int(b) for b in _list(fields.get("slots") or [], "slots")]
        ranges = tuple(zip(bounds[::2], bounds[1::2]))
        primary, replicas = None, []
        for raw_node in _list(fields.get("nodes") or [], "nodes"):
            info = _mapping(raw_node)
            node = Node(_shards_address(info, origin_host, tls), _text(info.get("id", "")),
                        _text(info.get("health", "online")) == "online")
            if _text(info.get("role", "")) != "master":
                replicas.append(node)
            elif primary is None or (node.healthy and not primary.healthy):
                primary = node  # Valkey lists a failed primary with the replica that replaced it: the live one serves
        # Without a primary there is nowhere to send commands. A failed primary serving no slot is one a replica
        # replaced (Redis 7.0 lists it as a shard of its own; Valkey does not): fan-outs must not wait for it.
        if primary is not None and (ranges or primary.healthy):
            shards.append(Shard(primary, tuple(replicas), ranges))
    return SlotMap(shards)


def from_cluster_slots(reply: Any, origin_host: str) -> SlotMap:
    """Parse ``CLUSTER SLOTS``: one entry per slot range, ``[start, end, primary, replica...]``, each node being
    ``[endpoint, port, id, metadata]``; a NULL endpoint means the host the reply came from."""
    by_primary: dict[Any, tuple[Node, dict[Address, Node], list[tuple[int, int]]]] = {}
    for entry in _list(reply, "CLUSTER SLOTS reply"):
        entry = _list(entry, "slot range")
        if len(entry) < 3:
            raise ValueError(f"CLUSTER SLOTS: a slot range without a primary: {entry!r}")
        start, end = int(entry[0]), int(entry[1])
        primary = _slots_node(entry[2], origin_host)
        key = primary.node_id or primary.address
        _, replicas, ranges = by_primary.setdefault(key, (primary, {}, []))
        ranges.append((start, end))
        for raw in entry[3:]:
            replica = _slots_node(raw, origin_host)
            replicas[replica.address] = replica
    return SlotMap(Shard(p, tuple(r.values()), tuple(ranges)) for p, r, ranges in by_primary.values())


def _shards_address(info: Mapping[str, Any], origin_host: str, tls: bool) -> Address:
    endpoint = _text(info.get("endpoint"))
    if endpoint == "?":  # hostname preferred, but this node has none: its ip still works
        endpoint = _text(info.get("ip"))
    port = info.get("tls-port") if tls and info.get("tls-port") else info.get("port") or info.get("tls-port")
    if port is None:
        raise ValueError(f"CLUSTER SHARDS: a node without a port: {dict(info)!r}")
    return (endpoint or origin_host, int(port))


def _slots_node(raw: Any, origin_host: str) -> Node:
    fields = _list(raw, "node")
    endpoint = _text(fields[0]) if fields and fields[0] is not None else ""
    metadata = _mapping(fields[3]) if len(fields) > 3 and fields[3] else {}
    if endpoint == "?":
        endpoint = _text(metadata.get("ip"))
    node_id = _text(fields[2]) if len(fields) > 2 else ""
    return Node((endpoint or origin_host, int(fields[1])), node_id)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{what}: expected an array, got {value!r}")
    return list(value)


def _mapping(value: Any) -> dict[str, Any]:
    """A RESP3 map (dict) or its RESP2 form (a flat array of name, value ...), with str keys."""
    if isinstance(value, dict):
        return {_text(k): v for k, v in value.items()}
    items = _list(value, "map")
    return {_text(k): v for k, v in zip(items[::2], items[1::2])}


def _normalized(shard: Shard) -> Shard:
    ranges: list[tuple[int, int]] = []
    for start, end in sorted(shard.slots):
        if not 0 <= start <= end < SLOTS:
            raise ValueError(f"slot range {start}-{end} is outside 0-{SLOTS - 1}")
        if ranges and start <= ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], max(end, ranges[-1][1]))
        else:
            ranges.append((start, end))
    replicas = tuple(sorted(shard.replicas, key=lambda n: n.address))
    return Shard(shard.primary, replicas, tuple(ranges))


def _remove_slot(ranges: tuple[tuple[int, int], ...], slot: int) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for start, end in ranges:
        if start <= slot <= end:
            out += [r for r in ((start, slot - 1), (slot + 1, end)) if r[0] <= r[1]]
        else:
            out.append((start, end))
    return tuple(out)


def _slots_text(ranges: tuple[tuple[int, int], ...]) -> str:
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges) or "-"


# -- redirections ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Redirect:
    """A ``-MOVED`` (the slot lives elsewhere now: update the map) or ``-ASK`` (this one command goes to the
    importing node, preceded by ASKING; the map stays as it is)."""

    kind: str  # "MOVED" or "ASK"
    slot: int
    host: str  # "" when the server does not know its peer's endpoint: the host of the node that answered
    port: int

    @property
    def ask(self) -> bool:
        return self.kind == "ASK"

    def address(self, origin_host: str) -> Address:
        """Where to go; ``origin_host`` is the host of the node that sent the redirection."""
        return (self.host or origin_host, self.port)


_REDIRECT = re.compile(rb"^-?(MOVED|ASK) (\d+) (\S*):(\d+)\s*$")


def parse_redirect(error: bytes | str) -> Redirect | None:
    """``-MOVED 3999 127.0.0.1:6381``, ``ASK 3999 :6381`` (no host: same host), ``MOVED 1 ::1:6381`` (IPv6, as Redis
    writes it, unbracketed) -> Redirect; any other error -> None. Takes the raw line or hiredis' message."""
    raw = error.encode() if isinstance(error, str) else bytes(error)
    match = _REDIRECT.match(raw.rstrip(b"\r\n"))
    if not match:
        return None
    kind, slot, host, port = match.groups()
    if int(slot) >= SLOTS or int(port) > 65535:
        return None
    return Redirect(kind.decode(), int(slot), host.decode().strip("[]"), int(port))
