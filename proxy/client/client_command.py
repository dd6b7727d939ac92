"""CLIENT subcommands the sidecar answers itself, for the sidecar's own clients.

A client's ids, names and list entries are the sidecar's (its upstream connections are shared and mean nothing to
it): CLIENT ID, LIST and INFO show the sidecar's clients; CLIENT KILL and UNBLOCK act on them (UNBLOCK by unblocking
the upstream connection the client waits on, out of band); a tracking REDIRECT names another sidecar client, whose
own upstream connection receives the invalidations.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from ..services.pubsub import Kind
from ..upstream.credentials import PoolKey
from ..wire import resp
from .state import LeaseKind, ReplyMode, Tx

if TYPE_CHECKING:
    from .session import Session

Handler = Callable[["Session", list[bytes], bytes], "bytes | None"]
NO_SUCH_REDIRECT = b"-ERR The client ID you want redirect to does not exist\r\n"


def valid_name(value: bytes) -> bool:
    """Redis's rule for client and library names: printable ASCII without spaces."""
    return all(33 <= c <= 126 for c in value)


def _wrong(sub: str) -> bytes:
    return resp.error(f"ERR wrong number of arguments for 'client|{sub}' command")


# -- what a client is -------------------------------------------------------------------------------------------------

def info_fields(s: Session) -> dict[str, object]:
    """CLIENT LIST / CLIENT INFO fields for this client of the sidecar, named and ordered as the upstream's own
    CLIENT INFO has them (learned at start; Redis 7.0's until then). A field the sidecar has no value for gets the
    server's zero; lib-name and lib-ver, which Redis 7.0 lacks, come last (CLIENT SETINFO is answered as 7.2 does)."""
    ours = _own_fields(s)
    server = s.handle.current.manager.client_fields or REDIS_70_FIELDS
    out: dict[str, object] = {}
    for name, sample in server:
        out[name] = ours[name] if name in ours else ("0" if sample.lstrip("-").isdigit() else "")
    for name in ("lib-name", "lib-ver"):
        out.setdefault(name, ours[name])
    return out


REDIS_70_FIELDS: tuple[tuple[str, str], ...] = tuple((name, "0") for name in (
    "id addr laddr fd name age idle flags db sub psub ssub multi qbuf qbuf-free argv-mem multi-mem rbs rbp obl oll "
    "omem tot-mem events cmd user redir resp").split())


def _own_fields(s: Session) -> dict[str, object]:
    now = time.monotonic()
    subs = s.subs
    flags = "".join(f for f, on in (("x", s.tx in (Tx.MULTI, Tx.MULTI_ABORTED)), ("P", s.subscribed),
                                    ("b", s.lease_kind is LeaseKind.CALL and s.inflight > 0),
                                    ("t", s.lease_kind is LeaseKind.SESSION)) if on) or "N"
    names = subs.names if subs is not None else None
    omem = s.transport.get_write_buffer_size() if s.transport is not None else 0
    qbuf = s.parser.buffered
    args = s.last_command
    return {
        "id": s.id, "addr": s.addr, "laddr": s.laddr, "fd": -1, "name": s.name or "",
        "age": int(now - s.created), "idle": int(now - s.last_active), "flags": flags, "db": s.db,
        "sub": len(names[Kind.CHANNEL]) if names else 0, "psub": len(names[Kind.PATTERN]) if names else 0,
        "ssub": len(names[Kind.SHARD]) if names else 0,
        "multi": -1 if s.tx not in (Tx.MULTI, Tx.MULTI_ABORTED) else 0,
        "qbuf": qbuf, "qbuf-free": 0, "argv-mem": sum(map(len, args)), "multi-mem": 0, "rbs": 0, "rbp": 0,
        "obl": 0, "oll": len(s.slots), "omem": omem, "tot-mem": omem + qbuf,
        "events": "rw" if s.out or omem else "r", "cmd": s.handle.current.table.label(args).decode(errors="replace"),
        "user": s.identity.user if s.identity else "default", "redir": -1, "resp": s.proto,
        "lib-name": s.lib_name, "lib-ver": s.lib_ver, "tot-net-in": s.net_in, "tot-net-out": s.net_out,
        "tot-cmds": s.cmds,
    }


def client_line(fields: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items()) + "\n"


def visible(s: Session) -> list[Session]:
    """The clients ``s`` may see and act on: all of them for admins and clients on the sidecar's own login; for a
    client authenticated as another user (passthrough with ACL users), only that user's clients."""
    everyone = [cast("Session", c) for c in s.handle.current.registry]
    identity = s.identity
    if identity is None or identity.admin or identity.login is None:
        return everyone
    return [c for c in everyone if c.identity is not None and c.identity.user == identity.user]


# -- subcommands ----------------------------------------------------------------------------------------------------

def _setname(s: Session, args: list[bytes], raw: bytes) -> bytes | None:
    if len(args) != 3:
        return _wrong("setname")
    if not valid_name(args[2]):
        return resp.error("ERR Client names cannot contain spaces, newlines or special characters.")
    s.name = args[2].decode() or None
    return resp.OK


def _getname(s: Session, args: list[bytes], raw: bytes) -> bytes | None:
    return _wrong("getname") if len(args) != 2 else resp.bulk(s.name, s.proto)


def _id(s: Session, args: list[bytes], raw: bytes) -> bytes | None:
    return _wrong("id") if len(args) != 2 else resp.integer(s.id)


def _setinfo(s: Session, args: list[bytes], raw: bytes) -> bytes | None:
    if len(args) != 4:
        return _wrong("setinfo")
    attr = args[2].lower()
    if attr not in (b"lib-name", b"lib-ver"):
        return resp.error(f"ERR Unrecognized option '{args[2].decode(errors='replace')}'")
    if not valid_name(args[3]) and args[3]:
        return resp.error(f"ERR {args[2].decode(errors='replace')} cannot contain spaces, newlines or special "
                          "characters.")  # the option as the client wrote it, as Redis does
    if attr == b"lib-name":
        s.lib_name = args[3].decode()
    else:
        s.lib_ver = args[3].decode()
    return resp.OK


def _info(s: Session, args: list[bytes], raw: bytes) -> bytes | None:
    return _wrong("info") if len(args) != 2 else resp.verbatim(client_line(info_fields(s)), s.proto)


def _list(s: Session, args: list[bytes], raw: bytes) -> bytes | None:
    clients = list(visible(s))
    rest = [a.lower() for a in args[2:]]
    if rest[:1] == [b"id"] and len(rest) > 1:
        wanted = {resp.redis_int(x) for x in rest[1:]}
        if None in wanted or any(w is not None and w <= 0 for w in wanted):
            return resp.error("ERR Invalid client ID")
        clients = [c for c in clients if c.id in wanted]
    elif rest[:1] == [b"type"] and len(rest) == 2:
        kind = rest[1]
        if kind not in (b"normal", b"pubsub", b"master", b"replica", b"slave"):
            return resp.error(f"ERR Unknown client type '{args[3].decode(errors='replace')}'")
        clients = [c for c in clients if kind in (b"normal", b"pubsub") and (kind == b"pubsub") == c.subscribed]
    elif rest:
        return resp.error("ERR syntax error")
    return resp.verbatim("".join(client_line(info_fields(c)) for c in clients), s.proto)


def _reply(s: Session, args: list[bytes], raw: bytes) -> bytes | None:
    mode = args[2].lower() if len(args) == 3 else b""
    if mode == b"on":
        s.reply_mode, s.skipping = ReplyMode.ON, False
        return resp.OK
    if mode == b"off":
        s.reply_mode = ReplyMode.OFF
        return None
    if mode == b"skip":
        s.skip_next = s.reply_mode is not ReplyMode.OFF
        return None
    return resp.error("ERR syntax error") if len(args) == 3 else _wrong("reply")


def _maint_notifications(s: Session, args: list[bytes], raw: bytes) -> bytes | None:
    # Maintenance notifications announce upstream endpoint moves; the sidecar absorbs those itself, so it answers
    # as a server without the feature does (clients treat the feature as unavailable and carry on).
    return resp.error(f"ERR unknown subcommand '{args[1].decode(errors='replace')[:128]}'. Try CLIENT HELP.")


def _kill(s: Session, args: list[bytes], raw: bytes) -> bytes | None:
    """CLIENT KILL addr (old form: +OK or an error) or CLIENT KILL <filter> <value> ... (the number killed)."""
    if len(args) == 3:
        targets = [c for c in visible(s) if c.addr == args[2].decode(errors="replace")]
        if not targets:
            return resp.error("ERR No such client")
        _close(s, targets)
        return resp.OK
    if len(args) < 4 or len(args) % 2:
        return resp.error("ERR syntax error")
    filters: list[Callable[[Session], bool]] = []
    skipme = True
    for i in range(2, len(args), 2):
        opt, value = args[i].lower(), args[i + 1]
        text = value.decode(errors="replace")
        if opt == b"id":
            number = resp.redis_int(value)
            if number is None or number <= 0:
                return resp.error("ERR client-id should be greater than 0")
            filters.append(_field_is("id", number))
        elif opt == b"type":
            kind = value.lower()
            if kind not in (b"normal", b"pubsub", b"master", b"replica", b"slave"):
                return resp.error(f"ERR Unknown client type '{text}'")
            filters.append(_of_type(kind))
        elif opt == b"user":
            filters.append(_user_is(text))
        elif opt == b"addr":
            filters.append(_field_is("addr", text))
        elif opt == b"laddr":
            filters.append(_field_is("laddr", text))
        elif opt == b"skipme":
            if value.lower() not in (b"yes", b"no"):
                return resp.error("ERR syntax error")
            skipme = value.lower() == b"yes"
        elif opt == b"maxage":
            age = resp.redis_int(value)
            if age is None:
                return resp.error("ERR value is not an integer or out of range")
            filters.append(_older_than(age))
        else:
            return resp.error("ERR syntax error")
    targets = [c for c in visible(s) if all(f(c) for f in filters) and not (skipme and c is s)]
    _close(s, targets)
    return resp.integer(len(targets))


def _field_is(field: str, value: object) -> Callable[[Session], bool]:
    return lambda c: bool(getattr(c, field) == value)


def _of_type(kind: bytes) -> Callable[[Session], bool]:
    return lambda c: kind in (b"normal", b"pubsub") and (kind == b"pubsub") == c.subscribed


def _user_is(user: str) -> Callable[[Session], bool]:
    return lambda c: c.identity is not None and c.identity.user == user


def _older_than(age: int) -> Callable[[Session], bool]:
    return lambda c: time.monotonic() - c.created >= age


def _close(s: Session, targets: list[Session]) -> None:
    for client in targets:
        if client is s:
            s.close_after_replies()  # its own reply still goes out, as Redis sends it before closing
        else:
            client.abort()


def _unblock(s: Session, args: list[bytes], raw: bytes) -> bytes | None:
    """Unblock a sidecar client blocked in a blocking call, by unblocking its lease upstream (out of band)."""
    if len(args) not in (3, 4):
        return _wrong("unblock")
    target_id = resp.redis_int(args[2])
    if target_id is None:
        return resp.error("ERR value is not an integer or out of range")
    if len(args) == 4 and args[3].lower() not in (b"timeout", b"error"):
        return resp.error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
    target = next((c for c in visible(s) if c.id == target_id), None)
    lease = target.lease if target is not None else None
    if target is None or lease is None or target.lease_kind is not LeaseKind.CALL or not target.inflight \
            or not lease.upstream_id:
        return resp.integer(0)
    forwarded = [b"CLIENT", b"UNBLOCK", b"%d" % lease.upstream_id, *args[3:]]
    s.out_of_band(PoolKey(s.effective_login(), 0, s.proto), resp.encode_command(forwarded))
    return None


def tracking_redirect(s: Session, args: list[bytes]) -> list[bytes] | bytes:
    """CLIENT TRACKING ... REDIRECT <sidecar client id>: the same command naming that client's own upstream
    connection; an error if it has none (it must hold one, e.g. subscribed to __redis__:invalidate)."""
    lowered = [a.lower() for a in args]
    if b"redirect" not in lowered:
        return args
    at = lowered.index(b"redirect") + 1
    if at >= len(args):
        return args  # the upstream answers the syntax error
    target_id = resp.redis_int(args[at])
    target = next((c for c in s.handle.current.registry if c.id == target_id), None) if target_id else None
    lease = getattr(target, "lease", None)
    if lease is None or not lease.upstream_id:
        return NO_SUCH_REDIRECT
    return [*args[:at], b"%d" % lease.upstream_id, *args[at + 1:]]


CLIENT: dict[bytes, Handler] = {
    b"setname": _setname, b"getname": _getname, b"id": _id, b"setinfo": _setinfo, b"info": _info, b"list": _list,
    b"reply": _reply, b"maint_notifications": _maint_notifications, b"kill": _kill, b"unblock": _unblock,
}


def cmd_client(s: Session, args: list[bytes], raw: bytes) -> None:
    handler = CLIENT.get(args[1].lower()) if len(args) > 1 else None
    if handler is None:
        s.reply(resp.error("ERR wrong number of arguments for 'client' command") if len(args) < 2 else
                resp.error(f"ERR unknown subcommand '{args[1].decode(errors='replace')[:128]}'. Try CLIENT HELP."))
        return
    out = handler(s, args, raw)
    if out is not None:
        s.reply(out)
