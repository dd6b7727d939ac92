"""Drive one installed redis-py (5, 6, 7 or 8) through its own handshake, sync and asyncio, and print JSON.

Run by tests/test_client_compat.py with the Python of a venv that holds exactly one redis-py major (and, for the main
venv, hiredis), once against the upstream directly and once through the sidecar, so the two outputs can be compared.
It must import nothing from the project: it stands for an application that only knows redis-py.

Each case is connect-per-request, as the web apps the sidecar is for do it: a new client per request with a password
(default user) or an ACL user, ``client_name=``, ``db=2`` (SELECT in the handshake), the default ``lib_name`` (CLIENT
SETINFO), for the library's default protocol and for protocol 2 and 3 explicitly. Any exception is recorded, never
raised: the test asserts there are none, and shows them all if there are.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import traceback
from typing import Any

import redis
import redis.asyncio

PROTOCOLS = (None, 2, 3)  # None: whatever this redis-py version defaults to (RESP2 up to 7.x, RESP3 in 8.x)


class Collect(logging.Handler):
    """Keeps the warnings redis-py logs (a swallowed handshake error shows up here, not as an exception)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("redis"):
            self.messages.append(f"{record.name}: {record.getMessage()}")


def plain(value: Any) -> Any:
    """Replies as JSON can carry them: bytes decoded, tuples and sets as lists."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    return value


def client_kwargs(cfg: dict, protocol: int | None, user: str | None, password: str, name: str) -> dict:
    kwargs: dict[str, Any] = dict(host=cfg["host"], port=cfg["port"], username=user, password=password,
                                  client_name=name, db=2, socket_timeout=5, socket_connect_timeout=5)
    if protocol is not None:
        kwargs["protocol"] = protocol
    return kwargs


def summary(raw: Any) -> dict:
    """The CLIENT INFO fields the handshake set (id, addr, age ... legitimately differ between servers).

    Parsed here rather than by ``client_info()``: that parser's own failures are reported apart (``client_info``).
    """
    fields = dict(item.split("=", 1) for item in plain(raw).split())
    return {k: fields.get(k) for k in ("name", "db", "user", "resp", "lib-name", "lib-ver")}


def parsed_by_redis_py(call: Any) -> str:
    """Whether redis-py's own CLIENT INFO parser accepts the reply: "ok" or the exception it raised."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the exception is the finding
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def run_sync(cfg: dict, protocol: int | None, user: str | None, password: str, prefix: str) -> dict:
    kwargs = client_kwargs(cfg, protocol, user, password, f"compat-sync-{protocol}")
    gets = []
    for i in range(cfg["rounds"]):  # connect per request: a new client (and connection) each time
        r = redis.Redis(**kwargs)
        try:
            r.set(f"{prefix}:k{i}", f"v{i}")
            gets.append(r.get(f"{prefix}:k{i}"))
            r.incr(f"{prefix}:counter")
        finally:
            r.close()
    r = redis.Redis(**kwargs)
    try:
        pipe = r.pipeline(transaction=False)
        pipe.set(f"{prefix}:p", "piped").get(f"{prefix}:p").incr(f"{prefix}:counter")
        pipeline = pipe.execute()
        tx = r.pipeline()  # redis-py's default pipeline is a MULTI/EXEC transaction
        tx.incr(f"{prefix}:counter").get(f"{prefix}:p")
        transaction = tx.execute()
        out = {"gets": gets, "pipeline": pipeline, "transaction": transaction, "name": r.client_getname(),
               "info": summary(r.execute_command("CLIENT", "INFO")), "client_info": parsed_by_redis_py(r.client_info),
               "ping": r.ping(), "echo": r.echo("hello sidecar")}
    finally:
        r.close()
    url = redis.Redis.from_url(f"redis://{user or ''}:{password}@{cfg['host']}:{cfg['port']}/2",
                               **({"protocol": protocol} if protocol else {}))
    try:
        out["from_url"] = url.get(f"{prefix}:p")
    finally:
        url.close()
    return plain(out)


async def run_async(cfg: dict, protocol: int | None, user: str | None, password: str, prefix: str) -> dict:
    kwargs = client_kwargs(cfg, protocol, user, password, f"compat-async-{protocol}")

    async def close(r: redis.asyncio.Redis) -> None:
        await (r.aclose() if hasattr(r, "aclose") else r.close())

    async def one(i: int) -> bytes:
        r = redis.asyncio.Redis(**kwargs)
        try:
            await r.set(f"{prefix}:k{i}", f"v{i}")
            got = await r.get(f"{prefix}:k{i}")
            await r.incr(f"{prefix}:counter")
            return got
        finally:
            await close(r)

    gets = [await one(i) for i in range(cfg["rounds"])]
    gets += await asyncio.gather(*(one(cfg["rounds"] + i) for i in range(cfg["rounds"])))  # concurrent requests
    r = redis.asyncio.Redis(**kwargs)
    try:
        pipe = r.pipeline(transaction=False)
        pipe.set(f"{prefix}:p", "piped").get(f"{prefix}:p").incr(f"{prefix}:counter")
        pipeline = await pipe.execute()
        tx = r.pipeline()
        tx.incr(f"{prefix}:counter").get(f"{prefix}:p")
        transaction = await tx.execute()
        out = {"gets": gets, "pipeline": pipeline, "transaction": transaction, "name": await r.client_getname(),
               "info": summary(await r.execute_command("CLIENT", "INFO")), "ping": await r.ping(),
               "echo": await r.echo("hello sidecar")}
    finally:
        await close(r)
    return plain(out)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    logs = Collect()
    logging.getLogger().addHandler(logs)
    credentials = [("default", None, cfg["password"]), ("acl", cfg["user"], cfg["user_password"])]
    cases: dict[str, Any] = {}
    for protocol in PROTOCOLS:
        for label, user, password in credentials:
            for mode in ("sync", "async"):
                case = f"{mode}-resp{protocol or 'default'}-{label}"
                prefix = f"{cfg['prefix']}:{case}"
                try:
                    if mode == "sync":
                        cases[case] = run_sync(cfg, protocol, user, password, prefix)
                    else:
                        cases[case] = asyncio.run(asyncio.wait_for(
                            run_async(cfg, protocol, user, password, prefix), 20))
                except Exception as exc:  # noqa: BLE001 - every failure is reported, with its traceback
                    cases[case] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    from redis.utils import HIREDIS_AVAILABLE

    print(json.dumps({"version": redis.__version__, "hiredis": HIREDIS_AVAILABLE, "cases": cases,
                      "logs": logs.messages}))


if __name__ == "__main__":
    main()
