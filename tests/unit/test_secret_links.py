"""How a Secret is linked to its CredentialRotation under each deletion policy (pure parts of
``vaultbridge.kube.secrets``; the real API server and garbage collector are in
tests/integration/test_deletion_policies.py)."""

from __future__ import annotations

from typing import Any

import pytest

from vaultbridge.kube.secret_bodies import (
    OWNER_ANNOTATION,
    OWNER_UID_ANNOTATION,
    OwnerInfo,
    link_retained,
    merged_body,
    new_body,
    retains,
)

OWNER = OwnerInfo(
    "vaultbridge.io/v1alpha1", "CredentialRotation", "cr", "uid-cr", "2026-12-01T10:00:00Z"
)
ROOK = {
    "apiVersion": "ceph.rook.io/v1",
    "kind": "CephObjectStore",
    "name": "store",
    "uid": "uid-rook",
    "controller": True,
    "blockOwnerDeletion": True,
}


def existing(
    refs: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    created: str = "2026-12-01T11:00:00Z",
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "s",
            "namespace": "ns",
            "uid": "uid-secret",
            "resourceVersion": "7",
            "creationTimestamp": created,
            "labels": {"user": "label"},
            "annotations": {"user": "note", **(annotations or {})},
            "ownerReferences": refs or [],
        },
        "type": "Opaque",
        "data": {"other": "b3RoZXI="},
    }


def ours() -> dict[str, Any]:
    return OWNER.reference(controller=True)


def test_a_created_secret_is_owned_unless_retained() -> None:
    body = new_body("s", OWNER, [], {"value": "dg=="}, "1", "r1")
    assert [r["uid"] for r in body["metadata"]["ownerReferences"]] == ["uid-cr"]
    assert OWNER_UID_ANNOTATION not in body["metadata"]["annotations"]
    link_retained(body, OWNER)
    assert body["metadata"]["ownerReferences"] == []
    assert body["metadata"]["annotations"][OWNER_UID_ANNOTATION] == "uid-cr"
    assert body["metadata"]["annotations"][OWNER_ANNOTATION] == "cr"


@pytest.mark.parametrize(
    ("current", "policy", "retain"),
    [
        (existing([ours()]), None, False),  # created by vaultbridge: stays owned
        (existing(annotations={OWNER_UID_ANNOTATION: "uid-cr"}), None, True),  # stays linked
        (existing(), None, True),  # adopted, nobody's
        (existing([ROOK]), None, True),  # adopted from another controller
        (existing([ours()], created="2026-12-01T09:00:00Z"), None, True),  # older than its CR
        (existing([ours()]), "Retain", True),
        (existing(annotations={OWNER_UID_ANNOTATION: "uid-cr"}), "Delete", False),
        (existing(), "Delete", False),
    ],
)
def test_which_secrets_are_retained(current: dict[str, Any], policy: Any, retain: bool) -> None:
    assert retains(current, OWNER, policy) is retain


def test_retaining_drops_our_owner_reference_and_keeps_everyone_elses() -> None:
    current = existing([ours(), ROOK])
    body = merged_body(current, OWNER, [], {"value": "dg=="}, "2", "r2", retain=True)
    metadata = body["metadata"]
    assert metadata["ownerReferences"] == [ROOK]  # Rook's controller is not demoted
    assert metadata["annotations"][OWNER_UID_ANNOTATION] == "uid-cr"
    assert metadata["annotations"]["user"] == "note"
    assert metadata["labels"]["user"] == "label"
    assert body["data"] == {"other": "b3RoZXI=", "value": "dg=="}


def test_delete_on_a_retained_secret_owns_it_again() -> None:
    current = existing(annotations={OWNER_UID_ANNOTATION: "uid-cr", OWNER_ANNOTATION: "cr"})
    body = merged_body(current, OWNER, [], {"value": "dg=="}, "2", "r2", retain=False)
    metadata = body["metadata"]
    assert [r["uid"] for r in metadata["ownerReferences"]] == ["uid-cr"]
    assert OWNER_UID_ANNOTATION not in metadata["annotations"]
    assert OWNER_ANNOTATION not in metadata["annotations"]
