"""The command table: classes learned from the running servers' flags agree with the static fallback, COMMAND's
reply parses the same in both protocols (and in older servers' shorter shapes), and the overrides, the deny list and
the development profile send each command where it is safe."""

from __future__ import annotations

import pytest

from conftest import UPSTREAM_PASSWORD, sidecar_config
from proxy import config
from proxy.commands.routes import EXPLICIT_CONTAINERS, KNOWN_COMMANDS, OVERRIDES
from proxy.commands.spec import parse_command_reply
from proxy.commands.table import CommandTable, Route
from serverside import ask, hello
from wire import RawClient

# Where the table learned from a server classifies a command or subcommand differently from the static fallback,
# by (server flavour, command), with the reason. Empty: the static lists say what the flags of Redis 7.0 and Valkey 9
# say, and the overrides apply to both. A new entry means a server's flags changed: decide, then list it here.
EXPECTED_DISAGREEMENTS: dict[tuple[str, str], str] = {}

# The configurations the comparison runs under (each changes classes: the guard, the profile, unknown commands).
VARIANTS = {
    "default": {}, "development": {"profile": "development"},
    "unknown refused": {"unknown": Route.REFUSED}, "denied": {"deny": ["CLIENT", "config get", "XREAD"]},
}


@pytest.fixture(scope="module")
def replies(any_upstream):
    """COMMAND as the server sends it in RESP2 and in RESP3."""
    with hello(any_upstream, 2) as resp2, hello(any_upstream, 3) as resp3:
        return ask(resp2, [b"COMMAND"])[0], ask(resp3, [b"COMMAND"])[0], ask(resp2, [b"COMMAND", b"COUNT"])[0]


def every_name(specs) -> list[list[bytes]]:
    """Each command, and each container with each of its subcommands, as arguments."""
    out = []
    for name, spec in specs.items():
        out.append([name.encode()])
        out.extend([name.encode(), sub.encode()] for sub in spec.subcommands)
    return out


def test_command_reply_parses_the_same_in_both_protocols(replies, any_upstream):
    resp2, resp3, count = replies
    specs = parse_command_reply(resp2)
    assert specs == parse_command_reply(resp3)
    assert len(specs) == count
    get, xread, info = specs["get"], specs["xread"], specs["client"].subcommands["info"]
    assert (get.arity, get.first, get.last, get.step) == (2, 1, 1, 1) and {"readonly", "fast"} <= get.flags
    assert "@read" in get.acl_categories and get.key_specs[0].begin == ("index", 1)
    assert xread.key_specs[0].begin == ("keyword", b"streams", 1) and xread.key_specs[0].find == ("range", -1, 1, 2)
    assert info.name == "client|info" and "nondeterministic_output" in info.tips
    assert specs["auth"].no_auth and specs["script"].subcommands["kill"].allow_busy and specs["set"].write
    assert specs["sync"].no_multi and specs["config"].subcommands["set"].admin and "movablekeys" in specs["eval"].flags


def test_every_command_is_classified_and_learning_agrees_with_the_static_fallback(replies, any_upstream):
    specs = parse_command_reply(replies[0])
    assert not sorted(set(specs) - KNOWN_COMMANDS), "commands the static fallback does not know: add them"
    unclassified = sorted(f"{container}|{sub}" for container in EXPLICIT_CONTAINERS
                          for sub in specs[container].subcommands if f"{container}|{sub}" not in OVERRIDES)
    assert not unclassified, "CLIENT subcommands without a class: add them to routes.OVERRIDES"
    names = every_name(specs)
    for variant, settings in VARIANTS.items():
        static = CommandTable(**settings)
        learned = static.learn(replies[1])
        seen = {b"|".join(args).decode(): (static.route(args), learned.route(args)) for args in names}
        disagreements = {(any_upstream.flavour, name): routes for name, routes in seen.items()
                         if routes[0] is not routes[1]}
        assert set(disagreements) == {k for k in EXPECTED_DISAGREEMENTS if k[0] == any_upstream.flavour}, \
            f"{variant}: {disagreements}"
    assert set(CommandTable().learn(replies[1]).classified()) >= {b"|".join(args).decode() for args in names}
    subcommands = sum(len(spec.subcommands) for spec in specs.values())
    print(f"{any_upstream.flavour}: {len(specs)} commands and {subcommands} subcommands, each classified by the "
          f"learned table and the static fallback alike under {len(VARIANTS)} configurations; "
          f"{len(EXPECTED_DISAGREEMENTS)} expected disagreements")


def test_flags_of_the_server_agree_with_the_routing_classes(replies):
    specs = parse_command_reply(replies[0])
    table = CommandTable().learn(replies[0])
    for args in every_name(specs):
        spec, route = table.spec(args), table.route(args)
        name = spec.name
        if spec.blocking and name not in ("xread", "xreadgroup", "wait", "waitaof"):
            assert route is Route.BLOCKING, name
        if "pubsub" in spec.flags and name.endswith("subscribe"):
            assert route is Route.PUBSUB, name
        if spec.admin and route is Route.SHARED:
            assert name in ("save", "bgsave", "bgrewriteaof", "pfselftest") or "|" in name, f"admin {name} is shared"
    for name in (b"xread", b"xreadgroup"):
        assert table.route([name]) is Route.SHARED
        assert table.route([name, b"COUNT", b"1", b"BLOCK", b"0", b"STREAMS", b"s", b"$"]) is Route.BLOCKING
    assert table.spec([b"client", b"info"]).name == "client|info" and table.label([b"CLIENT", b"Info"]) == \
        b"client|info"
    assert table.spec([b"client", b"no-such-subcommand"]) is None and table.spec([b"nosuchcommand"]) is None
    assert CommandTable().spec([b"get"]) is None  # nothing learned yet


def test_older_servers_reply_shapes_and_module_commands_are_understood(replies):
    """Redis 6 sends 7 fields per command, Redis 5 six; a module's commands are routed by their flags."""
    resp2 = replies[0]
    for fields in (6, 7):
        specs = parse_command_reply([entry[:fields] for entry in resp2])
        mset = specs["mset"]
        assert not mset.key_specs and not mset.subcommands and mset.keys([b"MSET", b"a", b"1", b"b", b"2"]) == [1, 3]
        assert specs["get"].keys([b"GET", b"k"]) == [1] and specs["eval"].keys([b"EVAL", b"s", b"1", b"k"]) == []
    modules = [[b"mod.pop", -3, [b"write", b"blocking"], 1, 1, 1], [b"mod.subscribe", -2, [b"pubsub"], 0, 0, 0],
               [b"mod.get", 2, [b"readonly"], 1, 1, 1], [b"mod.psubscribe", -2, [b"noscript"], 0, 0, 0]]
    learned = CommandTable().learn(list(resp2) + modules)
    assert [learned.route([m[0]]) for m in modules] == [Route.BLOCKING, Route.PUBSUB, Route.SHARED, Route.SHARED]
    assert b"mod.get" in learned.plain_shared and learned.spec([b"MOD.GET"]).keys([b"mod.get", b"k"]) == [1]
    strict = CommandTable(unknown=Route.REFUSED).learn(list(resp2) + modules)
    assert {strict.route([m[0]]) for m in modules} == {Route.REFUSED}
    assert strict.route([b"GET", b"k"]) is Route.SHARED and strict.route([b"never.heard"]) is Route.REFUSED
    assert strict.refusal([b"MOD.POP"]) == "ERR 'MOD.POP' is not served by the sidecar (commands.unknown is 'refused')"


@pytest.mark.parametrize("args,route", [
    ([b"GET", b"k"], Route.SHARED), ([b"PING"], Route.SHARED), ([b"auth", b"x"], Route.LOCAL),
    ([b"ECHO", b"x"], Route.SHARED), ([b"INFO"], Route.LOCAL), ([b"CLIENT", b"SETNAME", b"n"], Route.LOCAL),
    ([b"CLIENT", b"KILL", b"ID", b"1"], Route.LOCAL), ([b"client", b"UNBLOCK", b"1"], Route.LOCAL),
    ([b"client", b"tracking", b"on"], Route.SESSION), ([b"CLIENT", b"NO-EVICT", b"on"], Route.SESSION),
    ([b"CLIENT", b"HELP"], Route.SHARED), ([b"CLIENT", b"FROBNICATE"], Route.REFUSED), ([b"CLIENT"], Route.SHARED),
    ([b"CLIENT", b"PAUSE", b"10"], Route.REFUSED), ([b"multi"], Route.TRANSACTION), ([b"WATCH", b"k"],
                                                                                     Route.TRANSACTION),
    ([b"WAIT", b"1", b"0"], Route.WAIT), ([b"WAITAOF", b"1", b"0", b"0"], Route.WAIT), ([b"BLPOP", b"l", b"0"],
                                                                                       Route.BLOCKING),
    ([b"SSUBSCRIBE", b"a"], Route.PUBSUB), ([b"SHUTDOWN"], Route.REFUSED), ([b"MODULECMD.X"], Route.SHARED),
    ([b"MONITOR"], Route.SESSION), ([b"READONLY"], Route.SESSION), ([b"ASKING"], Route.SESSION),
    ([b"SCRIPT", b"KILL"], Route.CONTROL), ([b"FUNCTION", b"KILL"], Route.CONTROL),
    ([b"SCRIPT", b"DEBUG", b"yes"], Route.REFUSED), ([b"SCRIPT", b"LOAD", b"x"], Route.SHARED),
    ([b"DEBUG", b"SLEEP", b"0"], Route.REFUSED), ([b"REPLICAOF", b"NO", b"ONE"], Route.REFUSED),
])
def test_routes(args, route):
    assert CommandTable().route(args) is route


def test_development_profile_and_allow_open_the_development_commands():
    development = ([b"DEBUG", b"HELP"], [b"CLIENT", b"PAUSE", b"1"], [b"client", b"unpause"], [b"REPLICAOF", b"x"],
                   [b"SLAVEOF", b"x"], [b"SYNC"], [b"PSYNC", b"?", b"-1"], [b"REPLCONF", b"x"], [b"FAILOVER"],
                   [b"PFDEBUG", b"x"], [b"SCRIPT", b"DEBUG", b"no"])
    production, dev = CommandTable(), CommandTable(profile="development")
    assert {production.route(a) for a in development} == {Route.REFUSED}
    assert {dev.route(a) for a in development} == {Route.SESSION}
    assert dev.route([b"SHUTDOWN"]) is Route.REFUSED and dev.route([b"CLIENT", b"IMPORT-SOURCE", b"on"]) is \
        Route.REFUSED
    allowed = CommandTable(allow=["debug", "Client Pause", "SHUTDOWN"])
    assert [allowed.route(a) for a in ([b"debug", b"x"], [b"CLIENT", b"PAUSE", b"1"], [b"shutdown"], [b"SYNC"])] == \
        [Route.SESSION, Route.SESSION, Route.SESSION, Route.REFUSED]
    assert production.refusal([b"debug", b"x"]).endswith("(commands.profile: development or commands.allow opens it)")
    assert production.refusal([b"SHUTDOWN"]).endswith("(only commands.allow opens it)")
    cfg = config.build({"commands": {"profile": "development", "allow": ["SHUTDOWN"]}}, environ={})
    assert CommandTable.for_config(cfg.commands).route([b"SHUTDOWN", b"NOSAVE"]) is Route.SESSION
    for raw, error in (({"profile": "staging"}, "commands.profile: must be production or development"),
                       ({"allow": ["FLUSHALL"]}, "commands.allow: 'FLUSHALL' cannot be allowed"),
                       ({"allow": ["debug"], "deny": ["DEBUG"]}, "commands.allow: 'debug' is also in commands.deny")):
        with pytest.raises(config.ConfigError, match=error):
            config.build({"commands": raw}, environ={})


def test_fast_path_names_and_deny():
    table = CommandTable(deny=["KEYS", "config set", "OBJECT ENCODING"])
    fast = table.plain_shared
    assert {b"get", b"set", b"ping", b"xinfo", b"memory"} <= fast
    assert not {b"keys", b"config", b"acl", b"object", b"client", b"xread", b"publish", b"spublish", b"blpop",
                b"multi"} & fast
    assert table.route([b"OBJECT", b"ENCODING", b"k"]) is Route.REFUSED and table.route([b"OBJECT", b"FREQ", b"k"]) \
        is Route.SHARED
    assert table.refusal([b"object", b"encoding", b"k"]) == \
        "ERR 'OBJECT ENCODING' is disabled by the sidecar's configuration (commands.deny)"
    whole = CommandTable(deny=["client"])
    assert {whole.route([b"CLIENT", s]) for s in (b"SETNAME", b"KILL", b"TRACKING", b"X")} == {Route.REFUSED}


def test_deny_list_and_unknown_default(upstream, make_sidecar):
    cfg = sidecar_config(upstream, commands={"deny": ["FLUSHALL", "CONFIG SET", "keys"], "unknown": "refused"})
    sidecar = make_sidecar(cfg)
    with RawClient(sidecar.port) as c:
        replies = c.call([b"AUTH", UPSTREAM_PASSWORD.encode()], [b"FLUSHALL"], [b"config", b"set", b"x", b"y"],
                         [b"CONFIG", b"GET", b"maxmemory"], [b"KEYS", b"*"], [b"MYMODULE.CMD"], [b"SHUTDOWN"],
                         [b"CLIENT", b"FROBNICATE"])
    assert replies[1] == b"-ERR 'FLUSHALL' is disabled by the sidecar's configuration (commands.deny)\r\n"
    assert replies[2] == b"-ERR 'CONFIG SET' is disabled by the sidecar's configuration (commands.deny)\r\n"
    assert replies[3].startswith(b"*2\r\n")
    assert replies[4] == b"-ERR 'KEYS' is disabled by the sidecar's configuration (commands.deny)\r\n"
    assert replies[5] == b"-ERR 'MYMODULE.CMD' is not served by the sidecar (commands.unknown is 'refused')\r\n"
    assert replies[6].startswith(b"-ERR 'SHUTDOWN' is not allowed through the sidecar: it would stop the upstream")
    # a CLIENT subcommand the server does not know either: the server's own error (one it knows and the sidecar
    # does not would be refused: it acts on the connection)
    assert replies[7] == b"-ERR unknown subcommand 'FROBNICATE'. Try CLIENT HELP.\r\n"


def test_development_profile_runs_them_as_a_direct_connection_would(upstream, make_sidecar):
    sidecar = make_sidecar(sidecar_config(upstream, commands={"profile": "development"}))
    commands = ([b"DEBUG", b"HELP"], [b"SCRIPT", b"DEBUG", b"NO"], [b"PFDEBUG", b"GETREG", b"no-such-key"])
    with RawClient(sidecar.port) as proxied, RawClient(upstream.port) as direct:
        auth = [b"AUTH", UPSTREAM_PASSWORD.encode()]
        assert proxied.call(auth, *commands)[1:] == direct.call(auth, *commands)[1:]
