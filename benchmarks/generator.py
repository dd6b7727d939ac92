"""The Python load generator's processes: a few long-lived children, each running its own event loop, that the
scenarios drive with calls, so that the generator's own CPU is spread over several processes and measured.

One process running 32 redis-py clients spends more CPU per request than the sidecar it measures and reports its own
queueing (60-75 ms p50 for direct and proxied alike on two cores). Here a scenario splits its clients over the
processes (``GeneratorPool.split``) and calls a coroutine function by name in each:

    results = await pool.call_all([(0, "benchmarks.scenarios.connect:run_connect", {...}), (1, ..., {...})])

A call runs as a task in the child's loop, so a child can hold state between calls (persistent connections opened in
``warm``, 10,000 idle clients held while the parent reads the sidecar's memory) and run a background task (the
big-reply client) while another child measures. Every measuring function reports its own ``cpu_s`` (``process_time``
over its window: every thread of its process) and ``wall_s``; ``generator_fields`` turns them into the record's
generator figures.

The children are spawned (not forked: the parent runs an event loop) once per run and stopped by ``close()``
(``atexit`` too). Each call has a timeout; a child that misses it is replaced.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import importlib
import itertools
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from typing import Any

CALL_TIMEOUT = 120.0
STATE: dict[str, Any] = {}  # in a child: what its calls keep between them (named by the functions that use it)


# -- in the child ----------------------------------------------------------------------------------------------------

def _child_main(conn) -> None:  # noqa: ANN001 - a multiprocessing Connection
    from benchmarks import loop

    loop.run(_serve(conn))


async def _serve(conn) -> None:  # noqa: ANN001
    """Receive ``(id, "module:function", kwargs)``, run it as a task, send ``(id, ok, result)``; ``None`` stops."""
    running = asyncio.get_running_loop()
    send_lock = threading.Lock()
    tasks: set[asyncio.Task] = set()

    def send(message) -> None:  # noqa: ANN001
        with send_lock:
            conn.send(message)

    async def run(call_id: int, target: str, kwargs: dict) -> None:
        try:
            module, name = target.split(":")
            fn: Callable[..., Awaitable[Any]] = getattr(importlib.import_module(module), name)
            result = await fn(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it there
            send((call_id, False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}"))
            return
        send((call_id, True, result))

    while True:
        try:
            message = await running.run_in_executor(None, conn.recv)
        except EOFError:
            return
        if message is None:
            return
        task = asyncio.create_task(run(*message))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


@contextmanager
def window():
    """Time a measured stretch in a child: yields a dict that holds ``cpu_s`` and ``wall_s`` once it ends."""
    out: dict[str, float] = {}
    cpu, wall = time.process_time(), time.monotonic()
    try:
        yield out
    finally:
        out["cpu_s"] = time.process_time() - cpu
        out["wall_s"] = time.monotonic() - wall
        out["started"] = wall


async def wait_until(moment: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``moment`` (the same clock in every process of the machine)."""
    delay = moment - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit; the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


async def spin(seconds: float) -> dict:
    """Keep this process's CPU busy for ``seconds`` (a self-check of the pool and of its CPU accounting)."""
    with window() as win:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
    return {"pid": os.getpid(), **win}


# -- in the parent ---------------------------------------------------------------------------------------------------

class _Child:
    """One child process and a thread that files its answers, by call id, into the callers' futures."""

    def __init__(self, ctx) -> None:  # noqa: ANN001
        self.conn, child_end = ctx.Pipe()
        self.proc = ctx.Process(target=_child_main, args=(child_end,), daemon=True, name="bench-generator")
        self.proc.start()
        child_end.close()
        self.send_lock = threading.Lock()
        self.futures: dict[int, concurrent.futures.Future] = {}
        self.reader = threading.Thread(target=self._read, daemon=True, name="bench-generator-reader")
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                call_id, ok, result = self.conn.recv()
            except (EOFError, OSError):
                break
            future = self.futures.pop(call_id, None)
            if future is not None:
                future.set_result((ok, result))
        for future in list(self.futures.values()):  # the child is gone: nobody will answer these
            future.set_result((False, "the generator process exited"))
        self.futures.clear()

    def submit(self, call_id: int, target: str, kwargs: dict) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self.futures[call_id] = future
        with self.send_lock:
            self.conn.send((call_id, target, kwargs))
        return future

    def alive(self) -> bool:
        return self.proc.is_alive()

    def stop(self) -> None:
        try:
            with self.send_lock:
                self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(3)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(3)
        self.conn.close()


class GeneratorPool:
    """``processes`` children, started on first use; ``split`` spreads clients over them."""

    def __init__(self, processes: int) -> None:
        self.processes = max(1, processes)
        self.children: list[_Child] = []
        self.ids = itertools.count()
        self.ctx = multiprocessing.get_context("spawn")

    def _child(self, index: int) -> _Child:
        while len(self.children) < self.processes:
            self.children.append(_Child(self.ctx))
        child = self.children[index]
        if not child.alive():
            child.stop()
            child = self.children[index] = _Child(self.ctx)
        return child

    def pids(self) -> list[int]:
        return [c.proc.pid for c in self.children if c.proc.pid]

    def split(self, clients: int) -> list[int]:
        """How many of ``clients`` each process runs: as even as possible, on as many processes as there are
        clients (one client is one process)."""
        used = min(self.processes, clients)
        return [clients // used + (1 if i < clients % used else 0) for i in range(used)]

    async def call(self, index: int, target: str, timeout: float = CALL_TIMEOUT, **kwargs: Any) -> Any:
        child = self._child(index)
        future = child.submit(next(self.ids), target, kwargs)
        try:
            ok, result = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except asyncio.TimeoutError:
            child.stop()  # a hung child is replaced on its next call
            raise TimeoutError(f"generator call {target} took longer than {timeout:.0f}s") from None
        if not ok:
            raise RuntimeError(f"in the generator process: {result}")
        return result

    async def call_all(self, calls: list[tuple[int, str, dict]], timeout: float = CALL_TIMEOUT) -> list[Any]:
        """Several calls at once (normally one per process); their results in order; the first failure raises."""
        return list(await asyncio.gather(*(self.call(i, target, timeout, **kwargs) for i, target, kwargs in calls)))

    def close(self) -> None:
        for child in self.children:
            child.stop()
        self.children = []


_POOL: GeneratorPool | None = None


def default_processes() -> int:
    return max(2, os.cpu_count() or 2)


def pool(processes: int | None = None) -> GeneratorPool:
    """The run's generator processes (created on first use, with ``processes`` children if given then)."""
    global _POOL
    if _POOL is None:
        _POOL = GeneratorPool(processes or default_processes())
        atexit.register(close)
    return _POOL


def configure(processes: int) -> None:
    """Set the number of processes before first use (a run's ``--generator-processes``)."""
    global _POOL
    if _POOL is not None and _POOL.processes != processes:
        _POOL.close()
        _POOL = None
    pool(processes)


def close() -> None:
    global _POOL
    if _POOL is not None:
        _POOL.close()
        _POOL = None


# -- turning the children's windows into the record's generator figures ----------------------------------------------

def generator_fields(windows: list[dict], cores: int | None = None) -> dict[str, float]:
    """Generator CPU over its processes: total seconds, cores used on average (CPU / wall of the whole window), the
    busiest process's share of a core, and how many processes ran."""
    if not windows:
        return {}
    start = min(w["started"] for w in windows)
    end = max(w["started"] + w["wall_s"] for w in windows)
    wall = max(end - start, 1e-9)
    cpu = sum(w["cpu_s"] for w in windows)
    peak = max(w["cpu_s"] / max(w["wall_s"], 1e-9) for w in windows)
    return {"generator_cpu_s": cpu, "generator_wall_s": wall, "generator_peak_process": min(peak, 1.0),
            "generator_processes": float(len(windows))}
