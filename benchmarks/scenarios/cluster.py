"""Redis Cluster: a legacy app connecting per request with redis-py's ``RedisCluster``, against a plain single-node
client connecting per request to the sidecar, which holds the cluster's topology and connections.

The run starts one cluster (3 primaries + 3 replicas, ``harness.cluster``, the upstream's flavour). At RTT > 0 every
node gets a WAN relay of its own and announces the relay's port (``CONFIG SET cluster-announce-port``), so CLUSTER
SLOTS, CLUSTER SHARDS and MOVED name the relays: RedisCluster and the sidecar both reach every node across the WAN.
At RTT 0 the nodes announce their own ports (no relay). Modes, one request at a time, the chatroom's SADD + SMEMBERS
on one of 16 rooms (their keys on every node):
  direct      ``redis.asyncio.RedisCluster`` per request: the startup node, CLUSTER SLOTS, a connection (and its
              handshake) to the node serving the room, the two commands, close, as a legacy app would do
  proxied     ``redis.asyncio.Redis`` per request to the sidecar, with a plain single-node URL
  persistent  one RedisCluster opened beforehand (the ideal)
Evidence: the cluster's own INFO, summed over its nodes, read before and after each measured run: connections
received, CLUSTER SLOTS and CLUSTER SHARDS calls, AUTH and HELLO calls; per request in the report.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from functools import partial

from redis.asyncio import Redis, RedisCluster

from benchmarks import generator, plan
from benchmarks.config import BenchConfig
from benchmarks.scenarios.connect import HANG_GRACE, SOCKET_TIMEOUT, START_MARGIN, closed_loop
from benchmarks.stack import Endpoint, Stack, _subdir, choose_flavour
from benchmarks.stats import Sample
from benchmarks.wan import WanRelayProcess
from harness.cluster import RedisCluster as ClusterServers
from harness.cluster import poll
from harness.servers import SidecarProcess

RTTS_MS = (0.0, 2.0)
PASSWORD = "bench-cluster-secret"
ROOMS = 16
COUNTED = ("cluster|slots", "cluster|shards", "auth", "hello")


async def chat(client: Redis | RedisCluster, i: int) -> None:
    room = f"bench:room:{i % ROOMS}"
    await client.sadd(room, f"user-{i % 64}")
    await client.smembers(room)


# -- in a generator process ------------------------------------------------------------------------------------------

def _client(mode: str, host: str, port: int) -> Redis | RedisCluster:
    if mode == "proxied":
        return Redis(host=host, port=port, password=PASSWORD, socket_timeout=SOCKET_TIMEOUT)
    return RedisCluster(host=host, port=port, password=PASSWORD, socket_timeout=SOCKET_TIMEOUT)


async def run_requests(mode: str, host: str, port: int, seconds: float, max_requests: int, start_at: float) -> dict:
    if mode == "persistent":
        client = generator.STATE["cluster"]

        async def request(i: int) -> None:
            await chat(client, i)
    else:
        async def request(i: int) -> None:
            fresh = _client(mode, host, port)
            try:
                await chat(fresh, i)
            finally:
                await fresh.aclose()

    await generator.wait_until(start_at)
    with generator.window() as win:
        latencies, errors = await closed_loop(1, seconds, max_requests, request)
    return {"latencies": latencies, "errors": errors, **win}


async def open_persistent(host: str, port: int) -> None:
    client = _client("direct", host, port)
    for i in range(ROOMS):  # every node's connection opened before the clock starts
        await chat(client, i)
    generator.STATE["cluster"] = client


async def close_persistent() -> None:
    client = generator.STATE.pop("cluster", None)
    if client is not None:
        await client.aclose()


# -- in the parent ---------------------------------------------------------------------------------------------------

class ClusterRequests:
    """One mode's requests in a generator process, with the cluster's INFO read around the measured run."""

    def __init__(self, endpoint: Endpoint, nodes: list[tuple[str, int]], seconds: float, max_requests: int) -> None:
        self.endpoint = endpoint
        self.nodes = nodes
        self.seconds = seconds
        self.max_requests = max_requests
        self.pool = generator.pool()
        self.monitors: list[Redis] = []

    async def __aenter__(self) -> ClusterRequests:
        self.monitors = [Redis(host=h, port=p, password=PASSWORD, protocol=2) for h, p in self.nodes]
        await self.counters()  # (the monitors' own connections are made now, not while measuring)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for monitor in self.monitors:
            await monitor.aclose()

    async def counters(self) -> Counter[str]:
        totals: Counter[str] = Counter()
        for monitor in self.monitors:
            totals["connections"] += int((await monitor.info("stats"))["total_connections_received"])
            commands = await monitor.info("commandstats")
            for name in COUNTED:
                totals[name] += int(commands.get(f"cmdstat_{name}", {}).get("calls", 0))
        return totals

    async def _run(self, max_requests: int) -> Sample:
        kwargs = {"mode": self.endpoint.mode, "host": self.endpoint.host, "port": self.endpoint.port,
                  "seconds": self.seconds, "max_requests": max_requests, "start_at": time.monotonic() + START_MARGIN}
        (result,) = await self.pool.call_all([(0, "benchmarks.scenarios.cluster:run_requests", kwargs)],
                                             self.seconds + HANG_GRACE + 10)
        fields = generator.generator_fields([result])
        sample = Sample.from_latencies(result["latencies"], fields.get("generator_wall_s", 0.0), result["errors"])
        return sample.with_extra(commands=2.0 * sample.requests, **fields)

    async def warm(self) -> None:
        if self.endpoint.mode == "persistent":
            await self.pool.call_all([(0, "benchmarks.scenarios.cluster:open_persistent",
                                       {"host": self.endpoint.host, "port": self.endpoint.port})])
        await self._run(5)

    async def measure(self) -> Sample:
        before = await self.counters()
        try:
            sample = await self._run(self.max_requests)
        finally:
            if self.endpoint.mode == "persistent":
                await self.pool.call_all([(0, "benchmarks.scenarios.cluster:close_persistent", {})])
        seen = (await self.counters()) - before
        requests = max(1, sample.requests)
        return sample.with_extra(
            cluster_connections=float(seen["connections"]), cluster_topology_calls=float(
                seen["cluster|slots"] + seen["cluster|shards"]), cluster_auth_hello=float(seen["auth"] + seen["hello"]),
            cluster_connections_per_request=seen["connections"] / requests,
            cluster_topology_per_request=(seen["cluster|slots"] + seen["cluster|shards"]) / requests)


class ClusterBench:
    """The run's cluster and its relays (started by the first block, stopped after the last), and the sidecar of
    the block in progress."""

    def __init__(self, config: BenchConfig, workdir: str) -> None:
        self.config = config
        self.workdir = workdir
        self.servers: ClusterServers | None = None
        self.relays: dict[tuple[str, int], WanRelayProcess] = {}
        self.sidecar: SidecarProcess | None = None

    def enter(self, rtt: float) -> dict[str, Endpoint]:
        if self.servers is None:
            self.servers = ClusterServers(flavour=choose_flavour(self.config), password=PASSWORD,
                                          workdir=_subdir(self.workdir, "cluster")).start()
            self.relays = {a: WanRelayProcess(a[1], 0.0).start() for a in self.servers.seeds}
        reach = self._announce(rtt)
        seeds = ",".join(f"{h}:{p}" for h, p in reach)
        config = {"upstream": {"url": f"redis-cluster://:{PASSWORD}@{seeds}"}, "pool": {"size": self.config.pool_size}}
        if self.config.sidecar_log_level:
            config["log"] = {"level": self.config.sidecar_log_level}
        self.sidecar = SidecarProcess(config=config, workdir=_subdir(self.workdir, f"cluster-sidecar-{rtt:g}")).start()
        assert self.sidecar.proc
        direct = Endpoint("direct", reach[0][0], reach[0][1], PASSWORD)
        return {"direct": direct, "persistent": replace(direct, mode="persistent"),
                "proxied": Endpoint("proxied", "127.0.0.1", self.sidecar.port, PASSWORD, pid=self.sidecar.proc.pid)}

    def _announce(self, rtt: float) -> list[tuple[str, int]]:
        """Every node announces its relay (or, at RTT 0, its own port); returns where each node is reached."""
        assert self.servers
        reach = {}
        for address, relay in self.relays.items():
            relay.set_delay(rtt / 2)
            port = relay.port if rtt else address[1]
            self.servers.call(address, "CONFIG", "SET", "cluster-announce-port", str(port if rtt else 0))
            reach[address] = (address[0], port)
        wanted = set(reach.values())

        def announced() -> bool:  # gossip carries each node's new port to the others within a second or so
            return all({(n.address[0], n.address[1]) for n in self.servers.view(a)} == wanted  # type: ignore[union-attr]
                       for a in self.servers.seeds)  # type: ignore[union-attr]

        def serving() -> bool:
            return all(b"cluster_state:ok" in self.servers.call(a, "CLUSTER", "INFO")  # type: ignore[union-attr]
                       for a in self.servers.seeds)  # type: ignore[union-attr]

        poll(announced, 30, "the nodes did not learn each other's announced ports")
        poll(serving, 30, "the cluster does not serve after the ports changed")
        return [reach[a] for a in self.servers.seeds]

    def leave(self, last: bool) -> None:
        if self.sidecar is not None:
            self.sidecar.stop()
            self.sidecar = None
        if last:
            for relay in self.relays.values():
                relay.stop()
            if self.servers is not None:
                self.servers.stop()
            self.servers = None


def blocks(config: BenchConfig, stack: Stack) -> list[plan.Block]:
    """One block per RTT, its three modes side by side; none with TLS to the upstream (the cluster is plain)."""
    if stack.upstream is None or stack.upstream.endpoint.tls:
        return []
    bench = ClusterBench(config, stack.workdir)
    out = []
    for i, rtt in enumerate(RTTS_MS):
        cells = [plan.Cell("cluster", mode, rtt, {"workload": "chat", "concurrency": 1,
                                                   "client": f"{plan.REDIS_PY} (RedisCluster direct)"},
                           partial(_make, bench, config)) for mode in ("direct", "proxied", "persistent")]
        out.append(plan.Block(f"RTT {rtt:g} ms: Redis Cluster, RedisCluster per request vs the sidecar", rtt,
                              partial(bench.enter, rtt), partial(bench.leave, i == len(RTTS_MS) - 1), cells))
    return out


def _make(bench: ClusterBench, config: BenchConfig, endpoint: Endpoint) -> ClusterRequests:
    assert bench.servers
    return ClusterRequests(endpoint, bench.servers.seeds, config.cluster_seconds, config.max_requests)
