"""Ask servers for the layout: the cluster's slot map from its seeds, or a Sentinel-managed master's address.

Every function takes the caller's ``fetch(address, args) -> decoded reply``: the core plugs in its own authenticated
connections, the tests a tiny redis-py client. An error reply may be returned (hiredis hands back a ``ReplyError``
object) or raised (redis-py raises ``ResponseError``); both are understood. Each question is bounded by ``timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .topology import Address, SlotMap, from_cluster_shards, from_cluster_slots

Fetch = Callable[[Address, Sequence[str]], Awaitable[Any]]


class DiscoveryError(RuntimeError):
    """No server gave a usable answer; the message lists what each one said."""


class ReplyError(RuntimeError):
    """An error reply (``-ERR ...``) from a server, whichever way the fetch delivered it."""


async def query(fetch: Fetch, address: Address, args: Sequence[str], timeout: float) -> Any:
    """One question, bounded in time; an error reply raises ``ReplyError``."""
    try:
        reply = await asyncio.wait_for(fetch(address, args), timeout)
    except asyncio.TimeoutError:
        raise DiscoveryError(f"no reply within {timeout}s") from None
    if isinstance(reply, Exception):
        raise ReplyError(str(reply))
    return reply


def _unknown_command(exc: Exception) -> bool:
    text = str(exc).lower()
    return "unknown subcommand" in text or "unknown command" in text


def _where(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


async def discover(seeds: Iterable[Address], fetch: Fetch, *, tls: bool = False, timeout: float = 2.0) -> SlotMap:
    """The slot map, from the first seed that answers with every slot covered.

    ``CLUSTER SHARDS`` first, ``CLUSTER SLOTS`` on a server that does not know it. A seed whose view leaves slots
    uncovered (it just restarted, or is cut off) does not end the search; if no seed covers every slot, the most
    complete view is returned, since routing most keys beats routing none.
    """
    reasons: list[str] = []
    best: SlotMap | None = None
    for seed in seeds:
        try:
            slot_map = await _ask_seed(seed, fetch, tls, timeout)
        except Exception as exc:
            reasons.append(f"{_where(seed)}: {exc or type(exc).__name__}")
            continue
        if not slot_map.uncovered():
            return slot_map
        reasons.append(f"{_where(seed)}: {slot_map.uncovered()} slots uncovered")
        if best is None or slot_map.uncovered() < best.uncovered():
            best = slot_map
    if best is not None:
        return best
    raise DiscoveryError("no cluster seed answered: " + ("; ".join(reasons) or "no seeds given"))


async def _ask_seed(seed: Address, fetch: Fetch, tls: bool, timeout: float) -> SlotMap:
    try:
        reply = await query(fetch, seed, ("CLUSTER", "SHARDS"), timeout)
    except Exception as exc:
        if not _unknown_command(exc):
            raise
        return from_cluster_slots(await query(fetch, seed, ("CLUSTER", "SLOTS"), timeout), seed[0])
    return from_cluster_shards(reply, seed[0], tls)


# -- Sentinel --------------------------------------------------------------------------------------------------------

async def sentinel_master(sentinels: Iterable[Address], name: str, fetch: Fetch, *,
                          fetch_node: Fetch | None = None, timeout: float = 2.0) -> Address:
    """The address of master ``name``, as the first sentinel that knows it says, confirmed by ``ROLE`` on it.

    A sentinel can lag behind a failover and name a server that is now a replica; then the next sentinel is asked.
    ``fetch_node`` asks the master itself (it usually takes other credentials than the sentinels); default ``fetch``.
    """
    fetch_node = fetch_node or fetch
    reasons: list[str] = []
    for sentinel in sentinels:
        try:
            reply = await query(fetch, sentinel, ("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name), timeout)
        except Exception as exc:
            reasons.append(f"sentinel {_where(sentinel)}: {exc or type(exc).__name__}")
            continue
        if not reply:
            reasons.append(f"sentinel {_where(sentinel)}: does not monitor a master named {name!r}")
            continue
        address = (_text(reply[0]), int(reply[1]))
        try:
            role = await query(fetch_node, address, ("ROLE",), timeout)
        except Exception as exc:
            reasons.append(f"sentinel {_where(sentinel)} names {_where(address)}: {exc or type(exc).__name__}")
            continue
        if role and _text(role[0]) == "master":
            return address
        reasons.append(f"sentinel {_where(sentinel)} names {_where(address)}, which is a {_text(role[0])}")
    raise DiscoveryError(f"no sentinel gave a working master for {name!r}: " + ("; ".join(reasons) or "no sentinels"))


@dataclass(frozen=True)
class SwitchMaster:
    """A ``+switch-master`` event: the sentinels promoted ``new`` in place of ``old`` for master ``name``."""

    name: str
    old: Address
    new: Address


def parse_switch_master(payload: bytes | str) -> SwitchMaster | None:
    """The message of a ``+switch-master`` publication, ``<name> <old-ip> <old-port> <new-ip> <new-port>``; None if
    it is not that shape (the channel is subscribed by name, but a bad message must not crash the watcher)."""
    text = _text(payload).split()
    if len(text) != 5 or not (text[2].isdigit() and text[4].isdigit()):
        return None
    return SwitchMaster(text[0], (text[1], int(text[2])), (text[3], int(text[4])))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)
