"""Commands the sidecar answers itself: the connection handshake and per-client state.

A connect-per-request client spends most of its round trips here (AUTH or HELLO, CLIENT SETNAME/SETINFO, SELECT):
answering them locally is the sidecar's reason to exist. Replies and error strings are Redis's own, because clients
branch on them (redis-py turns WRONGPASS into AuthenticationError and a failing SELECT into ConnectionError).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from . import admin
from .wire import resp
from .auth import Identity

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("sidecar.local")


def wrong_args(name: str) -> bytes:
    return resp.error(f"ERR wrong number of arguments for '{name}' command")


def _valid_name(value: bytes) -> bool:
    """Redis's rule for client and library names: printable ASCII without spaces."""
    return all(33 <= c <= 126 for c in value)


# -- authentication -------------------------------------------------------------------------------------------------

def _authenticate(s: "Session", username: bytes | None, password: bytes,
                  then: Callable[[], bytes]) -> None:
    """Check a credential (locally, or upstream once in passthrough mode) and reply ``then()`` or the error."""
    auth = s.server.auth
    user = username.decode(errors="replace") if username is not None else None
    pw = password.decode(errors="surrogateescape")
    result = admin.login(s.server, user, pw) or auth.check_local(user, pw)
    if result is not None:
        s.reply(_auth_result(s, result, then))
        return
    slot = s.pending_slot()
    s.stalled = True  # commands after AUTH wait for its outcome

    async def verify() -> None:
        try:
            outcome: Identity | str = await auth.check_upstream(user, pw)
        except Exception as exc:  # a bug must answer this client, never leave it stalled
            log.exception("unexpected error checking a credential upstream")
            outcome = f"ERR sidecar internal error checking the credential: {exc!r}"
        if not s.closed:
            slot.data = _auth_result(s, outcome, then)
            s.slot_done(slot)
            s.unstall()

    s.server.loop.create_task(verify())


def _auth_result(s: "Session", result: Identity | str, then: Callable[[], bytes]) -> bytes:
    if isinstance(result, Identity):
        s.set_identity(result)
        s.server.stats.auth_ok += 1
        return then()
    if s.note_auth_failure():
        s.close_after_replies()
        return resp.error("ERR too many failed AUTH attempts on this connection (limits.auth_failures_per_minute)")
    return resp.error(result)


def cmd_auth(s: "Session", args: list[bytes]) -> None:
    if len(args) < 2:
        s.reply(wrong_args("auth"))
    elif len(args) > 3:
        s.reply(resp.error("ERR syntax error"))
    elif len(args) == 2 and s.server.auth.cfg.mode == "passthrough" and s.server.auth.upstream.password is None:
        s.reply(resp.error("ERR AUTH <password> called without any password configured for the default user. "
                           "Are you sure your configuration is correct?"))
    else:
        username = args[1] if len(args) == 3 else None
        _authenticate(s, username, args[-1], lambda: resp.OK)


def hello_reply(s: "Session") -> bytes:
    info = s.server.manager.server_info
    proto = s.proto
    pairs = [
        (resp.bulk(b"server"), resp.bulk(info.server)),
        (resp.bulk(b"version"), resp.bulk(info.version)),
        (resp.bulk(b"proto"), resp.integer(proto)),
        (resp.bulk(b"id"), resp.integer(s.id)),
        (resp.bulk(b"mode"), resp.bulk(info.mode)),
        (resp.bulk(b"role"), resp.bulk(info.role)),
        (resp.bulk(b"modules"), resp.value(info.modules, proto)),
    ]
    return resp.mapping(pairs, proto)


def cmd_hello(s: "Session", args: list[bytes]) -> None:
    ver = None
    i = 1
    if len(args) >= 2:
        ver = resp.redis_int(args[1])
        if ver is None:
            s.reply(resp.error("ERR Protocol version is not an integer or out of range"))
            return
        if ver < 2 or ver > 3:
            s.reply(resp.error("NOPROTO unsupported protocol version"))
            return
        i = 2
    username = password = name = None
    while i < len(args):
        opt = args[i].lower()
        more = len(args) - 1 - i
        if opt == b"auth" and more >= 2:
            username, password = args[i + 1], args[i + 2]
            i += 3
        elif opt == b"setname" and more >= 1:
            name = args[i + 1]
            i += 2
            # a bad name is refused where it stands, before later options (Redis 7.0 runs an earlier AUTH first)
            if not _valid_name(name) and (password is None or s.server.manager.server_info.server == "valkey"):
                s.reply(resp.error("ERR Client names cannot contain spaces, newlines or special characters."))
                return
        else:
            s.reply(resp.error(f"ERR Syntax error in HELLO option '{args[i].decode(errors='replace')}'"))
            return

    valkey = s.server.manager.server_info.server == "valkey"
    bad_name = name is not None and not _valid_name(name)
    name_error = resp.error("ERR Client names cannot contain spaces, newlines or special characters.")
    if valkey and bad_name:  # Valkey checks the name before authenticating; Redis after
        s.reply(name_error)
        return

    if ver is not None and ver != s.proto and s.lease is not None:
        if s.wait_for_drain(args, resp.encode_command(args)):
            return  # a blocking call is in flight: switch once it is back
        if s.lease is not None:
            s.reply(resp.error("ERR the sidecar cannot switch protocols while this client holds an upstream "
                               "connection of its own (WATCH, MONITOR, CLIENT TRACKING ...); RESET first"))
            return

    def finish() -> bytes:
        if bad_name:
            return name_error
        if name is not None:
            s.name = name.decode() or None
        if ver is not None:
            s.set_proto(ver)
        return hello_reply(s)

    if password is not None:
        _authenticate(s, username, password, finish)
    elif s.identity is None and bad_name:  # without AUTH, Redis too checks the name before asking for one
        s.reply(name_error)
    elif s.identity is None:
        proto_word = "<proto> " if valkey else ""  # each server's own wording
        s.reply(resp.error(
            f"NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO {proto_word}"
            "AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version "
            "at the same time"))
    else:
        s.reply(finish())


# -- connection state -----------------------------------------------------------------------------------------------

def cmd_select(s: "Session", args: list[bytes]) -> None:
    if len(args) != 2:
        s.reply(wrong_args("select"))
        return
    db = resp.redis_int(args[1])
    if db is None or not -(1 << 31) <= db < (1 << 31):
        s.reply(resp.error("ERR value is not an integer or out of range"))
        return
    if not 0 <= db < s.cfg.limits.databases:
        s.reply(resp.error("ERR DB index is out of range"))
        return
    if s.lease is not None and s.wait_for_drain(args, resp.encode_command(args)):
        return  # a blocking call is in flight on a lease: select once it is back
    if s.lease is not None:  # held for WATCH or a session: the lease itself must switch, and is not reused after
        s.lease_dirty = True
        s.set_db(db)
        s.forward(resp.encode_command(args))
        return
    s.set_db(db)
    s.reply(resp.OK)


def cmd_ping(s: "Session", args: list[bytes]) -> None:
    if len(args) > 2:
        s.reply(wrong_args("ping"))
    elif s.proto == 2 and s.subs is not None and s.subs.active:
        s.reply(resp.array([resp.bulk(b"pong"), resp.bulk(args[1] if len(args) == 2 else b"")]))
    elif len(args) == 2:
        s.reply(resp.bulk(args[1]))
    else:
        s.reply(resp.PONG)


def cmd_echo(s: "Session", args: list[bytes]) -> None:
    s.reply(resp.bulk(args[1]) if len(args) == 2 else wrong_args("echo"))


def cmd_quit(s: "Session", args: list[bytes]) -> None:
    s.reply(resp.OK)
    s.close_after_replies()


def cmd_reset(s: "Session", args: list[bytes]) -> None:
    if len(args) != 1:
        s.reply(wrong_args("reset"))
    elif not s.wait_for_drain(args, resp.encode_command(args)):
        s.reset()
        s.reply(resp.simple("RESET"))


# -- CLIENT subcommands ---------------------------------------------------------------------------------------------

def client_line(fields: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items()) + "\n"


def _client_setname(s: "Session", args: list[bytes]) -> bytes:
    if len(args) != 3:
        return wrong_args("client|setname")
    if not _valid_name(args[2]):
        return resp.error("ERR Client names cannot contain spaces, newlines or special characters.")
    s.name = args[2].decode() or None
    return resp.OK


def _client_getname(s: "Session", args: list[bytes]) -> bytes:
    return wrong_args("client|getname") if len(args) != 2 else resp.bulk(s.name, s.proto)


def _client_id(s: "Session", args: list[bytes]) -> bytes:
    return wrong_args("client|id") if len(args) != 2 else resp.integer(s.id)


def _client_setinfo(s: "Session", args: list[bytes]) -> bytes:
    if len(args) != 4:
        return wrong_args("client|setinfo")
    attr = args[2].lower()
    if attr not in (b"lib-name", b"lib-ver"):
        return resp.error(f"ERR Unrecognized option '{args[2].decode(errors='replace')}'")
    if not _valid_name(args[3]) and args[3]:
        return resp.error(f"ERR {args[2].decode(errors='replace')} cannot contain spaces, newlines or special "
                          "characters.")  # the option as the client wrote it, as Redis does
    if attr == b"lib-name":
        s.lib_name = args[3].decode()
    else:
        s.lib_ver = args[3].decode()
    return resp.OK


def _client_info(s: "Session", args: list[bytes]) -> bytes:
    if len(args) != 2:
        return wrong_args("client|info")
    return resp.verbatim(client_line(s.info_fields()), s.proto)


def _client_list(s: "Session", args: list[bytes]) -> bytes:
    sessions = list(s.server.sessions.values())
    rest = [a.lower() for a in args[2:]]
    if rest[:1] == [b"id"] and len(rest) > 1:
        try:
            wanted = {int(x) for x in rest[1:]}
        except ValueError:
            return resp.error("ERR Invalid client ID")
        sessions = [x for x in sessions if x.id in wanted]
    elif rest[:1] == [b"type"] and len(rest) == 2:
        kind = rest[1]
        if kind not in (b"normal", b"pubsub", b"master", b"replica", b"slave"):
            return resp.error(f"ERR Unknown client type '{args[3].decode(errors='replace')}'")
        pubsub = kind == b"pubsub"
        sessions = [x for x in sessions
                    if kind in (b"normal", b"pubsub") and pubsub == bool(x.subs and x.subs.active)]
    elif rest:
        return resp.error("ERR syntax error")
    return resp.verbatim("".join(client_line(x.info_fields()) for x in sessions), s.proto)


def _client_reply(s: "Session", args: list[bytes]) -> bytes | None:
    mode = args[2].lower() if len(args) == 3 else b""
    if mode == b"on":
        s.reply_mode = "on"
        return resp.OK
    if mode == b"off":
        s.reply_mode = "off"
        return None
    if mode == b"skip":
        s.skip_next = s.reply_mode != "off"
        return None
    return resp.error("ERR syntax error") if len(args) == 3 else wrong_args("client|reply")


def _client_maint_notifications(s: "Session", args: list[bytes]) -> bytes:
    # Maintenance notifications announce upstream endpoint moves; the sidecar absorbs those itself, so it answers
    # as a server without the feature does (clients treat the feature as unavailable and carry on).
    return resp.error(f"ERR unknown subcommand '{args[1].decode(errors='replace')[:128]}'. Try CLIENT HELP.")


CLIENT: dict[bytes, Callable[["Session", list[bytes]], bytes | None]] = {
    b"setname": _client_setname, b"getname": _client_getname, b"id": _client_id, b"setinfo": _client_setinfo,
    b"info": _client_info, b"list": _client_list, b"reply": _client_reply,
    b"maint_notifications": _client_maint_notifications,
}


def cmd_client(s: "Session", args: list[bytes]) -> None:
    handler = CLIENT.get(args[1].lower())
    if handler is None:  # routed LOCAL (CLIENT KILL/UNBLOCK) but not emulated yet
        s.reply(resp.error(f"ERR 'CLIENT {args[1].decode(errors='replace').upper()}' is not emulated by the sidecar"))
        return
    out = handler(s, args)
    if out is not None:
        s.reply(out)


HANDLERS: dict[bytes, Callable[["Session", list[bytes]], None]] = {
    b"auth": cmd_auth, b"hello": cmd_hello, b"select": cmd_select, b"ping": cmd_ping, b"echo": cmd_echo,
    b"quit": cmd_quit, b"reset": cmd_reset, b"client": cmd_client, b"info": admin.cmd_info,
    b"sidecar": admin.cmd_sidecar,
}


def handle(s: "Session", name: bytes, args: list[bytes]) -> None:
    s.server.stats.count_local(name, args)
    HANDLERS[name](s, args)
