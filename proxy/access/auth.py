"""Client authentication to the sidecar: modes ``none``, ``password`` (users in config) and ``passthrough``.

In passthrough mode the upstream decides, and is asked again: whether a credential is accepted, and whether a client
without any AUTH may come in at all, are facts learned from the upstream (the exact reply it gave) and trusted for
``client_auth.passthrough_ttl`` seconds at most (0: ask every time). A credential is forgotten sooner when the upstream
refuses it on one of the sidecar's connections or kills that login's connections. Clients authenticated as an ACL
user run their commands on upstream connections logged in as that same user, so the upstream's ACLs apply.

Failed attempts are limited per source address and per user name (``limits.auth_failures_per_minute``), and checks
run on a few reused connections (``upstream.control``), so a flood of wrong passwords costs the upstream little.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from ..config import ClientAuthConfig
from ..upstream.control import Control
from ..upstream.credentials import Credential

WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
_ANONYMOUS = Credential(None, None)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a client is once authenticated, and which upstream login its commands run under.

    ``login`` None means the sidecar's own upstream login (whatever it is after a reload). ``guarded``: the client
    runs on that login without having shown its password, so while ``client_auth.protect_upstream_login`` is on,
    nothing it runs may show or change that login.
    """

    user: str
    login: Credential | None
    admin: bool = False
    guarded: bool = False


class RateLimit:
    """Failures per key (source address, user name) in a sliding minute; bounded in the keys it remembers."""

    __slots__ = ("per_minute", "_seen")
    MAX_KEYS = 10000

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def exceeded(self, key: str, now: float) -> bool:
        window = self._seen.get(key)
        if window is None:
            return False
        while window and now - window[0] > 60:
            window.popleft()
        return len(window) >= self.per_minute

    def fail(self, key: str, now: float) -> None:
        window = self._seen.get(key)
        if window is None:
            window = self._seen[key] = deque(maxlen=self.per_minute + 1)
            if len(self._seen) > self.MAX_KEYS:
                self._seen.popitem(last=False)
        window.append(now)


class Authenticator:
    def __init__(self, cfg: ClientAuthConfig, login: Credential, control: Control, failures_per_minute: int) -> None:
        self.cfg = cfg
        self.login = login
        self.control = control
        self._salt = os.urandom(32)
        self._users = {u.name: (self._digest(u.name, u.password or ""), u.admin) for u in cfg.users}
        self._filler = self._digest("", "")  # compared against for unknown names: timing reveals nothing
        # user -> (salted digest, expiry, the identity it gives: made once, not per AUTH)
        self._verified: dict[str, tuple[bytes, float, Identity]] = {}
        self._anonymous: tuple[bool, float] = (False, 0.0)  # (let in, until when that answer is trusted)
        self.limit = RateLimit(failures_per_minute)

    def _digest(self, user: str, password: str) -> bytes:
        # a keyed BLAKE2b is a MAC as HMAC-SHA256 is, at a third of the cost on the connect-per-request path
        return hashlib.blake2b(f"{user}\0{password}".encode(errors="surrogateescape"), key=self._salt,
                               digest_size=32).digest()

    # -- who a client is before any AUTH ----------------------------------------------------------------------------
    def initial(self) -> Identity | None:
        """The identity of a new client; None when it must authenticate (or, in passthrough mode, be let in by the
        upstream: ``anonymous``)."""
        if self.cfg.mode == "none":
            return Identity("default", None, guarded=True)
        return None

    def anonymous_known(self) -> tuple[bool, Identity | None]:
        """Passthrough: (known, identity) for a client that sent no AUTH: whether the upstream's answer is still
        trusted, and the identity it let in (None: it asks for a password)."""
        if self.cfg.mode != "passthrough" or time.monotonic() >= self._anonymous[1]:
            return False, None
        return True, self._anonymous_identity() if self._anonymous[0] else None

    async def anonymous(self) -> Identity | None:
        """Ask the upstream whether a connection without AUTH is let in (its default user has no password)."""
        if self.cfg.mode != "passthrough":
            return None
        reply = await self.control.auth([b"default", os.urandom(12).hex().encode()])
        let_in = reply.startswith(b"+")
        self._anonymous = (let_in, time.monotonic() + self.cfg.passthrough_ttl)
        return self._anonymous_identity() if let_in else None

    def _anonymous_identity(self) -> Identity:
        login = None if self.login.password is None else _ANONYMOUS
        return Identity("default", login)

    # -- AUTH and HELLO AUTH ----------------------------------------------------------------------------------------
    def check_local(self, username: str | None, password: str) -> Identity | bytes | None:
        """Identity on success, the error frame on failure, None when only the upstream can tell (passthrough)."""
        user = username or "default"
        mode = self.cfg.mode
        admin = self._users.get(user) if username is not None or mode == "password" else None
        if mode == "password" or admin is not None:
            digest = self._digest(user, password)
            ok = hmac.compare_digest(digest, admin[0] if admin else self._filler) and admin is not None
            return Identity(user, None, admin=admin[1], guarded=True) if ok and admin else WRONGPASS
        if mode == "none":
            return Identity(user, None, guarded=True)
        cached = self._verified.get(user)
        if cached and cached[1] > time.monotonic() and hmac.compare_digest(cached[0], self._digest(user, password)):
            return cached[2]
        return None

    async def check_upstream(self, args: list[bytes]) -> Identity | bytes:
        """Passthrough: AUTH ``args`` (the client's own form: [password] or [user, password]) upstream; the
        identity, or the upstream's exact error frame. A success is trusted for the TTL, a failure never."""
        reply = await self.control.auth(args)
        if not reply.startswith(b"+"):
            return reply
        username = args[0].decode(errors="surrogateescape") if len(args) == 2 else None
        password = args[-1].decode(errors="surrogateescape")
        user = username or "default"
        identity = self._passthrough(username, password)
        if self.cfg.passthrough_ttl > 0:
            self._verified[user] = (self._digest(user, password), time.monotonic() + self.cfg.passthrough_ttl,
                                    identity)
        return identity

    def _passthrough(self, username: str | None, password: str) -> Identity:
        cred = Credential(username, password)
        same = (cred.user, cred.password) == (self.login.user, self.login.password)
        return Identity(cred.user, None if same else cred)

    def forget(self, login: Credential) -> None:
        """The upstream refused ``login`` or killed its connections: ask it again next time."""
        if login.password is None:
            self._anonymous = (False, 0.0)
        cached = self._verified.get(login.user)
        if cached and hmac.compare_digest(cached[0], self._digest(login.user, login.password or "")):
            del self._verified[login.user]

    # -- failed attempts --------------------------------------------------------------------------------------------
    def limited(self, address: str, user: str) -> bool:
        now = time.monotonic()
        return self.limit.exceeded(f"addr:{address}", now) or self.limit.exceeded(f"user:{user}", now)

    def failed(self, address: str, user: str) -> None:
        now = time.monotonic()
        self.limit.fail(f"addr:{address}", now)
        self.limit.fail(f"user:{user}", now)
