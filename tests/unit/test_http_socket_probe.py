"""The controller's HTTP server on a shared port and a Unix socket, and the exec probe."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from vaultbridge.kube.errors import KubeForbidden, KubeUnauthorized
from vaultbridge.observability import probe
from vaultbridge.observability.http import HttpServer, Routes
from vaultbridge.observability.metrics import Metrics, counting
from vaultbridge.vault.errors import VaultAuthError, VaultNotFound


def _routes(name: str, ready: list[bool]) -> Routes:
    def readyz() -> tuple[int, dict[str, Any]]:
        return (200, {"who": name}) if ready[0] else (503, {"who": name, "problems": ["x"]})

    return Routes(
        metrics=lambda _names: (b"", "text/plain"),
        healthz=lambda: (200, {"status": "ok", "who": name}),
        readyz=readyz,
    )


def test_two_servers_share_a_port_and_each_socket_reaches_its_own(tmp_path: Path) -> None:
    first = HttpServer(
        "127.0.0.1", 0, _routes("a", [True]), reuse_port=True, socket_path=str(tmp_path / "a")
    )
    second = HttpServer(
        "127.0.0.1",
        first.port,
        _routes("b", [False]),
        reuse_port=True,
        socket_path=str(tmp_path / "b"),
    )
    for server in (first, second):
        server.start()
    try:
        assert probe.probe(str(tmp_path / "a"), "/readyz") == (200, '{"who": "a"}')
        status, body = probe.probe(str(tmp_path / "b"), "/readyz")
        assert status == 503 and json.loads(body)["who"] == "b"
        seen = set()
        for _ in range(64):
            with urllib.request.urlopen(f"http://127.0.0.1:{first.port}/healthz") as reply:
                seen.add(json.loads(reply.read())["who"])
        assert seen == {"a", "b"}  # the kernel spreads the shared port's connections
    finally:
        for server in (first, second):
            server.stop()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_without_reuse_port_a_second_server_cannot_bind() -> None:
    first = HttpServer("127.0.0.1", 0, _routes("a", [True]))
    try:
        with pytest.raises(OSError):
            HttpServer("127.0.0.1", first.port, _routes("b", [True]))
    finally:
        first.stop()


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    stale = tmp_path / "s"
    stale.write_text("")
    server = HttpServer("127.0.0.1", 0, _routes("a", [True]), socket_path=str(stale))
    server.start()
    try:
        assert probe.probe(str(stale), "/healthz")[0] == 200
        assert stale.stat().st_mode & 0o777 == 0o660
    finally:
        server.stop()


def _run_probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vaultbridge.observability.probe", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_probe_command_exits_by_the_answer(tmp_path: Path) -> None:
    ready = [True]
    server = HttpServer("127.0.0.1", 0, _routes("a", ready), socket_path=str(tmp_path / "s"))
    server.start()
    try:
        done = _run_probe(str(tmp_path / "s"), "/readyz")
        assert done.returncode == 0 and '"who": "a"' in done.stdout
        ready[0] = False
        done = _run_probe(str(tmp_path / "s"), "/readyz")
        assert done.returncode == 1 and '"problems"' in done.stdout
    finally:
        server.stop()
    done = _run_probe(str(tmp_path / "s"), "/healthz")
    assert done.returncode == 1 and "cannot reach the controller" in done.stdout
    assert _run_probe(str(tmp_path / "s"), "/metrics").returncode == 2
    assert _run_probe().returncode == 2


def test_the_probe_says_when_the_answer_is_not_http(tmp_path: Path) -> None:
    import socket
    import threading

    path = str(tmp_path / "junk")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def answer() -> None:
        conn, _ = listener.accept()
        conn.recv(1024)
        conn.sendall(b"garbage")
        conn.close()

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        assert probe.probe(path, "/readyz") == (0, f"no HTTP answer from {path}")
    finally:
        thread.join()
        listener.close()


def test_a_backend_failure_reason_is_kept_until_it_recovers() -> None:
    metrics = Metrics()
    assert metrics.backend_failure("vault") == ""
    metrics.backend_call("vault", False, "agent auth: Vault Agent token sink is empty" + "x" * 400)
    assert metrics.backend_health() == {"vault": False}
    assert metrics.backend_failure("vault").startswith("agent auth: Vault Agent")
    assert len(metrics.backend_failure("vault")) == 300
    metrics.backend_call("vault", True)
    assert metrics.backend_health() == {"vault": True}


class _Source:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def read(self) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "healthy"),
    [
        (VaultAuthError("agent auth: Vault Agent token sink /s is empty"), False),
        (KubeUnauthorized("401 from the API server"), False),
        (VaultNotFound("secret/data/x: no such path"), True),  # one CR's problem
        (KubeForbidden("403 on secrets in ns"), True),
    ],
)
def test_readiness_fails_only_when_the_backend_itself_is_unusable(
    error: Exception, healthy: bool
) -> None:
    metrics = Metrics()
    proxy = counting(_Source(error), "vault", metrics, Exception)
    with pytest.raises(type(error)):
        proxy.read()
    assert metrics.backend_health() == {"vault": healthy}
    if not healthy:
        assert metrics.backend_failure("vault") == str(error)
