"""The login guard: where clients share the sidecar's own upstream login (client_auth.mode password or none), refuse
what would show a client the upstream's secrets or let it change the login every client depends on.

It judges CONFIG GET exactly as the server's configGetCommand matches: an argument without ``[*?`` is looked up by
name (case-insensitively, aliases included), any other is a glob matched with ``nocase`` against every name,
up to the first NUL byte (Redis passes it to ``stringmatch``, which stops there). Every argument counts (Redis 7
takes several). It fails closed: an argument holding a NUL byte is refused, since Redis's name lookup hashes the
whole argument but compares it only up to the NUL, so some such arguments do find ``requirepass``.
"""

from __future__ import annotations

from ..wire.glob import stringmatchlen

# Configuration parameters holding a password (names and aliases; Valkey's primaryauth is Redis's masterauth).
SECRET_CONFIG: tuple[bytes, ...] = (b"requirepass", b"masterauth", b"primaryauth", b"tls-key-file-pass",
                                    b"tls-client-key-file-pass")
LOGIN_CONTAINERS: frozenset[bytes] = frozenset({b"config", b"acl"})

# ACL subcommands that neither show nor change users: WHOAMI names the login's user, CAT lists categories, GENPASS
# makes random bytes, USERS lists user names, LOG shows denied commands and failed logins (user names, never
# passwords), HELP. Everything else (LIST, GETUSER: password hashes; SETUSER, DELUSER, LOAD, SAVE: change or persist
# users; DRYRUN: probes users' permissions; any subcommand added later) is refused.
HARMLESS_ACL: frozenset[bytes] = frozenset({b"whoami", b"cat", b"genpass", b"users", b"log", b"help"})
LOGIN_ACL: frozenset[bytes] = frozenset({b"list", b"getuser", b"setuser", b"deluser", b"load", b"save", b"dryrun"})
# CONFIG subcommands judged by their arguments; RESETSTAT, REWRITE and HELP show no value; any other is refused.
HARMLESS_CONFIG: frozenset[bytes] = frozenset({b"resetstat", b"rewrite", b"help"})

SHOW = "it would show the upstream password the sidecar logs in with; ask for the parameters by name"
CHANGE = "it would change the upstream password the sidecar logs in with"
UNJUDGED = "the sidecar cannot tell what it would show (a NUL byte in the parameter name)"
ACL_USERS = "ACL users and their passwords are managed upstream, not through the sidecar's shared login"
UNKNOWN_SUB = "the sidecar does not know whether this subcommand shows or changes the upstream login"


def config_get_reveals(argument: bytes) -> bool:
    """Whether ``CONFIG GET argument`` would return a secret parameter (True as well when it cannot be judged)."""
    if b"\0" in argument:
        return True
    if not any(c in argument for c in b"[*?"):
        return argument.lower() in SECRET_CONFIG
    return any(stringmatchlen(argument, secret, nocase=True) for secret in SECRET_CONFIG)


def login_exposure(args: list[bytes]) -> str | None:
    """Why this command would expose or change the shared upstream login, or None if it would not."""
    name = args[0].lower()
    if name not in LOGIN_CONTAINERS or len(args) < 2:
        return None
    sub = args[1].lower()
    if name == b"acl":
        return None if sub in HARMLESS_ACL else ACL_USERS if sub in LOGIN_ACL else UNKNOWN_SUB
    if sub == b"get":
        if any(b"\0" in a for a in args[2:]):
            return UNJUDGED
        return SHOW if any(config_get_reveals(a) for a in args[2:]) else None
    if sub == b"set":
        names = args[2::2]
        if any(b"\0" in n for n in names):
            return UNJUDGED
        return CHANGE if any(n.lower() in SECRET_CONFIG for n in names) else None
    return None if sub in HARMLESS_CONFIG else UNKNOWN_SUB
