"""Whether the upstream would let a login run a command the sidecar answers itself.

A locally answered command (ECHO, SELECT, CLIENT LIST ...) never reaches the upstream's ACLs, so the sidecar asks once
per login and command: a harmless form of the command runs on one of the sidecar's own reused control connections,
logged in as that login, and the answer (allowed, or the upstream's exact NOPERM error) is remembered for
``client_auth.passthrough_ttl`` seconds (at least one). Commands that may run before authentication (AUTH, HELLO,
QUIT, RESET) are never asked about, as Redis never checks them.
"""

from __future__ import annotations

import asyncio
import time

from ..upstream.connection import UpstreamError
from ..upstream.control import Control
from ..upstream.credentials import Credential

# label -> a form of the command that is harmless to run on a throwaway connection (a probe never acts on clients)
PROBES: dict[bytes, list[bytes]] = {
    b"select": [b"SELECT", b"0"], b"info": [b"INFO", b"server"],
    b"client|list": [b"CLIENT", b"LIST", b"ID", b"0"], b"client|info": [b"CLIENT", b"INFO"],
    b"client|id": [b"CLIENT", b"ID"], b"client|getname": [b"CLIENT", b"GETNAME"],
    b"client|setname": [b"CLIENT", b"SETNAME", b"probe"],
    b"client|setinfo": [b"CLIENT", b"SETINFO", b"LIB-NAME", b"probe"],
    b"client|reply": [b"CLIENT", b"REPLY", b"ON"], b"client|kill": [b"CLIENT", b"KILL", b"ID", b"0"],
    b"client|unblock": [b"CLIENT", b"UNBLOCK", b"0"],
}


class Permissions:
    def __init__(self, control: Control, login: Credential, ttl: float) -> None:
        self.control = control
        self.login = login
        self.ttl = max(1.0, ttl)
        self._known: dict[tuple[Credential, bytes], tuple[bytes | None, float]] = {}
        self._asking: dict[tuple[Credential, bytes], asyncio.Future[bytes | None]] = {}
        self.probes = 0

    def known(self, login: Credential | None, label: bytes) -> tuple[bool, bytes | None]:
        """(known, error): the remembered answer for ``label`` (None error: allowed); unknown labels need no
        asking and are allowed."""
        if label not in PROBES:
            return True, None
        entry = self._known.get((login or self.login, label))
        if entry is not None and entry[1] > time.monotonic():
            return True, entry[0]
        return False, None

    async def ask(self, login: Credential | None, label: bytes) -> bytes | None:
        """The upstream's answer for ``login`` running ``label``: None (allowed) or its error frame."""
        key = (login or self.login, label)
        pending = self._asking.get(key)
        if pending is None:
            pending = self._asking[key] = asyncio.ensure_future(self._probe(key[0], label))
            pending.add_done_callback(lambda _: self._asking.pop(key, None))
        return await asyncio.shield(pending)

    async def _probe(self, login: Credential, label: bytes) -> bytes | None:
        self.probes += 1
        try:
            reply = await self.control.probe(login, PROBES[label])
        except UpstreamError:  # unreachable: the answer is not known, and the command itself will meet the trouble
            self._known[(login, label)] = (None, time.monotonic() + 1.0)
            return None
        error = reply if reply.startswith(b"-NOPERM") else None
        self._known[(login, label)] = (error, time.monotonic() + self.ttl)
        return error

    def forget(self, login: Credential) -> None:
        for key in [k for k in self._known if k[0] == login]:
            del self._known[key]
