"""testenv/up then testenv/down leaves no process, port or data behind; bad input is clear."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from vaultbridge.testenv.common import TestenvError, processes_mentioning
from vaultbridge.testenv.kube import start_kube

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_up_then_down_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {**os.environ, "VAULTBRIDGE_TESTENV_STATE": str(tmp_path / "state")}
    up = subprocess.run(
        [str(ROOT / "testenv" / "up")], capture_output=True, text=True, env=env, timeout=180
    )
    assert up.returncode == 0, up.stderr
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    env_sh = (tmp_path / "state" / "env.sh").read_text()
    assert "VAULTBRIDGE_CEPH__KEYRING" in env_sh and "KUBECONFIG" in env_sh
    workdir = state["workdir"]
    ports = [
        int(state["vault"]["addr"].rsplit(":", 1)[1]),
        int(state["kube"]["server"].rsplit(":", 1)[1]),
    ]
    ports += [p for pair in state["ceph"]["mon_ports"].values() for p in pair]
    assert processes_mentioning(workdir), "servers should be running"
    again = subprocess.run(
        [str(ROOT / "testenv" / "up")], capture_output=True, text=True, env=env, timeout=60
    )
    assert again.returncode == 1 and "already running" in again.stderr
    down = subprocess.run(
        [str(ROOT / "testenv" / "down")], capture_output=True, text=True, env=env, timeout=120
    )
    assert down.returncode == 0, down.stderr
    assert processes_mentioning(workdir) == []
    assert not Path(workdir).exists()
    assert not (tmp_path / "state" / "state.json").exists()
    assert all(port_is_free(port) for port in ports)


def test_missing_binaries_are_named(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    with pytest.raises(TestenvError, match="etcd"):
        start_kube(tmp_path / "kube", empty)
    assert processes_mentioning(str(tmp_path)) == []
