"""How a request becomes a rotation: read the CR (or trust the engine's copy of it), finish a
journaled rotation first, decide the version, and rotate unless Ceph and the Secret hold it."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace

from vaultbridge import rotation
from vaultbridge.engine.access import Access
from vaultbridge.engine.clusters import moved_mid_rotation, spec_in_journaled_cluster
from vaultbridge.engine.deletion import CephxCleanup
from vaultbridge.engine.desired import Desired
from vaultbridge.engine.job import Job, StaleCopyError
from vaultbridge.engine.labels import repair_labels
from vaultbridge.engine.lifecycle import Kinds
from vaultbridge.engine.outcome import Outcome
from vaultbridge.engine.plan import plan
from vaultbridge.engine.ports import CephClusters, CredentialObject
from vaultbridge.engine.runner import Runner
from vaultbridge.model.errors import BackendError, PreconditionError
from vaultbridge.model.spec import CredentialRef

log = logging.getLogger(__name__)


class Starter:
    def __init__(
        self,
        access: Access,
        desired: Desired,
        runner: Runner,
        kinds: Kinds,
        cleanup: CephxCleanup,
        *,
        clusters: CephClusters,
    ) -> None:
        self.clusters = clusters
        self.access = access
        self.desired = desired
        self.runner = runner
        self.kinds = kinds
        self.cleanup = cleanup

    def rotate(
        self,
        ref: CredentialRef,
        *,
        generate: bool | None,
        to_version: int | None,
        dry_run: bool,
        credential: CredentialObject | None = None,
    ) -> Outcome:
        """Rotate ``ref`` (``generate`` None: as its spec says), or plan it (``dry_run``)."""
        sync = to_version is None and not dry_run and generate is not True
        copy = self.access.claim_copy(ref) if credential is None and sync else None
        if copy is not None and (generate is False or not copy.spec.generate):
            outcome = self.from_copy(copy)
            if outcome is not None:
                return outcome
        if credential is None:
            credential = self.access.read_cr(ref)
        if credential.deleting:
            return Outcome(
                ref,
                "failed",
                credential.status.current_version,
                f"{ref} is being deleted; nothing is rotated (`vaultbridge finalize {ref}` "
                "finishes a deletion that waits for vaultbridge)",
                reason="BeingDeleted",
            )
        if not dry_run and self.cleanup.keep_finalizer(credential):
            credential = self.access.read_cr(ref)
        resumed: Outcome | None = None
        if credential.status.rotation is not None and not dry_run:
            resumed = self.resume(credential)
            if not resumed.ok and resumed.result != "rolled-back":
                return resumed  # still cannot finish it: Ceph may hold either version
            # finished, or rolled back to the pre-image: this request starts afresh
            credential = self.access.read_cr(ref)
        if generate is None:
            generate = credential.spec.generate
        if dry_run:
            try:
                return plan(self.desired, credential, generate=generate, to_version=to_version)
            except (BackendError, PreconditionError) as exc:
                return self.runner.blocked(credential, exc)
        return self.start(credential, resumed, generate=generate, to_version=to_version)

    def resume(self, credential: CredentialObject) -> Outcome:
        """Continue the journaled rotation of ``credential`` after a restart."""
        journal = credential.status.rotation
        assert journal is not None
        deferred = moved_mid_rotation(credential.spec, journal)
        if deferred is not None:
            self.runner.reporter.event(credential, "Warning", "ClusterMoveDeferred", deferred)
            credential = replace(
                credential, spec=spec_in_journaled_cluster(credential.spec, journal)
            )
        try:
            job = self.desired.job(credential, journal.version)
        except (BackendError, PreconditionError) as exc:
            # the new version cannot be read any more: roll back what may have been applied
            spec = credential.spec
            driver = self.kinds.of(spec).driver(spec, credential.status, journal.version)
            job = Job(credential, spec, driver, journal.version, {})
            log.warning(
                "%s: resuming rotation %s without its data: %s", credential.ref, journal.id, exc
            )
        job.rotation_id = journal.id
        job.fsid = journal.fsid
        job.stash = "unknown"
        job.current_before = credential.status.current_version
        job.previous_before = credential.status.previous_version
        return self.runner.drive(job, credential.status, rotation.Resume())

    def start(
        self,
        credential: CredentialObject,
        resumed: Outcome | None,
        *,
        generate: bool,
        to_version: int | None,
    ) -> Outcome:
        """Decide the version, and rotate to it unless Ceph and the Secret already hold it."""
        ref = credential.ref
        lifecycle = self.kinds.of(credential.spec)
        try:
            adopted = None if to_version is not None else lifecycle.adopt(credential)
            if adopted is not None:
                version, entity = adopted
            else:
                version = self.desired.target_version(
                    credential, generate=generate, to_version=to_version
                )
                entity = None
            job = self.desired.job(credential, version, entity=entity)
            self.desired.check_secret_ownership(credential)
            if self.desired.in_sync(job):
                self.runner.clear_failure(credential)
                lifecycle.in_sync(job)
                if credential.spec.source is not None:
                    repair_labels(self.desired.vault(), self.runner.reporter, credential)
                if resumed is not None and resumed.result == "promoted":
                    return resumed  # this request finished the rotation that was in flight
                return Outcome(
                    ref, "unchanged", version, f"{ref}: version {version} is live and verified"
                )
            job.driver.check_new()
        except (BackendError, PreconditionError) as exc:
            return self.runner.blocked(credential, exc)
        try:
            self._begin(job, credential)
        except (BackendError, PreconditionError) as exc:
            return self.runner.blocked(credential, exc)
        start = rotation.Start(
            job.rotation_id, version, job.driver.journal_entity, job.cluster, job.fsid
        )
        outcome = self.runner.drive(job, credential.status, start)
        if outcome.result == "promoted":
            lifecycle.promoted(job, credential.status, outcome)
        return outcome

    def from_copy(self, copy: CredentialObject) -> Outcome | None:
        """Sync from the engine's copy of the CR, without reading it first.

        Taken only when the copy shows a rotation is due: a Vault-sourced credential of a kind
        that allows it, no rotation in flight, and a latest Vault version that is not the
        current one. The claim validates the copy: it carries the copy's resourceVersion, which
        the API server refuses if the CR changed since, before anything is done. Returns None
        when the copy does not show a rotation is due or was stale: the caller reads the CR
        and decides afresh (reusing the reads made here).
        """
        spec = copy.spec
        if (
            copy.status.rotation is not None
            or spec.source is None
            or not self.kinds.of(spec).claims_from_copy
        ):
            return None
        key = (copy.ref.namespace, spec.secret.name)
        secret = self.access.secret_copies.get(key)
        reads = self.access.reads()
        try:
            version = self.desired.target_version(copy, generate=False, to_version=None)
            if version == copy.status.current_version:
                self.desired.reuse_latest(copy, version)
                return None
            if secret is not None and reads is not None:
                # only for the rotation: a drift check must see the Secret as it is now
                reads.secrets[key] = secret
            job = self.desired.job(copy, version)
            self.desired.check_secret_ownership(copy)
        except (BackendError, PreconditionError):
            if secret is not None and reads is not None:
                reads.secrets.pop(key, None)
            return None  # the fresh read decides, and reports it
        job.from_copy = True
        try:
            self._begin(job, copy)
        except (BackendError, PreconditionError):
            return None  # the fresh read decides, and reports it
        try:
            return self.runner.drive(
                job,
                copy.status,
                rotation.Start(job.rotation_id, version, None, job.cluster, job.fsid),
            )
        except StaleCopyError:
            self.access.copies.pop(copy.ref, None)
            self.access.secret_copies.pop(key, None)
            if reads is not None:  # the fresh attempt reads the Secret again
                reads.secrets.pop(key, None)
            return None

    def _begin(self, job: Job, credential: CredentialObject) -> None:
        """A new rotation's id, and the cluster (and its fsid) it is pinned to."""
        ref = job.spec.cluster
        job.cluster = None if ref is None else ref.key
        job.fsid = self.clusters.cluster(ref).fsid()
        job.rotation_id = uuid.uuid4().hex[:12]
        job.current_before = credential.status.current_version
        job.previous_before = credential.status.previous_version
