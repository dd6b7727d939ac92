"""Command line: ``redis-sidecar [--config FILE] [--listen HOST:PORT] [--upstream URL] ...``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from . import __version__, config
from .ops import logs

EPILOG = """\
environment:
  REDIS_SIDECAR_UPSTREAM        upstream URL (same as --upstream); keep passwords out of the command line
  REDIS_SIDECAR_LISTEN          listen addresses, comma-separated (same as --listen)
  REDIS_SIDECAR_<SECTION>__<KEY> any config key, e.g. REDIS_SIDECAR_POOL__SIZE=8: taken as the key's type, so a
                                string stays exactly as written (a password 0123 stays "0123"), numbers and
                                true/false are parsed for numeric and boolean keys, lists are comma-separated

precedence: config file < environment < flags.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="redis-sidecar",
        description="A local Redis-protocol proxy: many short-lived clients, a few authenticated persistent "
                    "upstream connections.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="YAML config file (see config/sidecar.example.yaml)")
    p.add_argument("--listen", metavar="HOST:PORT", action="append",
                   help="address to listen on, PORT alone for loopback (repeatable; default 127.0.0.1:6380)")
    p.add_argument("--unix-socket", metavar="PATH", help="also listen on this unix socket")
    p.add_argument("--upstream", metavar="URL",
                   help="redis://[user:pass@]host:port/db or rediss:// for TLS (prefer REDIS_SIDECAR_UPSTREAM or "
                        "upstream.password_env/password_file in the config for the password)")
    p.add_argument("--pool-size", type=int, metavar="N", help="shared connections per (user, db, protocol)")
    p.add_argument("--client-auth", choices=["none", "password", "passthrough"], help="client authentication mode")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["text", "logfmt", "json"])
    p.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve Prometheus /metrics, /healthz and /readyz on this address (PORT alone: loopback)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="run N processes sharing the listening port (SO_REUSEPORT), supervised")
    p.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by the --workers supervisor
    p.add_argument("--worker-socket", help=argparse.SUPPRESS)
    p.add_argument("--check", action="store_true",
                   help="validate the configuration, print what the sidecar will use (upstream, login, listen "
                        "addresses, client auth; never a password) and exit")
    p.add_argument("--connect", action="store_true",
                   help="with --check: also connect and log in to the upstream as the sidecar would (TLS, "
                        "HELLO/AUTH, SELECT) and PING it; exit 1 with the upstream's error if it refuses")
    p.add_argument("--version", action="version", version=f"redis-sidecar {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = parser()
    args = p.parse_args(argv)
    if args.connect and not args.check:
        p.error("--connect goes with --check")
    overrides = {
        "listen": args.listen, "unix_socket": args.unix_socket, "upstream.url": args.upstream,
        "pool.size": args.pool_size, "client_auth.mode": args.client_auth, "log.level": args.log_level,
        "log.format": args.log_format, "metrics.listen": args.metrics, "workers": args.workers,
    }
    try:
        cfg = config.load(args.config, overrides)
    except config.ConfigError as exc:
        if len(exc.problems) == 1:
            print(f"redis-sidecar: configuration error: {exc}", file=sys.stderr)
        else:
            print(f"redis-sidecar: {len(exc.problems)} configuration errors:", file=sys.stderr)
            print("\n".join(f"  {problem}" for problem in exc.problems), file=sys.stderr)
        return 2
    if args.check:
        return run_check(cfg, args.connect)
    worker = args.worker_index
    logs.setup(cfg.log.level, cfg.log.format, {"worker": worker} if worker is not None else None)
    loader = lambda: config.load(args.config, overrides)  # noqa: E731 - read again on SIGHUP / SIDECAR RELOAD
    if cfg.workers > 1 and worker is None:
        from .workers import supervise

        return supervise(cfg, argv, loader)
    from .server import run

    try:
        run(cfg, loader, worker, args.worker_socket)
    except OSError as exc:
        logging.getLogger("sidecar").error("cannot start: %s", exc)
        return 1
    return 0


def run_check(cfg: config.Config, connect: bool) -> int:
    """``--check``: the configuration is valid, and what it means; with ``--connect``, whether the upstream takes it."""
    from .ops import check

    print("configuration OK")
    for line in check.describe(cfg):
        print(f"  {line}")
    if not connect:
        return 0
    logging.getLogger("sidecar").addHandler(logging.NullHandler())  # the check reports failures itself, once
    try:
        print(f"  {asyncio.run(check.connect(cfg))}")
    except check.CheckFailed as exc:
        print(f"redis-sidecar: upstream check failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
