"""The cephx target's :class:`~vaultbridge.engine.lifecycle.Lifecycle`: its driver, a new key,
adoption of an existing entity, and caps drift. The retirement of earlier generations is in
``engine/cephx_retirement.py``; the rotation itself (apply, verify, promote) in the driver,
``engine/cephx.py``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta

from vaultbridge.engine.access import Access
from vaultbridge.engine.ceph_view import CephView
from vaultbridge.engine.cephx import CAPS_CONDITION, CephxDriver, make_driver, probes
from vaultbridge.engine.cephx_key_types import key_type_for
from vaultbridge.engine.cephx_pending import PendingKeySwap
from vaultbridge.engine.cephx_retirement import CephxRetirement
from vaultbridge.engine.job import Job
from vaultbridge.engine.outcome import Outcome, earliest
from vaultbridge.engine.ports import CephxStore, CredentialObject, VaultStore
from vaultbridge.engine.report import Reporter
from vaultbridge.engine.runtime import Retention, Runtime
from vaultbridge.model.errors import BackendError, PreconditionError
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import CephxTarget, CredentialSpec
from vaultbridge.model.status import Status
from vaultbridge.rotation import next_retirement_wake

log = logging.getLogger(__name__)

KEY_SECRET_BYTES = {"aes": 16, "aes256k": 32}
COMMIT_RETRY = timedelta(seconds=30)


class CephxLifecycle:
    """What a cephx credential needs besides its rotation; one per engine."""

    claims_from_copy = False

    def __init__(
        self,
        cephx: Callable[[CredentialSpec], CephxStore],
        vault: Callable[[], VaultStore],
        access: Access,
        reporter: Reporter,
        runtime: Runtime,
    ) -> None:
        self.cephx = cephx  # raises CephNotConfigured without a Ceph connection
        self.vault = vault  # raises VaultNotConfigured without a Vault connection
        self.access = access
        self.reporter = reporter
        self.runtime = runtime
        self.retirement = CephxRetirement(self, access, reporter, runtime)

    def driver(
        self,
        spec: CredentialSpec,
        status: Status | None = None,
        version: int | None = None,
        *,
        entity: str | None = None,
    ) -> CephxDriver:
        return make_driver(spec, _target(spec), self.cephx(spec), status, version, entity=entity)

    def driver_on(
        self, view: CephView, spec: CredentialSpec, status: Status, version: int | None
    ) -> CephxDriver:
        return make_driver(spec, _target(spec), view, status, version)

    def wants_reconcile(self, status: Status) -> bool:
        return bool(status.retiring)  # earlier entities wait to be retired

    def retention(self, spec: CredentialSpec) -> Retention:
        target = _target(spec)
        if target.strategy != "alternate":
            return Retention()
        return Retention(target.retire_after, target.keep_prior)

    def generate(
        self, spec: CredentialSpec, existing: Mapping[str, Sensitive], vault: VaultStore
    ) -> dict[str, Sensitive]:
        assert spec.source is not None
        return {**existing, spec.source.field: self.new_key(spec, existing.get(spec.source.field))}

    def new_key(self, spec: CredentialSpec, current: Sensitive | None = None) -> Sensitive:
        """A fresh cephx key: 16 or 32 bytes from Vault's RNG, or Ceph's pending key (in-place,
        >= 17.2.6). ``current``: the key of Vault's latest version."""
        store = self.cephx(spec)
        driver = self.driver(spec)
        entity = _target(spec).entity
        key_type = key_type_for(_target(spec), store.mon_release())  # refused before any write
        found = store.get_entity(entity) if driver.mode == "pending" else None
        if found is not None:
            if found.pending_key is not None:
                self._commit_before_restaging(store, entity, found.pending_key, current)
            return store.get_or_create_pending(entity)
        created = int(self.runtime.clock().timestamp())
        secret = self.vault().random_bytes(KEY_SECRET_BYTES[key_type])
        return store.make_key(secret, created, key_type)

    def _commit_before_restaging(
        self, store: CephxStore, entity: str, pending: Sensitive, current: Sensitive | None
    ) -> None:
        """A rotation within ``retireAfter`` of the previous one: Ceph holds one pending key,
        and asking again would return the same one. The previous rotation's key (Vault's
        latest version, promoted) is committed first; a pending key vaultbridge did not write
        is refused, never committed or cleared."""
        if pending != current:
            raise PreconditionError(
                "PendingKeyExists",
                f"{entity} has a pending key that is not Vault's latest version (staged by "
                "someone else); clear it with `ceph auth clear-pending` or commit it, then retry",
                transient=False,
            )
        PendingKeySwap(store, entity).commit()
        log.info(
            "%s: committed the previous rotation's pending key before staging a new one", entity
        )

    def adopt(self, credential: CredentialObject) -> tuple[int, str] | None:
        """Adopt an existing, unmanaged entity: its key becomes Vault version 1, Ceph unchanged.

        Only when the CR has no status versions, the Vault path has no versions and the base
        entity exists. Returns (version, entity) to rotate to, else None.
        """
        spec, status = credential.spec, credential.status
        target = _target(spec)
        if spec.source is None or status.current_version is not None or status.history:
            return None
        vault = self.vault()
        try:
            if vault.current_version(spec.source.mount, spec.source.path) > 0:
                return None
        except BackendError as exc:
            if exc.reason != "VaultNotFound":
                raise
        existing = self.cephx(spec).get_entity(target.entity)
        if existing is None:
            return None
        version = vault.write(
            spec.source.mount, spec.source.path, {spec.source.field: existing.key}, cas=0
        )
        self.reporter.event(
            credential,
            "Normal",
            "Adopted",
            f"adopted existing {target.entity}: its key is now Vault "
            f"{spec.source.mount}/{spec.source.path} version {version}; Ceph is unchanged",
        )
        return version, target.entity

    def in_sync(self, job: Job) -> None:
        """Report (condition CapsInSync + Event CapsDrift) when Ceph's caps differ from the spec."""
        driver = job.driver
        assert isinstance(driver, CephxDriver)  # made by self.driver
        try:
            drift = driver.caps_drift()
        except BackendError as exc:
            log.warning("%s: caps check failed: %s", job.credential.ref, exc)
            return
        if _caps_condition_changes(job.credential.status, drift):  # else no read, no write
            self._record_caps(self.access.read_cr(job.credential.ref), drift)

    def _record_caps(self, credential: CredentialObject, drift: str | None) -> None:
        status = credential.status
        if not _caps_condition_changes(status, drift):
            return
        now = self.runtime.clock()
        if drift is None:
            status = status.with_condition(
                CAPS_CONDITION,
                "True",
                "CapsMatch",
                "caps match the spec",
                now,
                credential.generation,
            )
        else:
            status = status.with_condition(
                CAPS_CONDITION, "False", "CapsDrift", drift, now, credential.generation
            )
            self.reporter.event(credential, "Warning", "CapsDrift", drift)
        self.access.save(credential, status)

    def promoted(self, job: Job, before: Status, outcome: Outcome) -> None:
        """Clear a caps drift the rotation repaired; wake when the previous entity retires."""
        drifted = before.condition(CAPS_CONDITION)
        if drifted is not None and drifted.status == "False":
            self.in_sync(job)  # the rotation applied the spec's caps: clear it
        retire_after = self.retention(job.spec).retire_after
        if retire_after is not None and before.current_entity not in (
            None,
            job.driver.journal_entity,
        ):
            # the previous entity now waits retire_after (earlier ones may be due sooner)
            wake = next_retirement_wake(before, self.runtime.clock()) or retire_after
            outcome.retry_after = earliest(outcome.retry_after, min(wake, retire_after))

    def settle(self, outcome: Outcome) -> Outcome:
        return self.commit_due(self.retirement.settle(outcome))

    def commit_due(self, outcome: Outcome) -> Outcome:
        """In-place on Reef and later: commit the pending key ``retireAfter`` after it was
        promoted, unless a consumer's first use committed it already, then authenticate with it
        on a fresh connection. Until then the old key keeps working; ``retry_after`` wakes the
        controller when the commit is due."""
        credential = self.access.copies.get(outcome.ref)
        spec = credential.spec if credential is not None else None
        target = spec.target if spec is not None else None
        if (
            credential is None
            or not isinstance(target, CephxTarget)
            or target.strategy != "in-place"
            or credential.status.rotation is not None
        ):
            return outcome
        try:
            if self.driver(credential.spec).mode != "pending":
                return outcome  # Pacific, or a key someone else wrote: nothing is staged
            return self._commit_if_due(credential, target, outcome)
        except (BackendError, PreconditionError) as exc:
            log.warning("%s: pending key commit failed: %s", outcome.ref, exc)
            outcome.retry_after = earliest(outcome.retry_after, COMMIT_RETRY)
            return outcome

    def _commit_if_due(
        self, credential: CredentialObject, target: CephxTarget, outcome: Outcome
    ) -> Outcome:
        promoted = credential.status.last_rotation_time
        wait = timedelta(0)
        if promoted is not None:
            wait = promoted + target.retire_after - self.runtime.clock()
        if wait > timedelta(0):  # decided before any request: a promotion has just happened
            outcome.retry_after = earliest(outcome.retry_after, wait)
            return outcome
        store = self.cephx(credential.spec)
        found = store.get_entity(target.entity)
        if found is None or found.pending_key is None:
            return outcome  # committed already (by a consumer's first use, or by us)
        secret = self.access.secret(credential.ref.namespace, credential.spec.secret.name)
        if secret is None or secret.data.get("userKey") != found.pending_key:
            return outcome  # not the key vaultbridge promoted: someone else's, left alone
        PendingKeySwap(store, target.entity).commit()
        allowed, refused = probes(target.entity, found.caps)
        store.verify_key(target.entity, found.pending_key, allowed, refused)
        self.reporter.event(
            credential,
            "Normal",
            "KeyCommitted",
            f"{target.entity}: the pending key promoted {target.retire_after} ago is committed "
            "and authenticates; the previous key no longer does",
        )
        return outcome

    def retire_due(self, credential: CredentialObject) -> Outcome:
        return self.retirement.retire_due(credential)


def _target(spec: CredentialSpec) -> CephxTarget:
    assert isinstance(spec.target, CephxTarget)  # the registry's choice
    return spec.target


def _caps_condition_changes(status: Status, drift: str | None) -> bool:
    """Would recording ``drift`` (None: caps match) change the CapsInSync condition?"""
    existing = status.condition(CAPS_CONDITION)
    if drift is None:
        return existing is not None and existing.status != "True"
    return existing is None or existing.status != "False" or existing.message != drift
