"""Fixtures shared by the rotation tests: a Kubernetes client, a fresh namespace, the app, and
the fault suite's servers behind fault proxies, and `vaultbridge run` started on demand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from controller_helpers import ControllerProcess
from fault_helpers import Wired, start_wired
from kubernetes import client as k8s
from rotation_helpers import api_client, namespace

import vaultbridge.app as application
from vaultbridge.settings import load_settings
from vaultbridge.testenv.env import Environment


@pytest.fixture(scope="module")
def api(testenv: Environment) -> k8s.ApiClient:
    return api_client(testenv)


@pytest.fixture
def ns(api: k8s.ApiClient) -> Iterator[str]:
    with namespace(api) as name:
        yield name


@pytest.fixture
def app(testenv: Environment, monkeypatch: pytest.MonkeyPatch) -> Iterator[application.App]:
    """vaultbridge wired to the test environment, as `vaultbridge sync` would be."""
    for key, value in testenv.variables().items():
        if key.startswith("VAULTBRIDGE_"):
            monkeypatch.setenv(key, value)
    built = application.build(load_settings())
    yield built
    built.close()


@pytest.fixture
def start(testenv: Environment, ns: str, tmp_path: Path) -> Iterator[Any]:
    """Start `vaultbridge run` for ``ns`` (``start(**settings)``), wait until it leads; every
    one started is stopped at the end."""
    started: list[ControllerProcess] = []

    def run(**settings: str) -> ControllerProcess:
        controller = ControllerProcess(testenv, ns, tmp_path, **settings)
        started.append(controller)
        controller.wait_leader()
        return controller

    yield run
    for controller in started:
        controller.stop()


@pytest.fixture(scope="module")
def wired(testenv: Environment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wired]:
    """Fault proxies in front of OpenBao, the API server and a mon of its own (fault_helpers)."""
    started = start_wired(testenv, Path(tmp_path_factory.mktemp("wired")))
    try:
        yield started
    finally:
        started.stop()
