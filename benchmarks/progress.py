"""The live display of a run: a rich progress bar over all measurements and one line per finished cell."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from benchmarks.evidence import Evidence
from benchmarks.plan import Cell
from benchmarks.stats import Sample, cpu_figures


def console(stderr: bool = False, quiet: bool = False) -> Console:
    """A terminal's own width; 160 columns when writing to a file or a pipe (rich would wrap at 80)."""
    plain = Console(stderr=stderr, quiet=quiet)
    return plain if plain.is_terminal else Console(stderr=stderr, quiet=quiet, width=160)


class LiveProgress:
    """``with LiveProgress(total, console) as p:`` then ``p.phase(...)``, ``p.measured(...)``, ``p.skipped(...)``."""

    def __init__(self, total: int, console: Console) -> None:
        self.console = console
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, transient=True)
        self.task = self.bar.add_task("starting", total=total)

    def __enter__(self) -> "LiveProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def phase(self, title: str) -> None:
        self.bar.update(self.task, description=title)

    def measured(self, cell: Cell, sample: Sample, evidence: Evidence) -> None:
        self.bar.advance(self.task)
        cpu = cpu_figures(sample)
        parts = []
        if "proxy_us_per_command" in cpu:
            parts.append(f"proxy {cpu['proxy_us_per_command']:.1f} µs/cmd")
        if "generator_cores" in cpu:
            parts.append(f"generator {cpu['generator_cores']:.2f} cores"
                         + (" [yellow]generator-bound[/]" if cpu.get("generator_bound") else ""))
        self.console.print(
            f"  [dim]RTT {cell.rtt_ms:>4g} ms[/]  {cell.label():<28} [bold]{cell.mode:<10}[/] "
            f"p50 {sample.p50_ms:8.3f} ms  p99 {sample.p99_ms:8.3f} ms  {sample.throughput_rps:9.0f}/s  "
            f"[dim]upstream: {evidence.connections_received} conns, "
            f"{evidence.auth_calls + evidence.hello_calls} AUTH/HELLO, peak {evidence.peak_clients}[/]"
            + (f"  {', '.join(parts)}" if parts else "")
            + (f"  [red]{sample.errors} errors[/]" if sample.errors else ""),
            highlight=False,
        )

    def skipped(self, cell: Cell, count: int, reason: str) -> None:
        self.bar.advance(self.task, count)
        self.console.print(f"  [red]RTT {cell.rtt_ms:g} ms {cell.label()} {cell.mode}: {reason}[/]", highlight=False)
