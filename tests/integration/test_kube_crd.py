"""The CredentialRotation CRD against a real kube-apiserver: validation, printer columns,
the status subresource and watches."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from vaultbridge.kube import (
    CRD_NAME,
    CredentialRotationClient,
    KubeClient,
    KubeConflict,
    KubeInvalid,
    KubeNotFound,
    KubeWatchExpired,
    bundled_crd_path,
)

REPO = Path(__file__).resolve().parents[2]
CHART_CRD = REPO / "charts" / "vaultbridge" / "crds" / "credentialrotations.yaml"


def test_chart_and_package_crd_are_identical() -> None:
    assert bundled_crd_path().read_bytes() == CHART_CRD.read_bytes()


@pytest.fixture(scope="module")
def kube(kube_cluster: Any) -> Iterator[KubeClient]:
    client = KubeClient.from_settings(str(kube_cluster.kubeconfig))
    yield client
    client.close()


@pytest.fixture(scope="module")
def crs(kube: KubeClient) -> CredentialRotationClient:
    client = CredentialRotationClient(kube)
    client.install_crd(CHART_CRD)
    return client


@pytest.fixture
def namespace(kube: KubeClient) -> Iterator[str]:
    name = f"vb-crd-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(kube.api_client)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


GOOD_SPECS: dict[str, dict[str, Any]] = {
    "config": {
        "source": {"mount": "secret", "path": "ceph/rgw-keystone", "field": "value"},
        "secret": {"name": "rgw-keystone", "key": "value"},
        "target": {
            "config": {"who": "client.rgw.my-store", "option": "rgw_keystone_admin_password"}
        },
        "schedule": "0 3 * * 0",
        "maxAge": "720h",
        "historyLimit": 10,
        "suspend": False,
        "generate": False,
    },
    "config-list": {
        "secret": {"name": "rgw-keystone"},
        "target": {
            "config": [
                {"who": "client.rgw.s", "option": "rgw_keystone_admin_user", "field": "user"},
                {
                    "who": "client.rgw.s",
                    "option": "rgw_keystone_admin_password",
                    "field": "password",
                },
            ]
        },
        "schedule": "30 2 1-7 JAN,JUL MON",
    },
    "configKey": {"secret": {"name": "dash"}, "target": {"configKey": {"key": "mgr/dashboard/x"}}},
    "cephx": {
        "secret": {
            "name": "app-cephx",
            "adopt": True,
            "extraOwners": [
                {"apiVersion": "ceph.rook.io/v1", "kind": "CephObjectStore", "name": "s"}
            ],
        },
        "target": {
            "cephx": {
                "entity": "client.app",
                "caps": {"mon": "allow r", "osd": "allow rw pool=app"},
                "strategy": "alternate",
                "retireAfter": "1h30m",
                "keepPrior": 1,
            }
        },
        "schedule": "*/15 * * * *",
    },
}

BAD_SPECS: dict[str, tuple[dict[str, Any], str]] = {
    "no target": ({"secret": {"name": "s"}}, "spec.target: Required value"),
    "empty target": ({"secret": {"name": "s"}, "target": {}}, "spec.target"),
    "two targets": (
        {
            "secret": {"name": "s"},
            "target": {"configKey": {"key": "k"}, "cephx": {"entity": "client.a"}},
        },
        "spec.target",
    ),
    "config and cephx": (
        {
            "secret": {"name": "s"},
            "target": {"config": {"who": "mon", "option": "o"}, "cephx": {"entity": "client.a"}},
        },
        "spec.target",
    ),
    "no secret name": ({"secret": {}, "target": {"configKey": {"key": "k"}}}, "spec.secret.name"),
    "bad entity": (
        {"secret": {"name": "s"}, "target": {"cephx": {"entity": "osd.1"}}},
        "spec.target.cephx.entity",
    ),
    "bad strategy": (
        {"secret": {"name": "s"}, "target": {"cephx": {"entity": "client.a", "strategy": "swap"}}},
        "spec.target.cephx.strategy",
    ),
    "cron in words": (
        {"secret": {"name": "s"}, "target": {"configKey": {"key": "k"}}, "schedule": "every day"},
        "spec.schedule",
    ),
    "cron with four fields": (
        {"secret": {"name": "s"}, "target": {"configKey": {"key": "k"}}, "schedule": "0 3 * *"},
        "spec.schedule",
    ),
    "duration in days": (
        {"secret": {"name": "s"}, "target": {"configKey": {"key": "k"}}, "maxAge": "30d"},
        "spec.maxAge",
    ),
    "bad retireAfter": (
        {
            "secret": {"name": "s"},
            "target": {"cephx": {"entity": "client.a", "retireAfter": "soon"}},
        },
        "spec.target.cephx.retireAfter",
    ),
    "historyLimit 0": (
        {"secret": {"name": "s"}, "target": {"configKey": {"key": "k"}}, "historyLimit": 0},
        "spec.historyLimit",
    ),
    "historyLimit 101": (
        {"secret": {"name": "s"}, "target": {"configKey": {"key": "k"}}, "historyLimit": 101},
        "spec.historyLimit",
    ),
    "keepPrior 11": (
        {"secret": {"name": "s"}, "target": {"cephx": {"entity": "client.a", "keepPrior": 11}}},
        "spec.target.cephx.keepPrior",
    ),
    "config as a string": (
        {"secret": {"name": "s"}, "target": {"config": "client.rgw rgw_x"}},
        "spec.target.config",
    ),
    "config missing option": (
        {"secret": {"name": "s"}, "target": {"config": {"who": "client.rgw"}}},
        "spec.target.config.option",
    ),
    "empty config list": (
        {"secret": {"name": "s"}, "target": {"config": []}},
        "spec.target.config",
    ),
    "config list entry without field": (
        {"secret": {"name": "s"}, "target": {"config": [{"who": "client.rgw", "option": "o"}]}},
        "spec.target.config[0].field",
    ),
    "extra owner without name": (
        {
            "secret": {"name": "s", "extraOwners": [{"apiVersion": "v1", "kind": "ConfigMap"}]},
            "target": {"configKey": {"key": "k"}},
        },
        "spec.secret.extraOwners[0].name",
    ),
}


def _body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": spec}


@pytest.mark.integration
def test_install_is_idempotent_and_established(crs: CredentialRotationClient) -> None:
    crd = crs.install_crd(CHART_CRD)  # second install: an update of the same manifest
    assert crd["metadata"]["name"] == CRD_NAME
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert crd["spec"]["names"]["shortNames"] == ["credrot"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Target"] == ".status.targetDescription"
    assert columns["Current"] == ".status.currentVersion"
    assert columns["Phase"] == ".status.phase"
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Age"] == ".metadata.creationTimestamp"


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(GOOD_SPECS))
def test_good_specs_are_accepted(crs: CredentialRotationClient, namespace: str, case: str) -> None:
    created = crs.create(namespace, _body("good", GOOD_SPECS[case]))
    assert created["spec"] == GOOD_SPECS[case]
    assert crs.get(namespace, "good")["metadata"]["uid"] == created["metadata"]["uid"]


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_specs_are_rejected(crs: CredentialRotationClient, namespace: str, case: str) -> None:
    spec, field = BAD_SPECS[case]
    with pytest.raises(KubeInvalid) as caught:
        crs.create(namespace, _body("bad", spec))
    message = str(caught.value)
    assert field in message, message
    assert "is invalid" in message
    with pytest.raises(KubeNotFound):
        crs.get(namespace, "bad")


@pytest.mark.integration
def test_kubectl_shows_printer_columns(
    crs: CredentialRotationClient, namespace: str, kube_cluster: Any
) -> None:
    crs.create(namespace, _body("shown", GOOD_SPECS["config"]))
    crs.write_status(
        namespace,
        "shown",
        {
            "phase": "Verified",
            "currentVersion": 7,
            "targetDescription": "client.rgw.my-store/rgw_keystone_admin_password",
            "cluster": "default",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Promoted",
                    "message": "version 7 is live",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                }
            ],
        },
    )
    kubectl = kube_cluster.bindir / "kubectl"
    out = subprocess.run(
        [
            str(kubectl),
            "--kubeconfig",
            str(kube_cluster.kubeconfig),
            "get",
            "credrot",
            "-n",
            namespace,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "TARGET", "CLUSTER", "CURRENT", "PHASE", "READY", "AGE"]
    assert row.split()[:6] == [
        "shown",
        "client.rgw.my-store/rgw_keystone_admin_password",
        "default",
        "7",
        "Verified",
        "True",
    ]


@pytest.mark.integration
def test_status_write_replaces_status_and_keeps_generation(
    crs: CredentialRotationClient, namespace: str
) -> None:
    created = crs.create(namespace, _body("st", GOOD_SPECS["configKey"]))
    generation = created["metadata"]["generation"]
    first = crs.write_status(
        namespace,
        "st",
        {
            "phase": "Pending",
            "pendingVersion": 3,
            "rotation": {"id": "r1", "version": 3, "step": "Pending"},
        },
        created["metadata"]["resourceVersion"],
    )
    assert first["status"]["phase"] == "Pending"
    assert first["metadata"]["generation"] == generation
    second = crs.write_status(
        namespace,
        "st",
        {"phase": "Idle", "currentVersion": 3},
        first["metadata"]["resourceVersion"],
    )
    # keys left out are gone: the status was replaced, not merged
    assert second["status"] == {"phase": "Idle", "currentVersion": 3}
    assert second["metadata"]["generation"] == generation
    assert second["spec"] == GOOD_SPECS["configKey"]
    # a stale resourceVersion is a conflict, and the status stays as it was
    with pytest.raises(KubeConflict):
        crs.write_status(namespace, "st", {"phase": "Failed"}, first["metadata"]["resourceVersion"])
    assert crs.get(namespace, "st")["status"] == {"phase": "Idle", "currentVersion": 3}
    # a status that breaks the schema is rejected with the server's reason
    with pytest.raises(KubeInvalid, match=r"status\.phase"):
        crs.write_status(namespace, "st", {"phase": "Dancing"})
    # unconditional (no resourceVersion) works too
    third = crs.write_status(namespace, "st", {"phase": "Verified"})
    assert third["status"] == {"phase": "Verified"}
    assert third["metadata"]["generation"] == generation
    # at a stale version, a write goes through if, of the object as it is now, it still applies
    # (here: another client changed only the spec) ...
    edited = CredentialRotationClient(crs.kube).get(namespace, "st")
    edited["spec"] = GOOD_SPECS["config"]
    crs.kube.custom().replace_namespaced_custom_object(
        "vaultbridge.io", "v1alpha1", namespace, "credentialrotations", "st", edited
    )
    fourth = crs.write_status(
        namespace,
        "st",
        {"phase": "Idle"},
        third["metadata"]["resourceVersion"],
        still_applies=lambda current: current["status"] == third["status"],
    )
    assert fourth["status"] == {"phase": "Idle"}
    assert fourth["spec"] == GOOD_SPECS["config"]
    assert fourth["metadata"]["generation"] == generation + 1
    # ... and not if another writer changed the status meanwhile
    crs.write_status(namespace, "st", {"phase": "Failed"})
    with pytest.raises(KubeConflict, match="changed by another writer"):
        crs.write_status(
            namespace,
            "st",
            {"phase": "Verified"},
            fourth["metadata"]["resourceVersion"],
            still_applies=lambda current: current["status"] == fourth["status"],
        )
    assert crs.get(namespace, "st")["status"] == {"phase": "Failed"}


@pytest.mark.integration
def test_status_write_on_missing_object_is_not_found(
    crs: CredentialRotationClient, namespace: str
) -> None:
    with pytest.raises(KubeNotFound, match="credentialrotations/status"):
        crs.write_status(namespace, "nope", {"phase": "Idle"})


@pytest.mark.integration
def test_list_and_watch(crs: CredentialRotationClient, kube: KubeClient) -> None:
    core = k8s.CoreV1Api(kube.api_client)
    namespaces = [f"vb-watch-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for ns in namespaces:
        core.create_namespace({"metadata": {"name": ns}})
    try:
        crs.create(namespaces[0], _body("before", GOOD_SPECS["configKey"]))
        snapshot = crs.list_snapshot(namespaces)
        assert [i["metadata"]["name"] for i in snapshot.items] == ["before"]
        assert snapshot.items[0]["kind"] == "CredentialRotation"
        assert set(snapshot.resource_versions) == set(namespaces)
        assert crs.list(None)  # cluster-wide listing works for the admin

        events = crs.watch(namespaces, snapshot.resource_versions, timeout_seconds=30)
        crs.create(namespaces[1], _body("after", GOOD_SPECS["configKey"]))
        crs.write_status(namespaces[0], "before", {"phase": "Idle"})
        crs.delete(namespaces[1], "after")
        seen: list[tuple[str, str, str]] = []
        for kind, obj in events:
            if kind == "BOOKMARK":
                continue
            seen.append((kind, obj["metadata"]["namespace"], obj["metadata"]["name"]))
            if len(seen) == 3:
                break
        events.close()
        assert ("ADDED", namespaces[1], "after") in seen
        assert ("MODIFIED", namespaces[0], "before") in seen
        assert ("DELETED", namespaces[1], "after") in seen
        assert not any(kind == "ADDED" and name == "before" for kind, _, name in seen)
    finally:
        for ns in namespaces:
            core.delete_namespace(ns)


@pytest.mark.integration
def test_watch_single_namespace_ends_at_timeout(
    crs: CredentialRotationClient, namespace: str
) -> None:
    snapshot = crs.list_snapshot([namespace])
    started = time.monotonic()
    events = list(crs.watch([namespace], snapshot.resource_versions, timeout_seconds=2))
    assert 1.5 < time.monotonic() - started < 15
    assert all(kind == "BOOKMARK" for kind, _ in events)


@pytest.mark.integration
def test_watch_from_an_ancient_version_expires(
    crs: CredentialRotationClient, namespace: str, kube: KubeClient
) -> None:
    # compact etcd history away is not possible from here; a version far in the past that
    # the watch cache no longer holds gives the same 410 as an expired watch
    crs.create(namespace, _body("w", GOOD_SPECS["configKey"]))
    for i in range(3):
        crs.write_status(namespace, "w", {"phase": "Idle", "currentVersion": i})
    with pytest.raises(KubeWatchExpired):
        for _ in crs.watch([namespace], "1", timeout_seconds=10):
            pass


@pytest.mark.integration
def test_raw_status_json_round_trips(crs: CredentialRotationClient, namespace: str) -> None:
    crs.create(namespace, _body("rt", GOOD_SPECS["cephx"]))
    status = {
        "phase": "Promoted",
        "currentVersion": 2,
        "previousVersion": 1,
        "currentEntity": "client.app.2",
        "observedGeneration": 1,
        "lastRotationTime": "2025-01-01T00:00:00Z",
        "lastVerifiedTime": "2025-01-01T00:00:01Z",
        "rotation": {
            "id": "r2",
            "version": 2,
            "step": "Promoted",
            "startedAt": "2025-01-01T00:00:00Z",
        },
        "history": [{"version": 2, "result": "Promoted", "reason": "schedule"}],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Promoted",
                "message": "ok",
                "lastTransitionTime": "2025-01-01T00:00:01Z",
                "observedGeneration": 1,
            },
        ],
    }
    updated = crs.write_status(namespace, "rt", status)
    assert json.dumps(updated["status"], sort_keys=True) == json.dumps(status, sort_keys=True)
