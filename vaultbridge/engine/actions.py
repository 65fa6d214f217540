"""The actions of one rotation, as the state machine asks for them: Snapshot, Apply, Verify,
Promote, Restore. Each runs against the ports; what it returns (Succeeded or Failed) is fed
back into ``rotation.step`` by the effects loop (``engine/effects.py``)."""

from __future__ import annotations

import logging
import time

from vaultbridge import rotation
from vaultbridge.engine import faults
from vaultbridge.engine.access import Access
from vaultbridge.engine.annotations import ROTATION_ANNOTATION, VERSION_ANNOTATION
from vaultbridge.engine.clusters import check_same_cluster
from vaultbridge.engine.job import Job
from vaultbridge.engine.ports import CephClusters, VaultStore
from vaultbridge.engine.preimage import PreimageStore
from vaultbridge.engine.reads import keep
from vaultbridge.engine.report import Reporter
from vaultbridge.engine.runtime import Runtime
from vaultbridge.model.errors import (
    BackendError,
    ConcurrentRotation,
    PreconditionError,
    PromotionUnknown,
)
from vaultbridge.model.spec import CredentialSpec, DeletionPolicy

log = logging.getLogger(__name__)

# reading a Secret back after its write failed: three tries, 0.2 s, 0.4 s, 0.8 s apart
PROMOTION_READS = 3
PROMOTION_READ_PAUSE = 0.2

_NEEDS_DATA = frozenset({rotation.Action.APPLY, rotation.Action.VERIFY, rotation.Action.PROMOTE})


class RotationActions:
    def __init__(
        self,
        access: Access,
        vault: VaultStore | None,
        preimages: PreimageStore,
        reporter: Reporter,
        runtime: Runtime,
        *,
        clusters: CephClusters,
    ) -> None:
        self.clusters = clusters
        self.access = access
        self.vault = vault
        self.preimages = preimages
        self.reporter = reporter
        self.runtime = runtime

    def run(self, job: Job, run: rotation.Run) -> rotation.Event:
        """Perform one action; a failure of it becomes ``Failed`` (the machine decides next)."""
        action = run.action
        faults.before(str(action))
        self.runtime.check_may_act(job.credential.ref, str(action))
        faults.acting(str(action))
        self.reporter.step(job, f"run:{action}", f"version {job.version}")
        try:
            if job.fsid is not None:
                check_same_cluster(
                    self.clusters.cluster(job.spec.cluster), job.fsid, job.rotation_id
                )
            self._perform(job, action)
        except (ConcurrentRotation, PromotionUnknown):
            # our claim was lost (another process owns the journal), or a promotion may have
            # landed: record nothing, leave the journal as it is for the next attempt
            raise
        except BackendError as exc:
            if job.journal is not None and exc is job.journal.failed:
                raise  # a journal write failed (seen at a barrier): nothing more may happen
            return rotation.Failed(action, exc.reason, str(exc), exc.transient)
        except PreconditionError as exc:
            return rotation.Failed(action, exc.reason, str(exc), exc.transient)
        faults.after(str(action))
        return rotation.Succeeded(action)

    def _perform(self, job: Job, action: rotation.Action) -> None:
        if action is rotation.Action.SNAPSHOT:
            self.snapshot(job)
        elif action in _NEEDS_DATA and not job.data:
            # resumed without the new version's data (its Vault version was destroyed):
            # verifying or promoting nothing would report a version that is not there
            raise PreconditionError(
                "NewVersionUnreadable", f"version {job.version} can no longer be read"
            )
        elif action is rotation.Action.APPLY:
            job.driver.apply(job.data)
        elif action is rotation.Action.VERIFY:
            self.verify(job)
        elif action is rotation.Action.PROMOTE:
            self.promote(job)
        elif action is rotation.Action.RESTORE:
            self.restore(job)
        else:  # RETIRE runs outside a rotation (engine/cephx_retirement.py)
            raise PreconditionError("Unsupported", f"{action} is not supported here")

    def snapshot(self, job: Job) -> None:
        self.preimages.capture(job)
        # the pending label is informational: best effort, and only for a rotation still under
        # way when its status is next written (a quick one moves the labels once, at Promote)
        self.move_labels(
            job,
            current=job.current_before,
            previous=job.previous_before,
            pending=job.version,
            later=True,
        )

    def verify(self, job: Job) -> None:
        mismatches = job.driver.verify(job.data)
        if mismatches:
            raise PreconditionError(
                "VerificationFailed",
                f"read-back from Ceph differs from version {job.version} for "
                + ", ".join(mismatches),
                transient=True,
            )

    def promote(self, job: Job) -> None:
        spec = job.spec
        job.driver.before_promote()
        annotations = {VERSION_ANNOTATION: str(job.version), ROTATION_ANNOTATION: job.rotation_id}
        key = (job.credential.ref.namespace, spec.secret.name)
        self.access.secret_copies.pop(key, None)
        known = self.access.secret(*key)
        try:
            written = self.access.secrets.write(
                job.credential,
                spec.secret.name,
                job.data,
                annotations=annotations,
                adopt=spec.secret.adopt,
                known=known,
                policy=secret_policy(spec),
                absent=known is None,
            )
        except BackendError as exc:
            # a cut response or a timeout may hide a write that landed: a rollback now would
            # leave the Secret with a credential Ceph no longer holds
            if not exc.transient or not self._promotion_landed(job, key, exc):
                raise
            written = None
        self.access.wrote_secret(*key)
        if written is not None:
            keep(self.access.secret_copies, key, written)
        previous = job.current_before if job.current_before != job.version else job.previous_before
        # bookkeeping after the point of no return: done alongside the final status write
        self.move_labels(
            job, current=job.version, previous=previous, pending=None, after_status=True
        )
        self.preimages.drop(job)

    def _promotion_landed(self, job: Job, key: tuple[str, str], failure: BackendError) -> bool:
        """After a Secret write failed transiently: did it land? False: it did not (a rollback
        is safe). Raises :class:`PromotionUnknown` when the Secret cannot be read either."""
        for attempt in range(PROMOTION_READS):
            try:
                found = self.access.secrets.read(*key)
            except BackendError:
                time.sleep(PROMOTION_READ_PAUSE * 2**attempt)
                continue
            annotations = found.annotations if found is not None else {}
            return (
                annotations.get(VERSION_ANNOTATION) == str(job.version)
                and annotations.get(ROTATION_ANNOTATION) == job.rotation_id
            )
        raise PromotionUnknown(
            f"the Secret write of version {job.version} failed ({failure.reason}) and the "
            f"Secret could not be read back; promoting again later"
        ) from failure

    def move_labels(
        self,
        job: Job,
        *,
        current: int | None,
        previous: int | None,
        pending: int | None,
        later: bool = False,
        after_status: bool = False,
    ) -> None:
        """Set Vault's staging labels beside the rotation (in order with each other); a
        failure is reported as an Event, not raised: the labels are informational."""
        source, vault = job.spec.source, self.vault
        if source is None or vault is None:
            return

        def move() -> None:
            try:
                vault.set_labels(
                    source.mount, source.path, current=current, previous=previous, pending=pending
                )
            except BackendError as exc:
                job.labels_stale = True
                log.warning(
                    "%s: the Vault staging labels were not moved: %s", job.credential.ref, exc
                )
                self.reporter.events.emit(
                    job.credential,
                    "Warning",
                    "VaultLabelsStale",
                    f"the Vault staging labels were not moved: {exc}",
                )

        if job.journal is not None:
            job.journal.submit(move, later=later, after_status=after_status)
        else:
            move()

    def restore(self, job: Job) -> None:
        spec = job.spec
        job.driver.restore(self.preimages.read(job))
        if job.journal is not None:
            job.journal.drain_side()  # a pending label under way lands before it is cleared
        if spec.source is not None and self.vault is not None:
            try:
                self.vault.set_labels(
                    spec.source.mount,
                    spec.source.path,
                    current=job.current_before,
                    previous=job.previous_before,
                    pending=None,
                )
            except BackendError as exc:
                log.warning("%s: clearing the pending label failed: %s", job.credential.ref, exc)
        self.preimages.drop(job)


def secret_policy(spec: CredentialSpec) -> DeletionPolicy | None:
    """How the Secret outlives its CR: a Secret that is the source is always retained; else the
    spec's choice, or None for the default (Delete if vaultbridge creates it, Retain if it
    adopts it)."""
    return "Retain" if spec.source is None else spec.secret.deletion_policy
