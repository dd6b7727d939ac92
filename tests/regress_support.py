"""Helpers for the regression tests of issues 10 and 11 (tests/test_regress_*.py): direct connections to compare
against, ACL users made (and deleted) per test, unique names, and reads that fail clearly instead of hanging."""

from __future__ import annotations

import contextlib
import uuid

import pytest

from conftest import UPSTREAM_PASSWORD
from wire import RawClient

AUTH = [b"AUTH", UPSTREAM_PASSWORD.encode()]
OK = b"+OK\r\n"


def unique(prefix: str) -> str:
    """A key, channel or user name no other test (or earlier run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def direct(server, timeout: float = 10.0, auth: bool = True) -> RawClient:
    """A raw connection straight to ``server``, authenticated as the default user when it has a password."""
    c = RawClient(server.port, timeout=timeout)
    if auth and server.password:
        assert c.call([b"AUTH", server.password.encode()]) == [OK]
    return c


def proxied(sidecar, timeout: float = 10.0, auth: list[bytes] | None = AUTH) -> RawClient:
    """A raw connection to the sidecar, authenticated with ``auth`` (None: not at all)."""
    c = RawClient(sidecar.port, timeout=timeout)
    if auth is not None:
        assert c.call(auth) == [OK]
    return c


def read(c: RawClient, what: str, n: int = 1) -> list[bytes]:
    """``n`` reply frames; a read that times out fails the test as the hang it is."""
    try:
        return [c.read_reply() for _ in range(n)]
    except TimeoutError:
        pytest.fail(f"{what}: no reply within {c.sock.gettimeout()}s (the client hangs)")


def call(c: RawClient, *commands, what: str = "") -> list[bytes]:
    """Pipeline ``commands`` in one write and read one reply each, failing clearly on a hang."""
    from proxy.wire.resp import encode_command

    c.send(b"".join(x if isinstance(x, bytes) else encode_command([a if isinstance(a, bytes) else str(a).encode()
                                                                    for a in x]) for x in commands))
    return read(c, what or f"{commands[0]!r}...", len(commands))


def gone(c: RawClient, wait: float = 0.2) -> bool:
    """True once the peer closed the connection (reading, and dropping, whatever it sent before)."""
    previous = c.sock.gettimeout()
    c.sock.settimeout(wait)
    try:
        while True:
            if not c.sock.recv(1 << 16):
                return True
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:
        return True
    finally:
        c.sock.settimeout(previous)


@contextlib.contextmanager
def acl_user(server, *rules: str, password: str | None = None):
    """An ACL user on ``server`` for this test only: ``(name, password)``; deleted afterwards."""
    name, password = unique("user"), password or unique("pw")
    admin = server.client()
    admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", *rules)
    try:
        yield name, password
    finally:
        admin.execute_command("ACL", "DELUSER", name)


def connections_received(server) -> int:
    return int(server.client().info("stats")["total_connections_received"])


def client_fields(line: bytes | str) -> list[tuple[str, str]]:
    """A CLIENT LIST / CLIENT INFO line as (field, value) pairs, in order."""
    text = line.decode() if isinstance(line, bytes) else line
    return [tuple(part.split("=", 1)) for part in text.strip().split(" ") if "=" in part]  # type: ignore[misc]


def bulk_text(frame: bytes) -> str:
    """The text of a RESP2 bulk or RESP3 verbatim string frame."""
    _, _, rest = frame.partition(b"\r\n")
    body = rest[:-2]
    if frame[:1] == b"=":
        body = body[4:]  # "txt:"
    return body.decode()


def metric(port: int, name: str, **labels) -> float:
    """One sample of the sidecar's /metrics (``redis_sidecar_`` + name), 0 when absent."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == f"redis_sidecar_{name}" and s.labels == labels:
                return s.value
    return 0.0
