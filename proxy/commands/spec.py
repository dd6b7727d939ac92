"""What the server says about its commands: ``COMMAND``'s reply, parsed into immutable ``CommandSpec`` objects.

The sidecar asks the server instead of keeping a copy of Redis's command table: flags decide routing classes (a
module's blocking command is leased like BLPOP), key specs locate keys (Redis Cluster slots), and a newer server's
commands are known the moment it is. The parser takes the reply as hiredis decodes it, in either protocol: RESP2
gives key specs as flat ``[name, value, ...]`` lists, RESP3 as maps; servers before Redis 7 send only name, arity,
flags, first/last/step (and, from 6.0, ACL categories). Names and flags may arrive as bytes or str.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .keys import key_positions

_NO_SUBCOMMANDS: Mapping[str, CommandSpec] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One of a command's key specs: where the search for keys begins and how keys are found from there.

    ``begin`` is ``("index", pos)``, ``("keyword", b"streams", startfrom)`` (lower-cased) or ``("unknown",)``;
    ``find`` is ``("range", lastkey, keystep, limit)``, ``("keynum", keynumidx, firstkey, keystep)`` or
    ``("unknown",)``."""

    flags: frozenset[str]
    begin: tuple[Any, ...]
    find: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One command or subcommand as the server describes it. ``name`` is the label CLIENT LIST's ``cmd=`` and the
    ACLs use: ``get``, ``client|info``."""

    name: str
    arity: int
    flags: frozenset[str]
    first: int = 0
    last: int = 0
    step: int = 0
    acl_categories: frozenset[str] = frozenset()
    tips: tuple[str, ...] = ()
    key_specs: tuple[KeySpec, ...] = ()
    subcommands: Mapping[str, CommandSpec] = field(default_factory=lambda: _NO_SUBCOMMANDS, hash=False)

    # -- what the core asks about a command ---------------------------------------------------------------------------
    @property
    def no_auth(self) -> bool:
        """Allowed before authentication (AUTH, HELLO, QUIT, RESET)."""
        return "no_auth" in self.flags

    @property
    def no_multi(self) -> bool:
        return "no_multi" in self.flags

    @property
    def write(self) -> bool:
        return "write" in self.flags

    @property
    def may_replicate(self) -> bool:
        return "may_replicate" in self.flags

    @property
    def admin(self) -> bool:
        return "admin" in self.flags

    @property
    def allow_busy(self) -> bool:
        """Runs while the server is busy with a script (SCRIPT KILL, FUNCTION KILL, ...)."""
        return "allow_busy" in self.flags

    @property
    def noscript(self) -> bool:
        return "noscript" in self.flags

    @property
    def blocking(self) -> bool:
        return "blocking" in self.flags

    def accepts_argc(self, argc: int) -> bool:
        """Redis's arity rule: exactly ``arity`` arguments (name included), or at least ``-arity``."""
        return argc == self.arity if self.arity >= 0 else argc >= -self.arity

    def keys(self, args: list[bytes], include_not_keys: bool = False) -> list[int]:
        """Positions in ``args`` (the full command, name at 0) that are keys, as ``COMMAND GETKEYS`` finds them.

        ``include_not_keys`` also returns what specs mark ``not_key`` (the channel of SPUBLISH/SSUBSCRIBE, which
        Redis Cluster routes by slot too)."""
        return key_positions(self, args, include_not_keys)


# -- parsing COMMAND's reply -------------------------------------------------------------------------------------------

def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _mapping(value: Any) -> dict[str, Any]:
    """A RESP3 map or a RESP2 flat ``[key, value, ...]`` list, as a dict with str keys."""
    if isinstance(value, dict):
        return {_text(k): v for k, v in value.items()}
    items = list(value or ())
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _texts(values: Iterable[Any] | None) -> frozenset[str]:
    return frozenset(_text(v) for v in values or ())


def _key_spec(raw: Any) -> KeySpec:
    spec = _mapping(raw)
    begin, find = _mapping(spec.get("begin_search")), _mapping(spec.get("find_keys"))
    begin_args, find_args = _mapping(begin.get("spec")), _mapping(find.get("spec"))
    kind = _text(begin.get("type", "unknown"))
    if kind == "index":
        start: tuple[Any, ...] = ("index", int(begin_args["index"]))
    elif kind == "keyword":
        start = ("keyword", _text(begin_args["keyword"]).encode().lower(), int(begin_args["startfrom"]))
    else:
        start = ("unknown",)
    kind = _text(find.get("type", "unknown"))
    if kind == "range":
        how: tuple[Any, ...] = ("range", int(find_args["lastkey"]), int(find_args["keystep"]), int(find_args["limit"]))
    elif kind == "keynum":
        how = ("keynum", int(find_args["keynumidx"]), int(find_args["firstkey"]), int(find_args["keystep"]))
    else:
        how = ("unknown",)
    return KeySpec(_texts(spec.get("flags")), start, how)


def parse_entry(entry: list[Any]) -> CommandSpec:
    """One entry of COMMAND (or COMMAND INFO): 6 fields before Redis 6, 7 in 6.x, 10 from Redis 7."""
    def at(i: int, default: Any = None) -> Any:
        return entry[i] if len(entry) > i else default

    subs = {}
    for raw in at(9) or ():
        sub = parse_entry(raw)
        subs[sub.name.split("|", 1)[-1]] = sub
    return CommandSpec(
        name=_text(entry[0]).lower(), arity=int(entry[1]), flags=_texts(entry[2]),
        first=int(at(3, 0)), last=int(at(4, 0)), step=int(at(5, 0)),
        acl_categories=_texts(at(6)), tips=tuple(_text(t) for t in at(7) or ()),
        key_specs=tuple(_key_spec(k) for k in at(8) or ()),
        subcommands=MappingProxyType(subs) if subs else _NO_SUBCOMMANDS)


def parse_command_reply(reply: Iterable[Any]) -> dict[str, CommandSpec]:
    """COMMAND's reply as ``name -> CommandSpec`` (lower-case names; COMMAND INFO's nil entries skipped)."""
    specs = (parse_entry(entry) for entry in reply if entry)
    return {spec.name: spec for spec in specs}
