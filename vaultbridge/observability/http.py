"""The controller's HTTP server: ``/metrics``, ``/healthz``, ``/readyz`` and the trigger endpoints.

Standard library ``ThreadingHTTPServer``; routes are plain callables so that the server knows
nothing about credentials. Every answer is JSON (``/metrics``: the Prometheus text format);
unknown paths are 404, wrong methods 405, and a request body is read only up to a size limit.
No request body, header or token is ever logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024

JsonReply = tuple[int, dict[str, Any]]


@dataclass
class Routes:
    metrics: Callable[[frozenset[str]], tuple[bytes, str]]
    """The scrape: only the named metrics (``?name[]=...``, as Prometheus's client does) when
    any are named, else all."""
    healthz: Callable[[], JsonReply]
    readyz: Callable[[], JsonReply]
    posts: dict[str, Callable[[bytes, str | None], JsonReply]] = field(default_factory=dict)
    """POST path -> handler(body, Authorization header)."""
    max_body: dict[str, int] = field(default_factory=dict)
    """POST path -> its body's size limit, when not ``MAX_BODY``."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "vaultbridge"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s %s", self.command, self.path.split("?", 1)[0])

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, reply: JsonReply) -> None:
        status, payload = reply
        self._send(status, json.dumps(payload).encode() + b"\n", "application/json")

    def do_GET(self) -> None:
        routes = self.server.routes
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                query = parse_qs(self.path.split("?", 1)[1]) if "?" in self.path else {}
                body, content_type = routes.metrics(frozenset(query.get("name[]", ())))
                self._send(200, body, content_type)
            elif path == "/healthz":
                self._json(routes.healthz())
            elif path == "/readyz":
                self._json(routes.readyz())
            elif path in routes.posts:
                self._json((405, {"error": f"{path} takes POST"}))
            else:
                self._json((404, {"error": f"no such endpoint {path[:100]!r}"}))
        except Exception as exc:
            log.error("GET %s failed: %s", path, type(exc).__name__)
            self._json((500, {"error": "internal error"}))

    do_HEAD = do_GET  # noqa: N815 - http.server naming

    def do_POST(self) -> None:
        routes = self.server.routes
        path = self.path.split("?", 1)[0]
        handler = routes.posts.get(path)
        if handler is None:
            self._drain()
            self._json(
                (
                    404 if path not in ("/metrics", "/healthz", "/readyz") else 405,
                    {"error": f"no POST endpoint {path[:100]!r}"},
                )
            )
            return
        length_text = self.headers.get("Content-Length")
        try:
            length = int(length_text) if length_text is not None else 0
        except ValueError:
            self.close_connection = True
            self._json((400, {"error": "bad Content-Length"}))
            return
        limit = routes.max_body.get(path, MAX_BODY)
        if length < 0 or length > limit:
            self.close_connection = True
            self._json((413, {"error": f"request body larger than {limit} bytes"}))
            return
        body = self.rfile.read(length) if length else b""
        try:
            reply = handler(body, self.headers.get("Authorization"))
        except Exception as exc:
            log.error("POST %s failed: %s", path, type(exc).__name__)
            reply = (500, {"error": "internal error"})
        self._json(reply)

    def _drain(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if 0 < length <= MAX_BODY:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def do_PUT(self) -> None:
        self._drain()
        self._json((405, {"error": "method not allowed"}))

    do_DELETE = do_PUT  # noqa: N815
    do_PATCH = do_PUT  # noqa: N815


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], routes: Routes, reuse_port: bool) -> None:
        self.routes = routes
        self.allow_reuse_port = reuse_port
        super().__init__(address, _Handler)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, routes: Routes) -> None:
        self.routes = routes
        if os.path.exists(path):  # a previous run's socket in the same Pod's volume
            os.unlink(path)
        super().__init__(path, _Handler)
        os.chmod(path, 0o660)


class HttpServer:
    """Serves ``routes`` on ``bind:port`` in a background thread (port 0: any free port), and
    on the Unix socket ``socket_path`` when given. ``reuse_port`` lets processes of the same
    user share the port (host-network Pods on one node); the socket then still reaches this
    process alone, which is what its probes need."""

    def __init__(
        self,
        bind: str,
        port: int,
        routes: Routes,
        *,
        reuse_port: bool = False,
        socket_path: str | None = None,
    ) -> None:
        servers: list[socketserver.BaseServer] = [_Server((bind, port), routes, reuse_port)]
        if socket_path is not None:
            servers.append(_UnixServer(socket_path, routes))
        self._servers = servers
        self._threads = [
            threading.Thread(target=s.serve_forever, name="vaultbridge-http", daemon=True)
            for s in servers
        ]

    @property
    def port(self) -> int:
        return int(self._servers[0].server_address[1])  # type: ignore[index]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        for server, thread in zip(self._servers, self._threads, strict=True):
            if thread.is_alive():  # shutdown() waits for a serve_forever() that never ran
                server.shutdown()
            server.server_close()
        for server in self._servers[1:]:
            with contextlib.suppress(OSError):
                os.unlink(str(server.server_address))
