"""Regression tests, issues 10.9 and 10.10: the connect-failure metric counts real failures only, and string settings
taken from the environment stay strings (a secret that is refused is never echoed)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmarks.wan import WanRelayProcess
from conftest import UPSTREAM_PASSWORD, sidecar_config, wait_until
from harness.servers import EmbeddedServer, free_port
from proxy.wire.resp import encode_command
from regress_support import OK, call, metric, proxied, unique


# -- 10.9: leases closed by their own client while connecting are no connect failure -------------------------------------

def test_leases_abandoned_while_connecting_are_not_connect_failures(own_upstream, make_sidecar):
    """issue 10.9: behind a 200 ms WAN relay (slow connects), clients send BLPOP (opening leases) and disconnect
    while those leases are still connecting: redis_sidecar_upstream_errors_total{kind="connect_failure"} stays 0."""
    with WanRelayProcess(own_upstream.port, delay_ms=200) as relay:
        mport = free_port()
        sidecar = make_sidecar(sidecar_config(
            own_upstream, upstream={"url": f"redis://:{UPSTREAM_PASSWORD}@127.0.0.1:{relay.port}/0",
                                    "connect_timeout": 5},
            metrics={"listen": f"127.0.0.1:{mport}"}))
        with proxied(sidecar, timeout=10) as warm:  # the shared pool and the lease opened at start are up
            assert call(warm, [b"GET", b"warm"]) == [b"$-1\r\n"]
        wait_until(lambda: metric(mport, "leases_idle") >= 1, "the lease opened at start never became idle")
        assert metric(mport, "upstream_errors_total", kind="connect_failure") == 0
        clients = [proxied(sidecar, timeout=10) for _ in range(5)]
        for c in clients:
            c.send(encode_command([b"BLPOP", unique("ops:abandoned").encode(), b"0"]))
        wait_until(lambda: metric(mport, "upstream_connections", state="connecting") >= 1, "no lease was opening")
        for c in clients:
            c.close()
        wait_until(lambda: metric(mport, "upstream_connections", state="connecting") == 0
                   and metric(mport, "leases_in_use") == 0, "the abandoned leases never went away", timeout=10)
        assert metric(mport, "upstream_errors_total", kind="connect_failure") == 0


# -- 10.10: strings stay strings ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("password", ["0123", "yes", "1e3", "null"])
def test_an_upstream_password_from_the_environment_stays_a_string(make_sidecar, password):
    """issue 10.10: REDIS_SIDECAR_UPSTREAM__PASSWORD=0123 (or yes, 1e3, null) is the password "0123" (not 83,
    True ...): the sidecar authenticates to an upstream whose password is exactly that, and serves."""
    with EmbeddedServer(password=password) as server:
        sidecar = make_sidecar(sidecar_config(server, upstream={"url": server.url(password="")},
                                              client_auth={"mode": "none"}),
                               env={"REDIS_SIDECAR_UPSTREAM__PASSWORD": password})
        with proxied(sidecar, timeout=5, auth=None) as c:
            assert call(c, [b"SET", b"k", b"v"], [b"GET", b"k"]) == [OK, b"$1\r\nv\r\n"], \
                f"the sidecar did not log in with the password {password!r}"


def check(config_text: str, env: dict, tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / "sidecar.yaml"
    path.write_text(config_text)
    base = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_SIDECAR_")}
    return subprocess.run([sys.executable, "-m", "proxy", "--config", str(path), "--check"], check=False,
                          capture_output=True, text=True, timeout=60, env={**base, **env})


@pytest.mark.parametrize("value", ["0123", "yes", "on", "0x1F", "[1, 2]", "{a: b}"])
def test_string_settings_from_the_environment_are_taken_verbatim(tmp_path, value):
    """issue 10.10: `redis-sidecar --check` accepts any text for a string setting given in the environment (the
    upstream password, a client password): nothing is parsed as YAML, nothing is refused for looking like a number,
    a boolean or a list."""
    result = check("upstream: {url: 'redis://127.0.0.1:1/0'}\nclient_auth: {mode: passthrough}\n",
                   {"REDIS_SIDECAR_UPSTREAM__PASSWORD": value}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


@pytest.mark.parametrize("where", ["upstream.password", "client_auth.users[0].password"])
def test_a_refused_secret_is_never_echoed(tmp_path, where):
    """issue 10.10: a secret setting refused for its type (a YAML list or mapping in the file) is named by its key
    in the error, and its value never appears in what the sidecar prints."""
    secret = unique("hunter2-secret")
    text = (f"upstream: {{url: 'redis://127.0.0.1:1/0', password: [{secret}]}}\n" if where == "upstream.password"
            else "upstream: {url: 'redis://127.0.0.1:1/0'}\nclient_auth:\n  mode: password\n  users:\n"
                 f"    - {{name: app, password: {{value: {secret}}}}}\n")
    result = check(text, {}, tmp_path)
    assert result.returncode == 2
    assert where.split("[")[0] in result.stderr, result.stderr
    assert secret not in result.stdout + result.stderr, f"the refused secret was printed: {result.stderr.strip()}"
