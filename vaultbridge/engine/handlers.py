"""The effect handlers of ``engine.effects``: inside a rotation (statuses and Events through the
journal's write-behind queue, actions by ``engine.actions``) and outside one (one write each)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from vaultbridge import rotation
from vaultbridge.engine.access import Access
from vaultbridge.engine.job import Job
from vaultbridge.engine.journal import Journal, StatusWrite
from vaultbridge.engine.ports import CredentialObject
from vaultbridge.engine.report import Reporter
from vaultbridge.model.status import Status

# Actions that may run while the journal write before them is still in flight. SNAPSHOT and
# VERIFY only read (a pre-image Secret SNAPSHOT may write waits for the claim itself). PROMOTE
# is safe too: until the Secret is written the journal at Pending, Applied or Verified all
# resume by re-applying (idempotent), re-verifying and promoting again. APPLY, RESTORE and
# RETIRE wait: their journal step must be durable first.
OVERLAPPING_ACTIONS = frozenset(
    {rotation.Action.SNAPSHOT, rotation.Action.VERIFY, rotation.Action.PROMOTE}
)

RunAction = Callable[[Job, rotation.Run], rotation.Event]


@dataclass
class JournalHandlers:
    """A rotation's effects: statuses and Events through the journal, actions by ``run``."""

    job: Job
    journal: Journal
    reporter: Reporter
    run_action: RunAction
    # the first status write claims the rotation: it fails if another process changed the CR
    # since it was read, so two never run at once
    claim: str | None

    def persist(self, status: Status) -> None:
        self.journal.submit_status(StatusWrite(self.job.credential, status, self.claim))
        self.claim = None

    def emit(self, type: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        send = functools.partial(self.reporter.events.emit, self.job.credential)
        self.journal.event(send, type, reason, message)
        self.reporter.step(self.job, reason, message)

    def run(self, effect: rotation.Run) -> rotation.Event | None:
        if effect.action not in OVERLAPPING_ACTIONS:
            # durable before a side effect; Vault's pending label is informational and may
            # land while Ceph is written
            self.journal.barrier(bookkeeping=effect.action is not rotation.Action.APPLY)
        return self.run_action(self.job, effect)


@dataclass
class DirectHandlers:
    """Effects outside a rotation (a retirement, a failure before one): one write each."""

    access: Access
    reporter: Reporter
    credential: CredentialObject
    retire: Callable[[str], str | None] | None = None
    retired: list[str] = field(default_factory=list)

    def persist(self, status: Status) -> None:
        self.access.save(self.credential, status)

    def emit(self, type: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.reporter.event(self.credential, type, reason, message)

    def run(self, effect: rotation.Run) -> rotation.Event | None:
        if self.retire is None or effect.entity is None:
            return None
        why = self.retire(effect.entity)
        if why is not None:
            return rotation.RetireBlocked(effect.entity, why)
        self.retired.append(effect.entity)
        return rotation.Retired(effect.entity)
