"""Who gets in, and what leaks: the listening rules, password checks, AUTH rate limits, secrets, client TLS, and the
guarantee that a client's credentials never reach the upstream connections it shares with other clients."""

from __future__ import annotations

import hashlib
import hmac
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import redis

from conftest import ACL_PASSWORD, ACL_USER, UPSTREAM_PASSWORD, sidecar_config, wait_until
from proxy import config
from proxy.access.auth import WRONGPASS, Authenticator, Identity
from proxy.config import ConfigError
from harness.servers import SidecarProcess, free_port
from proxy.upstream.credentials import Credential
from wire import RawClient

AUTH = [b"AUTH", UPSTREAM_PASSWORD.encode()]


# -- 1. no public listener without client authentication -------------------------------------------------------------

@pytest.mark.parametrize("listen,auth,upstream_url,allowed", [
    ("0.0.0.0:6380", {"mode": "none"}, "redis://:pw@127.0.0.1:1/0", False),
    ("[::]:6380", {"mode": "none"}, "redis://:pw@127.0.0.1:1/0", False),
    ("10.1.2.3:6380", {"mode": "none"}, "redis://:pw@127.0.0.1:1/0", False),
    ("sidecar.example:6380", {"mode": "none"}, "redis://:pw@127.0.0.1:1/0", False),
    # passthrough in front of an upstream without a password lets everyone in, too
    ("0.0.0.0:6380", {"mode": "passthrough"}, "redis://127.0.0.1:1/0", False),
    ("0.0.0.0:6380", {"mode": "passthrough"}, "redis://:pw@127.0.0.1:1/0", True),
    ("0.0.0.0:6380", {"mode": "password", "users": [{"name": "a", "password": "p"}]}, "redis://127.0.0.1:1/0", True),
    ("0.0.0.0:6380", {"mode": "none", "allow_public_without_auth": True}, "redis://127.0.0.1:1/0", True),
    ("127.0.0.1:6380", {"mode": "none"}, "redis://127.0.0.1:1/0", True),
    ("[::1]:6380", {"mode": "none"}, "redis://127.0.0.1:1/0", True),
    ("localhost:6380", {"mode": "none"}, "redis://127.0.0.1:1/0", True),
])
def test_public_listen_needs_client_authentication(listen, auth, upstream_url, allowed):
    raw = {"listen": listen, "client_auth": auth, "upstream": {"url": upstream_url}}
    if allowed:
        config.build(raw, environ={})
    else:
        with pytest.raises(ConfigError, match="is not a loopback address") as info:
            config.build(raw, environ={})
        assert "allow_public_without_auth" in str(info.value)  # the message says how to mean it


def test_public_listen_refused_before_any_socket_is_opened():
    port = free_port("0.0.0.0")
    proc = subprocess.run([sys.executable, "-m", "proxy", "--listen", f"0.0.0.0:{port}", "--client-auth", "none",
                           "--upstream", "redis://127.0.0.1:1/0"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "is not a loopback address" in proc.stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


# -- 2. passwords compared in constant time -------------------------------------------------------------------------

class TrapStr(str):
    """A password that fails the test if anything compares it directly (== short-circuits at the first difference)."""

    def _trap(self, *a):
        raise AssertionError("a password was compared directly, not in constant time")

    __eq__ = __ne__ = __lt__ = __gt__ = __le__ = __ge__ = __contains__ = startswith = endswith = _trap
    __hash__ = str.__hash__


@pytest.mark.parametrize("mode", ["password", "passthrough", "none"])
def test_passwords_are_only_compared_as_fixed_length_digests_in_constant_time(monkeypatch, mode):
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    users = (config.ClientUser("app", "app-secret"), config.ClientUser("ops", "ops-secret", admin=True))
    cfg = config.ClientAuthConfig(mode=mode, users=users if mode == "password" else users[1:])
    auth = Authenticator(cfg, Credential(None, "upstream-secret"), control=None, failures_per_minute=20)
    for user, pw in (("app", "app-secret"), ("app", "app-secreT"), ("app", "x"), ("nobody", "app-secret"),
                     (None, "upstream-secret"), (None, "upstream-secreX"), ("ops", "ops-secret")):
        auth.check_local(user, TrapStr(pw))
    if mode != "none":
        assert compared, "no constant-time comparison was made"
        assert all(isinstance(a, bytes) and len(a) == len(b) == 32 for a, b in compared)  # SHA-256 digests
        for secret in (b"app-secret", b"upstream-secret", b"ops-secret"):
            assert not any(secret in a or secret in b for a, b in compared)
    # the known passwords are held as salted digests only
    assert "app-secret" not in repr(vars(auth)) and "upstream-secret" not in repr(auth._users)


def test_admin_passwords_are_compared_in_constant_time(monkeypatch):
    compared = []
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or a == b)
    auth = Authenticator(config.ClientAuthConfig(mode="passthrough", users=(
        config.ClientUser("ops", "ops-secret", admin=True),)), Credential(None, "u"), control=None,
        failures_per_minute=20)
    identity = auth.check_local("ops", TrapStr("ops-secret"))
    assert isinstance(identity, Identity) and identity.admin
    assert auth.check_local("ops", TrapStr("ops-secreX")) == WRONGPASS
    assert compared and all(len(a) == len(b) == hashlib.sha256().digest_size for a, b in compared)


# -- 3. failed AUTH attempts are rate-limited per connection ---------------------------------------------------------

def test_failed_auth_is_rate_limited_per_address_and_user(upstream):
    """Failures are counted per source address and per user name, so reconnecting does not reset them; past the
    limit only a credential already known good passes, and anything else costs its connection."""
    cfg = sidecar_config(upstream, limits={"auth_failures_per_minute": 3},
                         client_auth={"mode": "password", "users": [{"name": "app", "password": "app-secret"}]})
    limited = b"-WRONGPASS too many failed AUTH attempts from this address or for this user " \
              b"(limits.auth_failures_per_minute)\r\n"
    with SidecarProcess(config=cfg) as sidecar:
        with RawClient(sidecar.port) as c:
            c.send(b"".join(
                f"AUTH app guess{i}\r\n".encode() for i in range(3)) + b"HELLO 3 AUTH app guess3\r\n"
                b"AUTH app app-secret\r\nPING\r\n")
            assert [c.read_reply() for _ in range(3)] == \
                [b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"] * 3
            assert c.read_reply() == limited
            assert c.closed_by_peer()  # and nothing after it was run
        with RawClient(sidecar.port) as again:  # a new connection from the same address is still limited ...
            assert again.call([b"AUTH", b"app", b"guess4"]) == [limited]
            assert again.closed_by_peer()
        with RawClient(sidecar.port) as good:  # ... but the right password still gets in
            assert good.call([b"AUTH", b"app", b"app-secret"], [b"PING"]) == [b"+OK\r\n", b"+PONG\r\n"]


def test_failed_passthrough_auth_reaches_the_upstream_a_bounded_number_of_times(upstream):
    """In passthrough mode a wrong password is checked upstream, on a few connections the sidecar keeps for that:
    clients hammering AUTH, on one connection or many, cost the upstream at most the limit in checks and a handful
    of connections."""
    cfg = sidecar_config(upstream, limits={"auth_failures_per_minute": 5})

    def connections_received() -> int:  # (counts the INFO client itself)
        return upstream.client().info("stats")["total_connections_received"]

    def steady() -> int | None:  # the sidecar's start-up connects have all landed
        first = connections_received()
        time.sleep(0.3)
        second = connections_received()
        return second if second == first + 1 else None  # only the second INFO client arrived meanwhile

    with SidecarProcess(config=cfg) as sidecar:
        before = wait_until(steady, "the sidecar kept opening upstream connections while idle")
        auths_before = upstream.client().info("commandstats")["cmdstat_auth"]["calls"]
        with RawClient(sidecar.port) as c:
            c.send(b"".join(f"AUTH guess-{i}\r\n".encode() for i in range(50)))
            replies = [c.read_reply() for _ in range(6)]
            assert c.closed_by_peer()
        for i in range(20):  # reconnecting does not reset the count
            with RawClient(sidecar.port) as c:
                assert c.call([b"AUTH", f"again-{i}".encode()])[0].startswith(b"-WRONGPASS too many failed")
        after = connections_received()
        auths = upstream.client().info("commandstats")["cmdstat_auth"]["calls"] - auths_before
    assert replies[:5] == [b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"] * 5
    assert replies[5].startswith(b"-WRONGPASS too many failed AUTH attempts")
    assert after - before - 1 <= 2, after - before  # (-1: the INFO client itself; 1: the reused check connection)
    assert auths <= 5 + 1 + 3, auths  # the five checked, and the INFO clients' own AUTHs


# -- 4. secrets never appear in logs, errors, metrics or CLIENT LIST --------------------------------------------------

SECRETS = {"upstream": "Upstream-Secret-7f3a", "client": "Client-Secret-91bd", "admin": "Admin-Secret-c04e",
           "guess": "Wrong-Guess-Secret-55aa"}


def leaks(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return [name for name, secret in SECRETS.items() if secret in text or secret.lower() in text.lower()]


def test_secrets_never_appear_in_logs_errors_metrics_or_client_lists(tmp_path):
    metrics_port = free_port()
    with _secret_upstream() as up:
        cfg = {"upstream": {"url": up.url()}, "log": {"level": "debug"},
               "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
               "client_auth": {"mode": "password", "users": [
                   {"name": "app", "password": SECRETS["client"]},
                   {"name": "ops", "password": SECRETS["admin"], "admin": True}]}}
        seen: list[bytes] = []
        with SidecarProcess(config=cfg) as sidecar:
            with RawClient(sidecar.port) as c:
                seen += c.call([b"AUTH", b"app", SECRETS["guess"].encode()],
                               [b"HELLO", b"3", b"AUTH", b"app", SECRETS["guess"].encode()],
                               [b"AUTH", b"nobody", SECRETS["client"].encode()],
                               [b"AUTH", b"app", SECRETS["client"].encode(), b"extra"],
                               [b"AUTH", b"app", SECRETS["client"].encode()],
                               [b"HELLO", b"3", b"AUTH", b"app", SECRETS["client"].encode(), b"SETNAME", b"n"],
                               [b"CLIENT", b"LIST"], [b"CLIENT", b"INFO"], [b"INFO", b"everything"],
                               [b"MULTI"], [b"AUTH", b"app", SECRETS["client"].encode()], [b"DISCARD"],
                               [b"SIDECAR", b"CONFIG"])
            with RawClient(sidecar.port) as ops:
                seen += ops.call([b"AUTH", b"ops", SECRETS["admin"].encode()], [b"SIDECAR", b"CONFIG"],
                                 [b"SIDECAR", b"INFO"], [b"SIDECAR", b"CLIENTS"], [b"SIDECAR", b"POOLS"],
                                 [b"CLIENT", b"LIST"])
                assert b"(set)" in seen[-5]  # SIDECAR CONFIG shows that passwords are set, not what they are
            with RawClient(sidecar.port) as bad:
                bad.send(b"AUTH app " + SECRETS["guess"].encode() + b"\r\n*1\r\n$x\r\n")
                seen += [bad.read_reply(), bad.read_reply()]
            for path in ("/metrics", "/healthz", "/readyz"):
                seen.append(urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}{path}", timeout=10).read())
            log = sidecar.log_text()
        # the sidecar's own login rejected, and the upstream unreachable: the errors name the user, not the password
        for url in (up.url(password=SECRETS["guess"]), f"redis://:{SECRETS['upstream']}@127.0.0.1:{free_port()}/0"):
            with SidecarProcess(config={"upstream": {"url": url, "connect_timeout": 0.5}, "log": {"level": "debug"},
                                        "client_auth": {"mode": "none"}}) as broken:
                with RawClient(broken.port) as c:
                    seen += c.call([b"GET", b"k"], [b"INFO", b"sidecar"])
                    # "cannot connect ..." or, once the start-up attempt has failed, "upstream unavailable: ..."
                    assert seen[-2].startswith(b"-ERR ") and b"upstream" in seen[-2], seen[-2]
                time.sleep(0.3)
                log += broken.log_text()
        checks = [
            subprocess.run([sys.executable, "-m", "proxy", "--upstream", up.url(), "--check"], capture_output=True,
                           text=True),
            subprocess.run([sys.executable, "-m", "proxy", "--upstream", up.url().replace("/0", "/x"), "--check"],
                           capture_output=True, text=True),
            subprocess.run([sys.executable, "-m", "proxy", "--upstream", up.url().replace(":", "|", 1), "--check"],
                           capture_output=True, text=True),
        ]
        cfg_repr = repr(config.build({"upstream": {"url": up.url()}, "client_auth": cfg["client_auth"]}, environ={}))
    assert [r.returncode for r in checks] == [0, 2, 2]
    assert "WRONGPASS" in log or "rejected the sidecar's credentials" in log  # the failures were logged ...
    assert "client=" in log and "AUTH" not in log.replace("AUTH attempts", "")  # ... clients too, AUTH never
    for where, text in [("replies", b"".join(seen)), ("log", log), ("config repr", cfg_repr),
                        *((f"--check #{i}", r.stdout + r.stderr) for i, r in enumerate(checks))]:
        assert not leaks(text), f"{leaks(text)} secret(s) in the {where}"


def _secret_upstream():
    from harness.servers import EmbeddedServer

    return EmbeddedServer(password=SECRETS["upstream"], users={ACL_USER: ACL_PASSWORD})


# -- 5. TLS for clients -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_sidecar_files(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    from harness.servers import make_tls_files

    return make_tls_files(str(tmp_path_factory.mktemp("client-tls")))


def test_tls_for_clients_with_redis_py_and_redis_cli(upstream, tls_sidecar_files):
    files = tls_sidecar_files
    cfg = sidecar_config(upstream, tls={"cert_file": files.cert, "key_file": files.key})
    with SidecarProcess(config=cfg) as sidecar:
        client = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, ssl=True, ssl_ca_certs=files.ca,
                             socket_timeout=10)
        assert client.set("over-tls", "yes") and client.get("over-tls") == b"yes"
        conn = client.connection_pool.get_connection()
        assert conn._sock.version().startswith("TLS")  # really TLS, certificate verified against the CA
        client.connection_pool.release(conn)
        assert "(TLS)" in sidecar.log_text()
        # a plaintext client is not understood: the handshake fails and it is closed, nothing is served
        with socket.create_connection(("127.0.0.1", sidecar.port), timeout=10) as plain:
            plain.sendall(b"*2\r\n$4\r\nAUTH\r\n$15\r\n" + UPSTREAM_PASSWORD.encode() + b"\r\n")
            plain.settimeout(10)
            assert b"+OK" not in plain.recv(100)
        # a client that does not trust the sidecar's CA refuses it
        with pytest.raises(redis.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED|certificate verify"):
            redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, ssl=True, socket_timeout=5, retry=None).ping()
        if shutil.which("redis-cli") and "--tls" in subprocess.run(["redis-cli", "--help"], capture_output=True,
                                                                   text=True).stderr:
            out = subprocess.run(["redis-cli", "-p", str(sidecar.port), "--tls", "--cacert", files.ca,
                                  "--no-auth-warning", "-a", UPSTREAM_PASSWORD, "GET", "over-tls"],
                                 capture_output=True, text=True, timeout=30)
            assert out.stdout.strip() == "yes", out.stderr
        # SIGTERM with an idle TLS client connected (redis-py's pooled connection never answers close_notify): the
        # drain closes it without waiting out shutdown_timeout and cutting it off
        assert client.ping()
        assert sidecar.stop() == 0
        assert "cut off" not in sidecar.log_text(), sidecar.log_text()[-1000:]


def test_tls_client_certificates_can_be_required(upstream, tls_sidecar_files, tmp_path):
    files = tls_sidecar_files
    cfg = sidecar_config(upstream, tls={"cert_file": files.cert, "key_file": files.key, "ca_file": files.ca,
                                        "require_client_cert": True})
    with SidecarProcess(config=cfg) as sidecar:
        anonymous = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, ssl=True, ssl_ca_certs=files.ca,
                                socket_timeout=5, retry=None)  # (redis-py 8 would retry for 5 s)
        with pytest.raises(redis.exceptions.ConnectionError):
            anonymous.ping()
        # (the test CA signed one certificate; it serves as the client's here)
        known = redis.Redis(port=sidecar.port, password=UPSTREAM_PASSWORD, ssl=True, ssl_ca_certs=files.ca,
                            ssl_certfile=files.cert, ssl_keyfile=files.key, socket_timeout=10)
        assert known.ping()
    # mutual TLS is client authentication: it may listen beyond loopback without passwords
    config.build({"listen": "0.0.0.0:6380", "client_auth": {"mode": "none"}, "upstream": {"url": "redis://h:1"},
                  "tls": {"cert_file": files.cert, "key_file": files.key, "ca_file": files.ca,
                          "require_client_cert": True}}, environ={})


@pytest.mark.parametrize("tls,message", [
    ({"cert_file": "CERT"}, "tls: cert_file and key_file are both needed"),
    ({"cert_file": "CERT", "key_file": "KEY", "require_client_cert": True},
     "tls.require_client_cert: needs tls.ca_file"),
    ({"cert_file": "/nonexistent.pem", "key_file": "KEY"}, "tls.cert_file: /nonexistent.pem does not exist"),
    ({"cert_file": "KEY", "key_file": "CERT"}, "tls: cannot load the certificate, key or CA"),
    ({"cert_file": "CERT", "key_file": "KEY", "ca_file": "KEY"}, "tls: cannot load the certificate, key or CA"),
    ({"cert_file": "CERT", "key_file": "KEY", "verify": True}, "tls.verify: unknown key"),
])
def test_tls_settings_are_checked_at_start(tls_sidecar_files, tls, message):
    files = tls_sidecar_files
    tls = {k: {"CERT": files.cert, "KEY": files.key}.get(v, v) if isinstance(v, str) else v for k, v in tls.items()}
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        config.build({"tls": tls}, environ={})


# -- 6. a client's AUTH / HELLO AUTH never reaches the shared upstream connections -------------------------------------

def test_client_credentials_never_reach_the_shared_upstream_connections(upstream):
    """Watch the upstream with MONITOR while clients authenticate through the sidecar in every way (right and wrong
    passwords, ACL users, HELLO AUTH, RESP3, RESET and again): every upstream connection sends at most one
    AUTH/HELLO, its own handshake, as its first command; after it, none. Clients of the default user keep running
    as the default user."""
    with SidecarProcess(config=sidecar_config(upstream, pool={"size": 2})) as sidecar:
        mon = socket.create_connection(("127.0.0.1", upstream.port), timeout=10)
        mon.sendall(b"AUTH " + UPSTREAM_PASSWORD.encode() + b"\r\nMONITOR\r\n")
        assert mon.recv(100).startswith(b"+OK\r\n")
        time.sleep(0.1)
        script = [AUTH, [b"HELLO", b"3", b"AUTH", b"default", UPSTREAM_PASSWORD.encode()],
                  [b"AUTH", ACL_USER.encode(), ACL_PASSWORD.encode()], [b"AUTH", b"wrong-password"],
                  [b"HELLO", b"2", b"AUTH", ACL_USER.encode(), b"wrong"], [b"RESET"], AUTH,
                  [b"AUTH", b"default", UPSTREAM_PASSWORD.encode()], [b"SET", b"cred:k", b"v"], [b"GET", b"cred:k"],
                  [b"ACL", b"WHOAMI"]]
        whoami = []
        for i in range(20):
            with RawClient(sidecar.port) as c:
                replies = c.call(*script[i % 3:])
                whoami.append(replies[-1])
        with RawClient(sidecar.port) as c:  # an ACL user's commands run as that user, on its own connections
            assert c.call([b"AUTH", ACL_USER.encode(), ACL_PASSWORD.encode()], [b"ACL", b"WHOAMI"])[1] == \
                b"$3\r\napp\r\n"
        time.sleep(0.3)
        mon.settimeout(0.5)
        lines = b""
        try:
            while True:
                chunk = mon.recv(1 << 20)
                if not chunk:
                    break
                lines += chunk
        except socket.timeout:
            pass
        mon.close()
    assert set(whoami) == {b"$7\r\ndefault\r\n"}
    per_connection: dict[str, list[str]] = {}
    for line in lines.decode(errors="replace").splitlines():
        if line.startswith("+") and "[" in line:  # +1700000000.123456 [0 127.0.0.1:5555] "get" "k"
            addr = line.split("[", 1)[1].split("]", 1)[0].split(" ", 1)[1]
            command = line.split("]", 1)[1].strip().split(" ", 1)[0].strip('"').lower()
            per_connection.setdefault(addr, []).append(command)
    assert per_connection, "MONITOR saw nothing"
    # the clients' commands ran on a handful of pool connections (2 per user and protocol), not one per client,
    # and none of them ever authenticated again after its handshake
    carriers = {addr: cmds for addr, cmds in per_connection.items() if {"set", "get", "acl"} & set(cmds)}
    assert 1 <= len(carriers) <= 2 * 3 + 1, len(carriers)
    for addr, commands in carriers.items():
        auths = [i for i, cmd in enumerate(commands) if cmd in ("auth", "hello")]
        assert auths in ([], [0]), f"{addr} sent AUTH/HELLO after its handshake: {commands[:12]}"
    # the others: the one connection the sidecar keeps to check credentials (passthrough mode) with AUTH alone,
    # and the pool connections' handshakes
    checkers = [cmds for addr, cmds in per_connection.items() if addr not in carriers]
    assert all(set(cmds) <= {"auth", "hello", "client", "select"} for cmds in checkers), checkers
    assert sum(1 for cmds in checkers if cmds.count("auth") > 1) <= 1, checkers


# -- 7. where clients share the sidecar's upstream login, they cannot read or change it ---------------------------------

@pytest.mark.parametrize("mode", ["password", "none"])
def test_clients_sharing_the_upstream_login_cannot_read_or_change_it(upstream, mode):
    auth = {"mode": mode, "users": [{"name": "app", "password": "app-secret"}] if mode == "password" else []}
    with SidecarProcess(config=sidecar_config(upstream, client_auth=auth)) as sidecar, RawClient(sidecar.port) as c:
        if mode == "password":
            assert c.call([b"AUTH", b"app", b"app-secret"]) == [b"+OK\r\n"]
        for args in ([b"CONFIG", b"GET", b"requirepass"], [b"config", b"get", b"*"], [b"CONFIG", b"GET", b"*AUTH"],
                     [b"CONFIG", b"SET", b"requirepass", b"mine-now"], [b"ACL", b"GETUSER", b"default"],
                     [b"ACL", b"LIST"], [b"ACL", b"SETUSER", b"default", b"nopass"]):
            reply = c.call(args)[0]
            assert reply.startswith(b"-ERR '%s %s' is not allowed through the sidecar: " % (
                args[0].upper(), args[1].upper())) and reply.endswith(b"(client_auth.protect_upstream_login)\r\n")
            assert UPSTREAM_PASSWORD.encode() not in reply
        # what does not touch the login still works, byte for byte as direct
        with RawClient(upstream.port) as direct:
            direct.call(AUTH)
            for args in ([b"CONFIG", b"GET", b"maxmemory-policy"], [b"CONFIG", b"GET", b"databases", b"timeout"],
                         [b"ACL", b"WHOAMI"], [b"ACL", b"CAT", b"keyspace"]):
                assert c.call(args) == direct.call(args)
            assert c.call([b"MULTI"], [b"CONFIG", b"GET", b"requirepass"], [b"EXEC"])[2].startswith(b"-EXECABORT")
    assert redis.Redis(port=upstream.port, password=UPSTREAM_PASSWORD).ping(), "the upstream password is unchanged"


def test_passthrough_clients_and_the_opt_out_reach_the_upstream_config(upstream):
    """A passthrough client runs as the user it authenticated as: what it may read is the upstream's call."""
    for auth in ({"mode": "passthrough"}, {"mode": "none", "protect_upstream_login": False}):
        with SidecarProcess(config=sidecar_config(upstream, client_auth=auth)) as sidecar, \
                RawClient(sidecar.port) as c:
            if auth["mode"] == "passthrough":
                c.call(AUTH)
            assert c.call([b"CONFIG", b"GET", b"requirepass"]) == [
                b"*2\r\n$11\r\nrequirepass\r\n$%d\r\n%s\r\n" % (len(UPSTREAM_PASSWORD), UPSTREAM_PASSWORD.encode())]
