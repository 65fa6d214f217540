"""vaultbridge.testenv.ceph: real mons start, stop by pid, and fail clearly on bad input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vaultbridge.testenv.ceph import CephCluster, start_ceph
from vaultbridge.testenv.common import TestenvError, free_port, pid_alive

pytestmark = pytest.mark.integration


def test_single_mon_state_file_and_stop_from_another_process(tmp_path: Path) -> None:
    cluster = start_ceph(tmp_path / "c1", mons=1)
    try:
        assert cluster.quorum() == ["a"]
        health = json.loads(cluster.ceph("health", "--format", "json"))
        assert health["status"] in {"HEALTH_OK", "HEALTH_WARN"}
        assert cluster.user == "client.admin" and cluster.admin_keyring.exists()
        state = tmp_path / "state.json"
        state.write_text(json.dumps(cluster.to_dict()))
        assert CephCluster.from_dict(json.loads(state.read_text())).to_dict() == cluster.to_dict()
        # `testenv/down` stops it from another process, knowing only the state file
        code = (
            "import json,sys; from vaultbridge.testenv.ceph import CephCluster; "
            "CephCluster.from_dict(json.load(open(sys.argv[1]))).stop()"
        )
        subprocess.run([sys.executable, "-c", code, str(state)], check=True, timeout=30)
        assert not any(pid_alive(pid) for pid in cluster.pids.values())
    finally:
        cluster.stop()


def test_busy_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        with pytest.raises(TestenvError, match=rf"mon\.a \(msgr2\).*{busy} is busy"):
            start_ceph(tmp_path, mons=1, ports=[(busy, free_port())])


def test_missing_binary_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TestenvError, match=r"ceph-mon.*apt-get install ceph-mon ceph-common"):
        start_ceph(tmp_path, mons=1)
