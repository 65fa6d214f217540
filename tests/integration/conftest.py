"""Fixtures shared by the rotation tests: a Kubernetes client, a fresh namespace, the app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
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
