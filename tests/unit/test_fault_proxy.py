"""The fault proxy against a loopback echo server: transparent, then each fault as documented."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from vaultbridge.testenv.faultproxy import FaultProxy


@pytest.fixture
def echo() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data * 4)  # an answer longer than the question
            except OSError:
                pass  # the proxy reset it: that is the test

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield port
    stop.set()
    server.close()


@pytest.fixture
def proxy(echo: int) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", echo)) as started:
        yield started


def ask(proxy: FaultProxy, payload: bytes = b"ping", timeout: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout) as conn:
        conn.sendall(payload)
        got = b""
        while len(got) < 4 * len(payload):
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_without_a_fault_bytes_pass_both_ways(proxy: FaultProxy) -> None:
    assert ask(proxy) == b"ping" * 4
    deadline = time.monotonic() + 2
    while proxy.counts["bytes"] < 20 and time.monotonic() < deadline:  # counted after the send
        time.sleep(0.01)
    assert proxy.counts["accepted"] == 1 and proxy.counts["bytes"] == 20


def test_latency_delays_every_chunk(proxy: FaultProxy) -> None:
    proxy.latency(0.2)
    began = time.monotonic()
    assert ask(proxy) == b"ping" * 4
    assert time.monotonic() - began >= 0.4  # the question and the answer each waited


def test_reset_refuses_new_connections_and_ends_open_ones(proxy: FaultProxy) -> None:
    proxy.reset()
    with pytest.raises(OSError):
        ask(proxy)
    proxy.clear()
    assert ask(proxy) == b"ping" * 4


def test_a_black_hole_never_answers_then_clears(proxy: FaultProxy) -> None:
    proxy.blackhole()
    with pytest.raises(TimeoutError):
        ask(proxy, timeout=0.5)
    proxy.clear()
    assert ask(proxy) == b"ping" * 4
    assert proxy.disturbed(within=5.0) and not proxy.disturbed(within=0.0)


def test_a_cut_answer_stops_after_its_bytes(proxy: FaultProxy) -> None:
    proxy.cut(after=6)
    try:
        got = ask(proxy, b"0123456789")
    except OSError:
        got = b"reset"
    assert got in (b"012345", b"reset")
    assert proxy.counts["cut"] == 1


def test_an_unknown_fault_is_refused(proxy: FaultProxy) -> None:
    with pytest.raises(Exception, match="unknown fault 'jitter'"):
        proxy.set("jitter")
