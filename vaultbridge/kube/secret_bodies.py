"""What a managed Secret is and what vaultbridge writes into one: its label and annotations,
the owner link (an ownerReference, or for a retained Secret the link annotations), and the
request bodies that create it or merge into it without dropping what others own."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from vaultbridge.model.sensitive import Sensitive

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "vaultbridge"
VERSION_ANNOTATION = "vaultbridge.io/vault-version"
ROTATION_ANNOTATION = "vaultbridge.io/rotation-id"
EXTRA_OWNERS_ANNOTATION = "vaultbridge.io/extra-owners"
"""uids of the extra ownerReferences vaultbridge added, so that it can drop stale ones later."""
OWNER_ANNOTATION = "vaultbridge.io/owner"
"""A retained Secret's link to its CredentialRotation: the CR's name (same namespace)."""
OWNER_UID_ANNOTATION = "vaultbridge.io/owner-uid"
"""... and its uid: a later CR of the same name is a different owner and must adopt."""
LINK_ANNOTATIONS = (OWNER_ANNOTATION, OWNER_UID_ANNOTATION)

Policy = Literal["Retain", "Delete"]


@dataclass(frozen=True)
class OwnerInfo:
    """The object that controls a Secret (the CredentialRotation)."""

    api_version: str
    kind: str
    name: str
    uid: str
    created: str | None = None  # creationTimestamp: a Secret older than its CR was adopted

    def reference(self, *, controller: bool) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": controller,
            "blockOwnerDeletion": controller,
        }

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> OwnerInfo:
        """The owner info of a raw object (a dict as the API server sends it)."""
        metadata = obj["metadata"]
        return cls(str(obj["apiVersion"]), str(obj["kind"]), metadata["name"], metadata["uid"])


@dataclass(frozen=True)
class OwnedSecret:
    """A Secret as read back: data decoded (UTF-8) and wrapped in :class:`Sensitive`."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    type: str
    data: dict[str, Sensitive] = field(repr=False)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    owner_references: list[dict[str, Any]] = field(default_factory=list)
    # the object as the API server sent it (base64 data): lets a later write skip a re-read
    raw: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def controller(self) -> dict[str, Any] | None:
        """The ownerReference with ``controller: true``, if any."""
        return controller_of(self.owner_references)

    def is_controlled_by(self, uid: str) -> bool:
        ref = self.controller
        return ref is not None and ref.get("uid") == uid

    @property
    def linked_uid(self) -> str | None:
        """The uid of the CredentialRotation this Secret belongs to: the retained link's, else
        the controller's (None: nobody's)."""
        linked = self.annotations.get(OWNER_UID_ANNOTATION)
        if linked:
            return linked
        ref = self.controller
        return str(ref["uid"]) if ref is not None and ref.get("uid") else None

    @property
    def vault_version(self) -> int | None:
        value = self.annotations.get(VERSION_ANNOTATION)
        return int(value) if value and value.isdigit() else None

    @property
    def rotation_id(self) -> str | None:
        return self.annotations.get(ROTATION_ANNOTATION)


@dataclass(frozen=True)
class PlannedWrite:
    """One call of :meth:`SecretSink.write`, as its attempts need it (values encoded)."""

    namespace: str
    name: str
    owner: OwnerInfo
    extras: list[dict[str, Any]]
    encoded: dict[str, str] = field(repr=False)
    secrets: list[str] = field(repr=False)
    version: str
    rotation_id: str
    adopt: bool
    annotations: dict[str, str]
    policy: Policy | None


def controller_of(refs: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    for ref in refs:
        if ref.get("controller"):
            return dict(ref)
    return None


def describe_owner(ref: Mapping[str, Any] | None) -> str:
    if ref is None:
        return "nothing"
    return f"{ref.get('kind')} {ref.get('name')!r} ({ref.get('apiVersion')}, uid {ref.get('uid')})"


def b64(value: str) -> str:
    return base64.b64encode(value.encode("utf-8", "surrogateescape")).decode("ascii")


def revealed_values(raw: Mapping[str, Any]) -> list[str]:
    return [str(v) for v in (raw.get("data") or {}).values()] + [
        s.reveal() for s in decode_data(raw).values()
    ]


def decode_data(raw: Mapping[str, Any]) -> dict[str, Sensitive]:
    """The Secret's values; a ``data`` that is not an object of base64 texts is a ValueError
    that names the key, never the value."""
    data = _mapping(raw.get("data") or {}, "data")
    out: dict[str, Sensitive] = {}
    for key, value in data.items():
        if not isinstance(value, str):
            raise ValueError(f"Secret body: data[{str(key)[:60]!r}] is not base64 text")
        try:
            out[str(key)] = Sensitive(base64.b64decode(value).decode("utf-8", "surrogateescape"))
        except binascii.Error:
            raise ValueError(f"Secret body: data[{str(key)[:60]!r}] is not base64") from None
    return out


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"Secret body: {what} is not an object")
    return dict(value)


def decode(raw: Mapping[str, Any]) -> OwnedSecret:
    metadata = _mapping(raw.get("metadata") or {}, "metadata")
    owners = metadata.get("ownerReferences") or []
    if not isinstance(owners, list):
        raise ValueError("Secret body: ownerReferences is not a list")
    return OwnedSecret(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        resource_version=str(metadata.get("resourceVersion", "")),
        type=str(raw.get("type", "Opaque")),
        data=decode_data(raw),
        labels=_mapping(metadata.get("labels") or {}, "labels"),
        annotations=_mapping(metadata.get("annotations") or {}, "annotations"),
        owner_references=[_mapping(r, "an ownerReference") for r in owners],
        # kept as the base of the next update: without managedFields, which an update that
        # omits them leaves as they are (and which are most of a Secret's size)
        raw={**raw, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}},
    )


def our_annotations(version: str, rotation_id: str, extras: list[dict[str, Any]]) -> dict[str, str]:
    annotations = {VERSION_ANNOTATION: version, ROTATION_ANNOTATION: rotation_id}
    if extras:
        annotations[EXTRA_OWNERS_ANNOTATION] = ",".join(sorted(e["uid"] for e in extras))
    return annotations


def new_body(  # noqa: PLR0917
    name: str,
    owner: OwnerInfo,
    extras: list[dict[str, Any]],
    encoded: dict[str, str],
    version: str,
    rotation_id: str,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
            "annotations": our_annotations(version, rotation_id, extras),
            "ownerReferences": [owner.reference(controller=True), *extras],
        },
        "type": "Opaque",
        "data": dict(encoded),
    }


def retains(current: Mapping[str, Any], owner: OwnerInfo, policy: Policy | None) -> bool:
    """Whether an existing Secret is to be retained (linked by annotations only)."""
    if policy is not None:
        return policy == "Retain"
    metadata = current.get("metadata") or {}
    if (metadata.get("annotations") or {}).get(OWNER_UID_ANNOTATION) == owner.uid:
        return True
    ref = controller_of(metadata.get("ownerReferences") or [])
    if ref is None or ref.get("uid") != owner.uid:
        return True  # being adopted: it was here before vaultbridge
    created = str(metadata.get("creationTimestamp") or "")
    # RFC 3339 in UTC with second precision compares as text: older than its owner means an
    # earlier release adopted it with an ownerReference
    return bool(owner.created and created and created < owner.created)


def link_annotations(owner: OwnerInfo) -> dict[str, str]:
    """The annotations that link a retained Secret to its CredentialRotation."""
    return {OWNER_ANNOTATION: owner.name, OWNER_UID_ANNOTATION: owner.uid}


def link_retained(body: dict[str, Any], owner: OwnerInfo) -> None:
    metadata = body["metadata"]
    metadata["ownerReferences"] = [
        r for r in metadata.get("ownerReferences") or [] if r.get("uid") != owner.uid
    ]
    metadata["annotations"].update(link_annotations(owner))


def merged_body(  # noqa: PLR0917
    current: Mapping[str, Any],
    owner: OwnerInfo,
    extras: list[dict[str, Any]],
    encoded: dict[str, str],
    version: str,
    rotation_id: str,
    *,
    retain: bool = False,
) -> dict[str, Any]:
    metadata = dict(current.get("metadata", {}))
    annotations = dict(metadata.get("annotations") or {})
    ours_before = set(filter(None, annotations.get(EXTRA_OWNERS_ANNOTATION, "").split(",")))
    annotations.pop(EXTRA_OWNERS_ANNOTATION, None)
    for key in LINK_ANNOTATIONS:
        annotations.pop(key, None)
    annotations.update(our_annotations(version, rotation_id, extras))
    labels = {**(metadata.get("labels") or {}), MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    extra_uids = {e["uid"] for e in extras}
    refs: list[dict[str, Any]] = [] if retain else [owner.reference(controller=True)]
    refs += extras
    for ref in metadata.get("ownerReferences") or []:
        uid = ref.get("uid")
        if uid == owner.uid or uid in extra_uids or uid in ours_before:
            continue  # ours: rebuilt above (or a stale extra owner, dropped)
        kept = dict(ref)
        if kept.get("controller") and not retain:
            # adopting with Delete: the former controller stays a plain owner
            kept.update(controller=False, blockOwnerDeletion=False)
        refs.append(kept)
    if retain:
        annotations.update(link_annotations(owner))
    # everything else in metadata (uid, finalizers, managedFields, ...) goes back unchanged
    new_metadata = {
        **metadata,
        "labels": labels,
        "annotations": annotations,
        "ownerReferences": refs,
    }
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": new_metadata,
        "type": current.get("type", "Opaque"),  # the type of a Secret cannot change
        "data": {**(current.get("data") or {}), **encoded},
    }
    if current.get("immutable") is not None:
        body["immutable"] = current["immutable"]
    return body


def same_body(current: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    cur, new = current.get("metadata", {}), body["metadata"]
    return (
        (current.get("data") or {}) == body["data"]
        and (cur.get("labels") or {}) == new["labels"]
        and (cur.get("annotations") or {}) == new["annotations"]
        and [ref_key(r) for r in cur.get("ownerReferences") or []]
        == [ref_key(r) for r in new["ownerReferences"]]
    )


def ref_key(ref: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        ref.get("apiVersion"),
        ref.get("kind"),
        ref.get("name"),
        ref.get("uid"),
        bool(ref.get("controller")),
        bool(ref.get("blockOwnerDeletion")),
    )
