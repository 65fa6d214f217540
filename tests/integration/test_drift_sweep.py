"""The drift sweep of `vaultbridge run` on the real servers: a controller that starts over
credentials already in step reads Ceph through one listing per kind, writes nothing and
rotates nothing; a value edited in Ceph behind its back is found by the next sweep alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from controller_helpers import (
    ControllerProcess,
    at_version,
    config_key_spec,
    create_cr,
    labelled,
    unique,
    vault_put,
    wait_for,
)
from kubernetes import client as k8s

from vaultbridge.testenv.env import Environment

pytestmark = pytest.mark.integration

COUNT = 12


@pytest.fixture
def controllers(testenv: Environment, ns: str, tmp_path: Path) -> Iterator[list[ControllerProcess]]:
    started: list[ControllerProcess] = []
    yield started
    for controller in started:
        controller.stop()


def start(
    testenv: Environment, ns: str, tmp_path: Path, started: list[ControllerProcess]
) -> ControllerProcess:
    controller = ControllerProcess(
        testenv, ns, tmp_path, VAULTBRIDGE_CONTROLLER__RESYNC_INTERVAL="3"
    )
    started.append(controller)
    controller.wait_leader()
    return controller


def test_a_restart_over_credentials_in_step_changes_nothing_and_a_sweep_finds_drift(
    testenv: Environment,
    api: k8s.ApiClient,
    ns: str,
    tmp_path: Path,
    controllers: list[ControllerProcess],
) -> None:
    first = start(testenv, ns, tmp_path, controllers)
    creds = []
    for n in range(COUNT):
        name, path, key = unique("sweep"), unique("sw"), f"vaultbridge-test/{unique('k')}"
        version = vault_put(testenv, path, {"value": f"sweep-{n}"})
        create_cr(
            api,
            ns,
            name,
            config_key_spec(path, name, key),
        )
        creds.append((name, key, version))
    for name, _key, version in creds:
        wait_for(lambda n=name, v=version: at_version(api, ns, n, v), f"{name} promoted")
    first.stop()

    second = start(testenv, ns, tmp_path, controllers)
    wait_for(
        lambda: labelled(second.metrics(), "vaultbridge_drift_sweeps_total", result="ok") >= 1,
        "the first sweep of the new leader",
    )
    text = second.metrics()
    assert labelled(text, "vaultbridge_rotations_total", result="promoted") == 0
    assert labelled(text, "vaultbridge_drift_due_total") == 0
    # one config-key listing per sweep (and nothing per credential), whatever COUNT is
    sweeps = labelled(text, "vaultbridge_drift_sweeps_total", result="ok")
    ceph = labelled(text, "vaultbridge_backend_requests_total", backend="ceph")
    assert ceph <= sweeps + 1, (ceph, sweeps)
    # and one Vault metadata read per credential, once: the catch-up after the first sweep
    assert labelled(text, "vaultbridge_backend_requests_total", backend="vault") <= COUNT

    name, key, _version = creds[COUNT // 2]
    testenv.ceph.ceph("config-key", "set", key, "edited-behind-its-back")

    def restored() -> bool:
        return testenv.ceph.ceph("config-key", "get", key).strip() == f"sweep-{COUNT // 2}"

    wait_for(restored, "the edited config-key restored by a sweep", timeout=60)
    text = second.metrics()
    assert labelled(text, "vaultbridge_drift_due_total", reason="ceph-differs") == 1
    assert "edited-behind-its-back" not in second.output()
