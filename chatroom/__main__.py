"""Command line: ``python -m chatroom [--host H] [--port P]``, with the Redis address in ``REDIS_URL``."""

from __future__ import annotations

import argparse
import logging
import os
from urllib.parse import urlsplit

from aiohttp import web

from chatroom.app import create_app

DEFAULT_REDIS_URL = "redis://127.0.0.1:6380/0"  # the sidecar on this machine


def _without_credentials(url: str) -> str:
    """The URL as it may appear in a log line: scheme, host, port and database only."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m chatroom",
        description="The chatroom web app; it opens a fresh Redis connection for every event. The Redis address "
                    f"comes from REDIS_URL in the environment (default: {DEFAULT_REDIS_URL}, a sidecar on this "
                    "machine), never the command line, where its password would show in ps.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port (default: %(default)s)")
    args = parser.parse_args(argv)
    # The URL comes from the environment, never the command line, because it usually carries a password.
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("chatroom").info(
        "chatroom on http://%s:%d/ using Redis at %s", args.host, args.port, _without_credentials(redis_url)
    )
    # By the time aiohttp waits on open WebSockets, everyone is already off the online list: do not wait long.
    web.run_app(create_app(redis_url), host=args.host, port=args.port, print=None, access_log=None, shutdown_timeout=1)


if __name__ == "__main__":
    main()
