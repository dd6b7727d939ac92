"""Real clients through the sidecar: redis-py (sync, asyncio, RESP2, RESP3), redis-cli, redis-benchmark.

Includes the article's evidence made a test: after many connect-per-request clients, the upstream has seen only the
pool's connections and AUTH/HELLO calls.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time

import pytest
import redis
import redis.asyncio as aioredis

from conftest import ACL_PASSWORD, ACL_USER, UPSTREAM_PASSWORD, sidecar_config
from harness.servers import SidecarProcess, free_port
from wire import RawClient


def upstream_counts(server) -> tuple[int, int]:
    """(connections received, AUTH + HELLO calls) so far, as the upstream's INFO reports them."""
    c = server.client()
    try:
        stats = c.info("stats")
        commands = c.info("commandstats")
        calls = sum(commands.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("auth", "hello"))
        return stats["total_connections_received"], calls
    finally:
        c.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_connect_per_request_reaches_upstream_through_pool_connections_only(upstream, protocol):
    with SidecarProcess(config=sidecar_config(upstream, pool={"size": 4})) as sidecar:
        before = upstream_counts(upstream)
        for i in range(300):  # the legacy app: connect, authenticate, SELECT, one command, close
            client = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, db=1, protocol=protocol,
                                 client_name=f"req{i}")
            assert client.set(f"cpr:{i}", i)
            client.close()
        after = upstream_counts(upstream)
    conns, auths = after[0] - before[0], after[1] - before[1] - 1  # the INFO client's own AUTH
    # the prewarmed db-0 shared + lease connections, then one connection (and one HELLO) per pool member used,
    # and one reused connection for the credential check and the permission probes (one per locally answered
    # command: SELECT, CLIENT SETNAME, CLIENT SETINFO), each with an AUTH of its own
    assert conns <= 4 + 2 + 1 + 1, conns
    assert auths <= conns + 4
    assert upstream.client(db=1).get("cpr:299") == b"299"


def test_asyncio_clients_concurrently_in_both_protocols(upstream, sidecar):
    async def worker(i: int) -> list:
        client = aioredis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, protocol=2 + i % 2, db=i % 3)
        try:
            results = []
            for j in range(30):
                pipe = client.pipeline(transaction=False)
                pipe.set(f"a:{i}", j).incr(f"c:{i}").get(f"a:{i}").zadd(f"z:{i}", {"m": j + 0.5}).zscore(f"z:{i}", "m")
                results.append(await pipe.execute())
            return results
        finally:
            await client.aclose()

    async def main() -> list:
        return await asyncio.gather(*(worker(i) for i in range(40)))

    for i, results in enumerate(asyncio.run(main())):
        for j, (ok, count, value, _added, score) in enumerate(results):
            assert (ok, count, value, score) == (True, j + 1, str(j).encode(), j + 0.5)


def test_acl_user_commands_run_with_that_users_permissions(upstream):
    admin = upstream.client()
    admin.execute_command("ACL", "SETUSER", "reader", "on", ">reader-pw", "~*", "+get", "+ping", "+hello", "+auth")
    with SidecarProcess(config=sidecar_config(upstream)) as sidecar:
        reader = redis.Redis(port=sidecar.port, username="reader", password="reader-pw")
        assert reader.get("anything") is None
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.set("anything", "x")  # the upstream's ACL applies, not the sidecar's own full-rights login
        app = redis.Redis(port=sidecar.port, username=ACL_USER, password=ACL_PASSWORD, protocol=3)
        assert app.set("acl:key", "v") and app.acl_whoami() == ACL_USER.encode()
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=sidecar.port, username=ACL_USER, password="wrong", retry=None).ping()


def test_passthrough_checks_a_new_credential_upstream_once_then_answers_locally(upstream):
    with SidecarProcess(config=sidecar_config(upstream)) as sidecar:
        redis.Redis(port=sidecar.port, username=ACL_USER, password=ACL_PASSWORD).ping()  # first sight: verified
        before = upstream_counts(upstream)
        for _ in range(50):
            redis.Redis(port=sidecar.port, username=ACL_USER, password=ACL_PASSWORD).ping()
        after = upstream_counts(upstream)
    assert after[1] - before[1] == 1  # only the INFO client's own AUTH: the 50 AUTHs were answered locally


def test_passthrough_checks_again_after_the_ttl(upstream):
    with SidecarProcess(config=sidecar_config(upstream, client_auth={"passthrough_ttl": 0.5})) as sidecar:
        login = lambda: redis.Redis(port=sidecar.port, username=ACL_USER, password=ACL_PASSWORD).ping()  # noqa: E731
        login()
        before = upstream_counts(upstream)
        login()
        middle = upstream_counts(upstream)
        time.sleep(0.7)
        login()
        after = upstream_counts(upstream)
    assert middle[1] - before[1] == 1  # within the TTL: answered locally (only the INFO client's AUTH counted)
    assert after[1] - middle[1] == 2  # past it: checked upstream once more, plus the INFO client's AUTH


def test_password_mode_uses_sidecar_users_and_its_own_upstream_login(upstream):
    cfg = sidecar_config(upstream, client_auth={"mode": "password", "users": [
        {"name": "default", "password": "local-pw"}, {"name": "svc", "password_env": "SVC_PW"}]})
    with SidecarProcess(config=cfg, env={"SVC_PW": "svc-pw"}) as sidecar:
        assert redis.Redis(port=sidecar.port, password="local-pw").set("pm", 1)
        assert redis.Redis(port=sidecar.port, username="svc", password="svc-pw", protocol=3).get("pm") == b"1"
        for user, pw in ((None, UPSTREAM_PASSWORD), ("svc", "local-pw"), ("nobody", "x")):
            with pytest.raises(redis.exceptions.AuthenticationError):
                redis.Redis(port=sidecar.port, username=user, password=pw, retry=None).ping()
        with RawClient(sidecar.port) as raw:
            assert raw.call([b"GET", b"pm"]) == [b"-NOAUTH Authentication required.\r\n"]
        assert "local-pw" not in sidecar.log_text() and "svc-pw" not in sidecar.log_text()


def test_none_mode_needs_no_password_and_accepts_the_apps_existing_one(upstream):
    with SidecarProcess(config=sidecar_config(upstream, client_auth={"mode": "none"})) as sidecar:
        assert redis.Redis(port=sidecar.port).set("nm", 1)
        assert redis.Redis(port=sidecar.port, password="whatever-the-app-has").get("nm") == b"1"


@pytest.mark.skipif(not shutil.which("redis-cli"), reason="redis-cli is not installed")
def test_redis_cli_with_password_from_environment(upstream, sidecar):
    env = {**os.environ, "REDISCLI_AUTH": UPSTREAM_PASSWORD}
    cli = lambda *a, **kw: subprocess.run(["redis-cli", "-p", str(sidecar.port), *a], env=env,  # noqa: E731
                                           capture_output=True, text=True, timeout=20, **kw)
    assert cli("SET", "cli:k", "v").stdout.strip() == "OK"
    assert cli("GET", "cli:k").stdout.strip() == "v"
    assert cli("-3", "HGETALL", "cli:none").stdout.strip() == ""
    piped = cli(input="SET cli:p 1\nINCR cli:p\nGET cli:p\n")
    assert piped.stdout.split() == ["OK", "2", "2"]
    assert cli("--no-auth-warning", "-n", "3", "DBSIZE").returncode == 0


@pytest.mark.skipif(not shutil.which("redis-benchmark"), reason="redis-benchmark is not installed")
def test_redis_benchmark_runs_through_the_sidecar_without_errors(upstream, sidecar):
    out = subprocess.run(["redis-benchmark", "-p", str(sidecar.port), "-a", UPSTREAM_PASSWORD, "-t", "set,get,lpush",
                          "-n", "3000", "-c", "20", "-P", "8", "-q"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.replace("\r", "\n").splitlines() if "requests per second" in line]
    assert len(lines) == 3, out.stdout
    assert "ERR" not in out.stdout + out.stderr


def test_unix_socket_and_inline_commands(upstream, tmp_path):
    sock = str(tmp_path / "sidecar.sock")
    with SidecarProcess(config=sidecar_config(upstream, unix_socket=sock)) as sidecar:
        client = redis.Redis(unix_socket_path=sock, password=UPSTREAM_PASSWORD)
        assert client.set("unix", "ok") and client.get("unix") == b"ok"
        with RawClient(sidecar.port) as raw:  # what a person types in telnet
            raw.send(f"AUTH {UPSTREAM_PASSWORD}\r\nPING\r\nSET inline \"two words\"\r\nGET inline\r\n".encode())
            assert [raw.read_reply() for _ in range(4)] == [b"+OK\r\n", b"+PONG\r\n", b"+OK\r\n",
                                                           b"$9\r\ntwo words\r\n"]
    assert not os.path.exists(sock)


def test_tls_upstream(tls_upstream, tls_files):
    cfg = sidecar_config(tls_upstream, upstream={"url": tls_upstream.url(), "tls": {"ca_file": tls_files.ca}})
    with SidecarProcess(config=cfg) as sidecar:
        client = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, protocol=3)
        assert client.set("tls", "yes") and client.get("tls") == b"yes"
    bad = sidecar_config(tls_upstream, upstream={"url": tls_upstream.url()})  # system CAs do not know our CA
    with SidecarProcess(config=bad) as sidecar:
        with pytest.raises(redis.exceptions.ResponseError, match="CERTIFICATE_VERIFY_FAILED|certificate verify"):
            redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD).get("tls")
    unverified = sidecar_config(tls_upstream, upstream={"url": tls_upstream.url(), "tls": {"verify": False}})
    with SidecarProcess(config=unverified) as sidecar:  # an ops choice for self-signed upstreams
        assert redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD).get("tls") == b"yes"


def test_listens_on_the_default_loopback_port_when_given_only_an_upstream(upstream):
    """The README's command line: --listen and --upstream, no config file."""
    port = free_port()
    env = {**os.environ, "REDIS_SIDECAR_UPSTREAM": upstream.url()}
    proc = subprocess.Popen([os.sys.executable, "-m", "proxy", "--listen", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(200):
            try:
                assert redis.Redis(port=port, password=UPSTREAM_PASSWORD).ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail("sidecar did not start")
    finally:
        proc.terminate()
        output = proc.communicate(timeout=15)[0]
    assert proc.returncode == 0, output
    assert UPSTREAM_PASSWORD not in output and f"127.0.0.1:{port}" in output
