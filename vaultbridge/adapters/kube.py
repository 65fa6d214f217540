"""The Kubernetes adapters: CredentialRotations, Secrets and Events shaped to the engine's
ports (``vaultbridge.engine.ports``), on the clients of ``vaultbridge.kube``."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

from vaultbridge.engine.engine import ROTATION_ANNOTATION, VERSION_ANNOTATION
from vaultbridge.engine.ports import CredentialObject, StoredSecret
from vaultbridge.kube import (
    CredentialRotationClient,
    EventRecorder,
    KubeConflict,
    ObjectRef,
    OwnedSecret,
    OwnerInfo,
    SecretSink,
)
from vaultbridge.model.cluster import cluster_key
from vaultbridge.model.errors import ConcurrentRotation, PreconditionError
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import (
    CredentialRef,
    DeletionPolicy,
    SpecError,
    describe_target,
    parse_spec,
)
from vaultbridge.model.status import Status

log = logging.getLogger(__name__)


class KubeCredentials:
    def __init__(self, crs: CredentialRotationClient) -> None:
        self.crs = crs

    def load(self, ref: CredentialRef) -> CredentialObject:
        return credential_from(self.crs.get(ref.namespace, ref.name))

    def save_status(
        self, credential: CredentialObject, status: Status, *, expect_version: str | None = None
    ) -> CredentialObject | None:
        body = status.to_dict()
        body["targetDescription"] = describe_target(credential.spec)
        body["cluster"] = cluster_key(credential.spec.cluster)
        ref = credential.ref

        def status_unchanged(current: dict[str, Any]) -> bool:
            return Status.from_dict(current.get("status")) == credential.status

        try:
            if expect_version is not None:  # the claim: nothing may have changed
                written = self.crs.write_status(ref.namespace, ref.name, body, expect_version)
            else:  # anything but the status may have changed (a spec edit)
                written = self.crs.write_status(
                    ref.namespace,
                    ref.name,
                    body,
                    credential.resource_version or None,
                    still_applies=status_unchanged,
                )
        except KubeConflict as exc:
            raise ConcurrentRotation(
                f"{ref} changed since it was read (another vaultbridge is rotating it, or it "
                "was edited); nothing was changed"
            ) from exc
        try:
            return credential_from(written)
        except (KeyError, TypeError, ValueError, PreconditionError):
            return None

    def set_finalizer(self, credential: CredentialObject, finalizer: str, *, present: bool) -> None:
        ref = credential.ref
        self.crs.set_finalizer(ref.namespace, ref.name, finalizer, present)


def credential_from(raw: Mapping[str, Any]) -> CredentialObject:
    metadata = raw["metadata"]
    ref = CredentialRef(metadata["namespace"], metadata["name"])
    try:
        spec = parse_spec(raw.get("spec") or {})
    except SpecError as exc:
        raise PreconditionError("InvalidSpec", f"{ref}: {exc}") from None
    return CredentialObject(
        ref=ref,
        uid=metadata["uid"],
        generation=int(metadata.get("generation", 1)),
        resource_version=str(metadata.get("resourceVersion", "")),
        spec=spec,
        status=Status.from_dict(raw.get("status")),
        api_version=raw.get("apiVersion", "vaultbridge.io/v1alpha1"),
        kind=raw.get("kind", "CredentialRotation"),
        created=metadata.get("creationTimestamp"),
        deleting=bool(metadata.get("deletionTimestamp")),
        finalizers=tuple(metadata.get("finalizers") or ()),
    )


def _stored(secret: OwnedSecret) -> StoredSecret:
    return StoredSecret(
        data=secret.data,
        annotations=dict(secret.annotations),
        controller_uid=secret.linked_uid,
        handle=secret,
    )


class KubeSecrets:
    def __init__(self, sink: SecretSink) -> None:
        self.sink = sink
        # (namespace, name) -> the resourceVersion of our own last write, so the controller's
        # Secret watch can tell our promotions from someone else's edits
        self.written: dict[tuple[str, str], str] = {}

    def read(self, namespace: str, name: str) -> StoredSecret | None:
        secret = self.sink.get(namespace, name)
        return None if secret is None else _stored(secret)

    def write(
        self,
        credential: CredentialObject,
        name: str,
        data: Mapping[str, Sensitive],
        *,
        annotations: Mapping[str, str],
        adopt: bool,
        known: StoredSecret | None = None,
        policy: DeletionPolicy | None = None,
        absent: bool = False,
    ) -> StoredSecret | None:
        spec = credential.spec
        is_main = name == spec.secret.name
        extra = {
            k: v
            for k, v in annotations.items()
            if k not in (VERSION_ANNOTATION, ROTATION_ANNOTATION)
        }
        written = self.sink.write(
            credential.ref.namespace,
            name,
            OwnerInfo(
                credential.api_version,
                credential.kind,
                credential.ref.name,
                credential.uid,
                credential.created,
            ),
            [(o.api_version, o.kind, o.name) for o in spec.secret.extra_owners] if is_main else [],
            data,
            annotations.get(VERSION_ANNOTATION, "preimage"),
            annotations.get(ROTATION_ANNOTATION, ""),
            adopt,
            extra_annotations=extra,
            known=known.handle
            if known is not None and isinstance(known.handle, OwnedSecret)
            else None,
            policy=policy,
            absent=absent,
        )
        self.written[(credential.ref.namespace, name)] = written.resource_version
        return _stored(written)

    def delete(self, namespace: str, name: str) -> None:
        self.sink.delete(namespace, name)

    def release(self, namespace: str, name: str, owner_uid: str) -> bool:
        return self.sink.release(namespace, name, owner_uid)


class KubeEvents:
    """Records Events from a background thread: an Event is a courtesy and must not add its
    round trip to a rotation. ``flush`` (called on close) waits for the queue to drain."""

    def __init__(self, recorder: EventRecorder, capacity: int = 10_000) -> None:
        self.recorder = recorder
        self.queue: queue.Queue[tuple[ObjectRef, Literal["Normal", "Warning"], str, str] | None]
        self.queue = queue.Queue(maxsize=capacity)
        self.worker = threading.Thread(target=self._drain, name="vaultbridge-events", daemon=True)
        self.worker.start()

    def emit(
        self,
        credential: CredentialObject,
        type: Literal["Normal", "Warning"],
        reason: str,
        message: str,
    ) -> None:
        ref = ObjectRef(
            credential.ref.namespace,
            credential.ref.name,
            credential.uid,
            credential.kind,
            credential.api_version,
        )
        try:
            self.queue.put_nowait((ref, type, reason, message))
        except queue.Full:
            log.warning("event queue full; dropped Event %s on %s", reason, credential.ref)

    def _drain(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is None:
                    return
                self.recorder.emit(*item)
            finally:
                self.queue.task_done()

    def flush(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
