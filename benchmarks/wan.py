"""A loopback WAN simulator: a TCP relay that delays every byte by a fixed one-way time in each direction.

This machine has no netem, so benchmarks and fault-injection tests put this relay between a client and a server:
``python -m benchmarks.wan --listen 127.0.0.1:0 --target 127.0.0.1:6390 --delay-ms 2`` gives a 4 ms round trip.

What it models, and how:
- every chunk read from one side is written to the other ``delay`` seconds later; chunks of one direction wait in a
  FIFO and a single timer per direction drains it, so byte order is preserved whatever the delay changes to;
- a real TCP connect costs one round trip before the client may send, but the kernel completes our accept at once,
  so a new connection's client-to-server bytes are held until one RTT after the accept (the charge for the connect);
- timers are exact to tens of microseconds: the default asyncio loop rounds timeouts up to whole milliseconds (epoll)
  and uvloop rounds them to the nearest millisecond (libuv), either of which would swamp a 0.5 ms delay, so the loop
  waits on its epoll descriptor with ``select()`` (microsecond timeouts) and fires each timer a little early by the
  wake-up latency it has measured;
- pausing is SIGSTOP/SIGCONT of the relay process (``WanRelayProcess.pause()``): the kernel keeps accepting and
  buffering while nothing moves, like a stalled link;
- the delay can change while running: a line ``delay <ms>`` on the relay's stdin (``WanRelayProcess.set_delay``);
- the way back may have a delay of its own (``--return-delay-ms``), for an asymmetric link.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import os
import select
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from harness.servers import terminate

READ_LIMIT = 1 << 20  # bytes waiting in one direction before the relay stops reading from that side
EOF = b""  # queue marker: the sending side finished writing (data_received never yields empty bytes)
EARLY_WAKE_MAX = 0.0003  # never fire a timer more than this before its due time


class PreciseEpollSelector(selectors.EpollSelector):
    """epoll with microsecond timeouts: wait on the epoll descriptor with select(), then collect without blocking."""

    def select(self, timeout: float | None = None):
        if timeout is not None and timeout > 0:
            select.select([self._selector.fileno()], [], [], timeout)
            timeout = 0
        return super().select(timeout)


def _lower_timer_slack() -> None:
    """Linux delays timer wake-ups by 50 us by default to batch them; 1 us keeps sub-millisecond delays honest."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK
        except (OSError, AttributeError):
            pass


class Relay:
    """The relay's shared state: the delays, the target, and the measured timer lateness used to fire early."""

    def __init__(self, target: tuple[str, int], delay: float, return_delay: float | None = None) -> None:
        self.target = target
        self.delay = delay
        self.return_delay = return_delay  # server to client; None: the same as ``delay``
        self.early = 0.0

    def delay_towards(self, server: bool) -> float:
        if server or self.return_delay is None:
            return self.delay
        return self.return_delay

    def observe_lateness(self, late: float) -> None:
        """Exponentially weighted wake-up lateness, so timers are armed that much before the due time."""
        self.early = min(EARLY_WAKE_MAX, max(0.0, self.early + 0.1 * (late - self.early)))

    async def serve(self, host: str, port: int) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: ClientSide(self), host, port, backlog=1024, reuse_address=True)


class Direction:
    """Bytes in flight one way: a FIFO of (due time, chunk) drained by one timer into the destination transport."""

    def __init__(self, link: "Link", source: asyncio.Transport, dest: asyncio.Transport | None, to_server: bool,
                 not_before: float = 0.0) -> None:
        self.link = link
        self.to_server = to_server
        self.source = source
        self.dest = dest
        self.not_before = not_before
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued_bytes = 0
        self.last_due = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.armed_for = 0.0
        self.armed_ahead = False  # armed for a future time: its lateness says how late wake-ups are
        self.dest_paused = False
        self.source_paused = False
        self.ended = False  # EOF queued: nothing more is accepted

    def push(self, chunk: bytes) -> None:
        if self.ended or self.link.aborted:
            return
        self.ended = chunk == EOF
        relay = self.link.relay
        due = max(time.monotonic(), self.not_before) + relay.delay_towards(self.to_server)
        self.last_due = due = max(due, self.last_due)
        if not self.queue and self.dest is not None and due <= time.monotonic():
            self._deliver(chunk)  # no delay to add: skip a loop iteration
            return
        self.queue.append((due, chunk))
        self.queued_bytes += len(chunk)
        self._flow()
        if self.timer is None:
            self._arm()

    def attach(self, dest: asyncio.Transport) -> None:
        self.dest = dest
        if self.timer is None:
            self._arm()

    def _arm(self) -> None:
        if not self.queue or self.dest is None:
            return
        self.armed_for = self.queue[0][0] - self.link.relay.early
        self.armed_ahead = self.armed_for > time.monotonic()
        self.timer = asyncio.get_running_loop().call_at(self.armed_for, self._fire)

    def _fire(self) -> None:
        relay = self.link.relay
        now = time.monotonic()
        if self.armed_ahead:
            relay.observe_lateness(now - self.armed_for)
        self.timer = None
        horizon = now + relay.early
        while self.queue and self.queue[0][0] <= horizon:
            _, chunk = self.queue.popleft()
            self.queued_bytes -= len(chunk)
            self._deliver(chunk)
        self._flow()
        self._arm()

    def _deliver(self, chunk: bytes) -> None:
        assert self.dest is not None
        if chunk != EOF:
            if not self.dest.is_closing():
                self.dest.write(chunk)
            return
        if not self.dest.is_closing():
            try:
                self.dest.write_eof()
            except OSError:  # the destination is already gone (reset): so is the conversation
                self.link.abort()
                return
        self.link.half_closed()

    def set_dest_paused(self, paused: bool) -> None:
        self.dest_paused = paused
        self._flow()

    def _flow(self) -> None:
        """Stop reading the source while the destination is congested or too much waits in the queue."""
        want_pause = self.dest_paused or self.queued_bytes > READ_LIMIT
        if want_pause != self.source_paused and not self.source.is_closing():
            self.source_paused = want_pause
            (self.source.pause_reading if want_pause else self.source.resume_reading)()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()


class Link:
    """One relayed connection: both transports and both directions, closed together."""

    def __init__(self, relay: Relay, client: asyncio.Transport) -> None:
        self.relay = relay
        self.client = client
        self.upstream: asyncio.Transport | None = None
        # The client may send at once, but on a real link its first byte leaves one RTT after connect() began.
        rtt = relay.delay_towards(True) + relay.delay_towards(False)
        self.to_server = Direction(self, client, None, True, not_before=time.monotonic() + rtt)
        self.to_client: Direction | None = None
        self.halves = 0
        self.aborted = False

    def upstream_connected(self, upstream: asyncio.Transport) -> Direction:
        self.upstream = upstream
        self.to_client = Direction(self, upstream, self.client, False)
        self.to_server.attach(upstream)
        return self.to_client

    def half_closed(self) -> None:
        """Both ways have delivered their EOF: the conversation is over."""
        self.halves += 1
        if self.halves == 2:
            self.close()

    def close(self) -> None:
        self.client.close()
        if self.upstream:
            self.upstream.close()

    def abort(self) -> None:
        """A reset on either side resets the other at once, as a broken link would."""
        self.aborted = True
        for direction in (self.to_server, self.to_client):
            if direction:
                direction.cancel()
        self.client.abort()
        if self.upstream:
            self.upstream.abort()


class ClientSide(asyncio.Protocol):
    """The accepted connection: opens the connection to the target and feeds the client-to-server direction."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.link = Link(self.relay, transport)
        self.connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: UpstreamSide(self.link), *self.relay.target)
        except OSError:
            self.link.abort()

    def data_received(self, data: bytes) -> None:
        self.link.to_server.push(data)

    def eof_received(self) -> bool:
        self.link.to_server.push(EOF)
        return True

    def pause_writing(self) -> None:
        if self.link.to_client:
            self.link.to_client.set_dest_paused(True)

    def resume_writing(self) -> None:
        if self.link.to_client:
            self.link.to_client.set_dest_paused(False)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.connecting.cancel()
            self.link.abort()
        else:
            self.link.to_server.push(EOF)


class UpstreamSide(asyncio.Protocol):
    """The connection to the target, feeding the server-to-client direction."""

    def __init__(self, link: Link) -> None:
        self.link = link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.to_client = self.link.upstream_connected(transport)
        if self.link.client.is_closing() and self.link.halves == 0 and not self.link.to_server.ended:
            self.link.abort()

    def data_received(self, data: bytes) -> None:
        self.to_client.push(data)

    def eof_received(self) -> bool:
        self.to_client.push(EOF)
        return True

    def pause_writing(self) -> None:
        self.link.to_server.set_dest_paused(True)

    def resume_writing(self) -> None:
        self.link.to_server.set_dest_paused(False)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.link.abort()
        else:
            self.to_client.push(EOF)


def parse_address(text: str) -> tuple[str, int]:
    """'127.0.0.1:6380' or '[::1]:6380' -> (host, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def run(listen: tuple[str, int], target: tuple[str, int], delay_ms: float,
              return_delay_ms: float | None = None) -> None:
    """Serve until SIGTERM/SIGINT; print the bound address, then obey ``delay <ms>`` lines on stdin."""
    loop = asyncio.get_running_loop()
    relay = Relay(target, delay_ms / 1000, None if return_delay_ms is None else return_delay_ms / 1000)
    server = await relay.serve(*listen)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening {host}:{port} delay-ms {delay_ms:g}", flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    if not sys.stdin.isatty():
        _watch_stdin(loop, relay)
    await stop
    server.close()


def _watch_stdin(loop: asyncio.AbstractEventLoop, relay: Relay) -> None:
    """Control lines from a parent process: ``delay <ms>`` changes the one-way delay (answered ``delay <ms>``)."""
    fd = sys.stdin.fileno()
    buffer = bytearray()

    def readable() -> None:
        data = os.read(fd, 4096)
        if not data:
            loop.remove_reader(fd)
            return
        buffer.extend(data)
        while b"\n" in buffer:
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer[:] = rest
            words = line.split()
            if len(words) == 2 and words[0] == b"delay":
                relay.delay = float(words[1]) / 1000
                print(f"delay {float(words[1]):g}", flush=True)

    try:
        loop.add_reader(fd, readable)
    except (ValueError, OSError):  # stdin is a regular file or /dev/null: nothing to watch
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wan", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="address to accept on (port 0: any free port)")
    parser.add_argument("--target", required=True, help="address to relay to, e.g. 127.0.0.1:6390")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay in each direction (RTT = 2x)")
    parser.add_argument("--return-delay-ms", type=float, default=None,
                        help="delay from server to client instead (default: --delay-ms; stdin 'delay' lines leave it)")
    args = parser.parse_args(argv)
    _lower_timer_slack()
    loop = asyncio.SelectorEventLoop(PreciseEpollSelector())
    try:
        loop.run_until_complete(run(parse_address(args.listen), parse_address(args.target), args.delay_ms,
                                    args.return_delay_ms))
    finally:
        loop.close()


@dataclass
class WanRelayProcess:
    """The relay in a process of its own (so its timers never wait on the caller's GIL), started and stopped here."""

    target_port: int
    delay_ms: float = 0.0
    target_host: str = "127.0.0.1"
    host: str = "127.0.0.1"
    port: int = 0
    proc: subprocess.Popen | None = None
    return_delay_ms: float | None = None  # server to client, if not delay_ms

    def start(self, timeout: float = 10.0) -> "WanRelayProcess":
        back = [] if self.return_delay_ms is None else ["--return-delay-ms", str(self.return_delay_ms)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.wan", "--listen", f"{self.host}:{self.port}",
             "--target", f"{self.target_host}:{self.target_port}", "--delay-ms", str(self.delay_ms), *back],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
        )
        words = self._read_line(timeout).split()
        if not words or words[0] != "listening":
            self.stop()
            raise RuntimeError(f"WAN relay did not start: {' '.join(words)!r}")
        self.port = parse_address(words[1])[1]
        return self

    def _read_line(self, timeout: float) -> str:
        assert self.proc and self.proc.stdout
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline().decode() if ready else ""

    def set_delay(self, delay_ms: float, timeout: float = 5.0) -> None:
        """Change the one-way delay of bytes read from now on (bytes already in flight keep theirs)."""
        assert self.proc and self.proc.stdin
        self.proc.stdin.write(f"delay {delay_ms}\n".encode())
        self.proc.stdin.flush()
        if not self._read_line(timeout).startswith("delay"):
            raise RuntimeError("WAN relay did not acknowledge the new delay")
        self.delay_ms = delay_ms

    def pause(self) -> None:
        """Freeze the link: nothing moves either way (the kernel still accepts and buffers) until ``resume``."""
        assert self.proc
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        terminate(self.proc)
        if self.proc:
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe:
                    pipe.close()
        self.proc = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self) -> "WanRelayProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    main()
