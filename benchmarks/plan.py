"""The plan of a run: blocks of cells, each block one RTT with the processes its modes need.

A cell is one scenario configuration in one mode (``direct``, ``proxied`` for the sidecar, ``proxied-w2`` for the
sidecar with ``--workers 2``, ``persistent`` for the ideal, or ``twemproxy``). A block starts its processes (the
sidecars, twemproxy), then runs its cells in turn ``repeats`` times, a configuration's modes one right after the other,
so a direct, a sidecar and a twemproxy figure are always measured side by side in time (whatever else the machine is
doing then), and stops them.

Every row of issue 13 (the connection rate, the persistent rows, the big reply, the ``--workers`` comparison) is in
one block at RTT 0, where the sidecar, twemproxy and the multi-worker sidecar stand together; the idle-clients
memory has a block of its own, with a fresh sidecar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import redis

from benchmarks import scenarios
from benchmarks.config import BenchConfig
from benchmarks.scenarios import bigreply, chatroom, idle, throughput
from benchmarks.scenarios.connect import ConnectPerRequest, Persistent
from benchmarks.stack import Endpoint, Stack
from benchmarks.twemproxy import available as twemproxy_available

REDIS_PY = f"redis-py {redis.__version__} asyncio"


@dataclass(frozen=True, eq=False)  # identity: cells are dictionary keys while a block runs
class Cell:
    scenario: str  # connect-per-request | chatroom | redis-benchmark | connection-rate | big-reply | idle-clients |
    # cluster
    mode: str  # direct | proxied | proxied-wN | persistent | twemproxy
    rtt_ms: float
    params: dict
    make: Callable[[Endpoint], scenarios.Measurement] = field(repr=False)

    def label(self) -> str:
        p = self.params
        if self.scenario == "connect-per-request":
            return f"{p['workload']} RESP{p['protocol']} c={p['concurrency']}"
        if self.scenario == "redis-benchmark":
            return f"{p['test']} -P {p['pipeline']} -c {p['concurrency']}"
        if self.scenario == "connection-rate":
            return f"{p['test']} -k 0 -c {p['concurrency']}"
        if self.scenario == "big-reply":
            return f"GETs {'with' if p['big_reply'] else 'without'} big reply"
        if self.scenario == "idle-clients":
            return f"{p['clients']} idle clients"
        if self.scenario == "cluster":
            return "cluster chat c=1"
        return f"chatroom {p['users']} users"


@dataclass
class Block:
    """Cells that share an RTT and the processes their modes need, measured in turn within each repeat.

    ``enter`` starts the processes and says where each mode connects; ``leave`` stops them. The connections standing
    at the upstream while the block runs belong to the proxies: each proxy mode's peak counts its own pool (read from
    /proc), the other modes' peaks count only the connections they add. (``owner`` is kept for callers that name the
    mode holding the standing connections; the runner no longer needs it.)
    """

    title: str
    rtt_ms: float
    enter: Callable[[], dict[str, Endpoint]]
    leave: Callable[[], None]
    cells: list[Cell]
    owner: str = ""
    repeats: int | None = None  # instead of the run's, for a block whose measurement changes what it measures


def build(config: BenchConfig, stack: Stack) -> list[Block]:
    blocks: list[Block] = []
    tls = stack.upstream.endpoint.tls  # type: ignore[union-attr]
    twemproxy = twemproxy_available() and not tls  # twemproxy has no TLS
    if "connect" in config.scenarios:
        blocks += [Block(f"RTT {rtt:g} ms: connect-per-request", rtt, partial(_with_sidecar, stack, rtt),
                         stack.stop_sidecar, connect_cells(config, rtt, ("direct", "proxied", "persistent")))
                   for rtt in config.rtts_ms]
    if "chatroom" in config.scenarios and chatroom.available() and not tls:  # its REDIS_URL cannot carry a CA
        # One chatroom process per mode: each holds its own standing connections (Socket.IO's pub/sub).
        rtt = config.chat_rtt_ms
        blocks += [Block(f"RTT {rtt:g} ms: chatroom direct", rtt, partial(_direct, stack, rtt), lambda: None,
                         [_chatroom_cell(config, "direct", rtt)]),
                   Block(f"RTT {rtt:g} ms: chatroom proxied", rtt, partial(_with_sidecar, stack, rtt),
                         stack.stop_sidecar, [_chatroom_cell(config, "proxied", rtt)])]
    if "php" in config.scenarios:
        from benchmarks.scenarios import php  # imported here: it builds its blocks from this module's Block and Cell
        blocks += php.blocks(config, stack)
    if "cluster" in config.scenarios:
        from benchmarks.scenarios import cluster  # (as php: its blocks are made of this module's)
        blocks += cluster.blocks(config, stack)
    cells = issue13_cells(config, stack, twemproxy, tls)
    if cells:
        workers = config.compare_workers if any(c.mode.startswith("proxied-w") for c in cells) else None
        blocks.append(Block("RTT 0 ms: connection rate, persistent clients, big reply, --workers", 0,
                            partial(_rtt0, stack, twemproxy, workers), partial(_stop_all, stack), cells))
    if "idle" in config.scenarios and not tls:
        modes = ("direct", "proxied", *(("twemproxy",) if twemproxy else ()))
        # One repeat, on fresh processes: a process keeps the memory its first clients made it grow by (allocator
        # arenas, RSS high-water), so a second round of clients would seem to cost nothing.
        blocks.append(Block("RTT 0 ms: idle clients", 0, partial(_rtt0, stack, twemproxy, None),
                            partial(_stop_all, stack), [_idle_cell(config, stack, m) for m in modes], repeats=1))
    return blocks


def _direct(stack: Stack, rtt: float) -> dict[str, Endpoint]:
    stack.set_rtt(rtt)
    return {"direct": stack.direct()}


def _with_sidecar(stack: Stack, rtt: float) -> dict[str, Endpoint]:
    stack.set_rtt(rtt)
    direct = stack.direct()
    return {"direct": direct, "persistent": direct, "proxied": stack.start_sidecar()}


def _rtt0(stack: Stack, twemproxy: bool, workers: int | None) -> dict[str, Endpoint]:
    """The direct path, the sidecar, and twemproxy and the multi-worker sidecar when asked for, all at once."""
    endpoints = _with_sidecar(stack, 0)
    if twemproxy:
        endpoints["twemproxy"] = stack.start_twemproxy()
    if workers:
        endpoint = stack.start_sidecar(workers)
        endpoints[endpoint.mode] = endpoint
        stack.wait_workers(endpoint, workers)
    return endpoints


def _stop_all(stack: Stack) -> None:
    stack.stop_sidecar()
    stack.stop_twemproxy()


def connect_cells(config: BenchConfig, rtt: float, modes: tuple[str, ...]) -> list[Cell]:
    """The connect-per-request cells, each configuration's modes next to each other so they run side by side; the
    persistent ideal is measured in each RESP version, like the others."""
    return [_connect_cell(config, m, rtt, w, p, c)
            for w in config.workloads for c in config.concurrency for p in config.protocols for m in modes]


def _connect_cell(config: BenchConfig, mode: str, rtt: float, workload: str, protocol: int, level: int) -> Cell:
    kind = Persistent if mode == "persistent" else ConnectPerRequest
    return Cell("connect-per-request", mode, rtt,
                {"workload": workload, "protocol": protocol, "concurrency": level, "client": REDIS_PY},
                partial(_make_connect, kind, workload, protocol, level, config))


def _make_connect(kind: type[ConnectPerRequest], workload: str, protocol: int, concurrency: int,
                  config: BenchConfig, endpoint: Endpoint) -> ConnectPerRequest:
    return kind(endpoint, workload, protocol, concurrency, config.seconds, config.max_requests)


def _chatroom_cell(config: BenchConfig, mode: str, rtt: float) -> Cell:
    return Cell("chatroom", mode, rtt,
                {"users": config.chat_users, "messages": config.chat_messages, "concurrency": config.chat_users,
                 "client": "python-socketio"},
                lambda endpoint: chatroom.ChatroomUsers(endpoint, config.chat_users, config.chat_messages))


# -- the RTT 0 block: issue 13's rows ----------------------------------------------------------------------------------

def issue13_cells(config: BenchConfig, stack: Stack, twemproxy: bool, tls: bool) -> list[Cell]:
    chosen = set(config.scenarios)
    peers = ("direct", "proxied", *(("twemproxy",) if twemproxy else ()))
    wn = f"proxied-w{config.compare_workers}"
    cells: list[Cell] = []

    def modes(selected: bool, compared: bool) -> tuple[str, ...]:
        """The row's modes: all peers when its scenario is selected, plus --workers N when compared on it."""
        out = peers if selected else ()
        if compared and "workers" in chosen:
            out = (*(out or ("proxied",)), wn)
        return out

    if throughput.available():
        for clients, requests in zip(config.connrate_clients, config.connrate_requests):
            for mode in modes("connrate" in chosen, clients == config.bench_clients):
                cells.append(_benchmark_cell("connection-rate", mode, "get", clients, 1, requests, True))
        for p in config.pipelines:
            for test in ("get", "set"):
                for mode in modes("throughput" in chosen, (test, p) == ("get", 16)):
                    cells.append(_benchmark_cell("redis-benchmark", mode, test, config.bench_clients, p,
                                                 config.bench_requests[p], False))
    if "bigreply" in chosen and not tls:
        for mode in peers:
            cells += [_big_cell(config, stack, mode, big) for big in (False, True)]
    return cells


def _benchmark_cell(scenario: str, mode: str, test: str, clients: int, pipeline: int, requests: int,
                    reconnect: bool) -> Cell:
    return Cell(scenario, mode, 0,
                {"test": test.upper(), "pipeline": pipeline, "concurrency": clients, "client": "redis-benchmark"},
                partial(throughput.RedisBenchmark, test=test, clients=clients, pipeline=pipeline, requests=requests,
                        reconnect=reconnect))


def _big_cell(config: BenchConfig, stack: Stack, mode: str, big: bool) -> Cell:
    def make(endpoint: Endpoint) -> bigreply.BigReply:
        assert stack.upstream
        return bigreply.BigReply(endpoint, stack.upstream.endpoint, big, config.big_elements, config.big_clients,
                                 config.big_period_ms, config.big_seconds)

    return Cell("big-reply", mode, 0,
                {"big_reply": big, "elements": config.big_elements, "concurrency": config.big_clients,
                 "period_ms": config.big_period_ms, "client": "raw RESP2 (asyncio)"}, make)


def _idle_cell(config: BenchConfig, stack: Stack, mode: str) -> Cell:
    def make(endpoint: Endpoint) -> idle.IdleClients:
        assert stack.upstream
        return idle.IdleClients(endpoint, stack.upstream.endpoint, stack.upstream_pid, config.idle_clients)

    return Cell("idle-clients", mode, 0,
                {"clients": config.idle_clients, "concurrency": idle.AT_ONCE, "client": "raw RESP2 (asyncio)"}, make)
