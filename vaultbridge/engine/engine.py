"""Drives one credential's rotation: runs the state machine's effects against the ports.

The loop is the sans-I/O pattern: ``rotation.step`` decides, this module acts and feeds the
result back. The journal is persisted to the CR status before every side effect, so a restart
resumes from it (``Engine.reconcile``). Ceph's pre-image for rollback is either the Secret's data
(the normal case: Ceph and the Secret agree before a rotation) or, when they disagree, a
"pre-image" Secret owned by the CR, written before anything touches Ceph.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from vaultbridge import rotation
from vaultbridge.engine import effects, faults
from vaultbridge.engine.annotations import ROTATION_ANNOTATION, VERSION_ANNOTATION
from vaultbridge.engine.cephx import CephxDriver, make_driver
from vaultbridge.engine.cephx_lifecycle import CephxLifecycle
from vaultbridge.engine.deletion import CephxCleanup
from vaultbridge.engine.handlers import DirectHandlers, JournalHandlers
from vaultbridge.engine.job import Job, StaleCopyError
from vaultbridge.engine.journal import Journal
from vaultbridge.engine.lanes import Timers
from vaultbridge.engine.outcome import Outcome, Result
from vaultbridge.engine.plan import plan
from vaultbridge.engine.ports import (
    CephStore,
    CephxStore,
    CredentialObject,
    CredentialRepository,
    EventRecorder,
    SecretStore,
    StoredSecret,
    VaultStore,
)
from vaultbridge.engine.preimage import PreimageStore
from vaultbridge.engine.reads import Reads, keep, resolved
from vaultbridge.engine.targets import ConfigDriver, ConfigKeyDriver, TargetDriver, holds
from vaultbridge.model.errors import BackendError, ConcurrentRotation, PreconditionError
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import (
    CephxTarget,
    ConfigKeyTarget,
    ConfigTarget,
    CredentialRef,
    CredentialSpec,
    DeletionPolicy,
    source_fields,
)
from vaultbridge.model.status import Status

__all__ = ["ROTATION_ANNOTATION", "VERSION_ANNOTATION", "Engine", "Observer"]

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")

CARRIED_OVER_FIELDS = frozenset({"user", "username", "userid", "id", "name", "entity"})


_NEEDS_DATA = frozenset({rotation.Action.APPLY, rotation.Action.VERIFY, rotation.Action.PROMOTE})


Observer = Callable[[CredentialRef, str, str], None]


def _within_read_cache(
    method: Callable[Concatenate[Engine, _P], _R],
) -> Callable[Concatenate[Engine, _P], _R]:
    """Run an entry point of the engine inside one per-rotation read cache."""

    @functools.wraps(method)
    def within(engine: Engine, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with engine._read_cache():
            return method(engine, *args, **kwargs)

    return within


class Engine:
    """Rotates credentials: Vault (or the Secret) -> Ceph -> verify -> Secret + Vault labels."""

    def __init__(
        self,
        credentials: CredentialRepository,
        secrets: SecretStore,
        events: EventRecorder,
        vault: VaultStore | None,
        ceph: CephStore,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        jitter: Callable[[], float] = random.random,
        observer: Observer | None = None,
        cephx: CephxStore | None = None,
        holder: str | None = None,
        takeover_after: timedelta = timedelta(seconds=30),
    ) -> None:
        self.credentials = credentials
        self.secrets = secrets
        self.events = events
        self.vault = vault
        self.ceph = ceph
        self.clock = clock
        self.jitter = jitter
        self.observer = observer
        # who drives the rotations this engine journals: another engine (a CLI sync, the next
        # leader) takes one over only after this one has been silent for takeover_after; a
        # rotation that takes long writes its journal again every third of that
        self.holder = holder or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.takeover_after = takeover_after
        self._local = threading.local()
        # sized for the controller's largest worker count (64): two reads and two journal
        # lanes per rotation in flight; threads are only started when there is work for them
        self._prefetch = ThreadPoolExecutor(max_workers=128, thread_name_prefix="vaultbridge-read")
        self.cephx = cephx
        self._bookkeeping = ThreadPoolExecutor(max_workers=128, thread_name_prefix="vb-journal")
        self._timers = Timers()
        # each CR as this engine last read or wrote it: a sync whose copy shows a rotation is
        # due claims it without reading the CR first, and the reads a rotation needs start
        # while the CR is read (used only if the loaded spec names the same)
        self._copies: dict[CredentialRef, CredentialObject] = {}
        # each Secret as this engine last wrote it: what a rotation from the CR's copy starts
        # with (a stale one costs the Secret write a conflict and a re-read, nothing more)
        self._secret_copies: dict[tuple[str, str], StoredSecret] = {}
        self.cleanup = CephxCleanup(credentials, events, self._cephx, jitter)
        self.cephx_lifecycle = CephxLifecycle(self)
        self.preimages = PreimageStore(secrets, self._read_secret, self._wrote_secret)

    # -- Secret reads, cached for the length of one rotation -------------------------------------

    @contextmanager
    def _read_cache(self) -> Iterator[None]:
        """One rotation reads each thing once (a nested call shares the outer cache)."""
        if self._reads() is not None:
            yield
            return
        self._local.reads = Reads()
        try:
            yield
        finally:
            self._local.reads = None

    def _reads(self) -> Reads | None:
        reads: Reads | None = getattr(self._local, "reads", None)
        return reads

    def _read_secret(self, namespace: str, name: str) -> StoredSecret | None:
        reads = self._reads()
        if reads is None:
            return self.secrets.read(namespace, name)
        cache = reads.secrets
        if (namespace, name) not in cache:
            done: Future[StoredSecret | None] = Future()
            try:
                done.set_result(self.secrets.read(namespace, name))
            except BaseException as exc:
                done.set_exception(exc)
            cache[(namespace, name)] = done
        return cache[(namespace, name)].result()

    def _prefetch_secret(self, namespace: str, name: str) -> None:
        """Start reading a Secret the rotation will need while other reads are under way."""
        reads = self._reads()
        if reads is not None and (namespace, name) not in reads.secrets:
            future = self._prefetch.submit(self.secrets.read, namespace, name)
            reads.secrets[(namespace, name)] = future

    def _load(self, ref: CredentialRef, *, read_vault: bool) -> CredentialObject:
        """Read the CR; meanwhile read what its last known spec names (Secret, latest Vault
        version): a rotation needs them next, and they do not depend on the CR's status."""
        copy = self._copies.get(ref)
        known = copy.spec if copy is not None else None
        if known is not None:
            self._prefetch_secret(ref.namespace, known.secret.name)
            reads = self._reads()
            source, vault = known.source, self.vault
            if read_vault and source and vault and reads and not known.generate:
                key = (source.mount, source.path)
                if key not in reads.latest:
                    reads.latest[key] = self._prefetch.submit(vault.read_latest, *key)
        return self._read_cr(ref)

    def _read_cr(self, ref: CredentialRef) -> CredentialObject:
        credential = self.credentials.load(ref)
        self._remember(credential)
        return credential

    def _remember(self, credential: CredentialObject) -> None:
        keep(self._copies, credential.ref, credential)

    def _save(
        self,
        credential: CredentialObject,
        status: Status,
        *,
        expect_version: str | None = None,
        job: Job | None = None,
    ) -> None:
        """Write the status over the object as this engine last saw it (a claim: as read); keep
        the object the API server returns as this engine's copy."""
        if expect_version is None:
            credential = self._copies.get(credential.ref, credential)
        try:
            saved = self.credentials.save_status(credential, status, expect_version=expect_version)
        except BaseException:
            self._copies.pop(credential.ref, None)
            raise
        if job is not None:
            job.claimed = True
        if saved is not None:
            self._remember(saved)
        else:
            self._copies.pop(credential.ref, None)

    def _wrote_secret(self, namespace: str, name: str) -> None:
        reads = self._reads()
        if reads is not None:
            reads.secrets.pop((namespace, name), None)

    # -- entry points -------------------------------------------------------------------------

    def sync(self, ref: CredentialRef, *, dry_run: bool = False) -> Outcome:
        """Propagate the latest Vault version (or the Secret's data) to Ceph now, then retire
        the earlier cephx generations whose grace has passed."""
        outcome = self._rotate(ref, generate=False, to_version=None, dry_run=dry_run)
        return outcome if dry_run else self.cephx_lifecycle.with_retirements(outcome)

    def rotate(self, ref: CredentialRef, *, dry_run: bool = False) -> Outcome:
        """A new credential now: generated into Vault when ``spec.generate``, else a sync;
        then the retirements that are due, as with :meth:`sync`."""
        outcome = self._rotate(ref, generate=None, to_version=None, dry_run=dry_run)
        return outcome if dry_run else self.cephx_lifecycle.with_retirements(outcome)

    def finalize(self, ref: CredentialRef, *, remove: bool = True) -> Outcome:
        """Finish the deletion of a CR that waits for vaultbridge (cephx ``deletionPolicy:
        Delete``): remove its entities from Ceph (unless not ``remove``), release the CR."""
        return self._finalize(self._read_cr(ref), remove=remove)

    def _finalize(self, credential: CredentialObject, *, remove: bool = True) -> Outcome:
        done = self.cleanup.finalize(credential, remove=remove)
        return Outcome(
            credential.ref,
            "finalized" if done.done else "failed",
            credential.status.current_version,
            done.message,
            reason=done.reason,
            retry_after=done.retry_after,
        )

    def rollback(self, ref: CredentialRef, *, to_version: int | None = None) -> Outcome:
        """Roll Ceph, the Secret and the labels back to an earlier verified version."""
        credential = self._read_cr(ref)
        status = credential.status
        target = to_version if to_version is not None else status.previous_version
        if credential.spec.source is None:
            return Outcome(
                ref,
                "failed",
                reason="NoVersionHistory",
                message=f"{ref}: the Secret is the source; there are no versions to roll back to",
            )
        if target is None:
            return Outcome(
                ref,
                "failed",
                reason="NoPreviousVersion",
                message=f"{ref}: no previous verified version recorded",
            )
        verified = {entry.version for entry in status.history if entry.result == "Promoted"}
        verified |= {v for v in (status.current_version, status.previous_version) if v}
        if target not in verified:
            return Outcome(
                ref,
                "failed",
                reason="VersionNotVerified",
                message=f"{ref}: version {target} was never verified here "
                f"(verified: {', '.join(map(str, sorted(verified))) or 'none'})",
            )
        return self._rotate(ref, generate=False, to_version=target, dry_run=False)

    @_within_read_cache
    def reconcile(self, ref: CredentialRef) -> Outcome:
        """What the controller calls: finish an interrupted rotation, else sync if needed."""
        copy = self._copies.get(ref)
        if copy is not None and not copy.spec.suspend:
            outcome = self._rotate_from_copy(copy)
            if outcome is not None:
                return self.cephx_lifecycle.with_retirements(outcome, copy.spec)
        credential = self._load(ref, read_vault=True)
        if credential.deleting:
            return self._finalize(credential)
        if self.cleanup.keep_finalizer(credential):
            credential = self._read_cr(ref)
        if credential.status.rotation is not None:
            return self.cephx_lifecycle.with_retirements(self.resume(credential), credential.spec)
        if credential.spec.suspend:
            return Outcome(ref, "unchanged", credential.status.current_version, "suspended")
        return self.cephx_lifecycle.with_retirements(
            self._rotate(
                ref, generate=False, to_version=None, dry_run=False, credential=credential
            ),
            credential.spec,
        )

    @_within_read_cache
    def resume(self, credential: CredentialObject) -> Outcome:
        """Continue the journaled rotation of ``credential`` after a restart."""
        journal = credential.status.rotation
        assert journal is not None
        try:
            job = self._job(credential, journal.version)
        except (BackendError, PreconditionError) as exc:
            # the new version cannot be read any more: roll back what may have been applied
            job = Job(
                credential,
                credential.spec,
                self._driver(credential.spec, credential, journal.version),
                journal.version,
                {},
            )
            log.warning(
                "%s: resuming rotation %s without its data: %s", credential.ref, journal.id, exc
            )
        job.rotation_id = journal.id
        job.stash = "unknown"
        job.current_before = credential.status.current_version
        job.previous_before = credential.status.previous_version
        return self._drive(job, credential.status, rotation.Resume())

    # -- the rotation ---------------------------------------------------------------------------

    @_within_read_cache
    def _rotate(
        self,
        ref: CredentialRef,
        *,
        generate: bool | None,
        to_version: int | None,
        dry_run: bool,
        credential: CredentialObject | None = None,
    ) -> Outcome:
        sync = to_version is None and not dry_run and generate is not True
        copy = self._copies.get(ref) if credential is None and sync else None
        if copy is not None and (generate is False or not copy.spec.generate):
            outcome = self._rotate_from_copy(copy)
            if outcome is not None:
                return outcome
        if credential is None:
            credential = self._load(ref, read_vault=sync and generate is False)
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
            credential = self._read_cr(ref)
        spec = credential.spec
        self._prefetch_secret(ref.namespace, spec.secret.name)  # overlaps the Vault reads
        resumed: Outcome | None = None
        if credential.status.rotation is not None and not dry_run:
            resumed = self.resume(credential)
            if not resumed.ok and resumed.result != "rolled-back":
                return resumed  # still cannot finish it: Ceph may hold either version
            # finished, or rolled back to the pre-image: this request starts afresh
            credential = self._read_cr(ref)
        if generate is None:
            generate = spec.generate
        if dry_run:
            try:
                return plan(self, credential, generate=generate, to_version=to_version)
            except (BackendError, PreconditionError) as exc:
                return self._blocked(credential, exc)
        return self._start(credential, resumed, generate=generate, to_version=to_version)

    def _start(
        self,
        credential: CredentialObject,
        resumed: Outcome | None,
        *,
        generate: bool,
        to_version: int | None,
    ) -> Outcome:
        """Decide the version, and rotate to it unless Ceph and the Secret already hold it."""
        ref = credential.ref
        try:
            adopted = None if to_version is not None else self.cephx_lifecycle.adopt(credential)
            if adopted is not None:
                version, entity = adopted
            else:
                version = self._target_version(credential, generate=generate, to_version=to_version)
                entity = None
            job = self._job(credential, version, entity=entity)
            self._check_secret_ownership(credential)
            if self._in_sync(job):
                self._clear_failure(credential)
                self.cephx_lifecycle.check_caps(job)
                if resumed is not None and resumed.result == "promoted":
                    return resumed  # this request finished the rotation that was in flight
                return Outcome(
                    ref, "unchanged", version, f"{ref}: version {version} is live and verified"
                )
            if isinstance(job.driver, CephxDriver):
                job.driver.check_new()
        except (BackendError, PreconditionError) as exc:
            return self._blocked(credential, exc)
        job.rotation_id = uuid.uuid4().hex[:12]
        job.current_before = credential.status.current_version
        job.previous_before = credential.status.previous_version
        start = rotation.Start(
            job.rotation_id, version, getattr(job.driver, "journal_entity", None)
        )
        outcome = self._drive(job, credential.status, start)
        if outcome.result == "promoted" and isinstance(job.driver, CephxDriver):
            self.cephx_lifecycle.after_promotion(job, job.driver, credential.status, outcome)
        return outcome

    def _rotate_from_copy(self, copy: CredentialObject) -> Outcome | None:
        """Sync from this engine's copy of the CR, without reading it first.

        Taken only when the copy shows a rotation is due: a Vault-sourced config or config-key
        credential with no rotation in flight, whose latest Vault version is not the current
        one. The claim validates the copy: it carries the copy's resourceVersion, which the API
        server refuses if the CR changed since, before anything is done. Returns None when the
        copy does not show a rotation is due or was stale: the caller reads the CR and decides
        afresh (reusing the reads made here).
        """
        spec = copy.spec
        if (
            copy.status.rotation is not None
            or spec.source is None
            or isinstance(spec.target, CephxTarget)
        ):
            return None
        ref = copy.ref
        key = (ref.namespace, spec.secret.name)
        secret = self._secret_copies.get(key)
        reads = self._reads()
        if secret is None:
            self._prefetch_secret(*key)
        try:
            version = self._target_version(copy, generate=False, to_version=None)
            if version == copy.status.current_version:
                self._reuse_latest(spec.source.mount, spec.source.path, version)
                return None
            if secret is not None and reads is not None:
                # only for the rotation: a drift check must see the Secret as it is now
                reads.secrets[key] = resolved(secret)
            job = self._job(copy, version)
            self._check_secret_ownership(copy)
        except (BackendError, PreconditionError):
            if secret is not None and reads is not None:
                reads.secrets.pop(key, None)
            return None  # the fresh read decides, and reports it
        job.from_copy = True
        job.rotation_id = uuid.uuid4().hex[:12]
        job.current_before = copy.status.current_version
        job.previous_before = copy.status.previous_version
        try:
            return self._drive(job, copy.status, rotation.Start(job.rotation_id, version, None))
        except StaleCopyError:
            self._copies.pop(ref, None)
            self._secret_copies.pop(key, None)
            if reads is not None:  # the fresh attempt reads the Secret again
                reads.secrets.pop(key, None)
            return None

    def forget(self, ref: CredentialRef) -> None:
        """Drop this engine's copies of ``ref``'s CR and Secret: its next sync reads both first
        (the controller calls this when the CR is deleted)."""
        copy = self._copies.pop(ref, None)
        if copy is not None:
            self._secret_copies.pop((ref.namespace, copy.spec.secret.name), None)

    def _reuse_latest(self, mount: str, path: str, version: int) -> None:
        """Let the fresh read that follows use the latest Vault version just read."""
        reads = self._reads()
        if reads is not None and (mount, path, version) in reads.vault:
            reads.latest[(mount, path)] = resolved((version, reads.vault[(mount, path, version)]))

    def _drive(self, job: Job, status: Status, event: rotation.Event) -> Outcome:
        credential = job.credential
        ref = credential.ref
        try:
            with Journal(self._bookkeeping, self._timers) as journal:
                job.journal = journal
                journal.keep_alive(self.takeover_after.total_seconds() / 3, self._heartbeat)
                handlers = JournalHandlers(self, job, journal, credential.resource_version or None)
                applied = effects.drive(status, event, lambda: self._context(credential), handlers)
                if applied.held is not None:
                    return self._held_elsewhere(credential, applied.held)
            self._observe_step(job, None)
        except BackendError as exc:
            if job.from_copy and not job.claimed:  # a stale copy (or the CR is gone): nothing
                raise StaleCopyError from exc  # was done, and a fresh read says what holds
            if not isinstance(exc, ConcurrentRotation):
                raise
            self._observe(ref, "RotationInFlight", str(exc))
            return Outcome(
                ref,
                "in-flight",
                credential.status.current_version,
                str(exc),
                reason="RotationInFlight",
            )
        return self._outcome(ref, applied.status, job, applied.retry_after)

    def _heartbeat(self, save_args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The arguments of a status write, with the journal's heartbeat set to now (None when
        no rotation is in flight any more)."""
        credential, status = save_args
        if status.rotation is None:
            return None
        return credential, replace(
            status, rotation=status.rotation.held_by(self.holder, self.clock())
        )

    def _held_elsewhere(
        self, credential: CredentialObject, held: rotation.HeldElsewhere
    ) -> Outcome:
        seconds = held.delay.total_seconds()
        message = (
            f"{credential.ref}: rotation {held.rotation_id} is in flight in {held.holder}; it is "
            f"taken over if that stays silent for {seconds:.0f} s more"
        )
        self._observe(credential.ref, "RotationInFlight", message)
        return Outcome(
            credential.ref,
            "in-flight",
            credential.status.current_version,
            message,
            reason="RotationInFlight",
            retry_after=held.delay,
        )

    def _run(self, job: Job, run: rotation.Run) -> rotation.Event:
        action = run.action
        self._observe_step(job, f"run:{action}", f"version {job.version}")
        try:
            if action is rotation.Action.SNAPSHOT:
                self._snapshot(job)
            elif action in _NEEDS_DATA and not job.data:
                # resumed without the new version's data (its Vault version was destroyed):
                # verifying or promoting nothing would report a version that is not there
                raise PreconditionError(
                    "NewVersionUnreadable", f"version {job.version} can no longer be read"
                )
            elif action is rotation.Action.APPLY:
                job.driver.apply(job.data)
            elif action is rotation.Action.VERIFY:
                self._verify(job)
            elif action is rotation.Action.PROMOTE:
                self._promote(job)
            elif action is rotation.Action.RESTORE:
                self._restore(job)
            else:  # RETIRE belongs to cephx alternate rotation
                raise PreconditionError("Unsupported", f"{action} is not supported here")
        except ConcurrentRotation:
            raise  # our claim was lost: record nothing, another process owns the journal
        except BackendError as exc:
            if job.journal is not None and exc is job.journal.failed:
                raise  # a journal write failed (seen at a barrier): nothing more may happen
            return rotation.Failed(action, exc.reason, str(exc), exc.transient)
        except PreconditionError as exc:
            return rotation.Failed(action, exc.reason, str(exc), exc.transient)
        faults.after(str(action))
        return rotation.Succeeded(action)

    # -- actions ---------------------------------------------------------------------------------

    def _snapshot(self, job: Job) -> None:
        self.preimages.capture(job)
        # the pending label is informational: best effort, and only for a rotation still under
        # way when its status is next written (a quick one moves the labels once, at Promote)
        self._move_labels(
            job,
            current=job.current_before,
            previous=job.previous_before,
            pending=job.version,
            later=True,
        )

    def _verify(self, job: Job) -> None:
        mismatches = job.driver.verify(job.data)
        if mismatches:
            raise PreconditionError(
                "VerificationFailed",
                f"read-back from Ceph differs from version {job.version} for "
                + ", ".join(mismatches),
                transient=True,
            )

    def _promote(self, job: Job) -> None:
        spec = job.spec
        before_promote = getattr(job.driver, "before_promote", None)
        if before_promote is not None:
            before_promote()  # cephx pending keys: commit-pending
        annotations = {VERSION_ANNOTATION: str(job.version), ROTATION_ANNOTATION: job.rotation_id}
        key = (job.credential.ref.namespace, spec.secret.name)
        self._secret_copies.pop(key, None)
        written = self.secrets.write(
            job.credential,
            spec.secret.name,
            job.data,
            annotations=annotations,
            adopt=spec.secret.adopt,
            known=self._read_secret(*key),
            policy=secret_policy(spec),
        )
        self._wrote_secret(*key)
        if written is not None:
            keep(self._secret_copies, key, written)
        previous = job.current_before if job.current_before != job.version else job.previous_before
        # bookkeeping after the point of no return: done alongside the final status write
        self._move_labels(
            job, current=job.version, previous=previous, pending=None, after_status=True
        )
        self.preimages.drop(job)

    def _move_labels(
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
                log.warning(
                    "%s: the Vault staging labels were not moved: %s", job.credential.ref, exc
                )
                self.events.emit(
                    job.credential,
                    "Warning",
                    "VaultLabelsStale",
                    f"the Vault staging labels were not moved: {exc}",
                )

        if job.journal is not None:
            job.journal.submit(move, later=later, after_status=after_status)
        else:
            move()

    def _restore(self, job: Job) -> None:
        spec = job.spec
        preimage = self.preimages.read(job)
        job.driver.restore(preimage)
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

    # -- reading the desired state ---------------------------------------------------------------

    def _driver(
        self,
        spec: CredentialSpec,
        credential: CredentialObject | None = None,
        version: int | None = None,
        *,
        entity: str | None = None,
    ) -> TargetDriver:
        target = spec.target
        if isinstance(target, ConfigTarget):
            return ConfigDriver(spec, target, self.ceph)
        if isinstance(target, ConfigKeyTarget):
            return ConfigKeyDriver(spec, target, self.ceph)
        assert isinstance(target, CephxTarget)
        status = credential.status if credential is not None else None
        return make_driver(spec, target, self._cephx(), status, version, entity=entity)

    def _target_version(
        self, credential: CredentialObject, *, generate: bool, to_version: int | None
    ) -> int:
        spec = credential.spec
        if spec.source is None:
            current = credential.status.current_version or 0
            return current if self._secret_matches_ceph(credential) else current + 1
        vault = self._vault()
        if to_version is not None:
            return to_version
        if generate:
            return self._generate(credential)
        # one request for the number and the data; the job reads the data from the cache
        reads = self._reads()
        started = reads.latest.pop((spec.source.mount, spec.source.path), None) if reads else None
        if started is not None:
            version, data = started.result()  # started while the CR was read
        else:
            version, data = vault.read_latest(spec.source.mount, spec.source.path)
        if reads is not None:
            reads.vault[(spec.source.mount, spec.source.path, version)] = data
        return version

    def _generate(self, credential: CredentialObject) -> int:
        spec = credential.spec
        assert spec.source is not None
        vault = self._vault()
        try:
            current = vault.current_version(spec.source.mount, spec.source.path)
            existing = dict(vault.read(spec.source.mount, spec.source.path, current))
        except BackendError as exc:
            if exc.reason != "VaultNotFound":
                raise
            current, existing = 0, {}
        data = dict(existing)
        if isinstance(spec.target, CephxTarget):
            data[spec.source.field] = self.cephx_lifecycle.new_key(spec, spec.target)
        for name in source_fields(spec) if not isinstance(spec.target, CephxTarget) else ():
            if name.lower() in CARRIED_OVER_FIELDS and name in existing:
                continue
            data[name] = vault.generate_password()
        version = vault.write(spec.source.mount, spec.source.path, data, cas=current)
        self._observe(credential.ref, "generated", f"new Vault version {version}")
        return version

    def _job(self, credential: CredentialObject, version: int, *, entity: str | None = None) -> Job:
        spec = credential.spec
        driver = self._driver(spec, credential, version, entity=entity)
        if spec.source is None:
            secret = self._read_secret(credential.ref.namespace, spec.secret.name)
            if secret is None:
                raise PreconditionError(
                    "SecretMissing",
                    f"Secret {credential.ref.namespace}/{spec.secret.name} "
                    "does not exist (it is the source of this credential)",
                )
            where = f"Secret {credential.ref.namespace}/{spec.secret.name}"
            data = self._pick(secret.data, driver, where)
            if isinstance(driver, CephxDriver):
                driver.check_secret_data(data, where)
        else:
            reads = self._reads()
            source = (
                reads.vault.get((spec.source.mount, spec.source.path, version)) if reads else None
            )
            if source is None:
                source = self._vault().read(spec.source.mount, spec.source.path, version)
            where = f"Vault {spec.source.mount}/{spec.source.path} version {version}"
            missing = [name for name in source_fields(spec) if name not in source]
            if missing:
                raise PreconditionError(
                    "VaultFieldMissing",
                    f"{where}: field {', '.join(map(repr, missing))} "
                    f"missing (fields present: {', '.join(sorted(source)) or 'none'})",
                )
            data = driver.data_from_source(source)
        return Job(credential, spec, driver, version, data)

    @staticmethod
    def _pick(
        data: Mapping[str, Sensitive], driver: TargetDriver, where: str
    ) -> dict[str, Sensitive]:
        keys = driver.data_keys()
        missing = [key for key in keys if key not in data]
        if missing:
            raise PreconditionError(
                "SecretKeyMissing",
                f"{where}: data key {', '.join(map(repr, missing))} missing "
                f"(keys present: {', '.join(sorted(data)) or 'none'})",
            )
        return {key: data[key] for key in keys}

    def _secret_matches_ceph(self, credential: CredentialObject) -> bool:
        job = self._job(credential, credential.status.current_version or 0)
        return holds(job.driver.read(), job.driver.slots(), job.data)

    def _in_sync(self, job: Job) -> bool:
        status = job.credential.status
        if status.current_version != job.version:
            return False
        if not holds(job.driver.read(), job.driver.slots(), job.data):
            return False
        if job.spec.source is None:
            return True
        secret = self._read_secret(job.credential.ref.namespace, job.spec.secret.name)
        return secret is not None and all(secret.data.get(k) == v for k, v in job.data.items())

    def _check_secret_ownership(self, credential: CredentialObject) -> None:
        spec = credential.spec
        secret = self._read_secret(credential.ref.namespace, spec.secret.name)
        if secret is None or spec.secret.adopt or secret.controller_uid == credential.uid:
            return
        owner = secret.controller_uid or "no controller"
        raise PreconditionError(
            "SecretNotOwned",
            f"Secret {credential.ref.namespace}/{spec.secret.name} exists and is not owned by "
            f"this CredentialRotation (controller: {owner}); set spec.secret.adopt: true to "
            "take it over",
            transient=False,
        )

    def _vault(self) -> VaultStore:
        if self.vault is None:
            raise PreconditionError(
                "VaultNotConfigured",
                "this credential reads Vault, but no "
                "Vault connection is configured (VAULTBRIDGE_VAULT__ADDR)",
            )
        return self.vault

    # -- cephx: keys, adoption, caps drift, retirement -------------------------------------------

    def _cephx(self) -> CephxStore:
        if self.cephx is None:
            raise PreconditionError(
                "CephNotConfigured", "cephx targets need a Ceph connection (VAULTBRIDGE_CEPH__*)"
            )
        return self.cephx

    def retire_due(self, ref: CredentialRef) -> Outcome:
        """Retire the earlier cephx generations whose grace has passed (see ``cephx_lifecycle``)."""
        return self.cephx_lifecycle.retire_due(ref)

    # -- dry run ------------------------------------------------------------------------------

    # -- reporting -----------------------------------------------------------------------------

    def _context(self, credential: CredentialObject) -> rotation.Context:
        target = credential.spec.target
        alternate = isinstance(target, CephxTarget) and target.strategy == "alternate"
        return rotation.Context(
            now=self.clock(),
            generation=credential.generation,
            history_limit=credential.spec.history_limit,
            jitter=self.jitter(),
            retire_after=target.retire_after if alternate else None,  # type: ignore[union-attr]
            keep_prior=target.keep_prior if alternate else 1,  # type: ignore[union-attr]
            holder=self.holder,
            takeover_after=self.takeover_after,
        )

    def _blocked(
        self, credential: CredentialObject, exc: BackendError | PreconditionError
    ) -> Outcome:
        reason = exc.reason
        transient = exc.transient
        status, blocked = rotation.blocked(
            credential.status, reason, str(exc), transient, self._context(credential)
        )
        retry_after = effects.apply(blocked, status, DirectHandlers(self, credential)).retry_after
        return Outcome(
            credential.ref,
            "failed",
            credential.status.current_version,
            str(exc),
            reason=reason,
            retry_after=retry_after,
        )

    def _clear_failure(self, credential: CredentialObject) -> None:
        status, effects = rotation.in_sync(credential.status, self._context(credential))
        if status != credential.status and effects:
            self._save(credential, status)

    def _outcome(
        self, ref: CredentialRef, status: Status, job: Job, retry_after: timedelta | None
    ) -> Outcome:
        if (
            status.rotation is None
            and status.current_version == job.version
            and (
                status.history
                and status.history[0].rotation_id == job.rotation_id
                and status.history[0].result == "Promoted"
            )
        ):
            return Outcome(
                ref,
                "promoted",
                job.version,
                f"{ref}: version {job.version} applied, verified and promoted",
            )
        last = status.history[0] if status.history else None
        reason = (last.reason if last else "") or "RotationFailed"
        message = (last.message if last else "") or f"{ref}: rotation did not complete"
        result: Result = "rolled-back" if status.phase == "RolledBack" else "failed"
        if status.rotation is not None:
            reason = status.rotation.reason or reason
            message = status.rotation.message or message
        return Outcome(
            ref, result, status.current_version, message, reason=reason, retry_after=retry_after
        )

    def _observe_step(self, job: Job, what: str | None, detail: str = "") -> None:
        """Tell the observer of a step, once the rotation's claim is known to stand (a
        rotation from a copy may be refused at its claim: then it never happened)."""
        if what is not None:
            job.unconfirmed.append((what, detail))
        if job.from_copy and not job.claimed and what is not None:
            return
        held, job.unconfirmed = job.unconfirmed, []
        for reason, message in held:
            self._observe(job.credential.ref, reason, message)

    def _observe(self, ref: CredentialRef, what: str, detail: str) -> None:
        if self.observer is not None:
            self.observer(ref, what, detail)


def secret_policy(spec: CredentialSpec) -> DeletionPolicy | None:
    """How the Secret outlives its CR: a Secret that is the source is always retained; else the
    spec's choice, or None for the default (Delete if vaultbridge creates it, Retain if it
    adopts it)."""
    return "Retain" if spec.source is None else spec.secret.deletion_policy
