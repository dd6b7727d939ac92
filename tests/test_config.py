"""Configuration as an ops engineer meets it: YAML, environment, flags, and refusals that name the key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from proxy import config
from proxy.config import ConfigError


def load_yaml(tmp_path, text: str, environ=None, overrides=None):
    path = tmp_path / "sidecar.yaml"
    path.write_text(text)
    return config.load(str(path), overrides, environ or {})


def test_defaults_are_safe():
    cfg = config.load(None, None, {})
    assert cfg.listen == ("127.0.0.1:6380",)
    assert cfg.client_auth.mode == "passthrough"
    assert cfg.pool.size == 4


def test_url_carries_credentials_db_and_tls(tmp_path):
    cfg = load_yaml(tmp_path, "upstream:\n  url: rediss://app:s%40cret@db.internal:6390/3\n")
    up = cfg.upstream
    assert (up.host, up.port, up.db, up.username, up.password, up.tls.enabled) == \
        ("db.internal", 6390, 3, "app", "s@cret", True)
    assert "s@cret" not in repr(cfg)


def test_password_from_env_and_file(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    cfg = load_yaml(tmp_path, f"upstream:\n  url: redis://h:1/0\n  password_file: {secret}\n")
    assert cfg.upstream.password == "from-file"
    cfg = load_yaml(tmp_path, "upstream:\n  url: redis://h:1/0\n  password_env: PW\n", environ={"PW": "from-env"})
    assert cfg.upstream.password == "from-env"
    with pytest.raises(ConfigError, match="upstream.password_env: environment variable NOPE is not set"):
        load_yaml(tmp_path, "upstream:\n  password_env: NOPE\n")


def test_environment_overrides_file_and_flags_override_environment(tmp_path):
    env = {"REDIS_SIDECAR_UPSTREAM": "redis://:pw@10.1.1.1:7000/0", "REDIS_SIDECAR_POOL__SIZE": "9"}
    cfg = load_yaml(tmp_path, "pool:\n  size: 2\n", environ=env)
    assert (cfg.upstream.host, cfg.upstream.port, cfg.pool.size) == ("10.1.1.1", 7000, 9)
    cfg = load_yaml(tmp_path, "pool:\n  size: 2\n", environ=env, overrides={"pool.size": 5})
    assert cfg.pool.size == 5


@pytest.mark.parametrize("text,message", [
    ("pool:\n  sise: 3\n", "pool.sise: unknown key"),
    ("pool:\n  size: many\n", "pool.size: expected an integer"),
    ("pool:\n  size: 0\n", "pool.size: must be > 0"),
    ("listen: nowhere\n", "listen: expected HOST:PORT"),
    ("client_auth:\n  mode: maybe\n", "client_auth.mode: must be none, password or passthrough"),
    ("client_auth:\n  mode: password\n", "client_auth.users: password mode needs at least one user"),
    ("client_auth:\n  users:\n    - name: a\n", "client_auth.users[0].password: every sidecar user needs a password"),
    ("upstream:\n  url: http://x\n", "upstream.url: scheme must be"),
    ("upstream:\n  tls:\n    ca_file: /nonexistent/ca.pem\n", "upstream.tls.ca_file: /nonexistent/ca.pem does not exist"),
    ("listen: 0.0.0.0:6380\nclient_auth:\n  mode: none\n", "is not a loopback address and client_auth.mode is none"),
    ("- a\n", "the top level must be a mapping"),
    ("upstream:\n  url: redis://h:1/0\n  port: 7000\n", "upstream.port: set it in upstream.url"),
])
def test_bad_values_are_refused_with_the_key_path(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_yaml(tmp_path, text)


def test_command_line_check_and_help(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("limits:\n  max_clients: -1\n")
    run = lambda *a: subprocess.run([sys.executable, "-m", "proxy", *a], capture_output=True, text=True)  # noqa: E731
    bad = run("--config", str(path), "--check")
    assert bad.returncode == 2
    assert "limits.max_clients: must be > 0" in bad.stderr
    good = run("--upstream", "redis://:pw@127.0.0.1:1/0", "--listen", "127.0.0.1:7001", "--check")
    assert good.returncode == 0, good.stderr
    helptext = run("--help").stdout
    for flag in ("--config", "--listen", "--upstream", "--unix-socket", "--pool-size", "--client-auth",
                 "--log-level", "REDIS_SIDECAR_UPSTREAM"):
        assert flag in helptext


# -- cluster and sentinel upstreams --------------------------------------------------------------------------------

def test_cluster_url_lists_seeds_and_carries_credentials_and_tls(tmp_path):
    cfg = load_yaml(tmp_path, "upstream:\n  url: rediss-cluster://app:s%40cret@node-a:7000,node-b,[::1]:7002\n")
    up = cfg.upstream
    assert (up.mode, up.seeds, up.username, up.password, up.tls.enabled, up.db) == \
        ("cluster", (("node-a", 7000), ("node-b", 6379), ("::1", 7002)), "app", "s@cret", True, 0)
    assert (up.host, up.port) == ("node-a", 7000)  # the first seed, for what needs one address
    assert "s@cret" not in repr(cfg) and "(hidden)" in up.url
    plain = config.load(None, None, {"REDIS_SIDECAR_UPSTREAM": "redis-cluster://:pw@10.0.0.1:7000,10.0.0.2:7000/0"})
    assert (plain.upstream.mode, plain.upstream.tls.enabled, len(plain.upstream.seeds)) == ("cluster", False, 2)


def test_standalone_url_is_one_seed():
    up = config.load(None, None, {"REDIS_SIDECAR_UPSTREAM": "redis://h:7000/2"}).upstream
    assert (up.mode, up.seeds, up.sentinel_master) == ("standalone", (("h", 7000),), None)


def test_sentinel_url_names_the_master_and_keeps_sentinel_credentials_apart(tmp_path):
    secret = tmp_path / "sentinel-pw"
    secret.write_text("sentinel-from-file\n")
    cfg = load_yaml(tmp_path, "upstream:\n  url: redis-sentinel://app:master-pw@s1,s2:26380,s3:5000/2#orders%20main\n"
                              f"  sentinel_username: watcher\n  sentinel_password_file: {secret}\n")
    up = cfg.upstream
    assert (up.mode, up.seeds, up.db, up.sentinel_master) == \
        ("sentinel", (("s1", 26379), ("s2", 26380), ("s3", 5000)), 2, "orders main")
    assert (up.username, up.password) == ("app", "master-pw")  # the url's credentials are the master's
    assert (up.sentinel_username, up.sentinel_password) == ("watcher", "sentinel-from-file")
    assert "sentinel-from-file" not in repr(cfg) and "master-pw" not in repr(cfg)
    cfg = load_yaml(tmp_path, "upstream:\n  url: rediss-sentinel://s1#m\n  sentinel_password_env: SPW\n",
                    environ={"SPW": "from-env"})
    assert (cfg.upstream.sentinel_password, cfg.upstream.tls.enabled) == ("from-env", True)


@pytest.mark.parametrize("text,message", [
    ("upstream:\n  url: redis-cluster://a:7000,b:7000/3\n", "upstream.url: Redis Cluster has only database 0"),
    ("upstream:\n  url: redis-cluster://a:7000\n  db: 1\n", "upstream.db: Redis Cluster has only database 0"),
    ("upstream:\n  url: redis-cluster://\n", "redis-cluster:// needs at least one host:port"),
    ("upstream:\n  url: redis-cluster://a:7000,b:port\n", "expected host:port, got 'b:port'"),
    ("upstream:\n  url: redis-cluster://::1:7000\n", "write an IPv6 address in brackets"),
    ("upstream:\n  url: redis-cluster://a:7000?timeout=1\n", "takes no ?options"),
    ("upstream:\n  url: redis-cluster://a:7000#name\n", "redis-cluster:// takes no #fragment"),
    ("upstream:\n  url: redis-sentinel://s1:26379,s2:26379\n", "redis-sentinel:// needs the master's name after #"),
    ("upstream:\n  url: redis-sentinel://s1:99999#m\n", "expected host:port"),
    ("upstream:\n  url: redis://h:1/0\n  sentinel_password: x\n",
     "upstream.sentinel_password: only for a redis-sentinel:// upstream.url"),
    ("upstream:\n  url: redis-cluster://a:1\n  sentinel_username: x\n", "upstream.sentinel_username: only for"),
    ("upstream:\n  url: redis-sentinel://s1#m\n  sentinel_password_env: NOPE\n",
     "upstream.sentinel_password_env: environment variable NOPE is not set"),
    ("upstream:\n  url: redis://h:1/0\n  mode: cluster\n", "upstream.mode: set it in upstream.url"),
    ("upstream:\n  url: redis-cluster://a:1\n  seeds: [a]\n", "upstream.seeds: set it in upstream.url"),
    ("upstream:\n  url: redis-clusters://a:1\n", "upstream.url: scheme must be"),
])
def test_bad_cluster_and_sentinel_upstreams_are_refused(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        load_yaml(tmp_path, text)


def test_command_line_accepts_a_cluster_upstream():
    done = subprocess.run([sys.executable, "-m", "proxy", "--upstream", "redis-cluster://:pw@127.0.0.1:7000,"
                           "127.0.0.1:7001", "--listen", "127.0.0.1:7002", "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_sidecar_config_shows_a_cluster_url_without_its_password():
    from proxy.ops.admin import redacted

    cfg = config.load(None, None, {"REDIS_SIDECAR_UPSTREAM": "redis-sentinel://:m-pw@s1:26379,s2:26379#m",
                                   "REDIS_SIDECAR_UPSTREAM__SENTINEL_PASSWORD": "s-pw"})
    shown = redacted(cfg.upstream)
    assert shown["url"] == "redis-sentinel://:(hidden)@s1:26379,s2:26379#m"
    assert (shown["password"], shown["sentinel_password"]) == ("(set)", "(set)")
