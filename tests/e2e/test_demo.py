"""`vaultbridge demo` (what `make demo` runs) end to end: its own environment, live rotations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vaultbridge.testenv.common import processes_mentioning

pytestmark = pytest.mark.e2e


def test_demo_runs_every_scenario_and_cleans_up() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "vaultbridge"), "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for expected in (
        "Precheck (vaultbridge sync --dry-run)",
        "rook-ceph/rgw-keystone: version 2 applied, verified and promoted",
        "rook-ceph/dashboard: version 2 applied, verified and promoted",
        "rook-ceph/app-cephx: version 2 applied, verified and promoted",
        "rook-ceph/rgw-ldap: version 2 applied, verified and promoted",
        "ROLLED-BACK",
        "environment stopped and removed",
    ):
        assert expected in out, expected
    conf = next(line.split()[-1] for line in out.splitlines() if line.startswith("  Ceph "))
    workdir = Path(conf).parent.parent
    assert workdir.name.startswith("vaultbridge-testenv-")
    assert processes_mentioning(str(workdir)) == [] and not workdir.exists()
