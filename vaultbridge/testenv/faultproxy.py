"""A loopback TCP proxy that injects network faults, for the fault-injection suite.

One :class:`FaultProxy` sits in front of one server (OpenBao, the API server, a mon) and
forwards bytes both ways untouched until a test switches a fault on:

``latency``
    every chunk, in both directions, waits ``delay`` seconds before it is forwarded;
``reset``
    open connections are reset (RST, not FIN) and new ones are accepted and reset at once;
``blackhole``
    nothing is forwarded any more and nothing is answered: bytes sent are swallowed, new
    connections are accepted and never connected upstream (a peer sees a stall, then its own
    timeout);
``cut``
    each connection forwards at most ``after`` more bytes of the server's answer, then both
    sides are reset: a response cut off in the middle.

``clear()`` ends the fault. Connections a black hole or a cut has corrupted are reset then (their
bytes are gone; TCP would have given up on them too), so clients reconnect cleanly.

The proxy is byte-transparent (TLS and the Ceph messenger pass through), binds 127.0.0.1 only,
and keeps counts a test can assert on: connections accepted, resets made, bytes forwarded.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass

from vaultbridge.testenv.common import TestenvError

FAULTS = ("latency", "reset", "blackhole", "cut")
_CHUNK = 65536


@dataclass(frozen=True)
class Fault:
    kind: str
    delay: float = 0.0
    after: int = 0


def _reset(sock: socket.socket) -> None:
    """Close with RST: SO_LINGER on, zero timeout."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Link:
    """One client connection and its upstream connection, pumped by one thread."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.closed = threading.Event()
        self.tainted = False  # bytes were swallowed or cut: unusable after the fault
        self.budget: int | None = None  # bytes of the answer a cut still lets through

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)
        self.proxy._forget(self)

    def run(self) -> None:
        try:
            self._run()
        except OSError:
            pass
        finally:
            self.close()

    def _connect(self) -> bool:
        fault = self.proxy.fault
        if fault is not None and fault.kind == "blackhole":
            return False
        self.upstream = socket.create_connection(self.proxy.upstream, timeout=5)
        self.upstream.settimeout(None)
        return True

    def _run(self) -> None:
        connected = self._connect()
        while not self.closed.is_set():
            fault = self.proxy.fault
            if fault is not None and fault.kind == "reset":
                return
            if not connected:
                if fault is None or fault.kind != "blackhole":
                    connected = self._connect()
                    continue
                self.tainted = True
            watched = [self.client] if self.upstream is None else [self.client, self.upstream]
            ready, _, _ = select.select(watched, [], [], 0.1)
            for sock in ready:
                data = sock.recv(_CHUNK)
                if not data:
                    return
                if not self._forward(sock is self.client, data):
                    return

    def _forward(self, outbound: bool, data: bytes) -> bool:
        """Pass ``data`` on under the current fault; False: the link is done."""
        fault = self.proxy.fault
        if fault is None:
            if self.tainted:
                return False
            self.budget = None
        elif fault.kind == "blackhole":
            self.tainted = True
            return True  # swallowed
        elif fault.kind == "reset":
            return False
        elif fault.kind == "latency":
            time.sleep(fault.delay)
        elif fault.kind == "cut" and not outbound:
            if self.budget is None:
                self.budget = fault.after
            if len(data) >= self.budget:
                data = data[: self.budget]
                self._send(self.client, data)
                self.proxy._count("cut")
                return False
            self.budget -= len(data)
        target = self.upstream if outbound else self.client
        if target is None:
            return True
        self._send(target, data)
        return True

    def _send(self, sock: socket.socket, data: bytes) -> None:
        if data:
            sock.sendall(data)
            self.proxy._count("bytes", len(data))


class FaultProxy:
    """Forward 127.0.0.1:``port`` to ``upstream``; see the module docstring for faults."""

    def __init__(self, upstream: tuple[str, int], *, port: int = 0, name: str = "") -> None:
        self.upstream = upstream
        self.name = name or f"{upstream[0]}:{upstream[1]}"
        self.fault: Fault | None = None
        self.changed_at = 0.0
        self.counts: dict[str, int] = {"accepted": 0, "reset": 0, "cut": 0, "bytes": 0}
        self.accepted_at: list[float] = []  # monotonic time of each connection accepted
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind(("127.0.0.1", port))
        except OSError as exc:
            self._listener.close()
            raise TestenvError(f"fault proxy {self.name}: cannot bind port {port}: {exc}") from None
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name=f"proxy-{self.name}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- faults ----------------------------------------------------------------------------
    def latency(self, delay: float) -> None:
        self._set(Fault("latency", delay=delay))

    def reset(self) -> None:
        self._set(Fault("reset"))
        for link in self._snapshot():
            self._count("reset")
            link.close()

    def blackhole(self) -> None:
        self._set(Fault("blackhole"))

    def cut(self, after: int = 64) -> None:
        self._set(Fault("cut", after=after))

    def set(self, kind: str, **params: float) -> None:
        """Switch on fault ``kind`` (one of :data:`FAULTS`) with its parameters."""
        if kind == "latency":
            self.latency(float(params.get("delay", 0.5)))
        elif kind == "reset":
            self.reset()
        elif kind == "blackhole":
            self.blackhole()
        elif kind == "cut":
            self.cut(int(params.get("after", 64)))
        else:
            raise TestenvError(f"fault proxy: unknown fault {kind!r} (one of {', '.join(FAULTS)})")

    def clear(self) -> None:
        self._set(None)
        for link in self._snapshot():
            if link.tainted:
                self._count("reset")
                link.close()

    def _set(self, fault: Fault | None) -> None:
        with self._lock:
            self.fault = fault
            self.changed_at = time.monotonic()

    def disturbed(self, within: float = 3.0) -> bool:
        """Is a fault on, or did one clear less than ``within`` seconds ago (clients still
        reconnecting)?"""
        return self.fault is not None or time.monotonic() - self.changed_at < within

    # -- plumbing --------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.2)
                if not ready:
                    continue
                client, _ = self._listener.accept()
            except OSError:
                return
            self._count("accepted")
            self.accepted_at.append(time.monotonic())
            fault = self.fault
            if fault is not None and fault.kind == "reset":
                self._count("reset")
                _reset(client)
                continue
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(self, client)
            with self._lock:
                self._links.add(link)
            threading.Thread(target=link.run, name=f"link-{self.name}", daemon=True).start()

    def _snapshot(self) -> list[_Link]:
        with self._lock:
            return list(self._links)

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] = self.counts.get(what, 0) + n

    def connections(self) -> int:
        with self._lock:
            return len(self._links)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for link in self._snapshot():
            link.close()
        self._thread.join(timeout=2)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
