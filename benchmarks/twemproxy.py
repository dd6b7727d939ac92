"""twemproxy (nutcracker), the established Redis proxy, run as the peer to beat in the throughput scenario.

twemproxy 0.5 authenticates to the upstream with ``redis_auth`` and, once that is set, answers its clients'
``AUTH <same password>`` itself (anything else gets NOAUTH), so redis-benchmark keeps the upstream's password as it
does with the sidecar. It keeps ``server_connections`` persistent connections, set to the sidecar's pool size.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.servers import free_port, terminate, wait_listening


def available() -> bool:
    return shutil.which("nutcracker") is not None


@dataclass
class NutcrackerProcess:
    """One nutcracker process with a single-server pool on a free loopback port."""

    upstream_host: str
    upstream_port: int
    password: str | None
    connections: int
    workdir: str
    port: int = 0
    proc: subprocess.Popen | None = None

    def _config_text(self) -> str:
        lines = [
            "bench:",
            f"  listen: 127.0.0.1:{self.port}",
            "  redis: true",
            "  hash: fnv1a_64",
            "  distribution: ketama",
            "  preconnect: true",
            "  auto_eject_hosts: false",
            "  timeout: 10000",
            f"  server_connections: {self.connections}",
            "  servers:",
            f"    - {self.upstream_host}:{self.upstream_port}:1",
        ]
        if self.password:
            lines.insert(3, f"  redis_auth: {self.password}")
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> "NutcrackerProcess":
        self.port = self.port or free_port()
        conf = Path(self.workdir) / "nutcracker.yml"
        conf.write_text(self._config_text())
        conf.chmod(0o600)  # it holds the upstream password
        self.proc = subprocess.Popen(
            ["nutcracker", "-c", str(conf), "-s", str(free_port()), "-a", "127.0.0.1",
             "-o", str(Path(self.workdir) / "nutcracker.log"), "-p", str(Path(self.workdir) / "nutcracker.pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_listening(self.proc, self.port, timeout, "nutcracker", self.log_tail)
        return self

    def log_tail(self) -> str:
        log = Path(self.workdir) / "nutcracker.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None
