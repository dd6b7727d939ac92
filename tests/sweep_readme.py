"""The only differences the sweep accepts: the README's "Where the sidecar differs from a direct connection" table.

Each row's first column names commands in backticks, with qualifiers in plain words:

- ``CLIENT KILL/PAUSE`` is two commands (CLIENT KILL, CLIENT PAUSE); ``CLIENT LIST``/``INFO`` is CLIENT LIST and
  CLIENT INFO (an item right after a slash replaces the last word of the one before); ``CLIENT ...`` is any
  subcommand, but the ``...`` of ``ACL LIST/GETUSER/SETUSER/...`` ("and so on") adds nothing: only named
  subcommands are allowed;
- ``CONFIG GET requirepass`` (or ``*``): the bracketed item is another value for the last word;
- HELLO's ``id``: a field of HELLO's reply (only that field may differ);
- "on Redis 7.0": only on that server and version; "inside MULTI": only while a transaction is open (and the EXEC that
  ends it: the row says "then EXECABORT at EXEC"); "in ``password``/``none`` modes": only in those client_auth modes;
- "replication commands": the replication commands the sidecar's README names so (REPLICATION below);
- a row that names no command (``client_auth.mode: none``) allows nothing here: the sweep never runs mode none.

Nothing else is accepted: a difference that is not here fails the sweep, and belongs in the README or in a fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
HEADING = "### Where the sidecar differs from a direct connection"
ANY = "..."  # `CLIENT ...`: any subcommand (a literal `*` stays an argument: CONFIG GET *)
REPLICATION = ("REPLICAOF", "SLAVEOF", "SYNC", "PSYNC", "REPLCONF", "FAILOVER")


@dataclass(frozen=True)
class Allowance:
    patterns: tuple[tuple[str, ...], ...]
    row: str
    why: str
    server: str | None = None      # "redis" / "valkey"
    version: str | None = None     # a version prefix, "7.0"
    inside_multi: bool = False
    modes: frozenset[str] | None = None
    fields: tuple[tuple[str, str], ...] = ()  # (command, field): only that field of its map reply (HELLO's id)

    def matches(self, args: tuple[bytes, ...], ctx: dict) -> bool:
        if self.server and (ctx["server"] != self.server or not ctx["version"].startswith(self.version or "")):
            return False
        if self.modes is not None and ctx["mode"] not in self.modes:
            return False
        if self.inside_multi and not ctx["in_multi"]:
            return False
        words = [a.decode(errors="replace").upper() for a in args]
        return any(_match(p, words) for p in self.patterns)


def _match(pattern: tuple[str, ...], words: list[str]) -> bool:
    for i, w in enumerate(pattern):
        if w == ANY:
            return True
        if i >= len(words) or words[i] != w.upper():
            return False
    return True


def _expand(words: list[str]) -> list[tuple[str, ...]]:
    """``CLIENT KILL/PAUSE`` -> CLIENT KILL, CLIENT PAUSE; a lone ``...`` -> any; ``LIST/GETUSER/...`` -> the named
    ones only (an "and so on" names nothing the sweep could check)."""
    out: list[tuple[str, ...]] = [()]
    for w in words:
        alts = w.split("/")
        if len(alts) > 1:
            alts = [a for a in alts if a != ANY]
        out = [p + (a,) for p in out for a in alts]
    return out


def parse_row(cells: list[str]) -> Allowance:
    first = cells[0]
    patterns: list[tuple[str, ...]] = []
    fields = []
    last_end = 0
    for m in re.finditer(r"`([^`]*)`", first):
        item, between = m.group(1), first[last_end:m.start()]
        last_end = m.end()
        if re.match(r"[A-Z]", item):
            words = item.split()
            if between.strip() == "/" and patterns:
                patterns.append(patterns[-1][:-1] + tuple(words))
            else:
                patterns.extend(_expand(words))
        elif between.strip() == "(or" and patterns:
            patterns.append(patterns[-1][:-1] + (item,))
        elif (owner := re.search(r"([A-Z]+)'s\s*$", between)) is not None:
            fields.append((owner.group(1), item))
    if "replication commands" in first:
        patterns.extend((name,) for name in REPLICATION)
    server = version = None
    if on := re.search(r"\bon (Redis|Valkey) ([\d.]+)", first):
        server, version = on.group(1).lower(), on.group(2)
    modes = None
    if re.search(r"\bmodes?\b", first.replace("client_auth.mode", "")):
        modes = frozenset(i for i in re.findall(r"`([a-z]+)`", first))
    return Allowance(tuple(patterns), row=first.strip(), why=cells[-1].strip(), server=server, version=version,
                     inside_multi="inside MULTI" in first, modes=modes, fields=tuple(fields))


def allowances(readme: Path = README) -> list[Allowance]:
    lines = readme.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(HEADING))
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            break
    body = [r for r in rows[1:] if not set("".join(r)) <= set("-: ")]  # header, separator
    assert body, f"no table under {HEADING!r} in {readme}"
    return [parse_row(r) for r in body]


def allowed(allowances_: list[Allowance], args: tuple[bytes, ...] | None, ctx: dict) -> Allowance | None:
    if not args:
        return None
    return next((a for a in allowances_ if a.matches(args, ctx)), None)
