"""The ``socket`` audit device's receiver (Vault and OpenBao): newline-separated JSON entries
on a TCP or Unix stream socket, each handed to an ``AuditReceiver`` (``triggers/audit.py``).

The sender is authenticated by its peer: on TCP its address must fall in ``peers`` (CIDRs), on
a Unix socket its uid (``SO_PEERCRED``) must be one of ``uids``. A refused peer is closed at
once and counted. Memory stays bounded: a line longer than ``MAX_ENTRY`` is dropped up to its
newline, and at most ``MAX_CONNECTIONS`` senders are served at a time.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any

from vaultbridge.triggers.audit import MAX_ENTRY, AuditReceiver

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 16
READ_CHUNK = 64 * 1024


class AddressError(ValueError):
    """An audit socket address that is not ``tcp://host:port`` or ``unix:///path``."""


def parse_address(address: str) -> tuple[str, Any]:
    """``("tcp", (host, port))`` or ``("unix", path)``."""
    if address.startswith("unix://"):
        path = address.removeprefix("unix://")
        if not path.startswith("/"):
            raise AddressError(f"audit socket {address!r}: a unix address is unix:///absolute/path")
        return "unix", path
    if address.startswith("tcp://"):
        host, sep, port = address.removeprefix("tcp://").rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise AddressError(f"audit socket {address!r}: a tcp address is tcp://host:port")
        return "tcp", (host.strip("[]"), int(port))
    raise AddressError(f"audit socket {address!r}: use tcp://host:port or unix:///path")


def _peer_uid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class AuditSocket:
    """Serves one address until :meth:`stop`."""

    def __init__(
        self,
        address: str,
        receiver: AuditReceiver[Any],
        *,
        peers: Sequence[str] = ("127.0.0.1/32", "::1/128"),
        uids: Sequence[int] = (),
        rejected: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.kind, where = parse_address(address)
        self.receiver = receiver
        self.networks = [ipaddress.ip_network(p, strict=False) for p in peers]
        self.uids = set(uids) or {os.getuid()}
        self.rejected = rejected
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        handler = self._handler()
        self.server: socketserver.BaseServer
        if self.kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(where)
            self.server = _UnixServer(where, handler)
            os.chmod(where, 0o660)
        else:
            family = socket.AF_INET6 if ":" in where[0] else socket.AF_INET
            self.server = _TcpServer(where, handler, family)
        self.path = where if self.kind == "unix" else None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        address = self.server.server_address
        return int(address[1]) if isinstance(address, tuple) else 0

    def allowed(self, request: socket.socket, client: Any) -> bool:
        if self.kind == "unix":
            return _peer_uid(request) in self.uids
        try:
            peer = ipaddress.ip_address(client[0])
        except (ValueError, TypeError, IndexError):
            return False
        return any(peer in network for network in self.networks)

    def _handler(self) -> type[socketserver.BaseRequestHandler]:
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                if not outer.allowed(sock, self.client_address):
                    outer.rejected("peer")
                    log.info("audit socket: refused a sender that is not an allowed peer")
                    return
                if not outer._slots.acquire(blocking=False):
                    outer.rejected("busy")
                    return
                try:
                    outer.follow(sock)
                finally:
                    outer._slots.release()

        return Handler

    def follow(self, sock: socket.socket) -> None:
        """Hand every complete line to the receiver; a truncated last line is dropped."""
        pending = b""
        skipping = False  # inside an over-long line: drop up to its newline
        while True:
            try:
                chunk = sock.recv(READ_CHUNK)
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if skipping:
                    skipping = False
                    continue
                try:
                    self.receiver.entry(line)
                except Exception as exc:  # one entry must never stop the stream
                    log.warning("audit entry failed: %s", type(exc).__name__)
            if len(pending) > MAX_ENTRY:
                self.receiver.counts.malformed += 1
                pending, skipping = b"", True

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="vaultbridge-audit-socket", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[socketserver.BaseRequestHandler],
        family: socket.AddressFamily,
    ) -> None:
        self.address_family = family
        super().__init__(address, handler)


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
