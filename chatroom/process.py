"""Run the chatroom as people run it, ``python -m chatroom``, in a process of its own (for tests, demo, benchmarks)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

from harness.servers import ChildProcess, free_port

# Straight to the loopback port, whatever HTTP_PROXY says.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class ChatroomProcess(ChildProcess):
    """One chatroom process on a loopback port; ``start()`` returns once its page is served."""

    redis_url: str
    port: int = 0
    host: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = ""
    proc: subprocess.Popen | None = None
    log_name = "chatroom.log"  # a class attribute (no annotation), not a field

    def __post_init__(self) -> None:
        self.workdir = self.workdir or tempfile.mkdtemp(prefix="chatroom-proc-")
        if not self.port:
            self.port = free_port(self.host)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> ChatroomProcess:
        # REDIS_URL goes through the environment: on a command line its password would show in ps.
        self._spawn([sys.executable, "-m", "chatroom", "--host", self.host, "--port", str(self.port)],
                    {**os.environ, **self.env, "REDIS_URL": self.redis_url})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise RuntimeError(f"chatroom exited with {code}:\n{self.log_text()[-3000:]}")
            try:
                with _direct.open(self.url + "/", timeout=0.5) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"chatroom did not serve its page within {timeout}s:\n{self.log_text()[-3000:]}")
