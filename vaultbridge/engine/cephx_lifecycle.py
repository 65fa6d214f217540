"""The cephx lifecycle around a rotation: a new key, adoption of an existing entity, caps
drift, and the retirement of earlier generations (alternate strategy) under the sessions
rule. The rotation itself (apply, verify, promote) is the engine's, through the cephx driver."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from vaultbridge import rotation
from vaultbridge.engine import effects
from vaultbridge.engine.cephx import CAPS_CONDITION, CephxDriver, make_driver
from vaultbridge.engine.handlers import DirectHandlers
from vaultbridge.engine.job import Job
from vaultbridge.engine.outcome import Outcome, earliest
from vaultbridge.engine.ports import CredentialObject
from vaultbridge.model.errors import BackendError, PreconditionError
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import CephxTarget, CredentialRef, CredentialSpec
from vaultbridge.model.status import Status

if TYPE_CHECKING:
    from vaultbridge.engine.engine import Engine

log = logging.getLogger(__name__)


class CephxLifecycle:
    """What a cephx credential needs besides its rotation; one per engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def new_key(self, spec: CredentialSpec, target: CephxTarget) -> Sensitive:
        """A fresh cephx key: 16 bytes from Vault's RNG, or Ceph's pending key (in-place, >= 17)."""
        store = self.engine._cephx()
        driver = make_driver(spec, target, store, None, None)
        if driver.mode == "pending" and store.get_entity(target.entity) is not None:
            return store.get_or_create_pending(target.entity)
        created = int(self.engine.clock().timestamp())
        return store.make_key(self.engine._vault().random_bytes(16), created)

    def adopt(self, credential: CredentialObject) -> tuple[int, str] | None:
        """Adopt an existing, unmanaged entity: its key becomes Vault version 1, Ceph unchanged.

        Only when the CR has no status versions, the Vault path has no versions and the base
        entity exists. Returns (version, entity) to rotate to, else None.
        """
        spec = credential.spec
        target = spec.target
        status = credential.status
        if (
            not isinstance(target, CephxTarget)
            or spec.source is None
            or status.current_version is not None
            or status.history
        ):
            return None
        vault = self.engine._vault()
        try:
            if vault.current_version(spec.source.mount, spec.source.path) > 0:
                return None
        except BackendError as exc:
            if exc.reason != "VaultNotFound":
                raise
        existing = self.engine._cephx().get_entity(target.entity)
        if existing is None:
            return None
        version = vault.write(
            spec.source.mount, spec.source.path, {spec.source.field: existing.key}, cas=0
        )
        message = (
            f"adopted existing {target.entity}: its key is now Vault "
            f"{spec.source.mount}/{spec.source.path} version {version}; Ceph is unchanged"
        )
        self.engine.events.emit(credential, "Normal", "Adopted", message)
        self.engine._observe(credential.ref, "Adopted", message)
        return version, target.entity

    def check_caps(self, job: Job) -> None:
        """Report (condition CapsInSync + Event CapsDrift) when Ceph's caps differ from the spec."""
        driver = job.driver
        if not isinstance(driver, CephxDriver):
            return
        try:
            drift = driver.caps_drift()
        except BackendError as exc:
            log.warning("%s: caps check failed: %s", job.credential.ref, exc)
            return
        credential = self.engine._read_cr(job.credential.ref)
        status = credential.status
        existing = status.condition(CAPS_CONDITION)
        now = self.engine.clock()
        if drift is None:
            if existing is None or existing.status == "True":
                return
            status = status.with_condition(
                CAPS_CONDITION,
                "True",
                "CapsMatch",
                "caps match the spec",
                now,
                credential.generation,
            )
        else:
            if existing is not None and existing.status == "False" and existing.message == drift:
                return
            status = status.with_condition(
                CAPS_CONDITION, "False", "CapsDrift", drift, now, credential.generation
            )
            self.engine.events.emit(credential, "Warning", "CapsDrift", drift)
            self.engine._observe(credential.ref, "CapsDrift", drift)
        self.engine._save(credential, status)

    def retire_due(self, ref: CredentialRef) -> Outcome:
        """Retire the earlier cephx generations whose grace has passed (alternate strategy).

        An entity some mon still lists a session for is kept (RetireBlocked: status + Event) and
        retried later. ``retry_after`` says when the next retirement is due.
        """
        credential = self.engine._read_cr(ref)
        status = credential.status
        target = credential.spec.target
        if not isinstance(target, CephxTarget) or not status.retiring or status.rotation:
            return Outcome(ref, "unchanged", status.current_version, "nothing to retire")
        driver = make_driver(credential.spec, target, self.engine._cephx(), status, None)
        handlers = DirectHandlers(self.engine, credential, retire=driver.retire)
        retry_after: timedelta | None = None
        for entity in rotation.due_retirements(status, self.engine.clock()):
            if entity == status.current_entity:
                continue
            applied = effects.drive(
                status,
                rotation.RetireDue(entity),
                lambda: self.engine._context(credential),
                handlers,
            )
            status, retry_after = applied.status, earliest(retry_after, applied.retry_after)
        retry_after = earliest(
            retry_after, rotation.next_retirement_wake(status, self.engine.clock())
        )
        retired = handlers.retired
        return Outcome(
            ref,
            "unchanged",
            status.current_version,
            f"retired {', '.join(retired)}" if retired else "nothing retired",
            retry_after=retry_after,
        )

    def with_retirements(self, outcome: Outcome, spec: CredentialSpec | None = None) -> Outcome:
        """After a reconcile, sync or rotate: retire what is due, and wake up when the next one
        is. Decided on this engine's copy of the CR (as its last write returned it), so a
        rotation that retires nothing costs no extra request; ``retire_due`` reads it afresh."""
        credential = self.engine._copies.get(outcome.ref)
        if spec is None and credential is not None:
            spec = credential.spec
        if spec is not None and not isinstance(spec.target, CephxTarget):
            return outcome  # only cephx generations retire: no need to read the CR again
        try:
            if credential is None:
                credential = self.engine._read_cr(outcome.ref)
        except (BackendError, PreconditionError):
            return outcome
        status = credential.status
        if not isinstance(credential.spec.target, CephxTarget) or not status.retiring:
            return outcome
        if not any(
            e != status.current_entity
            for e in rotation.due_retirements(status, self.engine.clock())
        ):
            outcome.retry_after = earliest(
                outcome.retry_after, rotation.next_retirement_wake(status, self.engine.clock())
            )
            return outcome
        try:
            retired = self.retire_due(outcome.ref)
        except (BackendError, PreconditionError) as exc:
            log.warning("%s: retirement check failed: %s", outcome.ref, exc)
            return outcome
        outcome.retry_after = earliest(outcome.retry_after, retired.retry_after)
        return outcome

    def after_promotion(
        self, job: Job, driver: CephxDriver, before: Status, outcome: Outcome
    ) -> None:
        """Clear a caps drift the rotation repaired; wake when the previous entity retires."""
        drifted = before.condition(CAPS_CONDITION)
        if drifted is not None and drifted.status == "False":
            self.check_caps(job)  # the rotation applied the spec's caps: clear it
        context = self.engine._context(job.credential)
        if context.retire_after is not None and before.current_entity not in (
            None,
            driver.entity,
        ):
            # the previous entity now waits retire_after (earlier ones may be due sooner)
            wake = (
                rotation.next_retirement_wake(before, self.engine.clock()) or context.retire_after
            )
            outcome.retry_after = earliest(outcome.retry_after, min(wake, context.retire_after))
