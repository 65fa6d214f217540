"""The Secrets vaultbridge owns: read them, and write them without trampling anyone else.

A write creates or updates the Secret with optimistic concurrency (resourceVersion; a 409 is
re-read and retried with backoff), sets vaultbridge's label and annotations, keeps every label,
annotation and data key it does not own, links the Secret to its CredentialRotation plus its
``extraOwners``, and refuses to take over a Secret that something else controls unless told to
adopt it. Values are revealed only while building the request body.

The link depends on the deletion policy (docs/deletion.md). ``Delete``: an ownerReference to
the CredentialRotation (controller), so the garbage collector removes the Secret with it.
``Retain``: no ownerReference to it at all, only the annotations ``vaultbridge.io/owner`` and
``vaultbridge.io/owner-uid``; nothing in Kubernetes acts on those, so no deletion of the CR can
take the Secret with it, whether or not a controller runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from vaultbridge.kube.client import KubeClient
from vaultbridge.kube.errors import (
    TRANSLATABLE,
    KubeConflict,
    KubeError,
    KubeNotFound,
    KubeOwnershipError,
    Operation,
    raise_translated,
)
from vaultbridge.kube.secret_bodies import (
    EXTRA_OWNERS_ANNOTATION,
    LINK_ANNOTATIONS,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    OWNER_ANNOTATION,
    OWNER_UID_ANNOTATION,
    ROTATION_ANNOTATION,
    VERSION_ANNOTATION,
    OwnedSecret,
    OwnerInfo,
    PlannedWrite,
    Policy,
    b64,
    controller_of,
    decode,
    describe_owner,
    link_retained,
    merged_body,
    new_body,
    retains,
    revealed_values,
    same_body,
)
from vaultbridge.model.sensitive import Sensitive

log = logging.getLogger(__name__)


def secret_path(namespace: str | None, name: str | None = None) -> str:
    """The URL path of a Secret, or of the Secrets of ``namespace`` (None: all namespaces)."""
    scope = "" if namespace is None else f"/namespaces/{quote(namespace)}"
    collection = f"/api/v1{scope}/secrets"
    return collection if name is None else f"{collection}/{quote(name)}"


class SecretSink:
    """Reads and writes the Secrets of CredentialRotations."""

    def __init__(self, kube: KubeClient, *, max_attempts: int = 5, backoff: float = 0.05) -> None:
        self.kube = kube
        self.max_attempts = max_attempts
        self.backoff = backoff

    def get(self, namespace: str, name: str) -> OwnedSecret | None:
        raw = self._read(namespace, name)
        return None if raw is None else decode(raw)

    def _read(self, namespace: str, name: str) -> dict[str, Any] | None:
        op = Operation("get", "secrets", namespace, name)
        try:
            return self.kube.request(op, "GET", secret_path(namespace, name))
        except KubeNotFound:
            return None

    def write(  # noqa: PLR0917 - the contract's signature
        self,
        namespace: str,
        name: str,
        owner: OwnerInfo,
        extra_owners: Sequence[tuple[str, str, str]],
        data: Mapping[str, Sensitive],
        version_annotation: str,
        rotation_id: str,
        adopt: bool = False,
        extra_annotations: Mapping[str, str] | None = None,
        known: OwnedSecret | None = None,
        policy: Policy | None = None,
        absent: bool = False,
    ) -> OwnedSecret:
        """Create or update Secret ``namespace/name`` with ``data`` (other keys are kept).

        ``extra_owners`` are ``(apiVersion, kind, name)`` in the same namespace; each is looked
        up for its uid (``KubeNotFound`` when one does not exist). Raises
        :class:`KubeOwnershipError` when the Secret exists and is not linked to ``owner``
        (unless ``adopt``: then it is linked to ``owner`` as ``policy`` says; with ``Delete``
        a previous controller is kept as a plain owner, with ``Retain`` every other owner is
        left as it is). ``KubeConflict`` after ``max_attempts`` lost races.

        ``policy`` decides how the Secret is linked to ``owner`` (module docstring). None is
        the default: a Secret created here is deleted with its owner; an existing one keeps
        the link it has, and one being adopted (or older than its owner: adopted by an earlier
        release) is retained.

        ``known`` is the Secret as the caller read it moments ago; ``absent``: it read that there
        is none. Either saves the read before the write (a stale one costs a 409 and a re-read).
        """
        for key, value in data.items():
            if not isinstance(value, Sensitive):
                raise TypeError(f"data[{key!r}] must be Sensitive, not {type(value).__name__}")
        job = PlannedWrite(
            namespace=namespace,
            name=name,
            owner=owner,
            extras=[self._resolve_owner(namespace, *ref) for ref in extra_owners],
            encoded={k: b64(v.reveal()) for k, v in data.items()},
            secrets=[v.reveal() for v in data.values()],
            version=version_annotation,
            rotation_id=rotation_id,
            adopt=adopt,
            annotations=dict(extra_annotations or {}),
            policy=policy,
        )
        started = time.monotonic()
        for attempt in range(1, self.max_attempts + 1):
            # a copy read moments ago saves a round trip; a stale one just costs a 409 and a
            # re-read (the update carries its resourceVersion)
            from_known = attempt == 1 and known is not None and known.raw is not None
            if from_known and known is not None:
                current = known.raw
            elif attempt == 1 and absent:
                current = None
            else:
                current = self._read(namespace, name)
            if current is None:
                result = self._create(job, attempt)
            else:
                result = self._update(job, current, from_known, attempt)
            if result is None:
                continue
            if result is not current:
                log.info(
                    "wrote Secret %s/%s (vault version %s, rotation %s, %d attempt(s), %.0f ms)",
                    namespace,
                    name,
                    version_annotation,
                    rotation_id,
                    attempt,
                    (time.monotonic() - started) * 1000,
                )
            return decode(result)
        raise KubeConflict(
            f"conflict: Secret {name!r} in namespace {namespace!r} kept changing; "
            f"gave up after {self.max_attempts} attempts",
            status=409,
            verb="update",
            resource="secrets",
            namespace=namespace,
            name=name,
        )

    def _create(self, job: PlannedWrite, attempt: int) -> dict[str, Any] | None:
        """POST the new Secret; None when one was created meanwhile (read it, decide again)."""
        body = new_body(job.name, job.owner, job.extras, job.encoded, job.version, job.rotation_id)
        body["metadata"]["annotations"].update(job.annotations)
        if job.policy == "Retain":
            link_retained(body, job.owner)
        op = Operation("create", "secrets", job.namespace, job.name)
        try:
            return self.kube.request(
                op, "POST", secret_path(job.namespace), body, secrets=job.secrets
            )
        except KubeConflict:
            self._pause(attempt)
            return None

    def _update(
        self, job: PlannedWrite, current: dict[str, Any], from_known: bool, attempt: int
    ) -> dict[str, Any] | None:
        """PUT the merged Secret (``current`` itself when nothing differs); None: try again."""
        self._check_ownership(current, job.owner, job.adopt)
        retain = retains(current, job.owner, job.policy)
        body = merged_body(
            current, job.owner, job.extras, job.encoded, job.version, job.rotation_id, retain=retain
        )
        body["metadata"]["annotations"].update(job.annotations)
        if same_body(current, body):
            if from_known:
                return None  # confirm on a fresh read before skipping the write
            log.debug("Secret %s/%s already up to date", job.namespace, job.name)
            return current
        op = Operation("update", "secrets", job.namespace, job.name)
        path = secret_path(job.namespace, job.name)
        try:
            return self.kube.request(
                op, "PUT", path, body, secrets=job.secrets + revealed_values(current)
            )
        except KubeNotFound:
            if not from_known:
                raise
            return None  # deleted since it was read: create it on the next attempt
        except KubeConflict:
            log.info(
                "Secret %s/%s changed while writing it (attempt %d); retrying",
                job.namespace,
                job.name,
                attempt,
            )
            self._pause(attempt)
            return None

    def release(self, namespace: str, name: str, owner_uid: str) -> bool:
        """Unlink a retained Secret from a CredentialRotation that is gone: drop vaultbridge's
        label and annotations, keep its data and everything else. Only when the Secret is still
        linked to ``owner_uid``; True when it was released."""
        for attempt in range(1, self.max_attempts + 1):
            current = self._read(namespace, name)
            if current is None:
                return False
            metadata = current.get("metadata") or {}
            annotations = dict(metadata.get("annotations") or {})
            if annotations.get(OWNER_UID_ANNOTATION) != owner_uid:
                return False
            for key in (*LINK_ANNOTATIONS, VERSION_ANNOTATION, ROTATION_ANNOTATION):
                annotations.pop(key, None)
            annotations.pop(EXTRA_OWNERS_ANNOTATION, None)
            labels = dict(metadata.get("labels") or {})
            if labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE:
                del labels[MANAGED_BY_LABEL]
            body = {
                **current,
                "metadata": {**metadata, "labels": labels, "annotations": annotations},
            }
            op = Operation("update", "secrets", namespace, name)
            try:
                self.kube.request(
                    op, "PUT", secret_path(namespace, name), body, secrets=revealed_values(current)
                )
            except KubeNotFound:
                return False
            except KubeConflict:
                self._pause(attempt)
                continue
            log.info(
                "released retained Secret %s/%s (its CredentialRotation is gone)", namespace, name
            )
            return True
        return False

    def delete(self, namespace: str, name: str) -> None:
        """Delete Secret ``namespace/name``; already gone is fine."""
        op = Operation("delete", "secrets", namespace, name)
        try:
            self.kube.request(op, "DELETE", secret_path(namespace, name))
        except KubeNotFound:
            return

    def _pause(self, attempt: int) -> None:
        time.sleep(min(self.backoff * (2 ** (attempt - 1)), 2.0))

    def _check_ownership(self, current: Mapping[str, Any], owner: OwnerInfo, adopt: bool) -> None:
        metadata = current.get("metadata", {})
        ref = controller_of(metadata.get("ownerReferences") or [])
        if ref is not None and ref.get("uid") == owner.uid:
            return
        if (metadata.get("annotations") or {}).get(OWNER_UID_ANNOTATION) == owner.uid:
            return
        if adopt:
            log.info(
                "adopting Secret %s/%s (%s; spec.secret.adopt is true)",
                metadata.get("namespace"),
                metadata.get("name"),
                f"controlled by {describe_owner(ref)}"
                if ref is not None
                else "it had no controller",
            )
            return
        namespace, name = str(metadata.get("namespace", "")), str(metadata.get("name", ""))
        annotations = metadata.get("annotations") or {}
        if annotations.get(OWNER_UID_ANNOTATION):  # retained by another CR (or one now gone)
            ref = {
                "kind": owner.kind,
                "apiVersion": owner.api_version,
                "name": annotations.get(OWNER_ANNOTATION),
                "uid": annotations[OWNER_UID_ANNOTATION],
            }
        controller = describe_owner(ref) if ref is not None else None
        held = f"is controlled by {controller}" if controller else "has no controller"
        raise KubeOwnershipError(
            f"refusing to take over Secret {name!r} in namespace {namespace!r}: it {held}, "
            f"not {owner.kind} {owner.name!r} (set spec.secret.adopt: true to take it over)",
            namespace=namespace,
            name=name,
            controller=controller,
        )

    def _resolve_owner(
        self, namespace: str, api_version: str, kind: str, name: str
    ) -> dict[str, Any]:
        op = Operation("get", kind, namespace, name)
        try:
            dynamic = self.kube.dynamic()
            resource = dynamic.resources.get(api_version=api_version, kind=kind)
            obj = resource.get(name=name, namespace=namespace if resource.namespaced else None)
            uid = str(obj.metadata.uid)
        except TRANSLATABLE as exc:
            raise_translated(exc, op)
        except Exception as exc:  # the dynamic client's own errors (unknown kind, ...)
            if type(exc).__name__ == "ResourceNotFoundError":
                raise KubeNotFound(
                    f"extra owner: no resource kind {kind!r} in {api_version!r}",
                    verb="get",
                    resource=kind,
                    namespace=namespace,
                    name=name,
                ) from None
            raise KubeError(
                f"extra owner {kind} {name!r}: {type(exc).__name__}",
                verb="get",
                resource=kind,
                namespace=namespace,
                name=name,
            ) from exc
        return {
            "apiVersion": api_version,
            "kind": kind,
            "name": name,
            "uid": uid,
            "controller": False,
            "blockOwnerDeletion": False,
        }
