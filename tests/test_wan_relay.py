"""The WAN relay (benchmarks/wan.py) that benchmarks and fault-injection tests put between a client and a server.

Times are only ever checked from below (a delay is at least what was asked for); nothing here depends on how fast
this machine is.
"""

from __future__ import annotations

import random
import socket
import socketserver
import statistics
import threading
import time

import pytest
import redis

from benchmarks.wan import WanRelayProcess, parse_address
from harness.servers import free_port

LOWER = 0.9  # measured delays must be at least 90% of the configured ones


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := self.request.recv(65536):
            self.request.sendall(data)
        # the client half-closed: echo server closes its side after sending everything


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture(scope="module")
def echo_port():
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _connect(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(min(65536, n - len(data)))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    started = time.perf_counter()
    sock.sendall(payload)
    assert _recv_exactly(sock, len(payload)) == payload
    return time.perf_counter() - started


def test_round_trip_is_at_least_twice_the_one_way_delay(echo_port):
    with WanRelayProcess(echo_port, delay_ms=5) as relay, _connect(relay.port) as sock:
        _round_trip(sock)
        rtts = [_round_trip(sock) for _ in range(10)]
    assert statistics.median(rtts) >= 2 * 0.005 * LOWER
    assert min(rtts) >= 2 * 0.005 * LOWER


def test_sub_millisecond_delays_are_applied(echo_port):
    with WanRelayProcess(echo_port, delay_ms=0.5) as relay, _connect(relay.port) as sock:
        _round_trip(sock)
        rtts = [_round_trip(sock) for _ in range(20)]
    assert statistics.median(rtts) >= 2 * 0.0005 * LOWER


def test_a_new_connection_is_charged_one_round_trip(echo_port):
    """Connect plus the first exchange costs two round trips, as on a real link."""
    with WanRelayProcess(echo_port, delay_ms=5) as relay:
        started = time.perf_counter()
        with _connect(relay.port) as sock:
            _round_trip(sock)
            first = time.perf_counter() - started
    assert first >= 2 * (2 * 0.005) * LOWER


def test_the_way_back_can_have_a_delay_of_its_own():
    """An echo server that notes when bytes reach it: each leg is at least its own configured delay."""
    arrivals: list[float] = []

    class Stamp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            while data := self.request.recv(65536):
                arrivals.append(time.perf_counter())
                self.request.sendall(data)

    server = _EchoServer(("127.0.0.1", 0), Stamp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for there_ms, back_ms in ((30, 0), (0, 30)):
            with WanRelayProcess(server.server_address[1], delay_ms=there_ms, return_delay_ms=back_ms) as relay, \
                    _connect(relay.port) as sock:
                _round_trip(sock)  # past the connect's charge
                arrivals.clear()
                sent = time.perf_counter()
                _round_trip(sock)
                back = time.perf_counter()
                assert arrivals[0] - sent >= there_ms / 1000 * LOWER
                assert back - arrivals[0] >= back_ms / 1000 * LOWER
    finally:
        server.shutdown()
        server.server_close()


def test_bytes_arrive_intact_and_in_order_on_concurrent_connections(echo_port):
    """Several MiB each way in odd-sized chunks, more than the relay buffers, on three connections at once."""
    rng = random.Random(7)
    payloads = [rng.randbytes(3 * 1024 * 1024 + 17 * i) for i in range(3)]
    results: list[bytes | None] = [None] * len(payloads)

    def exchange(i: int, port: int) -> None:
        with _connect(port, timeout=60) as sock:
            received: list[bytes] = []
            reader = threading.Thread(target=lambda: received.append(_recv_exactly(sock, len(payloads[i]))))
            reader.start()
            view, pos = memoryview(payloads[i]), 0
            while pos < len(view):
                step = rng.randint(1, 70000)
                sock.sendall(view[pos:pos + step])
                pos += step
            reader.join(60)
            results[i] = received[0] if received else None

    with WanRelayProcess(echo_port, delay_ms=1) as relay:
        threads = [threading.Thread(target=exchange, args=(i, relay.port)) for i in range(len(payloads))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    for sent, got in zip(payloads, results):
        assert got is not None and len(got) == len(sent)
        assert got == sent


def test_half_close_delivers_everything_then_end_of_file(echo_port):
    with WanRelayProcess(echo_port, delay_ms=2) as relay, _connect(relay.port) as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        assert _recv_exactly(sock, 10) == b"last words"
        assert sock.recv(10) == b""  # the server's close crosses the relay too


def test_pause_stops_traffic_and_resume_restores_it(echo_port):
    with WanRelayProcess(echo_port, delay_ms=1) as relay, _connect(relay.port) as sock:
        _round_trip(sock)
        relay.pause()
        try:
            sock.sendall(b"while stalled")
            sock.settimeout(0.5)
            with pytest.raises(socket.timeout):
                sock.recv(100)
            late = _connect(relay.port)  # the kernel still accepts while the link is stalled
        finally:
            relay.resume()
        sock.settimeout(10)
        assert _recv_exactly(sock, 13) == b"while stalled"
        with late:
            assert _round_trip(late, b"after") >= 0


def test_delay_can_change_while_running(echo_port):
    with WanRelayProcess(echo_port, delay_ms=0) as relay, _connect(relay.port) as sock:
        _round_trip(sock)
        relay.set_delay(10)
        assert relay.delay_ms == 10
        rtts = [_round_trip(sock) for _ in range(3)]
    assert min(rtts) >= 2 * 0.010 * LOWER


def test_unreachable_target_closes_the_client():
    with WanRelayProcess(free_port(), delay_ms=1) as relay, _connect(relay.port) as sock:
        sock.sendall(b"anyone?")
        try:
            assert sock.recv(10) == b""
        except ConnectionResetError:
            pass


def test_a_real_redis_client_works_through_the_relay(upstream):
    """redis-py with a password against the real upstream: the handshake and commands cross the relay unharmed."""
    with WanRelayProcess(upstream.port, delay_ms=2) as relay:
        client = redis.Redis(host="127.0.0.1", port=relay.port, password=upstream.password, protocol=3)
        try:
            client.set("wan:key", b"\x00\xffbinary")
            started = time.perf_counter()
            assert client.get("wan:key") == b"\x00\xffbinary"
            assert time.perf_counter() - started >= 2 * 0.002 * LOWER
        finally:
            client.close()


def test_stop_ends_the_process_and_frees_the_port(echo_port):
    relay = WanRelayProcess(echo_port, delay_ms=0).start()
    port, proc = relay.port, relay.proc
    relay.stop()
    assert proc is not None and proc.poll() is not None
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_listen_and_target_addresses_parse():
    assert parse_address("127.0.0.1:6380") == ("127.0.0.1", 6380)
    assert parse_address("[::1]:7000") == ("::1", 7000)
    assert parse_address(":7000") == ("127.0.0.1", 7000)
