"""Configuration as an ops engineer meets it: YAML, environment, flags, and refusals that name the key."""

from __future__ import annotations

import os
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
    with pytest.raises(ConfigError, match=r"upstream\.password_env: environment variable NOPE is not set"):
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
    ("upstream:\n  tls:\n    ca_file: /nonexistent/ca.pem\n",
     "upstream.tls.ca_file: /nonexistent/ca.pem does not exist"),
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


# -- strings stay strings; secrets are never echoed ----------------------------------------------------------------

def env_load(**variables):
    return config.load(None, None, {f"REDIS_SIDECAR_{k}": v for k, v in variables.items()})


@pytest.mark.parametrize("text", ["0123", "yes", "1e3", "null", "on", "~", "12:30", " spaced "])
def test_environment_strings_are_kept_exactly(text):
    cfg = env_load(UPSTREAM__PASSWORD=text, UPSTREAM__USERNAME=text, UPSTREAM__TLS__SERVER_NAME=text)
    assert (cfg.upstream.password, cfg.upstream.username, cfg.upstream.tls.server_name) == (text, text, text)


def test_environment_numbers_booleans_and_lists_follow_the_key_type():
    cfg = env_load(POOL__SIZE="8", UPSTREAM__CONNECT_TIMEOUT="1e0", UPSTREAM__TLS__VERIFY="no",
                   CLIENT_AUTH__PROTECT_UPSTREAM_LOGIN="off", LISTEN="6390, [::1]:6391", METRICS__LISTEN="9121",
                   COMMANDS__DENY="FLUSHALL, keys", UPSTREAM="redis://:pw@h:1/0", UPSTREAM__USERNAME="")
    assert (cfg.pool.size, cfg.upstream.connect_timeout, cfg.upstream.tls.verify) == (8, 1.0, False)
    assert cfg.client_auth.protect_upstream_login is False
    assert cfg.listen_addresses() == [("127.0.0.1", 6390), ("::1", 6391)]
    assert config.metrics_address(cfg.metrics.listen) == ("127.0.0.1", 9121)
    assert cfg.commands.deny == ("FLUSHALL", "keys")
    assert cfg.upstream.username is None  # empty unsets an optional key
    assert env_load(UPSTREAM__TLS="true").upstream.tls.enabled


@pytest.mark.parametrize("variables,message", [
    ({"POOL__SIZE": "eight"}, "pool.size: expected an integer, got 'eight'"),
    ({"POOL__SIZE": "8.0"}, "pool.size: expected an integer, got '8.0'"),
    ({"UPSTREAM__CONNECT_TIMEOUT": "soon"}, "upstream.connect_timeout: expected a number, got 'soon'"),
    ({"UPSTREAM__CONNECT_TIMEOUT": "nan"}, "upstream.connect_timeout: expected a finite number"),
    ({"UPSTREAM__TLS__VERIFY": "maybe"}, "upstream.tls.verify: expected true or false (or yes/no, on/off, 1/0)"),
    ({"LOG__LEVEL": ""}, "log.level: must be debug, info, warning or error, got ''"),
    ({"CLIENT_AUTH__USERS": "ops"}, "client_auth.users: expected a list of users"),
    ({"LOG__LEVEL__MORE": "x"}, "log.level: expected a string, got a mapping"),
])
def test_environment_values_of_the_wrong_type_are_refused_clearly(variables, message):
    with pytest.raises(ConfigError) as info:
        env_load(**variables)
    assert message in str(info.value)


def test_other_sidecar_variables_are_not_config_keys():
    assert env_load(NO_EXTENSIONS="1", WORKERS="4").workers == 1


@pytest.mark.parametrize("line,message", [
    ("  password: 0123", "upstream.password: expected a string, got an integer (put it in quotes"),
    ("  password: yes", "upstream.password: expected a string, got a boolean (put it in quotes"),
    ("  password: 2024-01-01", "upstream.password: expected a string, got a date"),
    ("  password: [a, b]", "upstream.password: expected a string, got a list"),
    ("  username: 0123", "upstream.username: expected a string, got an integer 83 (put it in quotes"),
    ("  username: no", "upstream.username: expected a string, got a boolean false"),
])
def test_yaml_numbers_and_booleans_are_refused_where_a_string_belongs(tmp_path, line, message):
    with pytest.raises(ConfigError) as info:
        load_yaml(tmp_path, f"upstream:\n  url: redis://h:1/0\n{line}\n")
    assert message in str(info.value)
    quoted = line.replace(": ", ': "', 1) + '"'
    if "[" not in line:
        cfg = load_yaml(tmp_path, f"upstream:\n  url: redis://h:1/0\n{quoted}\n")
        assert line.split(": ", 1)[1] in (cfg.upstream.password, cfg.upstream.username)


SECRET_PIECES = ("Zq7", "k9w")  # of the secret Zq7Xk9w: an error never shows it, nor a piece of it


@pytest.mark.parametrize("text,environ", [
    ("upstream:\n  password: [Zq7Xk9w]\n", {}),
    ("upstream:\n  sentinel_password: {Zq7Xk9w: 1}\n", {}),
    ("upstream:\n  password_env: [Zq7Xk9w]\n", {}),
    ("upstream: redis://:Zq7Xk9w@h:1/0\n", {}),
    ("upstream:\n  url: [redis://:Zq7Xk9w@h:1/0]\n", {}),
    ("upstream:\n  url: redis://:Zq7/Xk9w@h:1/0\n", {}),
    ("upstream:\n  url: redis://:Zq7?Xk9w@h:1/0\n", {}),
    ("upstream:\n  url: redis://:Zq7#Xk9w@h:1/0\n", {}),
    ("upstream:\n  url: redis-cluster://:Zq7/Xk9w@a:1,b:2\n", {}),
    ("upstream:\n  url: redis-cluster://:Zq7?Xk9w@a:1,b:2\n", {}),
    ("upstream:\n  url: redis-sentinel://:Zq7#Xk9w@a:1#m\n", {}),
    ("upstream:\n  url: unix://:Zq7/Xk9w@/run/redis.sock\n", {}),
    ("upstream:\n  url: redis://:Zq7[X]k9w@h:1/0\n", {}),
    ("upstream:\n  url: redis://:Zq7Xk9w@h:port/0\n", {}),
    ('upstream:\n  password: "Zq7\\Xk9w"\n', {}),
    ('upstream:\n  password: "Zq7Xk9w\n', {}),
    ("client_auth:\n  users:\n    - ops:Zq7Xk9w\n", {}),
    ("client_auth:\n  users:\n    - {name: ops, password: [Zq7Xk9w]}\n", {}),
    ("", {"REDIS_SIDECAR_UPSTREAM": "redis://:Zq7/Xk9w@h:1/0"}),
    ("", {"REDIS_SIDECAR_UPSTREAM__SENTINEL_PASSWORD": "Zq7Xk9w"}),  # (only for sentinel urls)
])
def test_errors_about_secrets_never_show_them(tmp_path, text, environ):
    with pytest.raises(ConfigError) as info:
        load_yaml(tmp_path, text, environ=environ)
    shown = str(info.value)
    for piece in SECRET_PIECES:
        assert piece not in shown, shown


# -- listen addresses ------------------------------------------------------------------------------------------------

def test_a_bare_port_listens_on_loopback(tmp_path):
    assert config.load(None, {"listen": ["6390"]}, {}).listen_addresses() == [("127.0.0.1", 6390)]
    cfg = load_yaml(tmp_path, "listen: 6390\nmetrics:\n  listen: 9121\n")
    assert cfg.listen_addresses() == [("127.0.0.1", 6390)]
    assert config.metrics_address(cfg.metrics.listen) == ("127.0.0.1", 9121)
    cfg = load_yaml(tmp_path, "listen: [6390, '[::1]:6391']\n")
    assert cfg.listen_addresses() == [("127.0.0.1", 6390), ("::1", 6391)]
    with pytest.raises(ConfigError, match="listen: port out of range in '70000'"):
        config.load(None, {"listen": ["70000"]}, {})


# -- every mistake at once -------------------------------------------------------------------------------------------

MANY_MISTAKES = """\
listen: [6390, nowhere]
upstream:
  url: redis://h:1/0
  port: 7000
  password: 0123
pool:
  sise: 3
  size: 0
client_auth:
  mode: maybe
  users:
    - {name: ops, password_env: NOPE, admin: true}
    - {password: x}
log:
  format: xml
"""


def test_several_mistakes_are_reported_together_each_with_its_key(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_yaml(tmp_path, MANY_MISTAKES)
    problems = info.value.problems
    expected = ["upstream.port: set it in upstream.url", "upstream.password: expected a string",
                "pool.sise: unknown key (did you mean size?)", "client_auth.users[0].password_env: environment",
                "client_auth.users[1].name: required", "listen: expected HOST:PORT or PORT, got 'nowhere'",
                "client_auth.mode: must be none, password or passthrough", "log.format: must be text",
                "pool.size: must be > 0, got 0"]
    for start in expected:
        assert sum(p.startswith(start) for p in problems) == 1, (start, problems)
    assert len(problems) == len(expected), problems  # nothing repeated, no noise from checks built on bad keys
    assert str(info.value) == "\n".join(problems)


def test_the_command_line_lists_every_mistake_and_exits_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(MANY_MISTAKES)
    done = subprocess.run([sys.executable, "-m", "proxy", "--config", str(path), "--check"], capture_output=True,
                          text=True)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0] == "redis-sidecar: 9 configuration errors:"
    assert all(line.startswith("  ") and ": " in line for line in lines[1:]) and len(lines) == 10
    assert done.stdout == ""


# -- --check says what the sidecar will use ----------------------------------------------------------------------

def check_output(*flags, env=None):
    return subprocess.run([sys.executable, "-m", "proxy", *flags, "--check"], capture_output=True, text=True,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("REDIS_SIDECAR_")},
                               **(env or {})})


def test_check_prints_the_effective_upstream_login_listen_and_auth_without_passwords():
    done = check_output("--listen", "6390", "--listen", "[::1]:6391", "--metrics", "9121",
                        env={"REDIS_SIDECAR_UPSTREAM": "rediss://app:Zq7Xk9w@db.internal:6390/2"})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.splitlines()[0] == "configuration OK"
    assert "upstream:       db.internal:6390 (standalone, db 2, TLS on)" in out
    assert "login:          user 'app', password set" in out
    assert "listen:         127.0.0.1:6390, [::1]:6391" in out
    assert "client auth:    passthrough" in out and "metrics:        127.0.0.1:9121" in out
    assert "Zq7Xk9w" not in out
    cluster = check_output(env={"REDIS_SIDECAR_UPSTREAM": "redis-sentinel://s1,s2:5000/1#orders",
                                "PW": "Zq7Xk9w", "REDIS_SIDECAR_UPSTREAM__PASSWORD_ENV": "PW"}).stdout
    assert "master 'orders' via sentinels s1:26379, s2:5000 (sentinel, db 1, TLS off)" in cluster
    assert "password set (from environment variable PW)" in cluster
    assert "sentinel login: user 'default', no password (no AUTH)" in cluster
    assert "Zq7Xk9w" not in cluster


def test_connect_goes_with_check():
    done = subprocess.run([sys.executable, "-m", "proxy", "--connect"], capture_output=True, text=True)
    assert done.returncode == 2 and "--connect goes with --check" in done.stderr
