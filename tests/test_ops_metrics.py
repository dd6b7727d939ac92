"""Prometheus metrics, health and logs as ops meet them: scraped over HTTP while real clients load the sidecar."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from conftest import ACL_PASSWORD, UPSTREAM_PASSWORD, _server, sidecar_config, wait_until
from harness.servers import free_port


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    status, text = http_get(port, "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((f"redis_sidecar_{name}", tuple(sorted(labels.items()))), 0.0)


def metrics_config(server, **sections) -> tuple[dict, int]:
    port = free_port()
    return sidecar_config(server, metrics={"listen": f"127.0.0.1:{port}", "latency_sample": 1}, **sections), port


def test_metrics_are_off_by_default_and_loopback_when_on(upstream, make_sidecar):
    from proxy import config

    cfg = config.load(None, None, {})
    assert cfg.metrics.listen is None
    assert config.metrics_address("9121") == ("127.0.0.1", 9121)
    with pytest.raises(config.ConfigError, match="metrics.listen: expected HOST:PORT"):
        config.load(None, {"metrics.listen": "nowhere"}, {})


def test_counters_move_as_the_load_implies(upstream, make_sidecar):
    cfg, mport = metrics_config(upstream)
    sidecar = make_sidecar(cfg)
    before = scrape(mport)
    url = sidecar.url(password=UPSTREAM_PASSWORD)

    # 30 connect-per-request clients: each handshake (HELLO/AUTH, CLIENT SETINFO x2) is answered by the sidecar
    for i in range(30):
        with redis.Redis.from_url(url) as c:
            c.set(f"m:{i}", i)
    # a persistent client, transactions, a blocking call, a failed AUTH
    c = redis.Redis.from_url(url)
    for i in range(500):
        c.get(f"m:{i % 30}")
    for i in range(20):
        with c.pipeline(transaction=True) as p:
            p.incr("m:tx").incr("m:tx").execute()
    c.blpop(["m:nothing"], timeout=0.1)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=sidecar.port, password="wrong", retry=None).ping()

    # subscribers and a busy client while we scrape
    subs = []
    for channels in (["m:a"], ["m:a", "m:b"], ["m:b"]):
        p = redis.Redis.from_url(url).pubsub()
        p.subscribe(*channels)
        for _ in channels:
            assert p.get_message(timeout=5)["type"] == "subscribe"
        subs.append(p)
    stop = threading.Event()
    busy = threading.Thread(target=lambda: [c.get("m:1") for _ in iter(stop.is_set, True)], daemon=True)
    busy.start()
    try:
        during = scrape(mport)
    finally:
        stop.set()
        busy.join(10)

    assert value(during, "pubsub_channels") == 2
    assert value(during, "pubsub_subscribers") == 3
    assert value(during, "upstream_connections", state="subscriber") == 1
    assert value(during, "clients_connected") >= 4  # three subscribers and the busy client
    assert value(during, "upstream_connections", state="shared") >= 1

    for p in subs:
        p.close()
    c.close()
    after = scrape(mport)

    def delta(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("clients_accepted_total") >= 30 + 1 + 1 + 3
    handshakes = delta("local_commands_total", command="auth") + delta("local_commands_total", command="hello")
    assert handshakes >= 30 + 1 + 3  # redis-py authenticates with HELLO 3 AUTH (8.x) or AUTH (older)
    assert delta("local_commands_total", command="client|setinfo") >= 60  # redis-py sends lib-name and lib-ver
    assert delta("commands_routed_total", route="shared") >= 30 + 500 + 40
    assert delta("commands_routed_total", route="transaction") >= 40  # MULTI and EXEC
    assert delta("commands_routed_total", route="blocking") >= 1
    assert delta("commands_routed_total", route="pubsub") >= 3
    assert delta("leases_total") >= 21
    assert delta("auth_failures_total") >= 1
    assert value(after, "leases_in_use") == 0 and value(after, "lease_waiters") == 0
    assert delta("upstream_seconds_count") >= 500  # latency_sample: 1 times every forwarded command
    assert delta("proxy_seconds_count") >= 500
    assert value(after, "upstream_seconds_bucket", le="+Inf") == value(after, "upstream_seconds_count")
    assert value(after, "event_loop_lag_seconds_count") >= 1
    assert after[("process_resident_memory_bytes", ())] > 0  # prometheus-client's process collector
    assert http_get(mport, "/healthz") == (200, "ok\n")
    assert http_get(mport, "/readyz") == (200, "ready\n")
    assert http_get(mport, "/nothing")[0] == 404


def test_readiness_follows_the_upstream(make_sidecar):
    with _server(None) as own:
        cfg, mport = metrics_config(own, upstream={"url": own.url()}, pool={"reconnect_backoff_max": 0.5})
        make_sidecar(cfg)

        def wait_for(status: int) -> str:
            deadline = time.monotonic() + 20
            while True:
                code, body = http_get(mport, "/readyz")
                if code == status:
                    return body
                assert time.monotonic() < deadline, f"/readyz stayed {code}: {body}"
                time.sleep(0.1)

        wait_for(200)
        assert value(scrape(mport), "upstream_up") == 1
        own.stop()
        why = wait_for(503)
        assert "127.0.0.1" in why or "upstream" in why
        assert http_get(mport, "/healthz")[0] == 200  # alive, just not ready
        own.start()  # same port: no client traffic needed for readiness to come back
        wait_for(200)


def test_logs_are_structured_one_debug_line_per_connection_event_and_never_hold_a_secret(upstream, make_sidecar):
    users = [{"name": "app", "password": "client-secret-1"}, {"name": "ops", "password": "ops-secret-2",
                                                               "admin": True}]
    sidecar = make_sidecar(sidecar_config(upstream, log={"level": "debug", "format": "json"},
                                          client_auth={"mode": "password", "users": users}))
    with redis.Redis(port=sidecar.port, username="app", password="client-secret-1") as c:
        c.set("log:k", "v")
        c.client_setname("billing")
        client_id = c.client_id()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=sidecar.port, username="app", password="client-secret-x", retry=None).ping()
    with redis.Redis(port=sidecar.port, username="ops", password="ops-secret-2") as admin:
        admin.execute_command("SIDECAR", "CONFIG")
        admin.execute_command("SIDECAR", "RELOAD")
    deadline = time.monotonic() + 10
    while '"client_disconnected"' not in sidecar.log_text() or sidecar.log_text().count("client_disconnected") < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    text = sidecar.log_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(lines) == len(text.splitlines())  # every line is one JSON object
    connected = [e for e in lines if e.get("event") == "client_connected" and e["client"] == client_id]
    gone = [e for e in lines if e.get("event") == "client_disconnected" and e["client"] == client_id]
    assert len(connected) == len(gone) == 1
    assert connected[0]["level"] == "debug" and connected[0]["addr"].startswith("127.0.0.1:")
    assert gone[0]["user"] == "app" and gone[0]["client_name"] == "billing"
    for secret in ("client-secret-1", "client-secret-x", "ops-secret-2", UPSTREAM_PASSWORD, ACL_PASSWORD):
        assert secret not in text


def test_connect_per_request_clients_write_no_info_lines(upstream, make_sidecar):
    """Connects and disconnects are DEBUG lines (counted in metrics, summed up once a minute): an app that connects
    per request would otherwise write thousands of lines a second."""
    sidecar = make_sidecar(sidecar_config(upstream, log={"level": "info"}))
    before = sidecar.log_text()
    for _ in range(20):
        redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD).ping()
    with redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD) as c:
        wait_until(lambda: c.execute_command("INFO", "sidecar").get("connected_clients") == 1, "clients still open")
    assert sidecar.log_text() == before


def test_logfmt_lines(upstream, make_sidecar):
    sidecar = make_sidecar(sidecar_config(upstream, log={"level": "debug", "format": "logfmt"}))
    redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD).ping()
    deadline = time.monotonic() + 10
    while "event=client_disconnected" not in sidecar.log_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    line = next(x for x in sidecar.log_text().splitlines() if "event=client_connected" in x)
    assert line.startswith("ts=") and " level=debug " in line and ' msg="client connected" ' in line
