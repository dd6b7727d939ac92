"""The demo (``./dev demo``): the article's chatroom, unchanged, made fast by the sidecar, with the evidence on screen.

It starts a password-protected upstream behind a simulated WAN (a few ms RTT), the sidecar in front of it and the
chatroom pointed at the sidecar; measures the chatroom's access pattern (connect, HELLO/AUTH, SADD + SMEMBERS,
close) direct and through the sidecar; prints the table and what the upstream saw; then keeps everything running,
with the upstream's counters live, until Ctrl-C (or ``--duration``). ``--once`` prints the table and exits, without
starting the chatroom.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import time
from dataclasses import replace

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from benchmarks import loop, report
from benchmarks.config import BenchConfig
from benchmarks.evidence import UpstreamMonitor
from benchmarks.plan import Block, connect_cells
from benchmarks.runner import run_plan
from benchmarks.progress import LiveProgress, console as make_console
from benchmarks.scenarios.chatroom import available as chatroom_available
from benchmarks.stack import Endpoint, Stack
from harness.servers import free_port

DEFAULT_CHAT_PORT = 8080


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--rtt-ms", type=float, default=4.0, help="simulated round trip to the upstream (default 4)")
    p.add_argument("--port", type=int, default=0, help=f"chatroom HTTP port (default {DEFAULT_CHAT_PORT} if free)")
    p.add_argument("--seconds", type=float, default=1.5, help="measured seconds per comparison cell")
    p.add_argument("--concurrency", type=lambda t: tuple(int(v) for v in t.split(",")), default=(1, 8),
                   help="concurrent requests in the comparison (default 1,8)")
    p.add_argument("--server", choices=("auto", "valkey", "redis"), default="auto", help="embedded upstream")
    p.add_argument("--once", action="store_true", help="print the comparison and exit (no chatroom)")
    p.add_argument("--duration", type=float, help="keep serving for this many seconds, then exit")
    return p


def _chat_port(wanted: int) -> int:
    if wanted:
        return wanted
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", DEFAULT_CHAT_PORT))
            return DEFAULT_CHAT_PORT
        except OSError:
            return free_port()


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    config = replace(BenchConfig(), rtts_ms=(args.rtt_ms,), workloads=("chat",), protocols=(3,),
                     concurrency=args.concurrency, repeats=1, seconds=args.seconds, server=args.server).validate()
    console = make_console()
    console.rule("[bold]redis-sidecar demo")
    try:
        return _run(config, args, console)
    except KeyboardInterrupt:
        console.print("\nstopped the chatroom, the sidecar, the relay and the upstream")
        return 0


def _run(config: BenchConfig, args: argparse.Namespace, console: Console) -> int:
    """Start the parts, then the comparison and the live view; every process stops on the way out."""
    with contextlib.ExitStack() as processes:
        try:
            stack = processes.enter_context(Stack(config))
            stack.set_rtt(args.rtt_ms)
            sidecar = stack.start_sidecar()
        except RuntimeError as exc:
            console.print(f"[red]could not start the demo's parts: {exc}[/]")
            return 1
        assert stack.upstream
        up = stack.upstream.endpoint
        wan = stack.direct()
        console.print(f"upstream  {up.host}:{up.port} (password required), across a simulated WAN of RTT "
                      f"{args.rtt_ms:g} ms at {wan.host}:{wan.port}")
        console.print(f"sidecar   127.0.0.1:{sidecar.port}  ->  REDIS_URL=redis://:****@127.0.0.1:{sidecar.port}/0")
        chat_url = None
        if args.once:  # a link printed just before everything stops would be dead by the time anyone clicks it
            console.print("chatroom  not started with --once (./dev demo without it serves one until Ctrl-C)")
        elif chatroom_available():
            from chatroom.process import ChatroomProcess

            chatroom = processes.enter_context(ChatroomProcess(sidecar.url, _chat_port(args.port)))
            chat_url = chatroom.url + "/"
            console.print(f"chatroom  {chat_url}  (connects per event, to the sidecar)")
        else:
            console.print("[yellow]chatroom  not installed here: the comparison runs without it[/]")
        loop.run(_demo(config, stack, sidecar, console, args, chat_url))
    return 0


async def _demo(config: BenchConfig, stack: Stack, sidecar: Endpoint, console: Console,
                args: argparse.Namespace, chat_url: str | None) -> None:
    assert stack.upstream
    rtt = args.rtt_ms
    # The sidecar (and the chatroom behind it) keeps running: only its pool stands at the upstream.
    blocks = [Block(f"RTT {rtt:g} ms", rtt, lambda: {"direct": stack.direct(), "proxied": sidecar}, lambda: None,
                    connect_cells(config, rtt, ("direct", "proxied")), "proxied")]
    monitor = UpstreamMonitor(stack.upstream.endpoint)
    try:
        server = await monitor.server()
        console.print(f"\nComparing the chatroom's access pattern (fresh redis-py connection per request, "
                      f"SADD + SMEMBERS) against {server}, direct and through the sidecar:")
        with LiveProgress(sum(len(b.cells) for b in blocks), make_console(stderr=True)) as progress:
            records = await run_plan(blocks, monitor, 1, progress)
        console.print(_comparison_table(records))
        if chat_url:
            console.print(f"\n[bold green]Open the chatroom: {chat_url}[/]  (every event opens a fresh connection "
                          "to the sidecar, none to the upstream)")
        if args.once:
            return
        await _serve(monitor, console, args.duration)
    finally:
        await monitor.close()


def _comparison_table(records: list[dict]) -> Table:
    table = Table(title="direct vs proxied, same run", title_justify="left")
    for header in ("conc.", "direct p50 ms", "proxied p50 ms", "speedup", "upstream conns direct → proxied",
                   "AUTH+HELLO direct → proxied", "requests direct / proxied"):
        table.add_column(header, justify="right")
    for comp in report.comparisons(records):
        direct = next(r for r in records if r["mode"] == "direct" and r["concurrency"] == comp["concurrency"])
        proxied = next(r for r in records if r["mode"] == "proxied" and r["concurrency"] == comp["concurrency"])
        conns, auths = comp["connections_received"], comp["auth_hello_calls"]
        table.add_row(str(comp["concurrency"]), _num(direct["p50_ms"]), _num(proxied["p50_ms"]),
                      "—" if comp["speedup_p50"] is None else f"[bold]{comp['speedup_p50']:.2f}x[/]",
                      f"{conns[0]} → {conns[1]}", f"{auths[0]} → {auths[1]}",
                      f"{direct['requests']} / {proxied['requests']}")
    failed = [f"{r['mode']} c={r['concurrency']}: {r['error']}" for r in records if r.get("error")]
    if failed:
        table.caption = "failed: " + "; ".join(failed)
    return table


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


async def _serve(monitor: UpstreamMonitor, console: Console, duration: float | None) -> None:
    """The upstream's own counters, refreshed every second, until Ctrl-C or the duration is over."""
    start = await monitor.counters()
    ends = time.monotonic() + duration if duration else None
    console.print("[dim]Ctrl-C to stop everything.[/]")
    with Live(console=console, refresh_per_second=2) as live:
        while ends is None or time.monotonic() < ends:
            now = await monitor.counters()
            clients = await monitor.connected_clients()
            received = now.connections_received - start.connections_received
            handshakes = sum(now.calls[c] - start.calls[c] for c in ("auth", "hello"))
            live.update(Panel(Group(
                f"connections received since the comparison: [bold]{received}[/]",
                f"AUTH + HELLO calls since the comparison:   [bold]{handshakes}[/]",
                f"connected clients now (sidecar pool, chatroom pub/sub, this monitor): [bold]{clients}[/]",
            ), title="what the upstream sees (its INFO)", expand=False))
            await asyncio.sleep(1.0)
