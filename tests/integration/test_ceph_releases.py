"""The Ceph-facing suites on Reef (18.2.7) and Tentacle (20.2.4), each from inside that release's
Debian root filesystem, on its Python and its ``python3-rados`` (``vaultbridge.testenv.matrix``):
what an image built on that release would run. Pacific runs them in the main session."""

from __future__ import annotations

import pytest

from vaultbridge.testenv.matrix import run_suites

SUITES = [
    "tests/integration/test_ceph_adapter.py",  # the adapter, key formats, canaries, mons down
    "tests/integration/test_cephx_rotation.py",  # alternate, in-place, adoption, drift, kill -9
    "tests/integration/test_rotation_engine.py",  # config and config-key, the list target
    "tests/integration/test_clusters.py",  # spec.cluster: Rook and external clusters, bad objects
]


@pytest.mark.parametrize("major", [18, 20], ids=["reef", "tentacle"])
@pytest.mark.timeout(1800)
def test_the_ceph_facing_suites_pass_on(major: int) -> None:
    run = run_suites(major, SUITES, mons=3)
    print(f"ceph {major}: {run.summary} in {run.seconds:.0f} s ({run.python})")
    assert run.returncode == 0, run.output[-6000:]
    assert " passed" in run.summary and "failed" not in run.summary and "error" not in run.summary
