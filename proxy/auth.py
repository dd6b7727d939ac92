"""Client authentication to the sidecar: modes ``none``, ``password`` (users in config) and ``passthrough``.

In passthrough mode the upstream decides: the first time a credential is seen it is checked upstream once, then a
salted digest is kept for ``client_auth.passthrough_ttl`` seconds so later AUTHs (one per request, for a
connect-per-request app) are answered locally. Clients authenticated as an ACL user run their commands on upstream
connections authenticated as that same user, so the upstream's ACLs still apply.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from .config import ClientAuthConfig
from .upstream import Credential

WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."


@dataclass(frozen=True)
class Identity:
    """Who a client is once authenticated, and which upstream credential its commands run under."""

    user: str
    upstream: Credential
    admin: bool = False


class Authenticator:
    def __init__(self, cfg: ClientAuthConfig, upstream: Credential,
                 verify: Callable[[Credential], Awaitable[str | None]]) -> None:
        self.cfg = cfg
        self.upstream = upstream
        self._verify = verify
        self._salt = os.urandom(32)
        self._users = {u.name: (self._digest(u.name, u.password or ""), u.admin) for u in cfg.users}
        self._verified: dict[str, tuple[bytes, float]] = {}  # user -> (salted digest, expiry)
        self._upstream_digest = self._digest(upstream.user, upstream.password or "")

    def _digest(self, user: str, password: str) -> bytes:
        # surrogateescape: a password that is not UTF-8 (sessions decode it so) is hashed as its own bytes
        return hmac.new(self._salt, f"{user}\0{password}".encode(errors="surrogateescape"), hashlib.sha256).digest()

    def initial(self) -> Identity | None:
        """The identity of a client that has not sent AUTH (None: it must authenticate first)."""
        if self.cfg.mode == "none":
            return Identity("default", self.upstream)
        if self.cfg.mode == "passthrough" and self.upstream.password is None:
            return Identity("default", self.upstream)  # the upstream itself needs no password
        return None

    def check_local(self, username: str | None, password: str) -> Identity | str | None:
        """Identity on success, an error text on failure, None when only the upstream can tell (passthrough)."""
        user = username or "default"
        if self.cfg.mode == "none":
            return Identity(user, self.upstream)
        digest = self._digest(user, password)
        if self.cfg.mode == "password":
            known = self._users.get(user)
            # compare against a digest even for unknown users, so timing does not reveal which names exist
            ok = hmac.compare_digest(digest, known[0] if known else self._upstream_digest) and known is not None
            return Identity(user, self.upstream, admin=known[1]) if ok else WRONGPASS
        if hmac.compare_digest(digest, self._upstream_digest):
            return Identity(user, self.upstream)
        cached = self._verified.get(user)
        if cached and cached[1] > time.monotonic() and hmac.compare_digest(cached[0], digest):
            return Identity(user, Credential(username, password))
        return None

    async def check_upstream(self, username: str | None, password: str) -> Identity | str:
        """Passthrough: ask the upstream once; remember a success for the TTL, never a failure."""
        cred = Credential(username, password)
        error = await self._verify(cred)
        if error is not None:
            return error
        if self.cfg.passthrough_ttl > 0:
            self._verified[cred.user] = (self._digest(cred.user, password),
                                         time.monotonic() + self.cfg.passthrough_ttl)
        return Identity(cred.user, cred)
