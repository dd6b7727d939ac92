"""Hot reload (SIGHUP and SIDECAR RELOAD) while clients keep working: limits, users, pools, a new upstream."""

from __future__ import annotations

import signal
import threading

import pytest
import redis

from conftest import UPSTREAM_PASSWORD, _server, sidecar_config, sidecar_connections, wait_until
from wire import RawClient

USERS = [{"name": "app", "password": "app-pw"}, {"name": "ops", "password": "ops-pw", "admin": True}]


class Loader(threading.Thread):
    """A connected client that keeps running commands (INCR, GET, a transaction) and records anything unexpected."""

    def __init__(self, port: int, key: str, auth: list[bytes]) -> None:
        super().__init__(daemon=True)
        self.port, self.key, self.auth = port, key.encode(), auth
        self.rounds = 0
        self.errors: list[object] = []
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            with RawClient(self.port) as c:
                if c.call(self.auth) != [b"+OK\r\n"]:
                    self.errors.append("auth failed")
                    return
                while not self.stop.is_set():
                    replies = c.call([b"INCR", self.key], [b"GET", self.key])
                    replies += c.call([b"MULTI"], [b"INCR", self.key], [b"EXEC"])
                    if not (replies[0][:1] == b":" and replies[1][:1] == b"$" and replies[2:4] ==
                            [b"+OK\r\n", b"+QUEUED\r\n"] and replies[4][:5] == b"*1\r\n:"):
                        self.errors.append(replies)
                    self.rounds += 1
        except Exception as exc:  # noqa: BLE001 - any failure is what this test looks for
            self.errors.append(exc)


def start_load(port: int, n: int, auth: list[bytes], prefix: str) -> list[Loader]:
    loaders = [Loader(port, f"{prefix}:{i}", auth) for i in range(n)]
    for t in loaders:
        t.start()
    wait_until(lambda: min(t.rounds for t in loaders) >= 10, "load did not start")
    return loaders


def stop_load(loaders: list[Loader]) -> None:
    marks = [t.rounds for t in loaders]
    wait_until(lambda: all(t.rounds >= m + 10 for t, m in zip(loaders, marks)), "load stalled after the reload")
    for t in loaders:
        t.stop.set()
        t.join(10)
    assert [t.errors for t in loaders] == [[]] * len(loaders)


def reload_by_sighup(sidecar, count_before: int) -> None:
    sidecar.write_config()
    sidecar.signal(signal.SIGHUP)
    wait_until(lambda: sidecar.log_text().count("configuration reload") > count_before, "no reload logged")


def test_reload_under_load_changes_limits_users_and_pools_with_zero_client_errors(upstream, make_sidecar):
    sidecar = make_sidecar(sidecar_config(upstream, client_auth={"mode": "password", "users": USERS},
                                          pool={"size": 2}, limits={"max_clients": 100}))
    loaders = start_load(sidecar.port, 6, [b"AUTH", b"app", b"app-pw"], "reload")

    users = [{"name": "app", "password": "app-pw-2"}, USERS[1], {"name": "newbie", "password": "newbie-pw"}]
    sidecar.config["client_auth"] = {"mode": "password", "users": users}
    sidecar.config["pool"] = {"size": 4}
    sidecar.config["limits"] = {"max_clients": 8}
    sidecar.config["log"] = {"level": "debug"}
    reload_by_sighup(sidecar, 0)
    assert "configuration reloaded: pool.size, client_auth.users, limits.max_clients, log.level" in \
        sidecar.log_text()
    stop_load(loaders)  # connected clients kept working: no error, no disconnect

    # the new limit holds: 8 clients at most (the 6 loaders are gone now)
    extra = [RawClient(sidecar.port) for _ in range(9)]
    answers = [c.call([b"PING"])[0] for c in extra]
    assert answers.count(b"-NOAUTH Authentication required.\r\n") == 8
    assert answers[-1] == b"-ERR max number of clients reached\r\n"
    for c in extra:
        c.close()
    # gone from the count: the start-up probe, the 6 loaders and the 8 admitted extras
    wait_until(lambda: sidecar.log_text().count("client disconnected") >= 1 + 6 + 8, "extra clients still counted")

    # the new users and passwords: the old password is refused, the new ones work
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=sidecar.port, username="app", password="app-pw", retry=None).ping()
    assert redis.Redis(port=sidecar.port, username="app", password="app-pw-2").ping()
    with redis.Redis(port=sidecar.port, username="newbie", password="newbie-pw") as c:
        assert c.ping()
    with redis.Redis(port=sidecar.port, username="ops", password="ops-pw") as admin:
        info = admin.execute_command("SIDECAR", "INFO").decode()
        assert "pool_size:4" in info and "max_clients:8" in info and "log_level:debug" in info


def test_invalid_config_is_refused_and_the_old_one_stays(upstream, make_sidecar):
    sidecar = make_sidecar(sidecar_config(upstream, client_auth={"mode": "password", "users": USERS},
                                          pool={"size": 3}))
    sidecar.config["pool"] = {"size": 0}
    reload_by_sighup(sidecar, 0)
    assert "configuration reload refused, the running configuration stays in force: pool.size: must be > 0, " \
           "got 0" in sidecar.log_text()
    with redis.Redis(port=sidecar.port, username="ops", password="ops-pw") as admin:
        with pytest.raises(redis.ResponseError, match="reload refused.*pool.size: must be > 0"):
            admin.execute_command("SIDECAR", "RELOAD")
        sidecar.config_path.write_text("pool: [unclosed\n")
        with pytest.raises(redis.ResponseError, match="reload refused.*invalid YAML"):
            admin.execute_command("SIDECAR", "RELOAD")
        assert "pool_size:3" in admin.execute_command("SIDECAR", "INFO").decode()
        sidecar.config["pool"] = {"size": 5}
        sidecar.write_config()
        assert admin.execute_command("SIDECAR", "RELOAD") == b"OK reloaded, changed: pool.size"
        assert "pool_size:5" in admin.execute_command("SIDECAR", "INFO").decode()
        assert admin.execute_command("SIDECAR", "RELOAD") == b"OK reloaded, no changes"


def test_upstream_address_change_moves_clients_and_drains_the_old_connections(upstream, make_sidecar):
    with _server(None) as new:
        sidecar = make_sidecar(sidecar_config(upstream, shutdown_timeout=5))
        loaders = start_load(sidecar.port, 4, [b"AUTH", UPSTREAM_PASSWORD.encode()], "move")
        sub = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD).pubsub()
        sub.subscribe("move:chan")
        assert sub.get_message(timeout=5)["type"] == "subscribe"

        assert sidecar_connections(upstream)
        sidecar.config["upstream"] = {"url": new.url()}
        reload_by_sighup(sidecar, 0)
        assert "configuration reloaded: upstream.url, upstream.port" in sidecar.log_text()
        wait_until(lambda: not sidecar_connections(upstream), "old upstream connections were not closed")
        stop_load(loaders)  # every client moved over without an error
        assert all(int(new.client().get(f"move:{i}")) >= 1 for i in range(4))

        def delivered() -> bool:  # the subscriber was resubscribed on the new upstream
            new.client().publish("move:chan", "on-new")
            message = sub.get_message(timeout=0.2)
            return message is not None and message["data"] == b"on-new"

        wait_until(delivered, "subscriber did not follow the upstream")
        sub.close()


def test_reload_switches_the_upstream_login_guard(upstream, make_sidecar):
    sidecar = make_sidecar(sidecar_config(upstream, client_auth={"mode": "password", "users": USERS}))
    with redis.Redis(port=sidecar.port, username="app", password="app-pw") as app, \
            redis.Redis(port=sidecar.port, username="ops", password="ops-pw") as admin:
        with pytest.raises(redis.ResponseError, match="protect_upstream_login"):
            app.config_get("requirepass")
        sidecar.config["client_auth"] = {"mode": "password", "users": USERS, "protect_upstream_login": False}
        sidecar.write_config()
        assert admin.execute_command("SIDECAR", "RELOAD") == \
            b"OK reloaded, changed: client_auth.protect_upstream_login"
        assert app.config_get("requirepass") == {"requirepass": UPSTREAM_PASSWORD}
