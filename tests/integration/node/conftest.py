"""One real node (``testenv --node``) shared by the tests of this folder, stopped after them."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from node_helpers import node_api

from vaultbridge.testenv.env import Environment, load, start
from vaultbridge.testenv.releases import INSIDE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration/node/" in str(item.path):
            item.add_marker(
                pytest.mark.skipif(bool(os.environ.get(INSIDE)), reason="the node runs here only")
            )


@pytest.fixture(scope="package")
def node_env() -> Iterator[Environment]:
    if os.environ.get("VAULTBRIDGE_TESTENV_REUSE") == "1":  # from `testenv/up --node`
        existing = load()
        if existing is not None and existing.node is not None and existing.healthy():
            yield existing
            return
    env = start(mons=1, node=True)
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture(scope="package")
def core(node_env: Environment) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(node_api(node_env))
