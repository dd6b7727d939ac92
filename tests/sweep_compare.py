"""Comparing a direct run with a proxied one: the normalisers (nondeterminism only) and the README's allowances.

A normaliser exists only for a reply that differs between two direct runs of the same script; each says why.
Everything else is compared byte for byte. A difference is accepted only when the README table allows it
(``sweep_readme``); the rest fail with both byte strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sweep_harness import Record, parse, unparse
from sweep_readme import Allowance, allowed

# -- normalisers --------------------------------------------------------------------------------------------------


def _tree(frame: bytes):
    try:
        return parse(frame)[0]
    except Exception:  # noqa: BLE001 - a marker such as <timeout>: compared as it is
        return None


def _mask_ints(frame: bytes, keys: set[bytes]) -> bytes:
    """Integers that follow one of ``keys`` in a map or flat key/value array (XINFO CONSUMERS' idle ...)."""
    def walk(node):
        t, v = node
        if isinstance(v, list):
            out = []
            for i, item in enumerate(v):
                prev = v[i - 1] if i else None
                if prev is not None and isinstance(prev[1], bytes) and prev[1] in keys and item[0] == b":":
                    item = (b":", b"<ms>")
                out.append(walk(item))
            return (t, out)
        return node
    tree = _tree(frame)
    return unparse(walk(tree)) if tree else frame


def _time(args, frame):
    return re.sub(rb"\$\d+\r\n\d+\r\n", b"$<n>\r\n<n>\r\n", frame)


def _info(args, frame):
    tree = _tree(frame)
    if not tree or tree[0] not in (b"$", b"="):
        return frame
    lines = []
    for line in tree[1].decode(errors="replace").split("\r\n"):
        key, sep, _ = line.partition(":")
        lines.append(line if not sep or re.fullmatch(r"db\d+", key) or key == "txt" else key + ":")
    return tree[0] + "\n".join(lines).encode()


STABLE_CLIENT_FIELDS = ("name", "db", "sub", "psub", "ssub", "multi", "flags", "cmd", "user", "resp", "lib-name",
                        "lib-ver")


def _client_lines(args, frame):
    tree = _tree(frame)
    if not tree or tree[0] not in (b"$", b"="):
        return frame
    text = tree[1].decode(errors="replace").removeprefix("txt:")
    kept = []
    for line in text.splitlines():
        fields = dict(f.split("=", 1) for f in line.split(" ") if "=" in f)
        if fields.get("name") in ("redis-sidecar", "sweep-control"):
            continue
        kept.append(" ".join(f"{k}={fields.get(k, '?')}" for k in STABLE_CLIENT_FIELDS))
    return tree[0] + "\n".join(kept).encode()


def _positive_ints(args, frame):
    return re.sub(rb":[1-9]\d*\r\n", b":<ms>\r\n", frame)


def _xpending(args, frame):
    if len(args) < 4:  # the summary form has no times
        return frame
    tree = _tree(frame)
    if not tree or not isinstance(tree[1], list):
        return frame
    entries = [(t, [v[0], v[1], (b":", b"<ms>"), v[3]]) if isinstance(v, list) and len(v) == 4 else (t, v)
               for t, v in tree[1]]
    return unparse((tree[0], entries))


def _xadd(args, frame):
    return re.sub(rb"^\$\d+\r\n\d+-\d+\r\n", b"$<id>\r\n<ms>-<seq>\r\n", frame) if b"*" in args else frame


def _sorted_keys(args, frame):
    tree = _tree(frame)
    if not tree or not isinstance(tree[1], list):
        return frame
    if args[0].upper() == b"SCAN" and len(tree[1]) == 2 and isinstance(tree[1][1][1], list):
        cursor, keys = tree[1]
        return unparse((tree[0], [cursor, (keys[0], sorted(keys[1]))]))
    return unparse((tree[0], sorted(tree[1])))


def _unsubscribe_all(args, frame):
    """(P|S)UNSUBSCRIBE without arguments, answered with one frame per subscription (the step's frames together:
    args end in "..."): which channel each frame names is left out, the counts stay."""
    tree = _tree(frame)
    if args[1:] != (b"...",) or not tree or not isinstance(tree[1], list) or len(tree[1]) != 3:
        return frame
    return unparse((tree[0], [tree[1][0], (b"+", b"<channel>"), tree[1][2]]))


@dataclass(frozen=True)
class Normaliser:
    why: str
    fn: Callable[[tuple[bytes, ...], bytes], bytes]


NORMALISERS: dict[str, Normaliser] = {
    "TIME": Normaliser("the clock", _time),
    "INFO": Normaliser("counters, timings and memory change between runs: keys and sections are compared, values "
                       "only in the keyspace section", _info),
    "CLIENT ID": Normaliser("connection counters (the README also allows it to differ)",
                            lambda a, f: re.sub(rb"^:\d+", b":<id>", f)),
    "CLIENT INFO": Normaliser("ids, addresses, ages, buffers: only the fields a client sets or its commands change "
                              "are kept", _client_lines),
    "CLIENT LIST": Normaliser("as CLIENT INFO, and the runner's own control connection is not part of the script",
                              _client_lines),
    "OBJECT IDLETIME": Normaliser("the LRU clock may tick between two commands", _positive_ints),
    "PTTL": Normaliser("milliseconds left depend on when the reply is made", _positive_ints),
    "HPTTL": Normaliser("milliseconds left depend on when the reply is made", _positive_ints),
    "XINFO CONSUMERS": Normaliser("idle and inactive are milliseconds since the consumer's last action",
                                  lambda a, f: _mask_ints(f, {b"idle", b"inactive"})),
    "XPENDING": Normaliser("the extended form's idle time is milliseconds since delivery", _xpending),
    "XADD": Normaliser("an id made by `*` is the clock (explicit ids everywhere else)", _xadd),
    "UNSUBSCRIBE": Normaliser("unsubscribing from all follows the server's own hash table order, seeded at random "
                              "per process", _unsubscribe_all),
    "PUNSUBSCRIBE": Normaliser("unsubscribing from all follows the server's own hash table order, seeded at random "
                               "per process", _unsubscribe_all),
    "SUNSUBSCRIBE": Normaliser("unsubscribing from all follows the server's own hash table order, seeded at random "
                               "per process", _unsubscribe_all),
    "SCAN": Normaliser("keyspace order follows the hash table, which the server rehashes on a timer", _sorted_keys),
    "KEYS": Normaliser("keyspace order follows the hash table, which the server rehashes on a timer", _sorted_keys),
}


def normaliser_for(args: tuple[bytes, ...] | None) -> Normaliser | None:
    if not args:
        return None
    name = args[0].decode(errors="replace").upper()
    if len(args) > 1 and (n := NORMALISERS.get(f"{name} {args[1].decode(errors='replace').upper()}")):
        return n
    return NORMALISERS.get(name)


def mask_field(frame: bytes, field: bytes) -> bytes:
    """A map reply (or RESP2 flat array) with ``field``'s value replaced: the README lets it differ."""
    tree = _tree(frame)
    if not tree or tree[0] not in (b"%", b"*") or not isinstance(tree[1], list):
        return frame
    v = list(tree[1])
    for i in range(0, len(v) - 1, 2):
        if v[i][1] == field:
            v[i + 1] = (b"+", b"<allowed to differ>")
    return unparse((tree[0], v))


# -- comparing ------------------------------------------------------------------------------------------------------


@dataclass
class Difference:
    record: Record
    direct: bytes
    proxied: bytes
    allowance: Allowance | None

    def describe(self, width: int = 240) -> str:
        args = b" ".join(a[:40] for a in (self.record.args or (b"<frame read on its own>",)))
        text = (f"client {self.record.client} step {self.record.step} `{args.decode(errors='replace')[:120]}`\n"
                f"      direct : {self.direct[:width]!r}{' ...' if len(self.direct) > width else ''}\n"
                f"      proxied: {self.proxied[:width]!r}{' ...' if len(self.proxied) > width else ''}")
        if self.allowance:
            text += f"\n      allowed by README row: {self.allowance.row}"
        return text


def compare(direct: list[Record], proxied: list[Record], ctx: dict, allowances: list[Allowance]) -> list[Difference]:
    assert len(direct) == len(proxied), "the runner reads as many frames on both sides"
    fields = {(cmd, f) for a in allowances for cmd, f in a.fields}
    in_multi: dict[str, Allowance | None | bool] = {}  # client -> False, or True / the allowance seen in the MULTI
    out = []
    for d, p in zip(direct, proxied):
        args = d.args
        name = args[0].upper() if args else b""
        multi_state = in_multi.get(d.client, False)
        a_frame, b_frame = d.frame, p.frame
        if args and (n := normaliser_for(args)) is not None:
            a_frame, b_frame = n.fn(args, a_frame), n.fn(args, b_frame)
        for cmd, f in fields:
            if name == cmd.encode():
                a_frame, b_frame = mask_field(a_frame, f.encode()), mask_field(b_frame, f.encode())
        if a_frame != b_frame:
            why = allowed(allowances, args, {**ctx, "in_multi": multi_state is not False})
            if why is None and name == b"EXEC" and isinstance(multi_state, Allowance):
                why = multi_state  # "... then EXECABORT at EXEC"
            if why is not None and why.inside_multi and multi_state is not False:
                in_multi[d.client] = why
            out.append(Difference(d, d.frame, p.frame, why))
        if name == b"MULTI" and d.frame == b"+OK\r\n":
            in_multi[d.client] = True
        elif name in (b"EXEC", b"DISCARD", b"RESET"):
            in_multi[d.client] = False
    return out
