"""The SIDECAR admin commands from redis-cli, who may run them, and INFO's ``# Sidecar`` section."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import redis

from conftest import UPSTREAM_PASSWORD, sidecar_config
from proxy import config
from proxy.wire import resp

pytestmark = pytest.mark.skipif(not shutil.which("redis-cli"), reason="redis-cli is not installed")

USERS = [{"name": "app", "password": "app-pw"}, {"name": "ops", "password": "ops-pw", "admin": True}]


def cli(port: int, *args: str, user: str | None = None, password: str | None = None) -> str:
    auth = (["--user", user] if user else []) + (["--pass", password] if password else [])
    out = subprocess.run(["redis-cli", "-p", str(port), "--no-auth-warning", *auth, *args], capture_output=True,
                         text=True, timeout=30)
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def password_sidecar(upstream):
    from harness.servers import SidecarProcess

    with SidecarProcess(config=sidecar_config(upstream, client_auth={"mode": "password", "users": USERS})) as proc:
        yield proc


def test_sidecar_commands_from_redis_cli_for_an_admin(password_sidecar):
    port = password_sidecar.port
    with redis.Redis(port=port, username="app", password="app-pw", client_name="billing-web") as app:
        app.ping()
        info = cli(port, "SIDECAR", "INFO", user="ops", password="ops-pw")
        assert "# Sidecar" in info and "connected_clients:2" in info and "pool_size:4" in info
        clients = cli(port, "SIDECAR", "CLIENTS", user="ops", password="ops-pw")
        assert "name=billing-web" in clients and "user=app" in clients and "lease=none" in clients
        pools = cli(port, "SIDECAR", "POOLS", user="ops", password="ops-pw")
        assert "pool=shared user=default db=0" in pools
        shown = cli(port, "SIDECAR", "CONFIG", user="ops", password="ops-pw")
        assert "mode: password" in shown and "password: (set)" in shown
        for secret in ("app-pw", "ops-pw", UPSTREAM_PASSWORD):
            assert secret not in shown
        assert "RELOAD" in cli(port, "SIDECAR", "HELP", user="ops", password="ops-pw")
        assert "unknown subcommand 'NOPE'" in cli(port, "SIDECAR", "NOPE", user="ops", password="ops-pw")


def test_sidecar_commands_refused_to_everyone_else(password_sidecar):
    port = password_sidecar.port
    assert "NOPERM" in cli(port, "SIDECAR", "INFO", user="app", password="app-pw")
    assert "NOAUTH" in cli(port, "SIDECAR", "INFO")
    with redis.Redis(port=port, username="app", password="app-pw") as app:
        with pytest.raises(redis.exceptions.NoPermissionError, match="admin user"):
            app.execute_command("SIDECAR", "RELOAD")


def test_admin_users_in_passthrough_mode(upstream, make_sidecar):
    sidecar = make_sidecar(sidecar_config(upstream, client_auth={
        "mode": "passthrough", "users": [{"name": "ops", "password": "ops-pw", "admin": True}]}))
    port = sidecar.port
    assert "# Sidecar" in cli(port, "SIDECAR", "INFO", user="ops", password="ops-pw")
    assert "WRONGPASS" in cli(port, "SIDECAR", "INFO", user="ops", password="guess")
    # the upstream's own password gets data access, never admin
    assert "NOPERM" in cli(port, "SIDECAR", "INFO", password=UPSTREAM_PASSWORD)
    assert cli(port, "SET", "adm:k", "v", user="ops", password="ops-pw").strip() == "OK"


def test_nobody_is_admin_unless_configured(upstream, sidecar, tmp_path):
    assert "NOPERM" in cli(sidecar.port, "SIDECAR", "INFO", password=UPSTREAM_PASSWORD)
    path = tmp_path / "c.yaml"
    path.write_text("client_auth:\n  mode: passthrough\n  users:\n    - name: app\n      password: x\n")
    with pytest.raises(config.ConfigError, match=r"client_auth.users\[0\].admin: in passthrough mode"):
        config.load(str(path), None, {})


def test_info_carries_a_sidecar_section(upstream, sidecar):
    for protocol in (2, 3):
        with redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, protocol=protocol) as c:
            everything = c.info()
            assert everything["redis_version"]  # the upstream's INFO
            assert everything["sidecar_version"] and everything["connected_clients"] >= 1
            assert everything["round_trips_saved"] >= 1
            assert "sidecar_version" not in c.info("server")
            ours = c.info("sidecar")
            assert "redis_version" not in ours and ours["upstream_up"] == 1
            assert ours["wire_speedups"] == int(resp.SPEEDUPS)  # (the sidecar process runs with this environment)
            assert "sidecar_version" in c.info("all")
    raw = cli(sidecar.port, "INFO", password=UPSTREAM_PASSWORD)
    assert "# Server" in raw and raw.rstrip().split("# Sidecar")[1].startswith("\nsidecar_version:")
