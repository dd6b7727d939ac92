"""The command table classifies every command the running servers know, and sends each where it is safe."""

from __future__ import annotations

import pytest

from proxy.commands.table import ALL_COMMANDS, CommandTable, Route


def server_commands(server) -> dict[str, dict]:
    """COMMAND's view: name -> {flags, subcommands}, straight from the running server."""
    conn = server.client().connection_pool.get_connection()
    conn.send_command("COMMAND")
    out = {}
    for entry in conn.read_response():
        text = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731
        subs = [text(s[0]).split("|", 1)[1] for s in (entry[9] if len(entry) > 9 else [])]
        out[text(entry[0])] = {"flags": {text(f) for f in entry[2]}, "subs": subs}
    return out


def test_no_command_of_the_running_server_is_unclassified(any_upstream):
    commands = server_commands(any_upstream)
    count = any_upstream.client().command_count()
    assert len(commands) == count
    unknown = sorted(set(commands) - ALL_COMMANDS)
    assert not unknown, f"{any_upstream.flavour} knows commands the table does not: {unknown}"
    strict = CommandTable(unknown=Route.REFUSED)
    classified = strict.classified()
    subcommands = sum(len(c["subs"]) for c in commands.values())
    print(f"{any_upstream.flavour}: COMMAND COUNT {count}, {subcommands} subcommands; table classifies "
          f"{len(ALL_COMMANDS)} commands and {len(classified) - len(ALL_COMMANDS)} subcommand overrides")


def test_flags_of_the_server_agree_with_the_routing_classes(any_upstream):
    table = CommandTable()
    for name, info in server_commands(any_upstream).items():
        route = table.route([name.encode()])
        if "blocking" in info["flags"] and name not in ("xread", "xreadgroup"):
            assert route is Route.BLOCKING, name
        if "pubsub" in info["flags"] and "subscribe" in name:
            assert route is Route.PUBSUB, name
        if name in ("xread", "xreadgroup"):
            assert route is Route.SHARED
            assert table.route([name.encode(), b"COUNT", b"1", b"BLOCK", b"0", b"STREAMS", b"s", b"$"]) \
                is Route.BLOCKING
        if "admin" in info["flags"] and route is Route.SHARED:
            assert name in ("save", "bgsave", "bgrewriteaof", "pfselftest"), f"admin command {name} is shared"


@pytest.mark.parametrize("args,route", [
    ([b"GET", b"k"], Route.SHARED), ([b"auth", b"x"], Route.LOCAL), ([b"CLIENT", b"SETNAME", b"n"], Route.LOCAL),
    ([b"CLIENT", b"KILL", b"ID", b"1"], Route.REFUSED), ([b"client", b"tracking", b"on"], Route.SESSION),
    ([b"CLIENT", b"NO-EVICT", b"on"], Route.SESSION), ([b"multi"], Route.TRANSACTION), ([b"WAIT", b"1", b"0"],
                                                                                        Route.BLOCKING),
    ([b"SSUBSCRIBE", b"a"], Route.PUBSUB), ([b"SHUTDOWN"], Route.REFUSED), ([b"MODULECMD.X"], Route.SHARED),
    ([b"SCRIPT", b"DEBUG", b"yes"], Route.REFUSED), ([b"SCRIPT", b"LOAD", b"x"], Route.SHARED),
])
def test_routes(args, route):
    assert CommandTable().route(args) is route


def test_deny_list_and_unknown_default(upstream, make_sidecar):
    from conftest import UPSTREAM_PASSWORD, sidecar_config
    from wire import RawClient

    cfg = sidecar_config(upstream, commands={"deny": ["FLUSHALL", "CONFIG SET", "keys"], "unknown": "refused"})
    sidecar = make_sidecar(cfg)
    with RawClient(sidecar.port) as c:
        replies = c.call([b"AUTH", UPSTREAM_PASSWORD.encode()], [b"FLUSHALL"], [b"config", b"set", b"x", b"y"],
                         [b"CONFIG", b"GET", b"maxmemory"], [b"KEYS", b"*"], [b"MYMODULE.CMD"], [b"SHUTDOWN"])
    assert replies[1] == b"-ERR 'FLUSHALL' is disabled by the sidecar's configuration (commands.deny)\r\n"
    assert replies[2] == b"-ERR 'CONFIG SET' is disabled by the sidecar's configuration (commands.deny)\r\n"
    assert replies[3].startswith(b"*2\r\n")
    assert replies[4] == b"-ERR 'KEYS' is disabled by the sidecar's configuration (commands.deny)\r\n"
    assert replies[5] == b"-ERR 'MYMODULE.CMD' is not served by the sidecar (commands.unknown is 'refused')\r\n"
    assert replies[6].startswith(b"-ERR 'SHUTDOWN' is not allowed through the sidecar: it would stop the upstream")
