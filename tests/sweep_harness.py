"""The machinery of the differential sweep: the script language, a RESP reader of its own, the runner, normalisers.

A script is a list of steps played by one or more named clients ("a", "b", ...). The runner plays it over direct
connections to the upstream, then over connections to the sidecar, and records every reply frame with the command
that produced it. Frames are read with this module's own RESP reader (not the proxy's), so a framing bug in the
proxy cannot hide itself.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field

PASSWORD = b"upstream-secret"
READ_TIMEOUT = 2.0  # no reply in the corpus takes longer; a missing reply costs this once

Cmd = tuple[bytes, ...]
LAST = b"$LAST"  # an argument replaced by the last bulk string this client read (DUMP's payload for RESTORE)


def _b(x) -> bytes:
    return x if isinstance(x, bytes) else str(x).encode()


def cmd(spec) -> Cmd:
    """``"SET k v"`` (split on spaces) or a list/tuple of arguments (for spaces, empty and binary arguments)."""
    return tuple(_b(a) for a in spec.split(" ")) if isinstance(spec, str) else tuple(_b(a) for a in spec)


def encode(args: Cmd) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


# -- the script language ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    kind: str                 # call | send | read | raw | sleep | blocked | eof | close
    on: str = "a"
    cmds: tuple[Cmd, ...] = ()
    n: int = 0                # frames to read (call, read, raw)
    data: bytes = b""         # raw bytes (inline commands, protocol errors)
    seconds: float = 0.0


def call(*cmds, on: str = "a", n: int | None = None) -> Step:
    """Send the commands as one pipeline and read ``n`` frames (default: one per command)."""
    cs = tuple(cmd(c) for c in cmds)
    return Step("call", on, cs, len(cs) if n is None else n)


def send(*cmds, on: str = "a") -> Step:
    """Send without reading (a blocking call; its reply is read later with ``read``)."""
    return Step("send", on, tuple(cmd(c) for c in cmds))


def read(n: int = 1, on: str = "a") -> Step:
    return Step("read", on, n=n)


def raw(data: bytes, n: int = 1, on: str = "a") -> Step:
    """Bytes exactly as given (inline commands, malformed input) and ``n`` frames read."""
    return Step("raw", on, n=n, data=data)


def sleep(seconds: float) -> Step:
    return Step("sleep", seconds=seconds)


def blocked(count: int = 1) -> Step:
    """Wait until the upstream has ``count`` blocked clients (so a blocking call really blocks before it is served)."""
    return Step("blocked", n=count)


def eof(on: str = "a") -> Step:
    """The server closes this connection now (after QUIT, a protocol error ...): recorded as ``<EOF>``."""
    return Step("eof", on)


def close(on: str = "a") -> Step:
    return Step("close", on)


FLAVOURS = ("redis", "valkey")


@dataclass(frozen=True)
class Script:
    name: str
    family: str
    steps: tuple[Step, ...]
    auth: bool = True            # each client starts with AUTH (RESP2) or HELLO 3 AUTH (RESP3)
    protos: tuple[int, ...] = (2, 3)
    modes: tuple[str, ...] = ("passthrough",)
    flavours: tuple[str, ...] = FLAVOURS
    tail: bool = True            # end each open client with PING <tail>: no stray frame may be left unread
    cold: bool = False           # its proxied run gets a sidecar of its own, started just before, far
                                 # from the upstream (its first clients arrive before its pools)

    @property
    def pipelinable(self) -> bool:
        """One client, only call/raw steps, no LAST: also run as a single pipeline of everything (with one step
        that would be the same bytes)."""
        return len(self.steps) > 1 and all(
            s.kind in ("call", "raw") and s.on == "a" and not any(LAST in c for c in s.cmds) for s in self.steps)


def S(name: str, family: str, *steps, **kw) -> Script:
    """A script; a bare command (a string or list) is a step of its own: ``call(command)``."""
    return Script(name, family, tuple(s if isinstance(s, Step) else call(s) for s in steps), **kw)


# -- a RESP reader of the sweep's own ------------------------------------------------------------------------------

AGGREGATES = b"*%~>|"
LINE_TYPES = b"+-:_,#("


class Incomplete(Exception):
    pass


def parse(buf: bytes, pos: int = 0):
    """One RESP2/RESP3 value at ``pos``: ((type, payload), end). payload: bytes, or a list of values, or None."""
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        raise Incomplete
    t, line = buf[pos:pos + 1], buf[pos + 1:nl]
    pos = nl + 2
    if t in b"$=!" and t:
        size = int(line)
        if size < 0:
            return (t, None), pos
        if len(buf) < pos + size + 2:
            raise Incomplete
        return (t, buf[pos:pos + size]), pos + size + 2
    if t and t in AGGREGATES:
        count = int(line)
        if count < 0:
            return (t, None), pos
        items = []
        for _ in range(count * (2 if t in b"%|" else 1)):
            item, pos = parse(buf, pos)
            items.append(item)
        return (t, items), pos
    if t and t in LINE_TYPES:
        return (t, line), pos
    raise ValueError(f"not RESP: {buf[pos - len(line) - 3:pos + 20]!r}")


def unparse(node) -> bytes:
    t, v = node
    if v is None:
        return t + b"-1\r\n"
    if t in b"$=!":
        return t + b"%d\r\n" % len(v) + v + b"\r\n"
    if t in AGGREGATES:
        n = len(v) // 2 if t in b"%|" else len(v)
        return t + b"%d\r\n" % n + b"".join(unparse(i) for i in v)
    return t + v + b"\r\n"


class Conn:
    """A client socket that returns whole reply frames as the server wrote them."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
        self.buf = b""
        self.dead = False  # closed by the server, or a read timed out: nothing more is read from it

    def send(self, data: bytes) -> None:
        if not self.dead:
            try:
                self.sock.sendall(data)
            except OSError:
                self.dead = True

    def frame(self) -> bytes:
        if self.dead:
            return b"<not read: connection gone>"
        while True:
            try:
                _, end = parse(self.buf)
                out, self.buf = self.buf[:end], self.buf[end:]
                return out
            except Incomplete:
                pass
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                self.dead = True
                return b"<timeout>" + (b" after %r" % self.buf[:80] if self.buf else b"")
            except OSError as exc:
                chunk, self.buf = b"", self.buf + f" <{exc.__class__.__name__}>".encode()
            if not chunk:
                self.dead = True
                return b"<EOF>" + (b" after %r" % self.buf[:80] if self.buf else b"")
            self.buf += chunk

    def expect_eof(self) -> bytes:
        if self.dead:
            return b"<not read: connection gone>"
        if self.buf:
            return b"<unread: %r>" % self.buf[:80]
        self.dead = True
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            return b"<still open>"
        except OSError:
            return b"<EOF>"
        return b"<EOF>" if not data else b"<data: %r>" % data[:80]

    def close(self) -> None:
        self.dead = True
        self.sock.close()


# -- playing a script -----------------------------------------------------------------------------------------------

@dataclass
class Record:
    """One frame read, with what asked for it: the command (None for a frame read on its own: a push, a message)."""

    client: str
    step: int
    args: Cmd | None
    frame: bytes


@dataclass
class Run:
    records: list[Record] = field(default_factory=list)


def preamble(proto: int) -> Cmd:
    return (b"AUTH", PASSWORD) if proto == 2 else (b"HELLO", b"3", b"AUTH", b"default", PASSWORD)


def play(script: Script, port: int, proto: int, pipelined: bool, control) -> list[Record]:
    """Play ``script`` against ``port``; ``control`` (a direct client of the upstream) answers ``blocked`` steps."""
    conns: dict[str, Conn] = {}
    records: list[Record] = []
    last: dict[str, bytes] = {}
    ended: set[str] = set()  # closed by an eof or close step

    def wire(name: str, cmds: tuple[Cmd, ...]) -> bytes:
        return b"".join(encode(tuple(last.get(name, b"") if a == LAST else a for a in c)) for c in cmds)

    def conn(name: str, index: int) -> Conn:
        if name not in conns:
            c = conns[name] = Conn(port)
            if script.auth:
                c.send(encode(preamble(proto)))
                records.append(Record(name, index, preamble(proto), c.frame()))
        return conns[name]

    def attribute(name: str, index: int, cmds: tuple[Cmd, ...], n: int) -> None:
        c = conns[name]
        for i in range(n):
            # one frame per command when the counts match; otherwise the frames belong to the step as a whole
            args = cmds[i] if len(cmds) == n else (cmds[0] + (b"...",) if cmds else None)
            frame = c.frame()
            if frame[:1] == b"$" and not frame.startswith(b"$-1"):
                last[name] = parse(frame)[0][1]
            records.append(Record(name, index, args, frame))

    steps = script.steps
    if pipelined:
        data = b"".join(s.data if s.kind == "raw" else wire("a", s.cmds) for s in steps)
        c = conn("a", 0)
        c.send(data)
        for index, s in enumerate(steps):
            attribute("a", index, s.cmds if s.kind == "call" else (), s.n)
    else:
        for index, s in enumerate(steps):
            if s.kind in ("call", "send", "raw"):
                c = conn(s.on, index)
                c.send(s.data if s.kind == "raw" else wire(s.on, s.cmds))
                if s.kind != "send":
                    attribute(s.on, index, s.cmds if s.kind == "call" else (), s.n)
            elif s.kind == "read":
                conn(s.on, index)
                attribute(s.on, index, (), s.n)
            elif s.kind == "sleep":
                time.sleep(s.seconds)
            elif s.kind == "blocked":
                wait_blocked(control, s.n)
            elif s.kind == "eof":
                ended.add(s.on)
                records.append(Record(s.on, index, (b"<server closes>",), conn(s.on, index).expect_eof()))
            elif s.kind == "close":
                ended.add(s.on)
                conn(s.on, index).close()
    if script.tail:  # (a connection that died early still gets its record: both runs record the same frames)
        for name, c in conns.items():
            if name not in ended:
                c.send(encode((b"PING", b"<tail>")))
                records.append(Record(name, len(steps), (b"PING", b"<tail>"), c.frame()))
    for c in conns.values():
        c.close()
    return records


# -- the upstream between runs ----------------------------------------------------------------------------------------

def info_field(control: Conn, section: str, name: str) -> str:
    control.send(encode((b"INFO", section.encode())))
    (_, body), _ = parse(control.frame())
    m = re.search(rb"^" + name.encode() + rb":(.*?)\r?$", body, re.MULTILINE)
    return m.group(1).decode() if m else ""


def wait_blocked(control: Conn, count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while int(info_field(control, "clients", "blocked_clients") or 0) < count:
        assert time.monotonic() < deadline, f"never saw {count} blocked client(s) upstream"
        time.sleep(0.005)


def control_call(control: Conn, *cmds: Cmd) -> list[bytes]:
    control.send(b"".join(encode(c) for c in cmds))
    return [control.frame() for _ in cmds]


RESET = [cmd(c) for c in (
    "FLUSHALL", "SCRIPT FLUSH", "FUNCTION FLUSH", "CONFIG RESETSTAT", "SLOWLOG RESET", "LATENCY RESET",
    "ACL LOG RESET", "ACL DELUSER sweep-tmp")]


def reset_upstream(control: Conn, config_defaults: list[Cmd]) -> None:
    """A clean server: no data, scripts, functions, stats or logs, and the configuration the scripts change restored."""
    replies = control_call(control, *RESET, *config_defaults)
    bad = [(c, r) for c, r in zip(RESET + config_defaults, replies) if r.startswith(b"-")]
    assert not bad, f"resetting the upstream failed: {bad}"


def leftovers(control: Conn, timeout: float) -> str | None:
    """Wait until no client is blocked or subscribed upstream (clients that left close asynchronously); what is still
    there after ``timeout``, or None. After a direct run this never lasts; after a proxied one it is a leak."""
    deadline = time.monotonic() + timeout
    while True:
        busy = control_call(control, cmd("PUBSUB NUMPAT"), cmd("PUBSUB CHANNELS"), cmd("PUBSUB SHARDCHANNELS"))
        blocked_now = info_field(control, "clients", "blocked_clients")
        if busy == [b":0\r\n", b"*0\r\n", b"*0\r\n"] and blocked_now in ("0", ""):
            return None
        if time.monotonic() > deadline:
            return f"numpat, channels, shard channels: {busy}; blocked clients: {blocked_now}"
        time.sleep(0.005)
