"""``--check --connect`` against real servers: it logs in as the sidecar would and says who answered, or exits 1 with
the upstream's own reason (wrong password, nothing listening, no answer within upstream.connect_timeout)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from conftest import ACL_PASSWORD, ACL_USER, SENTINEL_PASSWORD, UPSTREAM_PASSWORD

from harness.servers import free_port


def check_connect(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI as an operator runs it, the upstream URL (and its password) in the environment, never in argv."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_SIDECAR_")}
    return subprocess.run([sys.executable, "-m", "proxy", "--check", "--connect"], capture_output=True, text=True,
                          env={**clean, **env}, timeout=60)


def test_the_upstream_answers_with_the_configured_login(upstream):
    done = check_connect({"REDIS_SIDECAR_UPSTREAM": upstream.url()})
    assert done.returncode == 0, done.stderr
    answer = done.stdout.splitlines()[-1]
    assert f"at 127.0.0.1:{upstream.port} as user 'default', db 0, TLS off; PING +PONG" in answer
    assert "role master" in answer and answer.strip().startswith("upstream answers: ")
    as_acl_user = check_connect({"REDIS_SIDECAR_UPSTREAM": upstream.url(ACL_USER, ACL_PASSWORD, db=3)})
    assert as_acl_user.returncode == 0, as_acl_user.stderr
    assert f"as user '{ACL_USER}', db 3" in as_acl_user.stdout
    for shown in (done.stdout + done.stderr, as_acl_user.stdout + as_acl_user.stderr):
        assert UPSTREAM_PASSWORD not in shown and ACL_PASSWORD not in shown


def test_a_wrong_password_fails_with_the_upstreams_own_error(upstream):
    done = check_connect({"REDIS_SIDECAR_UPSTREAM": upstream.url(password="not-the-password")})
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == "configuration OK"  # the file is fine; the upstream says no
    assert "redis-sidecar: upstream check failed: upstream rejected the sidecar's credentials for user " \
           "'default': WRONGPASS" in done.stderr
    assert "not-the-password" not in done.stdout + done.stderr
    no_password = check_connect({"REDIS_SIDECAR_UPSTREAM": f"redis://127.0.0.1:{upstream.port}/0"})
    assert no_password.returncode == 1 and "NOAUTH" in no_password.stderr


def test_nothing_listening_fails_at_once():
    port = free_port()
    began = time.monotonic()
    done = check_connect({"REDIS_SIDECAR_UPSTREAM": f"redis://:pw@127.0.0.1:{port}/0"})
    assert done.returncode == 1
    assert f"upstream check failed: cannot connect to upstream 127.0.0.1:{port}" in done.stderr
    assert done.stderr.count("\n") == 1  # one line: the sidecar's own log lines do not repeat it
    assert time.monotonic() - began < 10


def test_a_server_that_never_answers_fails_after_connect_timeout():
    with socket.socket() as silent:  # the kernel accepts the connection; nobody ever reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        began = time.monotonic()
        done = check_connect({"REDIS_SIDECAR_UPSTREAM": f"redis://:pw@127.0.0.1:{silent.getsockname()[1]}/0",
                              "REDIS_SIDECAR_UPSTREAM__CONNECT_TIMEOUT": "0.5"})
    assert done.returncode == 1
    assert "within upstream.connect_timeout (0.5s)" in done.stderr
    assert time.monotonic() - began < 10


def test_a_cluster_url_tries_each_seed_and_refuses_a_standalone_server(upstream):
    dead = free_port()
    done = check_connect({"REDIS_SIDECAR_UPSTREAM": f"redis-cluster://:{UPSTREAM_PASSWORD}@127.0.0.1:{dead},"
                                                    f"127.0.0.1:{upstream.port}"})
    assert done.returncode == 1
    assert f"seed 127.0.0.1:{dead}: cannot connect" in done.stderr
    assert f"seed 127.0.0.1:{upstream.port}: upstream 127.0.0.1:{upstream.port} is a standalone server, but " \
           "upstream.url says cluster: use redis://" in done.stderr


def test_tls_is_used_when_configured(tls_upstream, tls_files):
    done = check_connect({"REDIS_SIDECAR_UPSTREAM": tls_upstream.url(),
                          "REDIS_SIDECAR_UPSTREAM__TLS__CA_FILE": tls_files.ca})
    assert done.returncode == 0, done.stderr
    assert "TLS on; PING +PONG" in done.stdout
    unverified = check_connect({"REDIS_SIDECAR_UPSTREAM": tls_upstream.url()})  # the system CAs do not know it
    assert unverified.returncode == 1 and "certificate verify failed" in unverified.stderr


@pytest.mark.parametrize("sentinel_setup", [("redis", SENTINEL_PASSWORD)], indirect=True, ids=["redis-sentinel-auth"])
def test_a_sentinel_url_is_checked_at_the_master_the_sentinels_name(sentinel_setup):
    host, port = sentinel_setup.master_address()
    done = check_connect({"REDIS_SIDECAR_UPSTREAM": sentinel_setup.url(),
                          "REDIS_SIDECAR_UPSTREAM__SENTINEL_PASSWORD": SENTINEL_PASSWORD})
    assert done.returncode == 0, done.stderr
    assert f"role master, at {host}:{port} as user 'default'" in done.stdout
    wrong = check_connect({"REDIS_SIDECAR_UPSTREAM": sentinel_setup.url(),
                           "REDIS_SIDECAR_UPSTREAM__SENTINEL_PASSWORD": "not-the-sentinel-password"})
    assert wrong.returncode == 1 and "no sentinel gave a working master" in wrong.stderr
    assert "WRONGPASS" in wrong.stderr and "not-the-sentinel-password" not in wrong.stdout + wrong.stderr
