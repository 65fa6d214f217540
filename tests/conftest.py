"""Session fixtures: the real servers from vaultbridge.testenv, started once per test run.

A running environment from ``testenv/up`` is reused when ``VAULTBRIDGE_TESTENV_REUSE=1`` (handy
while developing); otherwise the session starts its own (3 mons, so quorum tests have one to
spare) and stops it at the end. A server that cannot start is an error, never a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from vaultbridge.testenv.bao import OpenBaoServer
from vaultbridge.testenv.ceph import CephCluster
from vaultbridge.testenv.env import Environment, load, start
from vaultbridge.testenv.kube import KubeCluster


@pytest.fixture(scope="session")
def testenv() -> Iterator[Environment]:
    if os.environ.get("VAULTBRIDGE_TESTENV_REUSE") == "1":
        existing = load()
        if existing is not None and existing.healthy():
            yield existing
            return
    env = start(mons=3)
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture(scope="session")
def vault_server(testenv: Environment) -> OpenBaoServer:
    return testenv.vault


@pytest.fixture(scope="session")
def ceph_cluster(testenv: Environment) -> CephCluster:
    return testenv.ceph


@pytest.fixture(scope="session")
def kube_cluster(testenv: Environment) -> KubeCluster:
    return testenv.kube
