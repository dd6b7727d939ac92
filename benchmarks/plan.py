"""The plan of a run: blocks of cells, each block one RTT with the processes its modes need.

A cell is one scenario configuration in one mode (``direct``, ``proxied``, ``persistent`` for the ideal, or
``twemproxy``). A block starts its processes (the sidecar, twemproxy), then runs its cells in turn ``repeats``
times, a configuration's modes one right after the other, so a direct and a proxied figure are always measured
side by side in time (whatever else the machine is doing then), and stops them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import redis

from benchmarks import scenarios
from benchmarks.config import BenchConfig
from benchmarks.scenarios import chatroom, throughput
from benchmarks.scenarios.connect import ConnectPerRequest, Persistent
from benchmarks.stack import Endpoint, Stack
from benchmarks.twemproxy import available as twemproxy_available

REDIS_PY = f"redis-py {redis.__version__} asyncio"


@dataclass(frozen=True, eq=False)  # identity: cells are dictionary keys while a block runs
class Cell:
    scenario: str  # connect-per-request | chatroom | redis-benchmark
    mode: str  # direct | proxied | persistent | twemproxy
    rtt_ms: float
    params: dict
    make: Callable[[Endpoint], scenarios.Measurement] = field(repr=False)

    def label(self) -> str:
        p = self.params
        if self.scenario == "connect-per-request":
            return f"{p['workload']} RESP{p['protocol']} c={p['concurrency']}"
        if self.scenario == "redis-benchmark":
            return f"{p['test']} -P {p['pipeline']} -c {p['concurrency']}"
        return f"chatroom {p['users']} users"


@dataclass
class Block:
    """Cells that share an RTT and the processes their modes need, measured in turn within each repeat.

    ``enter`` starts the processes and says where each mode connects; ``leave`` stops them. ``owner`` is the mode
    whose process holds the connections standing at the upstream while the block runs (the sidecar's pool): its
    peak counts them, the other modes' peaks count only the connections they add.
    """

    title: str
    rtt_ms: float
    enter: Callable[[], dict[str, Endpoint]]
    leave: Callable[[], None]
    cells: list[Cell]
    owner: str


def build(config: BenchConfig, stack: Stack) -> list[Block]:
    blocks: list[Block] = []
    if "connect" in config.scenarios:
        blocks += [Block(f"RTT {rtt:g} ms: connect-per-request", rtt, partial(_with_sidecar, stack, rtt),
                         stack.stop_sidecar, connect_cells(config, rtt, ("direct", "proxied", "persistent")),
                         "proxied")
                   for rtt in config.rtts_ms]
    tls = stack.upstream.endpoint.tls  # type: ignore[union-attr]
    if "chatroom" in config.scenarios and chatroom.available() and not tls:  # its REDIS_URL cannot carry a CA
        # One chatroom process per mode: each holds its own standing connections (Socket.IO's pub/sub).
        rtt = config.chat_rtt_ms
        blocks += [Block(f"RTT {rtt:g} ms: chatroom direct", rtt, partial(_direct, stack, rtt), lambda: None,
                         [_chatroom_cell(config, "direct", rtt)], "direct"),
                   Block(f"RTT {rtt:g} ms: chatroom proxied", rtt, partial(_with_sidecar, stack, rtt),
                         stack.stop_sidecar, [_chatroom_cell(config, "proxied", rtt)], "proxied")]
    if "php" in config.scenarios:
        from benchmarks.scenarios import php  # imported here: it builds its blocks from this module's Block and Cell
        blocks += php.blocks(config, stack)
    if "throughput" in config.scenarios and throughput.available():
        blocks.append(Block("RTT 0 ms: redis-benchmark", 0, partial(_with_sidecar, stack, 0), stack.stop_sidecar,
                            _throughput_cells(config, ("direct", "proxied")), "proxied"))
        if twemproxy_available() and not tls:  # twemproxy has no TLS
            blocks.append(Block("RTT 0 ms: redis-benchmark via twemproxy", 0, partial(_twemproxy, stack),
                                stack.stop_twemproxy, _throughput_cells(config, ("twemproxy",)), "twemproxy"))
    return blocks


def _direct(stack: Stack, rtt: float) -> dict[str, Endpoint]:
    stack.set_rtt(rtt)
    return {"direct": stack.direct()}


def _with_sidecar(stack: Stack, rtt: float) -> dict[str, Endpoint]:
    stack.set_rtt(rtt)
    direct = stack.direct()
    return {"direct": direct, "persistent": direct, "proxied": stack.start_sidecar()}


def _twemproxy(stack: Stack) -> dict[str, Endpoint]:
    stack.set_rtt(0)
    return {"twemproxy": stack.start_twemproxy()}


def connect_cells(config: BenchConfig, rtt: float, modes: tuple[str, ...]) -> list[Cell]:
    """The connect-per-request cells, each configuration's modes next to each other so they run side by side."""
    cells = []
    for w in config.workloads:
        for c in config.concurrency:
            for p in config.protocols:
                cells += [_connect_cell(config, m, rtt, w, p, c) for m in modes if m != "persistent"]
            if "persistent" in modes:
                # The ideal does not depend on the handshake: measured once, with redis-py's default protocol.
                cells.append(_connect_cell(config, "persistent", rtt, w, 3, c))
    return cells


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


def _throughput_cells(config: BenchConfig, modes: tuple[str, ...]) -> list[Cell]:
    return [
        Cell("redis-benchmark", mode, 0,
             {"test": test.upper(), "pipeline": p, "concurrency": config.bench_clients, "client": "redis-benchmark"},
             partial(throughput.RedisBenchmark, test=test, clients=config.bench_clients, pipeline=p,
                     requests=config.bench_requests[p]))
        for p in config.pipelines for test in ("get", "set") for mode in modes
    ]
