"""One real node (``testenv --node``) shared by the tests of this folder, stopped after them."""

from __future__ import annotations

import os

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


_started: list[Environment] = []  # the node this run started, stopped after the last node test


def _in_folder(item: pytest.Item | None) -> bool:
    return item is not None and "integration/node/" in str(item.path)


@pytest.fixture(scope="session")
def node_env() -> Environment:
    # "package" scope would be the session here (a folder without __init__.py): the node, its
    # Pods and 1.1 GB of images would stay up through the rest of the run
    if os.environ.get("VAULTBRIDGE_TESTENV_REUSE") == "1":  # from `testenv/up --node`
        existing = load()
        if existing is not None and existing.node is not None and existing.healthy():
            return existing
    if not _started:
        _started.append(start(mons=1, node=True))
    return _started[0]


@pytest.hookimpl(trylast=True)  # after the test's own fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _in_folder(item) and not _in_folder(nextitem):
        while _started:
            _started.pop().stop()


def pytest_sessionfinish() -> None:
    while _started:
        _started.pop().stop()


@pytest.fixture(scope="session")
def core(node_env: Environment) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(node_api(node_env))
