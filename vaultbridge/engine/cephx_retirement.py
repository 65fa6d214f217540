"""The retirement of earlier cephx generations (alternate strategy): each is removed once its
grace (``retireAfter``) has passed and no mon lists a session for it; one still in use is kept
(RetireBlocked: status + Event) and tried again later."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from vaultbridge import rotation
from vaultbridge.engine import effects
from vaultbridge.engine.access import Access
from vaultbridge.engine.handlers import DirectHandlers
from vaultbridge.engine.outcome import Outcome, earliest
from vaultbridge.engine.ports import CredentialObject
from vaultbridge.engine.report import Reporter
from vaultbridge.engine.runtime import Runtime
from vaultbridge.model.errors import BackendError, PreconditionError

if TYPE_CHECKING:
    from vaultbridge.engine.cephx_lifecycle import CephxLifecycle

log = logging.getLogger(__name__)


class CephxRetirement:
    def __init__(
        self, lifecycle: CephxLifecycle, access: Access, reporter: Reporter, runtime: Runtime
    ) -> None:
        self.lifecycle = lifecycle
        self.access = access
        self.reporter = reporter
        self.runtime = runtime

    def retire_due(self, credential: CredentialObject) -> Outcome:
        """Retire the generations whose grace has passed; ``retry_after``: when the next is due."""
        ref, status, spec = credential.ref, credential.status, credential.spec
        if not status.retiring or status.rotation:
            return Outcome(ref, "unchanged", status.current_version, "nothing to retire")
        driver = self.lifecycle.driver(spec, status)
        handlers = DirectHandlers(self.access, self.reporter, credential, retire=driver.retire)
        retention = self.lifecycle.retention(spec)
        retry_after: timedelta | None = None
        for entity in rotation.due_retirements(status, self.runtime.clock()):
            if entity == status.current_entity:
                continue
            applied = effects.drive(
                status,
                rotation.RetireDue(entity),
                lambda: self.runtime.context(credential, retention),
                handlers,
            )
            status, retry_after = applied.status, earliest(retry_after, applied.retry_after)
        retry_after = earliest(
            retry_after, rotation.next_retirement_wake(status, self.runtime.clock())
        )
        retired = handlers.retired
        return Outcome(
            ref,
            "unchanged",
            status.current_version,
            f"retired {', '.join(retired)}" if retired else "nothing retired",
            retry_after=retry_after,
        )

    def settle(self, outcome: Outcome) -> Outcome:
        """After a reconcile, sync or rotate: retire what is due, and wake up when the next one
        is. Decided on the engine's copy of the CR (as its last write returned it), so a
        rotation that retires nothing costs no extra request; a retirement reads it afresh."""
        try:
            credential = self.access.copies.get(outcome.ref) or self.access.read_cr(outcome.ref)
        except (BackendError, PreconditionError):
            return outcome
        status = credential.status
        if not status.retiring:
            return outcome
        now = self.runtime.clock()
        if not any(e != status.current_entity for e in rotation.due_retirements(status, now)):
            outcome.retry_after = earliest(
                outcome.retry_after, rotation.next_retirement_wake(status, now)
            )
            return outcome
        try:
            retired = self.retire_due(self.access.read_cr(outcome.ref))
        except (BackendError, PreconditionError) as exc:
            log.warning("%s: retirement check failed: %s", outcome.ref, exc)
            return outcome
        outcome.retry_after = earliest(outcome.retry_after, retired.retry_after)
        return outcome
