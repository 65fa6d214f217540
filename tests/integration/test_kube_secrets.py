"""SecretSink against a real kube-apiserver (and the controller-manager's garbage collector)."""

from __future__ import annotations

import base64
import logging
import statistics
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from vaultbridge.kube import (
    EXTRA_OWNERS_ANNOTATION,
    MANAGED_BY_LABEL,
    OWNER_UID_ANNOTATION,
    ROTATION_ANNOTATION,
    VERSION_ANNOTATION,
    CredentialRotationClient,
    KubeClient,
    KubeError,
    KubeInvalid,
    KubeNotFound,
    KubeOwnershipError,
    OwnerInfo,
    SecretSink,
)
from vaultbridge.model.sensitive import Sensitive

REPO = Path(__file__).resolve().parents[2]
CHART_CRD = REPO / "charts" / "vaultbridge" / "crds" / "credentialrotations.yaml"
CANARY = "canary-9f3b1c7e-do-not-leak"


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
def core(kube: KubeClient) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(kube.api_client)


@pytest.fixture
def namespace(core: k8s.CoreV1Api) -> Iterator[str]:
    name = f"vb-sec-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def _cr(crs: CredentialRotationClient, namespace: str, name: str, **secret: Any) -> dict[str, Any]:
    spec = {"secret": {"name": f"{name}-secret", **secret}, "target": {"configKey": {"key": "k"}}}
    return crs.create(namespace, {"metadata": {"name": name}, "spec": spec})


def _raw(core: k8s.CoreV1Api, namespace: str, name: str) -> k8s.V1Secret:
    return core.read_namespaced_secret(name, namespace)


def _decoded(secret: k8s.V1Secret) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


@pytest.mark.integration
def test_write_creates_owned_secret(
    crs: CredentialRotationClient, core: k8s.CoreV1Api, kube: KubeClient, namespace: str
) -> None:
    cr = _cr(crs, namespace, "a")
    sink = SecretSink(kube)
    assert sink.get(namespace, "a-secret") is None
    owned = sink.write(
        namespace, "a-secret", OwnerInfo.of(cr), [], {"value": Sensitive("s3cret-1")}, "1", "rot-1"
    )
    raw = _raw(core, namespace, "a-secret")
    assert raw.type == "Opaque"
    assert raw.metadata.labels == {MANAGED_BY_LABEL: "vaultbridge"}
    assert raw.metadata.annotations[VERSION_ANNOTATION] == "1"
    assert raw.metadata.annotations[ROTATION_ANNOTATION] == "rot-1"
    (ref,) = raw.metadata.owner_references
    assert (ref.api_version, ref.kind, ref.name, ref.uid) == (
        "vaultbridge.io/v1alpha1",
        "CredentialRotation",
        "a",
        cr["metadata"]["uid"],
    )
    assert ref.controller is True
    assert ref.block_owner_deletion is True
    assert _decoded(raw) == {"value": "s3cret-1"}
    assert owned.data == {"value": Sensitive("s3cret-1")}
    assert owned.is_controlled_by(cr["metadata"]["uid"])
    assert owned.vault_version == 1
    assert owned.rotation_id == "rot-1"
    assert "s3cret-1" not in repr(owned)

    again = sink.get(namespace, "a-secret")
    assert again is not None
    assert again.resource_version == owned.resource_version
    assert again.uid == raw.metadata.uid


@pytest.mark.integration
def test_update_preserves_foreign_labels_annotations_and_keys(
    crs: CredentialRotationClient, core: k8s.CoreV1Api, kube: KubeClient, namespace: str
) -> None:
    cr = _cr(crs, namespace, "b")
    owner = OwnerInfo.of(cr)
    sink = SecretSink(kube)
    sink.write(namespace, "b-secret", owner, [], {"value": Sensitive("v1")}, "1", "rot-1")
    core.patch_namespaced_secret(
        "b-secret",
        namespace,
        {
            "metadata": {"labels": {"team": "storage"}, "annotations": {"note": "keep me"}},
            "data": {"other": base64.b64encode(b"theirs").decode()},
        },
    )
    owned = sink.write(namespace, "b-secret", owner, [], {"value": Sensitive("v2")}, "2", "rot-2")
    raw = _raw(core, namespace, "b-secret")
    assert raw.metadata.labels == {MANAGED_BY_LABEL: "vaultbridge", "team": "storage"}
    assert raw.metadata.annotations["note"] == "keep me"
    assert raw.metadata.annotations[VERSION_ANNOTATION] == "2"
    assert raw.metadata.annotations[ROTATION_ANNOTATION] == "rot-2"
    assert _decoded(raw) == {"value": "v2", "other": "theirs"}
    assert owned.resource_version == raw.metadata.resource_version

    # writing the same again changes nothing (no new resourceVersion)
    same = sink.write(namespace, "b-secret", owner, [], {"value": Sensitive("v2")}, "2", "rot-2")
    assert same.resource_version == raw.metadata.resource_version


@pytest.mark.integration
def test_concurrent_modification_is_retried(
    crs: CredentialRotationClient, core: k8s.CoreV1Api, kube: KubeClient, namespace: str
) -> None:
    cr = _cr(crs, namespace, "c")
    owner = OwnerInfo.of(cr)
    sink = SecretSink(kube)
    sink.write(namespace, "c-secret", owner, [], {"value": Sensitive("v1")}, "1", "rot-1")

    original = kube.request
    calls: list[int] = []

    def racing_request(op: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "PUT":
            calls.append(1)
            if len(calls) == 1:  # someone else writes between our read and our update
                core.patch_namespaced_secret(
                    "c-secret", namespace, {"metadata": {"labels": {"racer": "yes"}}}
                )
        return original(op, method, *args, **kwargs)

    kube.request = racing_request  # type: ignore[method-assign]
    try:
        sink.write(namespace, "c-secret", owner, [], {"value": Sensitive("v2")}, "2", "rot-2")
    finally:
        kube.request = original  # type: ignore[method-assign]
    assert len(calls) == 2  # 409 on the first, success on the re-read retry
    raw = _raw(core, namespace, "c-secret")
    assert raw.metadata.labels["racer"] == "yes"
    assert _decoded(raw) == {"value": "v2"}


@pytest.mark.integration
def test_refuses_unowned_secret_unless_adopt(
    crs: CredentialRotationClient, core: k8s.CoreV1Api, kube: KubeClient, namespace: str
) -> None:
    cr = _cr(crs, namespace, "d")
    other = _cr(crs, namespace, "d-other")
    owner = OwnerInfo.of(cr)
    sink = SecretSink(kube)
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "d-secret", "labels": {"app": "legacy"}},
            "data": {"value": base64.b64encode(b"old").decode()},
        },
    )
    with pytest.raises(KubeOwnershipError, match="has no controller") as caught:
        sink.write(namespace, "d-secret", owner, [], {"value": Sensitive("new")}, "1", "r")
    assert "d-secret" in str(caught.value)
    assert "adopt" in str(caught.value)
    assert _decoded(_raw(core, namespace, "d-secret")) == {"value": "old"}

    sink.write(namespace, "d-secret", owner, [], {"value": Sensitive("new")}, "1", "r", adopt=True)
    raw = _raw(core, namespace, "d-secret")
    assert _decoded(raw) == {"value": "new"}
    assert raw.metadata.labels["app"] == "legacy"
    # adopted: retained, so linked by annotations and never owned (docs/deletion.md)
    assert not raw.metadata.owner_references
    assert raw.metadata.annotations[OWNER_UID_ANNOTATION] == cr["metadata"]["uid"]

    # another CredentialRotation may not take it over either, and is told who controls it
    with pytest.raises(KubeOwnershipError) as caught:
        sink.write(
            namespace, "d-secret", OwnerInfo.of(other), [], {"value": Sensitive("x")}, "1", "r"
        )
    assert "CredentialRotation 'd'" in str(caught.value)
    assert caught.value.controller is not None
    assert cr["metadata"]["uid"] in caught.value.controller

    # another CR that adopts it with deletionPolicy Delete owns it, and the link moves to it
    sink.write(
        namespace,
        "d-secret",
        OwnerInfo.of(other),
        [],
        {"value": Sensitive("x")},
        "1",
        "r",
        adopt=True,
        policy="Delete",
    )
    raw = _raw(core, namespace, "d-secret")
    refs = {r.uid: r for r in raw.metadata.owner_references}
    assert list(refs) == [other["metadata"]["uid"]] and refs[other["metadata"]["uid"]].controller
    assert OWNER_UID_ANNOTATION not in raw.metadata.annotations

    # adopting from another controller (with Delete) keeps it as a plain owner
    sink.write(
        namespace,
        "d-secret",
        owner,
        [],
        {"value": Sensitive("y")},
        "1",
        "r",
        adopt=True,
        policy="Delete",
    )
    refs = {r.uid: r for r in _raw(core, namespace, "d-secret").metadata.owner_references}
    assert refs[cr["metadata"]["uid"]].controller is True
    assert refs[other["metadata"]["uid"]].controller is False


@pytest.mark.integration
def test_extra_owners_are_resolved_and_stale_ones_dropped(
    crs: CredentialRotationClient, core: k8s.CoreV1Api, kube: KubeClient, namespace: str
) -> None:
    cr = _cr(crs, namespace, "e")
    extra = _cr(crs, namespace, "e-store")
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "e-cm"}})
    cm_uid = core.read_namespaced_config_map("e-cm", namespace).metadata.uid
    owner = OwnerInfo.of(cr)
    sink = SecretSink(kube)
    extras = [
        ("vaultbridge.io/v1alpha1", "CredentialRotation", "e-store"),
        ("v1", "ConfigMap", "e-cm"),
    ]
    sink.write(namespace, "e-secret", owner, extras, {"value": Sensitive("v")}, "1", "r")
    refs = {r.uid: r for r in _raw(core, namespace, "e-secret").metadata.owner_references}
    assert set(refs) == {cr["metadata"]["uid"], extra["metadata"]["uid"], cm_uid}
    assert refs[extra["metadata"]["uid"]].controller is False
    assert refs[extra["metadata"]["uid"]].kind == "CredentialRotation"
    assert refs[cm_uid].kind == "ConfigMap"

    # someone else's owner reference stays; our dropped extra owner goes (the foreign owner
    # exists, or the garbage collector would drop the dangling reference by itself)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "foreign"}})
    foreign_uid = core.read_namespaced_config_map("foreign", namespace).metadata.uid
    core.patch_namespaced_secret(
        "e-secret",
        namespace,
        {
            "metadata": {
                "ownerReferences": [
                    *[
                        r.to_dict()
                        for r in _raw(core, namespace, "e-secret").metadata.owner_references
                    ],
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "foreign",
                        "uid": foreign_uid,
                    },
                ]
            }
        },
    )
    sink.write(namespace, "e-secret", owner, extras[1:], {"value": Sensitive("v")}, "1", "r")
    raw = _raw(core, namespace, "e-secret")
    assert {r.uid for r in raw.metadata.owner_references} == {
        cr["metadata"]["uid"],
        cm_uid,
        foreign_uid,
    }
    assert raw.metadata.annotations[EXTRA_OWNERS_ANNOTATION] == cm_uid

    with pytest.raises(KubeNotFound, match="missing"):
        sink.write(namespace, "e-secret", owner, [("v1", "ConfigMap", "missing")], {}, "1", "r")
    with pytest.raises(KubeNotFound, match="NoSuchKind"):
        sink.write(
            namespace, "e-secret", owner, [("example.com/v1", "NoSuchKind", "x")], {}, "1", "r"
        )


@pytest.mark.integration
def test_deleting_the_cr_garbage_collects_the_secret(
    crs: CredentialRotationClient, core: k8s.CoreV1Api, kube: KubeClient, namespace: str
) -> None:
    cr = _cr(crs, namespace, "f")
    sink = SecretSink(kube)
    sink.write(namespace, "f-secret", OwnerInfo.of(cr), [], {"value": Sensitive("v")}, "1", "r")
    crs.delete(namespace, "f")
    deadline = time.monotonic() + 60
    while sink.get(namespace, "f-secret") is not None:
        assert time.monotonic() < deadline, "the garbage collector did not delete the Secret"
        time.sleep(0.5)


@pytest.mark.integration
def test_write_latency(crs: CredentialRotationClient, kube: KubeClient, namespace: str) -> None:
    cr = _cr(crs, namespace, "g")
    sink = SecretSink(kube)
    owner = OwnerInfo.of(cr)
    timings = []
    for i in range(20):
        started = time.perf_counter()
        sink.write(namespace, "g-secret", owner, [], {"value": Sensitive(f"v{i}")}, str(i), f"r{i}")
        timings.append(time.perf_counter() - started)
    median = statistics.median(timings)
    print(
        f"Secret write (GET + PUT) median {median * 1000:.1f} ms, max {max(timings) * 1000:.1f} ms"
    )
    assert median < 0.5


@pytest.mark.integration
def test_canary_value_never_leaks(
    crs: CredentialRotationClient,
    core: k8s.CoreV1Api,
    kube: KubeClient,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    cr = _cr(crs, namespace, "h")
    owner = OwnerInfo.of(cr)
    sink = SecretSink(kube)
    texts: list[str] = []

    def collect(exc: BaseException) -> None:
        texts.append("".join(traceback.format_exception(exc)))
        cause: BaseException | None = exc
        while cause is not None:
            texts.append(str(cause))
            texts.append(repr(cause))
            texts.append(repr(vars(cause)) if hasattr(cause, "__dict__") else "")
            cause = cause.__cause__ or cause.__context__

    sink.write(namespace, "h-secret", owner, [], {"value": Sensitive(CANARY)}, "1", "r")
    # an invalid data key: the server rejects the whole Secret (422) - with our value in the body
    with pytest.raises(KubeInvalid) as caught:
        sink.write(
            namespace,
            "h-secret",
            owner,
            [],
            {"bad key!": Sensitive(CANARY), "value": Sensitive(CANARY)},
            "2",
            "r",
        )
    collect(caught.value)
    # a Secret that does not fit: the server refuses > 1 MiB
    with pytest.raises(KubeError) as caught:
        sink.write(namespace, "h-big", owner, [], {"value": Sensitive(CANARY * 60000)}, "1", "r")
    collect(caught.value)
    # refusing somebody else's Secret that holds the canary
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "h-foreign"},
            "data": {"value": base64.b64encode(CANARY.encode()).decode()},
        },
    )
    with pytest.raises(KubeOwnershipError) as caught:
        sink.write(namespace, "h-foreign", owner, [], {"value": Sensitive(CANARY)}, "1", "r")
    collect(caught.value)
    encoded = base64.b64encode(CANARY.encode()).decode()
    for text in texts:
        assert CANARY not in text
        assert encoded not in text
    for record in caplog.records:
        message = record.getMessage()
        assert CANARY not in message
        assert encoded not in message
        if record.exc_info and record.exc_info[1] is not None:
            assert CANARY not in "".join(traceback.format_exception(record.exc_info[1]))
    read = sink.get(namespace, "h-secret")
    assert read is not None
    assert CANARY not in repr(read) and CANARY not in str(read.data)
