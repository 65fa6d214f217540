"""The in-memory Kubernetes ports: CRs (resourceVersions, the claim's precondition), Secrets
(ownership, the deletion policy's link), Events."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from vaultbridge.engine.memory.faults import Faults, MemoryNotFound, MemoryRejected
from vaultbridge.engine.ports import (
    CredentialObject,
    StoredSecret,
)
from vaultbridge.model.errors import ConcurrentRotation
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import CredentialRef, DeletionPolicy, parse_spec
from vaultbridge.model.status import Status


class MemoryCredentials:
    """CredentialRotations: resourceVersions, the claim's precondition, finalizers."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.objects: dict[CredentialRef, CredentialObject] = {}
        self.previous: dict[CredentialRef, CredentialObject] = {}
        self._versions = itertools.count(1)
        self.writes = 0

    def create(self, ref: CredentialRef, spec: Mapping[str, Any]) -> CredentialObject:
        obj = CredentialObject(
            ref=ref,
            uid=f"uid-{ref.name}",
            generation=1,
            resource_version=str(next(self._versions)),
            spec=parse_spec(spec),
            status=Status(),
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        self.objects[ref] = obj
        return obj

    def _put(self, obj: CredentialObject, **changes: Any) -> CredentialObject:
        self.previous[obj.ref] = self.objects[obj.ref]
        new = replace(obj, resource_version=str(next(self._versions)), **changes)
        self.objects[obj.ref] = new
        return new

    def edit_spec(self, ref: CredentialRef, spec: Mapping[str, Any]) -> None:
        current = self.objects[ref]
        self._put(current, spec=parse_spec(spec), generation=current.generation + 1)

    def load(self, ref: CredentialRef) -> CredentialObject:
        stale = self.faults.check("crs.load")
        if ref not in self.objects:
            raise MemoryNotFound(f"{ref}: no such CredentialRotation")
        if stale and ref in self.previous:
            return self.previous[ref]
        return self.objects[ref]

    def save_status(
        self, credential: CredentialObject, status: Status, *, expect_version: str | None = None
    ) -> CredentialObject | None:
        self.faults.check("crs.save_status")
        current = self.objects.get(credential.ref)
        if current is None:
            raise MemoryNotFound(f"{credential.ref}: no such CredentialRotation")
        if expect_version is not None and current.resource_version != expect_version:
            raise ConcurrentRotation(f"{credential.ref} changed since it was read")
        if expect_version is None and current.status != credential.status:
            raise ConcurrentRotation(f"{credential.ref}: its status was changed by another writer")
        self.writes += 1
        return self._put(current, status=status)

    def set_finalizer(self, credential: CredentialObject, finalizer: str, *, present: bool) -> None:
        self.faults.check("crs.set_finalizer")
        current = self.objects[credential.ref]
        kept = tuple(f for f in current.finalizers if f != finalizer)
        self._put(current, finalizers=(*kept, finalizer) if present else kept)

    def delete(self, ref: CredentialRef) -> None:
        current = self.objects[ref]
        if current.finalizers:
            self._put(current, deleting=True)
        else:
            del self.objects[ref]


@dataclass
class _Secret:
    stored: StoredSecret
    policy: DeletionPolicy


class MemorySecrets:
    """Secrets: ownership (adopt), data keys kept, the deletion policy's link."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.secrets: dict[tuple[str, str], _Secret] = {}
        self.previous: dict[tuple[str, str], _Secret] = {}

    def put(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        """A Secret as a user creates it: nobody's."""
        stored = StoredSecret({k: Sensitive(v) for k, v in data.items()}, {}, None)
        self.secrets[(namespace, name)] = _Secret(stored, "Retain")

    def read(self, namespace: str, name: str) -> StoredSecret | None:
        stale = self.faults.check("secrets.read")
        found = (self.previous if stale else self.secrets).get((namespace, name))
        return None if found is None else found.stored

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
        self.faults.check("secrets.write")
        key = (credential.ref.namespace, name)
        current = self.secrets.get(key)
        if current is not None and current.stored.controller_uid != credential.uid and not adopt:
            raise MemoryRejected(f"Secret {key} is not owned", "KubeOwnershipError")
        if policy is None:
            policy = "Delete" if current is None else current.policy
            if current is not None and current.stored.controller_uid != credential.uid:
                policy = "Retain"  # adopted
        merged = {**(current.stored.data if current else {}), **data}
        kept = dict(current.stored.annotations) if current else {}
        stored = StoredSecret(merged, {**kept, **annotations}, credential.uid)
        if current is not None:
            self.previous[key] = current
        self.secrets[key] = _Secret(stored, policy)
        self.faults.check("secrets.written")  # a fault here: the write landed, its answer lost
        return stored

    def delete(self, namespace: str, name: str) -> None:
        self.faults.check("secrets.delete")
        self.secrets.pop((namespace, name), None)

    def release(self, namespace: str, name: str, owner_uid: str) -> bool:
        found = self.secrets.get((namespace, name))
        if found is None or found.stored.controller_uid != owner_uid:
            return False
        found.stored = replace(found.stored, controller_uid=None, annotations={})
        return True

    def policy(self, namespace: str, name: str) -> DeletionPolicy:
        return self.secrets[(namespace, name)].policy


@dataclass
class MemoryEvents:
    events: list[tuple[str, str, str, str]] = field(default_factory=list)

    def emit(
        self,
        credential: CredentialObject,
        type: Literal["Normal", "Warning"],
        reason: str,
        message: str,
    ) -> None:
        self.events.append((str(credential.ref), type, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _ref, _type, reason, _message in self.events]
