"""What happens in Ceph when a CredentialRotation is deleted (docs/deletion.md).

Only a cephx target with ``deletionPolicy: Delete`` does anything: the CR carries the
finalizer ``vaultbridge.io/cephx-cleanup`` while it lives, and once it is being deleted every
entity vaultbridge made for it is removed, under the retirement rule (no mon lists a session
for it), before the finalizer is released. Config and config-key values are never removed, and
a ``Retain`` cephx target leaves its entities as they are, so consumers keep working.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from vaultbridge.engine.ports import (
    CephxStore,
    CredentialObject,
    CredentialRepository,
    EventRecorder,
)
from vaultbridge.model.errors import BackendError
from vaultbridge.model.spec import CephxTarget, CredentialRef, CredentialSpec
from vaultbridge.rotation import backoff_delay

log = logging.getLogger(__name__)

CEPHX_FINALIZER = "vaultbridge.io/cephx-cleanup"
REMOVAL_BACKOFF_BASE = timedelta(seconds=5)
REMOVAL_BACKOFF_CAP = timedelta(minutes=5)


def removes_entities(spec: CredentialSpec) -> bool:
    """A cephx target whose entities go with the CR (the one case that needs a finalizer)."""
    target = spec.target
    return isinstance(target, CephxTarget) and target.deletion_policy == "Delete"


def entities_of(credential: CredentialObject) -> list[str]:
    """Every entity vaultbridge made or manages for this CR: the live one, those waiting to
    retire, and one a rotation in flight may have added; for in-place, the one entity."""
    status = credential.status
    names: list[str] = []
    target = credential.spec.target
    if isinstance(target, CephxTarget) and target.strategy == "in-place":
        names.append(target.entity)
    if status.current_entity:
        names.append(status.current_entity)
    names += [r.entity for r in status.retiring]
    if status.rotation is not None and status.rotation.entity:
        names.append(status.rotation.entity)
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Finalized:
    """What a finalize did: ``done`` once the finalizer is released."""

    done: bool
    message: str
    reason: str = ""
    retry_after: timedelta | None = None


class CephxCleanup:
    """Keeps the finalizer in step with the spec, and removes the entities on deletion."""

    def __init__(
        self,
        credentials: CredentialRepository,
        events: EventRecorder,
        cephx: Callable[[CredentialSpec], CephxStore],
        jitter: Callable[[], float],
    ) -> None:
        self.credentials = credentials
        self.events = events
        self.cephx = cephx
        self.jitter = jitter
        self._attempts: dict[CredentialRef, int] = {}

    def keep_finalizer(self, credential: CredentialObject) -> bool:
        """Add the finalizer when the spec asks for Delete, drop it when it no longer does.
        True when the CR was changed (its resourceVersion with it: read it again)."""
        if credential.deleting:
            return False
        wanted = removes_entities(credential.spec)
        if wanted == (CEPHX_FINALIZER in credential.finalizers):
            return False
        self.credentials.set_finalizer(credential, CEPHX_FINALIZER, present=wanted)
        return True

    def finalize(self, credential: CredentialObject, *, remove: bool) -> Finalized:
        """Remove the entities (``remove`` and the policy is Delete), then the finalizer."""
        ref = credential.ref
        if CEPHX_FINALIZER not in credential.finalizers:
            return Finalized(True, f"{ref}: nothing to finalize (no {CEPHX_FINALIZER} finalizer)")
        if not credential.deleting:
            return Finalized(
                False,
                f"{ref} is not being deleted; delete it first (kubectl delete credrot ...)",
                reason="NotDeleting",
            )
        removed: list[str] = []
        if remove and removes_entities(credential.spec):
            blocked = self._remove(credential, removed)
            if blocked is not None:
                return blocked
        self.credentials.set_finalizer(credential, CEPHX_FINALIZER, present=False)
        self._attempts.pop(ref, None)
        if removed:
            message = f"removed {', '.join(removed)} from Ceph; {ref} is released"
        elif remove and removes_entities(credential.spec):
            message = f"no entity of {ref} was left in Ceph; {ref} is released"
        else:
            message = f"{ref} released; its Ceph entities were left as they are"
        self.events.emit(credential, "Normal", "Finalized", message)
        log.info("%s", message)
        return Finalized(True, message)

    def _remove(self, credential: CredentialObject, removed: list[str]) -> Finalized | None:
        store = self.cephx(credential.spec)
        present = [name for name in entities_of(credential) if store.get_entity(name)]
        for name in present:
            holding = store.sessions(name)
            if holding:
                return self._blocked(
                    credential,
                    f"{', '.join('mon.' + m for m in holding)} still list a session for {name}; "
                    "nothing was removed",
                )
        for name in present:
            try:
                store.remove_entity(name)
            except BackendError as exc:
                return self._blocked(credential, f"auth rm {name}: {exc}")
            removed.append(name)
        return None

    def _blocked(self, credential: CredentialObject, why: str) -> Finalized:
        ref = credential.ref
        attempts = self._attempts.get(ref, 0) + 1
        self._attempts[ref] = attempts
        delay = backoff_delay(attempts, self.jitter(), REMOVAL_BACKOFF_BASE, REMOVAL_BACKOFF_CAP)
        message = (
            f"{ref}: entities not removed yet: {why}; retrying in {delay.total_seconds():.0f} s"
        )
        if attempts == 1 or attempts % 10 == 0:  # one Warning, not one per retry
            self.events.emit(credential, "Warning", "RemovalBlocked", message)
        log.warning("%s", message)
        return Finalized(False, message, reason="RemovalBlocked", retry_after=delay)
