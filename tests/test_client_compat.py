"""The handshakes of today's Redis clients complete through the sidecar, exactly as they do against Redis.

The issue's bar: "The handshakes of redis-py 5-8, node-redis 4-6, ioredis 5-6, go-redis, Jedis, Lettuce all must
complete." Four layers, from the most real to the most exact:

1. Node clients, for real: node-redis 4/5/6 and ioredis 5/6 (npm aliases in tests/clients) connect per request with
   a password or an ACL user, RESP2 and RESP3, and the upstream sees no more connections than the sidecar's pools.
2. redis-py 5, 6, 7 and 8, for real, each in a cached venv of its own (.venv-clients/redisN), sync and asyncio,
   run against the upstream directly and through the sidecar; the two runs must agree.
3. Clients whose toolchains are not installable here (go-redis v9, Jedis, Lettuce, StackExchange.Redis, Predis,
   phpredis): their handshakes replayed byte for byte, pipelined as each client pipelines them (see
   /work/shared/reference/client-handshakes.md), with each reply checked against what that client needs back.
4. Redis's own error strings for the handshake commands, compared byte for byte with the upstream's.

Only real servers and real clients: loopback, ephemeral ports, bounded waits.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import pytest

from conftest import ACL_PASSWORD, ACL_USER, UPSTREAM_PASSWORD, sidecar_config
from harness.servers import EmbeddedServer, SidecarProcess
from proxy.wire.resp import encode_command
from wire import RawClient

pytestmark = pytest.mark.timeout(300)  # the first run creates the redis-py venvs (about 3 s each)

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = Path(__file__).resolve().parent / "clients"
VENV_CACHE = ROOT / ".venv-clients"
WAIT = 5.0  # seconds any single reply may take before the exchange gives up


@dataclass(frozen=True)
class Cred:
    """A client credential: the upstream's password as the default user, or the ACL user."""

    label: str
    user: str | None
    password: str

    @property
    def hello_user(self) -> str:
        """Clients that authenticate in HELLO name the default user explicitly (HELLO needs a user name)."""
        return self.user or "default"

    @property
    def auth_args(self) -> list[str]:
        return [self.user, self.password] if self.user else [self.password]

    def url(self, port: int) -> str:
        """redis://[user]:password@host:port, without a db: the callers add the one they want."""
        return f"redis://{quote(self.user or '', safe='')}:{quote(self.password, safe='')}@127.0.0.1:{port}"


DEFAULT = Cred("password", None, UPSTREAM_PASSWORD)
ACL = Cred("acl-user", ACL_USER, ACL_PASSWORD)


def connections_received(client) -> int:
    """The upstream's count of accepted connections since it started (INFO stats)."""
    return int(client.info("stats")["total_connections_received"])


# ======================================================================================================================
# RESP on the wire: replies parsed into typed values by a reader of this module's own, so a reply's type and
# content can be checked against what each client needs without trusting the sidecar's encoder
# ======================================================================================================================

@dataclass(frozen=True)
class Reply:
    """One reply as the server framed it: ``kind`` is its RESP type byte, ``raw`` its exact bytes."""

    kind: str
    value: object  # str for simple/bulk/verbatim/error/double/bignum, int, bool, None, list[Reply] for aggregates
    raw: bytes

    def text(self) -> str:
        return self.value if isinstance(self.value, str) else ""

    def as_map(self) -> dict[str, "Reply"] | None:
        """A RESP3 map, or a RESP2 flat array of pairs (HELLO 2), keyed by text; None if it is neither."""
        items = self.value if self.kind in "%*" and isinstance(self.value, list) else None
        if items is None or len(items) % 2:
            return None
        return {k.text(): v for k, v in zip(items[::2], items[1::2])}


def parse_reply(buf: bytes, pos: int = 0) -> tuple[Reply, int]:
    """Parse the complete reply starting at ``pos``; returns it and the offset where it ends."""
    eol = buf.index(b"\r\n", pos)
    kind, line, nxt = chr(buf[pos]), buf[pos + 1:eol], eol + 2
    if kind in "+-,(":
        return Reply(kind, line.decode(errors="replace"), buf[pos:nxt]), nxt
    if kind == ":":
        return Reply(kind, int(line), buf[pos:nxt]), nxt
    if kind == "_":
        return Reply(kind, None, buf[pos:nxt]), nxt
    if kind == "#":
        return Reply(kind, line == b"t", buf[pos:nxt]), nxt
    if kind in "$=!":
        size = int(line)
        if size < 0:
            return Reply(kind, None, buf[pos:nxt]), nxt
        if len(buf) < nxt + size + 2:
            raise ValueError(f"truncated reply: {buf[pos:pos + 80]!r}")
        body = buf[nxt:nxt + size].decode(errors="replace")
        return Reply(kind, body[4:] if kind == "=" else body, buf[pos:nxt + size + 2]), nxt + size + 2
    if kind in "*~>%|":
        count = int(line)
        if count < 0:
            return Reply(kind, None, buf[pos:nxt]), nxt
        items: list[Reply] = []
        end = nxt
        for _ in range(count * 2 if kind in "%|" else count):
            item, end = parse_reply(buf, end)
            items.append(item)
        if kind == "|":  # an attribute precedes the reply it annotates
            real, end = parse_reply(buf, end)
            return Reply(real.kind, real.value, buf[pos:end]), end
        return Reply(kind, items, buf[pos:end]), end
    raise ValueError(f"not a RESP reply at byte {pos}: {buf[pos:pos + 40]!r}")


def command(*args: str | bytes) -> bytes:
    """A command as clients send it: a multibulk array of bulk strings."""
    return encode_command([a.encode() if isinstance(a, str) else a for a in args])


CLOSED = Reply("closed", None, b"<connection closed>")
TIMEOUT = Reply("timeout", None, b"<no reply>")


def exchange(port: int, rounds: list[list[bytes]]) -> list[Reply]:
    """Send each round in one write, read one reply per command of it, then go on with the next round.

    A round is what a client writes before it waits: a pipelined client's whole handshake, or a single command for
    a client that waits for each reply. A closed connection or a reply that never comes ends the list, reported as
    CLOSED or TIMEOUT rather than raised, because both are outcomes to compare (QUIT closes on purpose).
    """
    replies: list[Reply] = []
    with RawClient(port, timeout=WAIT) as client:
        for commands in rounds:
            client.send(b"".join(commands))
            for _ in commands:
                try:
                    frame = client.read_reply()
                except ConnectionError:
                    return replies + [CLOSED]
                except TimeoutError:
                    return replies + [TIMEOUT]
                replies.append(parse_reply(frame)[0])
    return replies


def command_args(data: bytes) -> list[bytes]:
    """The arguments of one command's bytes (multibulk or inline), to know which command a reply answers."""
    if data[:1] != b"*":
        return data.strip().replace(b'"', b"").split()
    args, pos = [], data.index(b"\r\n") + 2
    for _ in range(int(data[1:pos - 2])):
        eol = data.index(b"\r\n", pos)
        size = int(data[pos + 1:eol])
        args.append(data[eol + 2:eol + 2 + size])
        pos = eol + 4 + size
    return args


def normalized(args: list[bytes], reply: Reply, modules: bool = True) -> bytes:
    """The reply's bytes with the fields that legitimately differ between two servers (or connections) masked.

    HELLO's ``id`` and CLIENT ID are connection ids: the sidecar numbers its own clients. INFO's text changes with
    every call (uptime, counters), so only its type is kept. ``modules=False`` also masks HELLO's module list (its
    last field), which no client reads, for comparisons about something else.
    """
    name = [a.lower() for a in args[:2]]
    if name[0] == b"hello":
        raw = re.sub(rb"(\$2\r\nid\r\n):\d+\r\n", rb"\1:<id>\r\n", reply.raw)
        return raw if modules else re.sub(rb"(\$7\r\nmodules\r\n).*\Z", rb"\1<modules>", raw, flags=re.S)
    if name == [b"client", b"id"] and reply.kind == ":":
        return b":<id>\r\n"
    if name[0] == b"info" and reply.kind in "$=":
        return f"<INFO as {reply.kind}>".encode()
    return reply.raw


def deliberate(args: list[bytes], direct: bytes, proxied: bytes) -> bool:
    """Differences the sidecar makes on purpose.

    CLIENT SETINFO: the sidecar answers it itself and keeps lib-name/lib-ver for its CLIENT INFO/LIST, as Redis
    >= 7.2 does, whatever the upstream's version. Redis 7.0 answers "unknown subcommand"; every client ignores
    that error, so +OK is at least as good for all of them, and it makes CLIENT LIST useful to operators.
    """
    setinfo = [a.lower() for a in args[:2]] == [b"client", b"setinfo"]
    return setinfo and proxied == b"+OK\r\n" and direct.startswith(b"-ERR unknown subcommand '%s'" % args[1])


def compare(rounds: list[list[bytes]], direct: list[Reply], proxied: list[Reply], modules: bool = True) -> list[str]:
    """Reply-by-reply differences between the upstream and the sidecar, after masking what legitimately differs."""
    commands = [command_args(data) for round_ in rounds for data in round_]
    diffs = []
    for i, (args, a, b) in enumerate(zip(commands, direct, proxied)):
        na, nb = normalized(args, a, modules), normalized(args, b, modules)
        if na != nb and not deliberate(args, a.raw, b.raw):
            diffs.append(f"#{i} {b' '.join(args)[:80]!r}:\n    upstream {na!r}\n    sidecar  {nb!r}")
    if len(direct) != len(proxied):
        diffs.append(f"reply count: upstream {len(direct)}, sidecar {len(proxied)}")
    return diffs


# ======================================================================================================================
# 1. Node clients, for real
# ======================================================================================================================

NODE_POOL_SIZE = 2
NODE_SEQUENTIAL, NODE_PARALLEL = 12, 8  # connect-per-request cycles; plus 2 longer connections (session, db 2)
NODE_LIB_NAME = {"redis4": "node-redis", "redis5": "node-redis", "redis6": "node-redis",
                 "ioredis5": "ioredis", "ioredis6": "ioredis"}
NODE_DEFAULT_RESP = {"redis4": 2, "redis5": 2, "redis6": 3, "ioredis5": 2, "ioredis6": 3}

# (client, protocol asked for (None: the client's default), credential)
NODE_RUNS = [
    ("redis4", None, DEFAULT), ("redis4", None, ACL),
    ("redis5", None, DEFAULT), ("redis5", 3, DEFAULT), ("redis5", 3, ACL),
    ("redis6", None, DEFAULT), ("redis6", 2, DEFAULT), ("redis6", None, ACL),
    ("ioredis5", None, DEFAULT), ("ioredis5", None, ACL),
    ("ioredis6", None, DEFAULT), ("ioredis6", 2, DEFAULT), ("ioredis6", None, ACL),
]


@pytest.fixture(scope="session")
def node_clients() -> Path:
    """tests/clients with its node_modules installed (npm ci on first use); skipped only without node and npm."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm are not installed: the real Node clients cannot run (./dev setup installs npm)")
    if not all((CLIENTS / "node_modules" / alias / "package.json").exists() for alias in NODE_LIB_NAME):
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=CLIENTS,
                              capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, f"npm ci in tests/clients failed:\n{done.stderr[-3000:]}"
    return CLIENTS


def run_node_client(clients: Path, client: str, url: str, resp: int | None, prefix: str,
                    cluster: bool = False) -> dict:
    """Run tests/clients/compat.js for one client and return what it printed (its own 20 s limit applies);
    ``cluster``: the sidecar fronts a Redis Cluster (no SELECT 2, the chatroom's pattern instead)."""
    config = {"client": client, "url": url, "resp": resp, "name": "compat-test", "prefix": prefix,
              "sequential": NODE_SEQUENTIAL, "parallel": NODE_PARALLEL, "cluster": cluster}
    done = subprocess.run(["node", str(clients / "compat.js"), json.dumps(config)], cwd=clients,
                          capture_output=True, text=True, timeout=40)
    lines = done.stdout.strip().splitlines()
    assert lines, f"{client} printed nothing (exit {done.returncode}):\n{done.stderr[-3000:]}"
    return json.loads(lines[-1])


def node_connection_bound(cred: Cred, resp: int) -> int:
    """How many upstream connections one run may open: at most ``pool.size`` per (credential, db, protocol).

    The run uses db 0 and db 2 under its credential and protocol; the sidecar also prewarms the default
    credential's RESP2 db-0 pool and one idle lease at start, and checks a new ACL credential upstream once.
    """
    keys = {(cred.label, 0, resp), (cred.label, 2, resp), (DEFAULT.label, 0, 2)}
    return NODE_POOL_SIZE * len(keys) + 1 + (1 if cred.user else 0)


@pytest.mark.parametrize("client,resp,cred", NODE_RUNS,
                         ids=[f"{c}-resp{r or 'default'}-{cr.label}" for c, r, cr in NODE_RUNS])
def test_node_client_through_sidecar(node_clients, upstream, make_sidecar, client, resp, cred):
    """A real Node client connects per request, pipelines, selects db 2, and the upstream sees only the pools."""
    probe = upstream.client()
    before = connections_received(probe)
    sidecar = make_sidecar(sidecar_config(upstream, pool={"size": NODE_POOL_SIZE}))
    prefix = f"compat:node:{client}:{uuid.uuid4().hex[:8]}"
    out = run_node_client(node_clients, client, cred.url(sidecar.port), resp, prefix)
    opened = connections_received(probe) - before
    probe.close()

    assert out["errors"] == [], f"{client} ({out.get('version')}) reported errors through the sidecar"
    total = NODE_SEQUENTIAL + NODE_PARALLEL
    assert out["sequential"] == [f"v{i}" for i in range(NODE_SEQUENTIAL)]
    assert out["parallel"] == [f"v{i}" for i in range(NODE_SEQUENTIAL, total)]
    assert out["pipeline"] == ["OK", "piped", total + 1]
    assert out["name"] == "compat-test"
    assert (out["ping"], out["echo"]) == ("PONG", "hello sidecar")
    assert out["db2"] == out["db2ByUrl"] == "in db 2"
    assert upstream.client(db=2).get(f"{prefix}:db2") == b"in db 2"
    expected_resp = resp or NODE_DEFAULT_RESP[client]
    info = dict(field.split("=", 1) for field in out["info"].split())
    assert (info["name"], info["user"], info["resp"]) == ("compat-test", cred.user or "default", str(expected_resp))
    assert info["lib-name"] == NODE_LIB_NAME[client]  # CLIENT SETINFO reached the sidecar

    bound = node_connection_bound(cred, expected_resp)
    assert NODE_SEQUENTIAL + NODE_PARALLEL + 2 > bound  # the run makes more connections than the pools may hold
    assert opened <= bound, f"the upstream accepted {opened} connections; the pools allow {bound}"


# ======================================================================================================================
# 2. redis-py 5, 6, 7 and 8, for real
# ======================================================================================================================

REDIS_PY_VARIANTS = ["5", "6", "7", "8", "project-venv"]  # project-venv: the project's own redis-py, with hiredis
REDIS_PY_SCRIPT = CLIENTS / "redispy_compat.py"


def client_venv(major: int) -> Path:
    """The Python of a cached venv (.venv-clients/redisN) holding only the newest redis-py N.x, made on first use.

    Built in a temporary directory and renamed into place, so an interrupted run never leaves a half-made venv.
    Skips the variant when the package index has no N.x at all.
    """
    home = VENV_CACHE / f"redis{major}"
    python = home / "bin" / "python"
    spec = f"redis>={major},<{major + 1}"
    want = f"{spec} python {sys.version.split()[0]}\n"
    stamp = home / ".stamp"
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    VENV_CACHE.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".redis{major}-", dir=VENV_CACHE))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp)], check=True, capture_output=True)
        done = subprocess.run([sys.executable, "-m", "pip", "--python", str(tmp / "bin" / "python"), "install",
                               "-q", "--disable-pip-version-check", spec], capture_output=True, text=True, timeout=240)
        if done.returncode != 0:
            if "No matching distribution" in done.stderr:
                pytest.skip(f"the package index has no redis-py {major}.x")
            pytest.fail(f"pip install {spec} failed:\n{done.stderr[-3000:]}")
        (tmp / ".stamp").write_text(want)
        if home.exists():
            shutil.rmtree(home)
        os.replace(tmp, home)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return python


@pytest.fixture(scope="session", params=REDIS_PY_VARIANTS)
def redis_py_python(request) -> str:
    """The interpreter of one redis-py variant: a cached venv per major (pure-Python parser), or the project's."""
    if request.param == "project-venv":
        return sys.executable
    return str(client_venv(int(request.param)))


def run_redis_py(python: str, port: int, prefix: str) -> dict:
    config = {"host": "127.0.0.1", "port": port, "password": UPSTREAM_PASSWORD, "user": ACL_USER,
              "user_password": ACL_PASSWORD, "prefix": prefix, "rounds": 3}
    done = subprocess.run([python, str(REDIS_PY_SCRIPT), json.dumps(config)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 0 and done.stdout.strip(), f"redispy_compat.py failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def redis_py_runs(redis_py_python, upstream, sidecar) -> tuple[dict, dict]:
    """The same redis-py script run against the upstream directly and through the sidecar (fresh key prefixes)."""
    tag = uuid.uuid4().hex[:8]
    direct = run_redis_py(redis_py_python, upstream.port, f"compat:py:{tag}:direct")
    proxied = run_redis_py(redis_py_python, sidecar.port, f"compat:py:{tag}:sidecar")
    return direct, proxied


def errors_of(run: dict) -> dict[str, str]:
    return {case: out["traceback"] for case, out in run["cases"].items() if "error" in out}


def comparable(run: dict) -> dict:
    """A run without what legitimately differs: lib-name/lib-ver (Redis 7.0 cannot store them; see below) and
    the outcome of redis-py's CLIENT INFO parser (checked on its own in test_redis_py_client_info_parses)."""
    cases = {}
    for case, out in run["cases"].items():
        out = {k: v for k, v in out.items() if k != "client_info"}
        if "info" in out:
            out["info"] = {k: v for k, v in out["info"].items() if k not in ("lib-name", "lib-ver")}
        cases[case] = out
    return cases


def test_redis_py_handshakes(redis_py_runs):
    """Every redis-py case (sync/asyncio x default/RESP2/RESP3 x password/ACL user) behaves as against Redis."""
    direct, proxied = redis_py_runs
    assert errors_of(direct) == {}, "the script itself fails against the upstream"
    assert errors_of(proxied) == {}, f"redis-py {proxied['version']} raised through the sidecar"
    assert comparable(proxied) == comparable(direct)
    assert proxied["logs"] == direct["logs"]
    for case, out in proxied["cases"].items():
        # The default lib_name reached the sidecar through CLIENT SETINFO (the upstream, Redis 7.0, has no SETINFO).
        assert (out["info"]["lib-name"], out["info"]["lib-ver"]) == ("redis-py", proxied["version"]), case


def test_redis_py_client_info_parses(redis_py_runs):
    """redis-py's own ``client_info()`` parser accepts the sidecar's CLIENT INFO line, as it accepts Redis's."""
    direct, proxied = redis_py_runs
    assert {out["client_info"] for out in direct["cases"].values() if "client_info" in out} == {"ok"}
    parsed = {case: out["client_info"] for case, out in proxied["cases"].items() if "client_info" in out}
    assert parsed and set(parsed.values()) == {"ok"}, parsed


# ======================================================================================================================
# 3. Replayed handshakes: go-redis, Jedis, Lettuce, StackExchange.Redis, Predis, phpredis
# ======================================================================================================================

Need = Callable[[Reply], str | None]  # None when the client accepts the reply, else why it would fail


def need_ok(reply: Reply) -> str | None:
    return None if (reply.kind, reply.value) == ("+", "OK") else "the client needs +OK"


def need_starts_ok(reply: Reply) -> str | None:
    return None if reply.raw.startswith(b"+OK") else "phpredis compares the reply's first bytes with +OK"


def need_any(reply: Reply) -> str | None:
    """Replies the client ignores or tolerates as errors (SETINFO, MAINT_NOTIFICATIONS, ...): any RESP reply."""
    return None if reply.kind not in ("closed", "timeout") else f"no reply ({reply.raw.decode()})"


def need_hello(proto: int) -> Need:
    """HELLO must parse as a map (RESP2: flat pairs) whose proto is the integer asked for and whose id is an
    integer (Lettuce casts it to Long); server, version, mode and role are strings."""
    def check(reply: Reply) -> str | None:
        fields = reply.as_map()
        if fields is None or reply.kind != ("%" if proto == 3 else "*"):
            return f"HELLO {proto} must answer a {'RESP3 map' if proto == 3 else 'flat array of pairs'}"
        if (fields.get("proto") or CLOSED).value != proto or (fields.get("proto") or CLOSED).kind != ":":
            return f"proto must be the integer {proto}"
        if (fields.get("id") or CLOSED).kind != ":":
            return "id must be an integer"
        if any((fields.get(k) or CLOSED).kind not in "$+" for k in ("server", "version", "mode", "role")):
            return "server, version, mode and role must be strings"
        return None
    return check


def need_integer(reply: Reply) -> str | None:
    return None if reply.kind == ":" else "an integer is needed"


def need_echo(payload: str) -> Need:
    def check(reply: Reply) -> str | None:
        return None if reply.kind == "$" and reply.value == payload else f"ECHO must return {payload!r} exactly"
    return check


def need_tolerated(kinds: str) -> Need:
    """A reply of one of ``kinds``, or an error (StackExchange.Redis's auto-configuration tolerates errors)."""
    def check(reply: Reply) -> str | None:
        return None if reply.kind in kinds + "-" else f"expected one of {kinds!r} or an error, got {reply.kind!r}"
    return check


def need_info(reply: Reply) -> str | None:
    """INFO text the client can read its server facts from (StackExchange.Redis: the version; ioredis: loading)."""
    if reply.kind not in "$=" or "redis_version:" not in reply.text() or "loading:1" in reply.text():
        return "INFO must be text with redis_version and without loading:1"
    return None


def need_bulk(value: str) -> Need:
    def check(reply: Reply) -> str | None:
        return None if reply.kind == "$" and reply.value == value else f"expected the bulk string {value!r}"
    return check


Step = tuple[list[str], Need]  # one command and what the client needs back
Replay = Callable[[Cred, str], list[list[Step]]]  # (credential, key) -> rounds of pipelined commands

SE_REDIS_TRACER = uuid.UUID(int=0x5e4ed15).hex  # StackExchange.Redis ECHOes its multiplexer id (32 hex digits)
PHPREDIS_PROBE = "phpredis_pool:127.0.0.1:6380:1732550000:1804289383"


def app_commands(key: str) -> list[list[Step]]:
    """What the application then does, one round trip each: the connection must be usable after the handshake."""
    return [[(["SET", key, "v"], need_ok)], [(["GET", key], need_bulk("v"))]]


def go_redis(proto: int) -> Replay:
    """go-redis v9 (redis.go initConn): HELLO alone, then SELECT + SETNAME pipelined, then on RESP3 the
    maintenance-notifications opt-in (an error turns it off in the default auto mode), then both SETINFOs
    pipelined (errors ignored). Command names are lower case, as go-redis writes them."""
    def rounds(cred: Cred, key: str) -> list[list[Step]]:
        out = [[(["hello", str(proto), "auth", cred.hello_user, cred.password, "setname", "app"], need_hello(proto))],
               [(["select", "2"], need_ok), (["client", "setname", "app"], need_ok)]]
        if proto == 3:
            out.append([(["client", "maint_notifications", "on", "moving-endpoint-type", "internal-ip"], need_any)])
        out.append([(["client", "setinfo", "LIB-NAME", "go-redis(,go1.24.4)"], need_any),
                    (["client", "setinfo", "LIB-VER", "9.17.2"], need_any)])
        return out + app_commands(key)
    return rounds


def jedis(proto: int | None, version: str, maint: bool) -> Replay:
    """Jedis 5-7 (Connection.initializeFromClientConfig): AUTH (or HELLO 3 AUTH when a user is configured, else
    AUTH then HELLO 3), then SETNAME + both SETINFOs sent together and read with getMany (errors collected, not
    thrown), Jedis 7 on RESP3 the maintenance opt-in (auto: errors ignored), then SELECT, whose error throws."""
    def rounds(cred: Cred, key: str) -> list[list[Step]]:
        if proto == 3 and cred.user:
            out = [[(["HELLO", "3", "AUTH", cred.user, cred.password], need_hello(3))]]
        else:
            out = [[(["AUTH", *cred.auth_args], need_ok)]]
            if proto == 3:
                out.append([(["HELLO", "3"], need_hello(3))])
        out.append([(["CLIENT", "SETNAME", "app"], need_any), (["CLIENT", "SETINFO", "lib-name", "jedis"], need_any),
                    (["CLIENT", "SETINFO", "lib-ver", version], need_any)])
        if maint:
            out.append([(["CLIENT", "MAINT_NOTIFICATIONS", "ON", "moving-endpoint-type", "internal-ip"], need_any)])
        out.append([(["SELECT", "2"], need_ok)])
        return out + app_commands(key)
    return rounds


def lettuce(version: str) -> Replay:
    """Lettuce 6/7 (RedisHandshake): HELLO 3 AUTH ... SETNAME alone (id cast to Long), then SELECT (failure
    fails the connection), then both SETINFOs and then the maintenance opt-in, fire and forget."""
    def rounds(cred: Cred, key: str) -> list[list[Step]]:
        return [[(["HELLO", "3", "AUTH", cred.hello_user, cred.password, "SETNAME", "app"], need_hello(3))],
                [(["SELECT", "2"], need_ok)],
                [(["CLIENT", "SETINFO", "lib-name", "Lettuce"], need_any),
                 (["CLIENT", "SETINFO", "lib-ver", version], need_any)],
                [(["CLIENT", "MAINT_NOTIFICATIONS", "on", "moving-endpoint-type", "internal-ip"], need_any)],
                *app_commands(key)]
    return rounds


def stackexchange(cred: Cred, key: str) -> list[list[Step]]:
    """StackExchange.Redis (ServerEndPoint.HandshakeAsync + AutoConfigureAsync): everything in one flush, AUTH
    first and HELLO bare after it; the tracer ECHO must come back exactly or the connection never completes. The
    auto-configuration commands go to the upstream through the sidecar; their errors are tolerated."""
    return [[(["AUTH", *cred.auth_args], need_ok),
             (["HELLO", "3"], need_hello(3)),
             (["CLIENT", "SETNAME", "app"], need_any),
             (["CLIENT", "SETINFO", "lib-name", "SE.Redis"], need_any),
             (["CLIENT", "SETINFO", "lib-ver", "2.9.32"], need_any),
             (["CLIENT", "ID"], need_integer),
             (["CONFIG", "GET", "timeout"], need_tolerated("%*")),
             (["CONFIG", "GET", "replica-read-only"], need_tolerated("%*")),
             (["CONFIG", "GET", "databases"], need_tolerated("%*")),
             (["INFO"], need_info),
             (["CLUSTER", "NODES"], need_tolerated("$=")),
             (["GET", "__Booksleeve_TieBreak"], need_tolerated("_$")),
             (["ECHO", SE_REDIS_TRACER], need_echo(SE_REDIS_TRACER))],
            *app_commands(key)]


def predis(proto: int) -> Replay:
    """Predis 3: HELLO (with AUTH and SETNAME), both SETINFOs (errors ignored) and SELECT, pipelined in one write."""
    def rounds(cred: Cred, key: str) -> list[list[Step]]:
        return [[(["HELLO", str(proto), "AUTH", cred.hello_user, cred.password, "SETNAME", "predis"],
                  need_hello(proto)),
                 (["CLIENT", "SETINFO", "LIB-NAME", "predis"], need_any),
                 (["CLIENT", "SETINFO", "LIB-VER", "3.2.0"], need_any),
                 (["SELECT", "2"], need_ok)],
                *app_commands(key)]
    return rounds


def phpredis(persistent: bool) -> Replay:
    """phpredis 6: AUTH then SELECT, one round trip each, replies compared with "+OK" by their first bytes; a
    reused persistent connection is probed with AUTH and ECHO pipelined (the ECHO must come back exactly)."""
    def rounds(cred: Cred, key: str) -> list[list[Step]]:
        if persistent:
            return [[(["AUTH", *cred.auth_args], need_starts_ok),
                     (["ECHO", PHPREDIS_PROBE], need_echo(PHPREDIS_PROBE))], *app_commands(key)]
        return [[(["AUTH", *cred.auth_args], need_starts_ok)], [(["SELECT", "2"], need_starts_ok)], *app_commands(key)]
    return rounds


REPLAYS: dict[str, Replay] = {
    "go-redis-v9-resp3": go_redis(3),
    "go-redis-v9-resp2": go_redis(2),
    "jedis-5-resp2": jedis(None, "5.2.0", maint=False),
    "jedis-6-resp3": jedis(3, "6.2.0", maint=False),
    "jedis-7-resp3": jedis(3, "7.1.0", maint=True),
    "lettuce-6": lettuce("6.8.1.RELEASE"),
    "lettuce-7": lettuce("7.0.0.RELEASE"),
    "stackexchange-redis": stackexchange,
    "predis-3-resp2": predis(2),
    "predis-3-resp3": predis(3),
    "phpredis-6": phpredis(persistent=False),
    "phpredis-6-persistent": phpredis(persistent=True),
}


@pytest.fixture(scope="module")
def any_sidecar(any_upstream):
    """A passthrough sidecar in front of each upstream flavour (redis and valkey)."""
    with SidecarProcess(config=sidecar_config(any_upstream)) as proc:
        yield proc


def run_replay(port: int, steps: list[list[Step]]) -> list[Reply]:
    return exchange(port, [[command(*args) for args, _ in round_] for round_ in steps])


@pytest.mark.parametrize("cred", [DEFAULT, ACL], ids=lambda c: c.label)
@pytest.mark.parametrize("client", sorted(REPLAYS))
def test_replayed_handshake(any_upstream, any_sidecar, client, cred):
    """The client's exact handshake bytes, pipelined as it pipelines them, get every reply it needs back."""
    key = f"compat:replay:{client}:{cred.label}:{uuid.uuid4().hex[:8]}"
    steps = REPLAYS[client](cred, key)
    flat = [(args, need) for round_ in steps for args, need in round_]
    direct = run_replay(any_upstream.port, steps)
    proxied = run_replay(any_sidecar.port, steps)

    unmet = [f"{' '.join(args)[:60]!r}: {why}; got {reply.raw[:200]!r}"
             for (args, need), reply in zip(flat, proxied) if (why := need(reply))]
    assert len(proxied) == len(flat) and not unmet, "\n".join(unmet) or f"only {len(proxied)} replies"
    # The same bytes against the upstream itself satisfy the same needs: the replay is a faithful one.
    assert [need(r) for (_, need), r in zip(flat, direct)] == [None] * len(flat)
    rounds = [[command(*args) for args, _ in round_] for round_ in steps]
    # HELLO's module list is compared in test_handshake_replies_match_upstream (a known mismatch on Valkey).
    assert compare(rounds, direct, proxied, modules=False) == []


# ======================================================================================================================
# 4. Redis's error strings for the handshake commands, byte for byte
# ======================================================================================================================

def preauth_cases(cred: Cred) -> dict[str, list[list[bytes]]]:
    """Connections that have not authenticated yet: only AUTH, HELLO, QUIT and RESET run."""
    return {
        "auth-no-args": [[command("AUTH")]],
        "auth-bad-password": [[command("AUTH", *(cred.auth_args[:-1] + ["not-the-password"]))], [command("PING")]],
        "auth-empty-password": [[command("AUTH", "")]],
        "auth-three-args": [[command("AUTH", "a", "b", "c")]],
        "hello-1": [[command("HELLO", "1")]],
        "hello-4": [[command("HELLO", "4")]],
        "hello-abc": [[command("HELLO", "abc")]],
        "hello-3-auth-wrong": [[command("HELLO", "3", "AUTH", cred.hello_user, "not-the-password")],
                               [command("PING")]],
        "hello-auth-missing-password": [[command("HELLO", "3", "AUTH", cred.hello_user)]],
        "hello-bad-option": [[command("HELLO", "3", "AUTH", cred.hello_user, cred.password, "FOO")]],
        "hello-without-auth": [[command("HELLO", "3")], [command("HELLO")]],
        "hello-setname-space": [[command("HELLO", "3", "AUTH", cred.hello_user, cred.password, "SETNAME", "a b")],
                                [command("PING")]],
        "commands-before-auth": [[command("GET", "k"), command("PING"), command("SELECT", "1"),
                                  command("CLIENT", "SETNAME", "x"), command("ECHO", "x"), b"PING\r\n"]],
        "quit-before-auth": [[command("QUIT")], [command("PING")]],
        "reset-before-auth": [[command("RESET")], [command("PING")]],
    }


def authed_cases(cred: Cred) -> dict[str, list[list[bytes]]]:
    """Connections authenticated with AUTH (or HELLO ... AUTH) first, as every client's handshake does."""
    auth = [command("AUTH", *cred.auth_args)]
    hello3 = [command("HELLO", "3", "AUTH", cred.hello_user, cred.password)]
    return {
        "auth-ok-then-wrong": [auth, [command("AUTH", *(cred.auth_args[:-1] + ["wrong"])),
                                      command("GET", "compat:absent")]],
        "hello-after-auth": [auth, [command("HELLO"), command("HELLO", "2", "SETNAME", "n"),
                                    command("CLIENT", "GETNAME")]],
        "hello-modules": [auth, [command("HELLO", "3")]],
        "hello-3-then-2": [hello3, [command("CLIENT", "GETNAME"), command("GET", "compat:absent"),
                                    command("HELLO", "2"), command("GET", "compat:absent")]],
        "select": [auth, [command("SELECT", "16"), command("SELECT", "abc"), command("SELECT", "-1"),
                          command("SELECT"), command("SELECT", "1", "2"), command("SELECT", "15")]],
        "ping-echo": [auth, [command("PING"), command("PING", "hi"), command("PING", "a", "b"),
                             command("ECHO", "hello world"), command("ECHO"), command("ECHO", "a", "b")]],
        "client-names": [auth, [command("CLIENT", "SETNAME", "a b"), command("CLIENT", "SETNAME", "a\nb"),
                                command("CLIENT", "GETNAME"), command("CLIENT", "SETNAME", "ok"),
                                command("CLIENT", "GETNAME"), command("CLIENT", "SETNAME"),
                                command("CLIENT", "GETNAME", "x"), command("CLIENT", "SETNAME", ""),
                                command("CLIENT", "GETNAME")]],
        "client-getname-resp3": [hello3, [command("CLIENT", "GETNAME"), command("CLIENT", "ID")]],
        "client-setinfo": [auth, [command("CLIENT", "SETINFO", "LIB-NAME", "x"),
                                  command("CLIENT", "SETINFO", "lib-ver", "1.0")]],
        "client-maint-notifications": [auth, [command("CLIENT", "maint_notifications", "on"),
                                              command("CLIENT", "MAINT_NOTIFICATIONS", "ON", "moving-endpoint-type",
                                                      "internal-ip")]],
        "inline": [[b"AUTH " + " ".join(cred.auth_args).encode() + b"\r\n"],
                   [b"PING\r\n", b'ECHO "hello world"\r\n', b"PING x\r\n", b"SELECT 16\r\n"]],
        "quit": [auth, [command("QUIT")], [command("PING")]],
        "reset": [auth, [command("SELECT", "3"), command("CLIENT", "SETNAME", "n"), command("RESET"),
                         command("GET", "compat:absent"), command("RESET", "x")]],
        "reset-from-resp3": [hello3, [command("RESET"), command("GET", "compat:absent")]],
        "unknown-command": [auth, [command("FOOBAR", "a", "b")]],
    }


ERROR_CASES = sorted(set(preauth_cases(DEFAULT)) | set(authed_cases(DEFAULT)))


@pytest.mark.parametrize("cred", [DEFAULT, ACL], ids=lambda c: c.label)
@pytest.mark.parametrize("case", ERROR_CASES)
def test_handshake_replies_match_upstream(any_upstream: EmbeddedServer, any_sidecar, case, cred):
    """Same bytes in, same bytes out: error strings, replies and connection state, upstream versus sidecar."""
    rounds = {**preauth_cases(cred), **authed_cases(cred)}[case]
    direct = exchange(any_upstream.port, rounds)
    proxied = exchange(any_sidecar.port, rounds)
    assert TIMEOUT not in direct, f"the upstream left a command unanswered: {direct}"
    # HELLO's module list is compared by its own case, so that one known difference hides nothing else.
    assert compare(rounds, direct, proxied, modules=case == "hello-modules") == []
