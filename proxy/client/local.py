"""Commands the sidecar answers itself: the connection handshake, per-client state, INFO's section, SIDECAR.

A connect-per-request client spends most of its round trips here (AUTH or HELLO, CLIENT SETNAME/SETINFO, SELECT):
answering them locally is the sidecar's reason to exist. Replies and error strings are Redis's own, because clients
branch on them. A locally answered command is allowed only if the upstream would allow it to the client's login
(``access.permissions``); AUTH, HELLO, QUIT and RESET, which Redis never checks, are never asked about.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..access.auth import Identity
from ..access.permissions import PROBES
from ..services.pubsub import Kind
from ..wire import resp
from . import client_command, subscriptions
from .state import Wait

if TYPE_CHECKING:
    from .session import Session

Handler = Callable[["Session", list[bytes], bytes], None]
INFO_ALL = frozenset({b"default", b"all", b"everything", b"sidecar"})
NAME_ERROR = b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n"


def wrong_args(name: str) -> bytes:
    return resp.error(f"ERR wrong number of arguments for '{name}' command")


def handle(s: Session, name: bytes, args: list[bytes], raw: bytes) -> None:
    label = name + b"|" + args[1].lower() if name == b"client" and len(args) > 1 else name
    if label in PROBES and not (name == b"info" and _forwarded_info(args)):
        permissions = s.handle.current.permissions
        known, error = permissions.known(s.login, label)
        if not known:
            s.suspend(Wait.PERMISSION, permissions.ask(s.login, label), _ignore, held=(args, raw))
            return
        if error is not None:
            s.reply(error)
            return
    if name != b"info":
        s.handle.current.stats.count_local(label.decode(errors="replace"))
    HANDLERS[name](s, args, raw)


def _ignore(_: object) -> None:
    """(The answer is remembered by ``Permissions``; the held command runs again and reads it.)"""


# -- authentication -------------------------------------------------------------------------------------------------

def authenticate(s: Session, auth_args: list[bytes], then: Callable[[], bytes]) -> None:
    """Check a credential (locally, or upstream in passthrough mode) and reply ``then()`` or the error."""
    rt = s.handle.current
    username = auth_args[0].decode(errors="surrogateescape") if len(auth_args) == 2 else None
    password = auth_args[-1].decode(errors="surrogateescape")
    user = username or "default"
    result = rt.auth.check_local(username, password)
    if not isinstance(result, Identity) and rt.auth.limited(_host(s), user):
        # over the limit only a credential already known good passes: nothing new is tried, nothing asked upstream
        rt.stats.auth_rate_limited += 1
        rt.stats.auth_failures += 1
        s.reply(b"-WRONGPASS too many failed AUTH attempts from this address or for this user "
                b"(limits.auth_failures_per_minute)\r\n")
        s.close_after_replies()
        return
    if result is not None:
        s.reply(_auth_result(s, result, then, user))
        return
    slot = s.pending_slot()
    s.suspend(Wait.AUTH, rt.auth.check_upstream(auth_args),
              lambda outcome: slot.deliver(_auth_result(s, outcome, then, user)))


def _host(s: Session) -> str:
    """The client's source address, as the AUTH rate limit counts it."""
    return s.addr.rpartition(":")[0]


def _auth_result(s: Session, result: object, then: Callable[[], bytes], user: str) -> bytes:
    rt = s.handle.current
    if isinstance(result, Identity):
        s.set_identity(result)
        rt.stats.auth_ok += 1
        return then()
    if not isinstance(result, bytes):  # the upstream could not be asked: no attempt was judged, none counts
        return resp.error(f"ERR cannot check the credential upstream: {result}")
    rt.stats.auth_failures += 1
    rt.auth.failed(_host(s), user)
    return result


def cmd_auth(s: Session, args: list[bytes], raw: bytes) -> None:
    if len(args) < 2:
        s.reply(wrong_args("auth"))
    elif len(args) > 3:
        s.reply(resp.error("ERR syntax error"))
    else:
        authenticate(s, args[1:], lambda: resp.OK)


def hello_reply(s: Session) -> bytes:
    info = s.handle.current.manager.server_info
    proto = s.proto
    return resp.mapping([
        (resp.bulk(b"server"), resp.bulk(info.server)), (resp.bulk(b"version"), resp.bulk(info.version)),
        (resp.bulk(b"proto"), resp.integer(proto)), (resp.bulk(b"id"), resp.integer(s.id)),
        (resp.bulk(b"mode"), resp.bulk(info.mode)), (resp.bulk(b"role"), resp.bulk(info.role)),
        (resp.bulk(b"modules"), resp.value(info.modules, proto))], proto)


def cmd_hello(s: Session, args: list[bytes], raw: bytes) -> None:
    manager = s.handle.current.manager
    if not manager.info_known.done():
        s.suspend(Wait.SERVER, manager.server_known(), _ignore, held=(args, raw))
        return
    ver = None
    i = 1
    valkey = s.handle.current.manager.server_info.valkey
    if len(args) >= 2:
        ver = resp.redis_int(args[1])
        if ver is None:
            s.reply(resp.error("ERR Protocol version is not an integer or out of range"))
            return
        if ver < 2 or ver > 3:
            s.reply(resp.error("NOPROTO unsupported protocol version"))
            return
        i = 2
    auth_args = name = None
    while i < len(args):
        opt, more = args[i].lower(), len(args) - 1 - i
        if opt == b"auth" and more >= 2:
            auth_args = [args[i + 1], args[i + 2]]
            i += 3
        elif opt == b"setname" and more >= 1:
            name = args[i + 1]
            i += 2
            # a bad name is refused where it stands, before later options (Redis 7.0 runs an earlier AUTH first)
            if not client_command.valid_name(name) and (auth_args is None or valkey):
                s.reply(NAME_ERROR)
                return
        else:
            s.reply(resp.error(f"ERR Syntax error in HELLO option '{args[i].decode(errors='replace')}'"))
            return
    bad_name = name is not None and not client_command.valid_name(name)
    if valkey and bad_name:  # Valkey checks the name before authenticating; Redis after
        s.reply(NAME_ERROR)
        return

    def finish() -> bytes:
        if bad_name:
            return NAME_ERROR
        if name is not None:
            s.name = name.decode() or None
        if ver is not None:
            s.set_proto(ver)
        return hello_reply(s)

    if auth_args is not None:
        authenticate(s, auth_args, finish)
    elif s.identity is None and bad_name:  # without AUTH, Redis too checks the name before asking for one
        s.reply(NAME_ERROR)
    elif s.identity is None:
        proto_word = "<proto> " if valkey else ""  # each server's own wording
        # in passthrough mode the upstream decides whether a client without AUTH is let in; then HELLO runs again
        s.admit(args, raw, resp.error(
            f"NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO {proto_word}"
            "AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version "
            "at the same time"))
    else:
        s.reply(finish())


# -- connection state -----------------------------------------------------------------------------------------------

def cmd_select(s: Session, args: list[bytes], raw: bytes) -> None:
    if len(args) != 2:
        s.reply(wrong_args("select"))
        return
    db = resp.redis_int(args[1])
    if db is None:
        s.reply(resp.error("ERR value is not an integer or out of range"))
        return
    if not -(1 << 31) <= db < (1 << 31):
        s.reply(resp.error("ERR value is out of range, value must between -2147483648 and 2147483647"))
        return
    if not 0 <= db < s.handle.current.cfg.limits.databases:
        s.reply(resp.error("ERR DB index is out of range"))
        return
    if s.lease is not None:  # the lease itself must switch (it is not lent again after)
        s.lease.dirty = True
        slot = s.send_upstream(s.lease, raw)

        def selected(frame: bytes) -> bytes:
            if frame == resp.OK:
                s.db = db
            return frame

        slot.transform = selected
        return
    s.set_db(db)
    s.reply(resp.OK)


def cmd_ping(s: Session, args: list[bytes], raw: bytes) -> None:
    """Only a RESP2 subscriber's PING is answered here (its hub connection cannot answer for it)."""
    if len(args) > 2:
        s.reply(wrong_args("ping"))
    else:
        s.reply(resp.array([resp.bulk(b"pong"), resp.bulk(args[1] if len(args) == 2 else b"")]))


def cmd_quit(s: Session, args: list[bytes], raw: bytes) -> None:
    if s.subs is not None and s.inflight:
        s.hold(Wait.DRAIN, args, raw)  # a message its PUBLISH just sent is delivered before it leaves
        return

    def bye() -> None:
        s.reply(resp.OK)
        s.close_after_replies()

    subscriptions.catch_up(s, Kind, [], bye)


def cmd_reset(s: Session, args: list[bytes], raw: bytes) -> None:
    if len(args) != 1:
        s.reply(wrong_args("reset"))
    elif s.inflight:
        s.hold(Wait.DRAIN, args, raw)  # RESET takes effect after everything sent before it
    else:
        subscriptions.catch_up(s, Kind, [], lambda: _reset(s))


def _reset(s: Session) -> None:
    s.reset()
    s.reply(resp.simple("RESET"))


# -- INFO and SIDECAR -----------------------------------------------------------------------------------------------

def _forwarded_info(args: list[bytes]) -> bool:
    return {a.lower() for a in args[1:]} != {b"sidecar"}


def cmd_info(s: Session, args: list[bytes], raw: bytes) -> None:
    """INFO runs upstream; the sidecar appends ``# Sidecar`` when the sections asked for include it."""
    sections = {a.lower() for a in args[1:]}
    hooks = s.handle.current.hooks
    if sections == {b"sidecar"}:  # only ours: no upstream round trip
        s.reply(resp.verbatim(hooks.info_section(), s.proto))
        return
    slot = s.forward_shared(args, raw)
    if slot is not None and (not sections or sections & INFO_ALL):
        slot.transform = lambda frame: append_section(frame, hooks.info_section())


def append_section(frame: bytes, section: str) -> bytes:
    """Add the section to the upstream's INFO reply (a RESP2 bulk or a RESP3 verbatim string); errors pass."""
    kind = frame[:1]
    if kind not in (b"$", b"="):
        return frame
    head, _, rest = frame.partition(b"\r\n")
    length = int(head[1:])
    if length < 0:
        return frame
    body, prefix = rest[:length], b""
    if kind == b"=":
        prefix, body = body[:4], body[4:]
    text = section.encode()
    body = prefix + (body.rstrip(b"\r\n") + b"\r\n\r\n" + text if body.strip() else text)
    return kind + b"%d\r\n" % len(body) + body + b"\r\n"


def cmd_sidecar(s: Session, args: list[bytes], raw: bytes) -> None:
    s.reply(s.handle.current.hooks.admin(args, s.proto, s.identity))


HANDLERS: dict[bytes, Handler] = {
    b"auth": cmd_auth, b"hello": cmd_hello, b"select": cmd_select, b"ping": cmd_ping,
    b"quit": cmd_quit, b"reset": cmd_reset, b"client": client_command.cmd_client, b"info": cmd_info,
    b"sidecar": cmd_sidecar,
}

tracking_redirect = client_command.tracking_redirect
