"""The command table: which routing class each command belongs to, and what the server says about it.

The router asks ``CommandTable.route(args)`` once per command; for almost every command that is one dict lookup.
Classes come from the server's flags (``CommandTable.learn(COMMAND reply)``), or before that from the static
lists in ``routes``, with ``routes.OVERRIDES`` on top, then the configuration: ``commands.deny`` refuses,
``commands.profile: development`` and ``commands.allow`` open the development commands as SESSION. What would show
or change the sidecar's own login (``guard``) is judged per client by the session, since it depends on who the
client is: the table only keeps those commands off the fast path and words the refusal.

A command the sidecar does not know (a module's, or one newer than Redis 7.0 / Valkey 9) is routed by its flags
once learned (``blocking`` leased, subscriptions to the hub, the rest shared); with ``commands.unknown: refused``
every such command is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from .guard import LOGIN_CONTAINERS, login_exposure
from .routes import (
    ALLOW_ONLY,
    BLOCKING_IF_ARG,
    CONTAINERS,
    DEVELOPMENT,
    EXPLICIT_CONTAINERS,
    KNOWN_COMMANDS,
    OVERRIDES,
    PUBLISH_COMMANDS,
    STATIC_BLOCKING,
    STATIC_PUBSUB,
    Route,
    command_key,
)
from .spec import CommandSpec, parse_command_reply


class CommandsSettings(Protocol):
    """The ``commands`` section of the configuration, as the table reads it."""

    @property
    def deny(self) -> tuple[str, ...]: ...
    @property
    def unknown(self) -> str: ...
    @property
    def allow(self) -> tuple[str, ...]: ...
    @property
    def profile(self) -> str: ...

__all__ = ["CONTAINERS", "CommandSpec", "CommandTable", "Route", "login_exposure"]

_Entry = tuple[Route, dict[bytes, Route], Route]  # own route, subcommand routes, route of an unlisted subcommand


def flag_route(spec: CommandSpec) -> Route:
    """The class a command's flags give it."""
    if spec.blocking:
        return Route.BLOCKING
    if "pubsub" in spec.flags and spec.name.endswith("subscribe"):
        return Route.PUBSUB
    return Route.SHARED


def _static_route(name: str) -> Route:
    return Route.BLOCKING if name in STATIC_BLOCKING else Route.PUBSUB if name in STATIC_PUBSUB else Route.SHARED


class CommandTable:
    """Routing lookups for one configuration, from the static lists or from what a server said (``learn``)."""

    __slots__ = ("_simple", "_complex", "_classified", "_specs", "_unknown", "_denied", "_settings",
                 "plain_shared", "containers")

    def __init__(self, deny: Iterable[str] = (), unknown: Route = Route.SHARED, allow: Iterable[str] = (),
                 profile: str = "production", specs: Mapping[str, CommandSpec] | None = None) -> None:
        deny, allow = tuple(deny), tuple(allow)
        self._settings = (deny, unknown, allow, profile)
        self._unknown = unknown
        self._specs: dict[bytes, CommandSpec] | None = (
            None if specs is None else {spec.name.encode(): spec for spec in specs.values()})
        routes: dict[str, Route] = {name: _static_route(name) for name in KNOWN_COMMANDS}
        subs: dict[str, dict[str, Route]] = {}
        for spec in (specs or {}).values():
            route = flag_route(spec) if spec.name in KNOWN_COMMANDS or unknown is Route.SHARED else Route.REFUSED
            routes[spec.name] = route
            if route is not Route.REFUSED:  # an explicit container's subcommands are all in OVERRIDES or refused
                explicit = EXPLICIT_CONTAINERS.get(spec.name)
                subs[spec.name] = {name: explicit.route if explicit else flag_route(sub)
                                   for name, sub in spec.subcommands.items()}
        allowed = {command_key(a) for a in allow}
        for key, override in OVERRIDES.items():
            opened = (override.gate == DEVELOPMENT and (profile == "development" or key in allowed)) or \
                     (override.gate == ALLOW_ONLY and key in allowed)
            self._put(routes, subs, key, Route.SESSION if opened else override.route)
        self._denied: frozenset[str] = frozenset(command_key(d) for d in deny)
        for key in self._denied:
            self._put(routes, subs, key, Route.REFUSED)
        self._simple: dict[bytes, Route] = {}
        self._complex: dict[bytes, _Entry] = {}
        self._classified: dict[str, Route] = {}
        for name, route in routes.items():
            table, encoded = subs.get(name, {}), name.encode()
            conditional = encoded in BLOCKING_IF_ARG and route is Route.BLOCKING  # shared unless BLOCK is given
            default = EXPLICIT_CONTAINERS[name].route if name in EXPLICIT_CONTAINERS and route is not Route.REFUSED \
                else route
            self._classified[name] = Route.SHARED if conditional else route
            self._classified.update({f"{name}|{sub}": r for sub, r in table.items()})
            if conditional:
                self._complex[encoded] = (Route.SHARED, {}, Route.SHARED)
            elif default is not route or any(r is not default for r in table.values()) or \
                    encoded in LOGIN_CONTAINERS:
                self._complex[encoded] = (route, {s.encode(): r for s, r in table.items()}, default)
            else:
                self._simple[encoded] = route
        # SHARED whatever their arguments: the session's fast path forwards these without further checks
        self.plain_shared: frozenset[bytes] = frozenset(
            name for name, route in self._simple.items() if route is Route.SHARED and name not in PUBLISH_COMMANDS)
        self.containers: frozenset[bytes] = CONTAINERS | {name.encode() for name, table in subs.items() if table}

    @staticmethod
    def _put(routes: dict[str, Route], subs: dict[str, dict[str, Route]], key: str, route: Route) -> None:
        if "|" in key:
            container, sub = key.split("|", 1)
            subs.setdefault(container, {})[sub] = route
        else:
            routes[key] = route
            if route is Route.REFUSED:  # a refused container refuses every subcommand
                subs[key] = {}

    # -- the router's questions ---------------------------------------------------------------------------------------
    def route(self, args: list[bytes]) -> Route:
        name = args[0].lower()
        route = self._simple.get(name)
        if route is not None:
            return route
        entry = self._complex.get(name)
        if entry is None:
            return self._unknown
        own, subs, default = entry
        if name in BLOCKING_IF_ARG:
            return Route.BLOCKING if BLOCKING_IF_ARG[name] in (a.lower() for a in args[1:]) else own
        return subs.get(args[1].lower(), default) if len(args) > 1 else own

    def spec(self, args: list[bytes]) -> CommandSpec | None:
        """What the server said about this command (the subcommand's spec for a container); None before ``learn``
        and for commands or subcommands the server does not have."""
        if self._specs is None:
            return None
        spec = self._specs.get(args[0].lower())
        if spec is not None and spec.subcommands and len(args) > 1:
            return spec.subcommands.get(args[1].lower().decode("utf-8", "replace"))
        return spec

    def label(self, args: list[bytes]) -> bytes:
        """The command as CLIENT LIST's ``cmd=`` names it: ``get``, or ``client|info`` for a container command."""
        name = args[0].lower()
        return name + b"|" + args[1].lower() if name in self.containers and len(args) > 1 else name

    def refusal(self, args: list[bytes]) -> str:
        """The ``-ERR`` text for a refused command."""
        name = args[0].decode(errors="replace").lower()
        full = f"{name}|{args[1].decode(errors='replace').lower()}" if len(args) > 1 else name
        if args[0].lower() in LOGIN_CONTAINERS and (why := login_exposure(args)):
            return f"ERR '{full.replace('|', ' ').upper()}' is not allowed through the sidecar: {why} " \
                   "(client_auth.protect_upstream_login)"
        for key in (full, name):
            if key in self._denied:
                return f"ERR '{key.replace('|', ' ').upper()}' is disabled by the sidecar's configuration " \
                       "(commands.deny)"
        if name in EXPLICIT_CONTAINERS and full != name and full not in OVERRIDES:
            spec = self._specs.get(name.encode()) if self._specs is not None else None
            if spec is None or full.partition("|")[2] not in spec.subcommands:  # the server does not know it either
                return f"ERR unknown subcommand '{args[1].decode(errors='replace')[:128]}'. Try {name.upper()} HELP."
        for key in (full, name):
            override = OVERRIDES.get(key) or (EXPLICIT_CONTAINERS.get(key) if key != full else None)
            if override is not None and override.route is Route.REFUSED:
                shown = full if key in EXPLICIT_CONTAINERS else key
                hint = {DEVELOPMENT: " (commands.profile: development or commands.allow opens it)",
                        ALLOW_ONLY: " (only commands.allow opens it)"}.get(override.gate or "", "")
                return f"ERR '{shown.replace('|', ' ').upper()}' is not allowed through the sidecar: " \
                       f"{override.reason}{hint}"
        return f"ERR '{name.upper()}' is not served by the sidecar (commands.unknown is 'refused')"

    # -- building and inspecting tables ----------------------------------------------------------------------------
    def learn(self, reply: Iterable[Any]) -> CommandTable:
        """A table with this one's configuration and the classes the server's COMMAND reply gives."""
        return CommandTable(*self._settings, specs=parse_command_reply(reply))

    @property
    def specs(self) -> Mapping[str, CommandSpec] | None:
        """The learned specs (pass them to ``for_config`` so a reload keeps them); None for the static table."""
        return None if self._specs is None else {spec.name: spec for spec in self._specs.values()}

    @classmethod
    def for_config(cls, commands: CommandsSettings, specs: Mapping[str, CommandSpec] | None = None) -> CommandTable:
        """The table the ``commands`` settings ask for (built at start and again on reload)."""
        return cls(commands.deny, Route.SHARED if commands.unknown == "shared" else Route.REFUSED,
                   allow=commands.allow, profile=commands.profile, specs=specs)

    def classified(self) -> dict[str, Route]:
        """Every known command and container|subcommand with its class (for docs, admin and the differential test)."""
        return dict(self._classified)
