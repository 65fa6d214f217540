"""Runs one rotation under its journal: the effects loop (``engine/effects.py``) with the
journal's handlers, and what the loop's end means as an :class:`Outcome`. Also the two ways a
credential's status changes outside a rotation: a failure before one starts, and clearing a
failure once Ceph is found in sync."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

from vaultbridge import rotation
from vaultbridge.engine import effects
from vaultbridge.engine.access import Access
from vaultbridge.engine.actions import RotationActions
from vaultbridge.engine.handlers import DirectHandlers, JournalHandlers
from vaultbridge.engine.job import Job, StaleCopyError
from vaultbridge.engine.journal import Journal, StatusWrite
from vaultbridge.engine.lanes import Timers
from vaultbridge.engine.lifecycle import Kinds
from vaultbridge.engine.outcome import Outcome, Result
from vaultbridge.engine.ports import CredentialObject
from vaultbridge.engine.report import Reporter
from vaultbridge.engine.runtime import Runtime
from vaultbridge.model.errors import BackendError, ConcurrentRotation, PreconditionError
from vaultbridge.model.status import Status
from vaultbridge.rotation.timing import DEFAULT_BACKOFF_BASE


class Runner:
    def __init__(
        self,
        access: Access,
        actions: RotationActions,
        kinds: Kinds,
        reporter: Reporter,
        runtime: Runtime,
    ) -> None:
        self.access = access
        self.actions = actions
        self.kinds = kinds
        self.reporter = reporter
        self.runtime = runtime
        # two journal lanes per rotation in flight, for the controller's largest worker count
        # (64); threads are only started when there is work for them
        self._bookkeeping = ThreadPoolExecutor(max_workers=128, thread_name_prefix="vb-journal")
        self._timers = Timers()

    def context(self, credential: CredentialObject) -> rotation.Context:
        return self.runtime.context(
            credential, self.kinds.of(credential.spec).retention(credential.spec)
        )

    def drive(self, job: Job, status: Status, event: rotation.Event) -> Outcome:
        """Step the machine from ``event`` until the rotation ends (or stops: held, failed)."""
        credential = job.credential
        try:
            with Journal(self._bookkeeping, self._timers, self._saver(job)) as journal:
                job.journal = journal
                journal.keep_alive(self.runtime.takeover_after.total_seconds() / 3, self._beat)
                handlers = JournalHandlers(
                    job,
                    journal,
                    self.reporter,
                    self.actions.run,
                    credential.resource_version or None,
                )
                applied = effects.drive(status, event, lambda: self.context(credential), handlers)
                if applied.held is not None:
                    return self._held_elsewhere(credential, applied.held)
            self.reporter.step(job, None)
        except BackendError as exc:
            if job.from_copy and not job.claimed:  # a stale copy (or the CR is gone): nothing
                raise StaleCopyError from exc  # was done, and a fresh read says what holds
            if not isinstance(exc, ConcurrentRotation):
                raise
            self.reporter.observe(credential.ref, "RotationInFlight", str(exc))
            return Outcome(
                credential.ref,
                "in-flight",
                credential.status.current_version,
                str(exc),
                reason="RotationInFlight",
            )
        return outcome_of(job, applied.status, applied.retry_after)

    def _saver(self, job: Job) -> Callable[[StatusWrite], None]:
        def save(write: StatusWrite) -> None:
            self.access.save(write.credential, write.status, expect_version=write.expect_version)
            job.claimed = True

        return save

    def _beat(self, write: StatusWrite) -> StatusWrite | None:
        """The status write again, with the journal's heartbeat set to now (None when no
        rotation is in flight any more)."""
        journal = write.status.rotation
        if journal is None:
            return None
        beat = journal.held_by(self.runtime.holder, self.runtime.clock())
        return replace(write, status=replace(write.status, rotation=beat))

    def _held_elsewhere(
        self, credential: CredentialObject, held: rotation.HeldElsewhere
    ) -> Outcome:
        seconds = held.delay.total_seconds()
        message = (
            f"{credential.ref}: rotation {held.rotation_id} is in flight in {held.holder}; it is "
            f"taken over if that stays silent for {seconds:.0f} s more"
        )
        self.reporter.observe(credential.ref, "RotationInFlight", message)
        return Outcome(
            credential.ref,
            "in-flight",
            credential.status.current_version,
            message,
            reason="RotationInFlight",
            retry_after=held.delay,
        )

    def blocked(
        self, credential: CredentialObject, exc: BackendError | PreconditionError
    ) -> Outcome:
        """Record a failure before a rotation could start (status, Event, backoff)."""
        status, blocked = rotation.blocked(
            credential.status, exc.reason, str(exc), exc.transient, self.context(credential)
        )
        handlers = DirectHandlers(self.access, self.reporter, credential)
        retry_after = effects.apply(blocked, status, handlers).retry_after
        return Outcome(
            credential.ref,
            "failed",
            credential.status.current_version,
            str(exc),
            reason=exc.reason,
            retry_after=retry_after,
        )

    def clear_failure(self, credential: CredentialObject) -> None:
        status, changes = rotation.in_sync(credential.status, self.context(credential))
        if status != credential.status and changes:
            self.access.save(credential, status)


def outcome_of(job: Job, status: Status, retry_after: timedelta | None) -> Outcome:
    """What the rotation ended in, from the status it left."""
    ref = job.credential.ref
    last = status.history[0] if status.history else None
    if (
        status.rotation is None
        and status.current_version == job.version
        and last is not None
        and last.rotation_id == job.rotation_id
        and last.result == "Promoted"
    ):
        return Outcome(
            ref,
            "promoted",
            job.version,
            f"{ref}: version {job.version} applied, verified and promoted",
            # a sync then sets the Vault labels this promotion could not move (engine/labels.py)
            retry_after=DEFAULT_BACKOFF_BASE if job.labels_stale else None,
        )
    reason = (last.reason if last else "") or "RotationFailed"
    message = (last.message if last else "") or f"{ref}: rotation did not complete"
    result: Result = "rolled-back" if status.phase == "RolledBack" else "failed"
    if status.rotation is not None:
        reason = status.rotation.reason or reason
        message = status.rotation.message or message
    return Outcome(
        ref, result, status.current_version, message, reason=reason, retry_after=retry_after
    )
