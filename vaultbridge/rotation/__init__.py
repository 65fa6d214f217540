"""The rotation state machine (docs/design.md, "The rotation protocol"), without any I/O.

``step(status, event, ctx) -> (status, effects)`` is a pure function. The engine performs the
effects in order: ``Persist`` (write the status now), ``Emit`` (a Kubernetes Event),
``Run(action, version, entity)`` (an I/O action, always the last effect, at most one) and
``RetryAfter(delay)``; it feeds the result of each ``Run`` back as exactly one event.
``HeldElsewhere(holder, id, delay)`` (alone) means: another engine drives this rotation; do
nothing now.

Every journal written names its ``holder`` (the engine driving it, ``Context.holder``) and a
``heartbeat`` (``ctx.now``). An engine resumes a journal held by another only once that holder
has been silent for ``Context.takeover_after``: two engines never drive one rotation at once
(the holder keeps its heartbeat fresh while a step takes long). A journal with no holder (a
failed rollback, which releases it) may be resumed by anyone at once.

The journal (``status.rotation``) decides which events are valid; ``status.phase`` is for users.
A journal step change is always persisted before the ``Run`` that follows it.

Transition table (journal step -> event -> phase, journal, effects)::

  no journal   Start(id, v, entity)  -> Pending, journal Pending (attempt 1), pendingVersion=v,
                                        Rotating=True; Persist, Emit RotationStarted, Run SNAPSHOT
  no journal   Resume                -> unchanged, no effects
  any journal  Start                 -> unchanged; Emit Warning RotationInFlight
  Pending      Succeeded(SNAPSHOT)   -> unchanged; Run APPLY (SNAPSHOT is not journaled; a
                                        resumed Pending step snapshots again, which the engine
                                        must make idempotent: keep the first snapshot)
  Pending      Succeeded(APPLY)      -> Applied, journal Applied; Persist, Emit, Run VERIFY
  Pending      Failed(SNAPSHOT)      -> (attempt 1 only: nothing touched yet) Failed, journal
                                        cleared, history Failed, Ready=False, Degraded=True,
                                        failures+1; Persist, Emit Warning, RetryAfter (only if
                                        transient). After a Resume (attempt > 1) APPLY may
                                        already have run, so it rolls back like the next row.
  Pending      Failed(APPLY)         -> phase kept, journal RollingBack (+reason); Persist,
  Applied      Failed(VERIFY)           Emit Warning, Run RESTORE
  Verified     Failed(PROMOTE)
  Applied      Succeeded(VERIFY)     -> Verified, journal Verified, lastVerifiedTime; Persist,
                                        Emit, Run PROMOTE
  Verified     Succeeded(PROMOTE)    -> Promoted (Retiring if an earlier cephx entity waits),
                                        current=v, previous=old current, journal cleared,
                                        history Promoted, Ready=True, Rotating=False,
                                        Degraded=False, failures=0; Persist, Emit Promoted
  RollingBack  Succeeded(RESTORE)    -> RolledBack, journal cleared, versions unchanged,
                                        history RolledBack (original reason), Ready=False,
                                        Degraded=True, failures+1; Persist, Emit Warning,
                                        RetryAfter (only if the original failure was transient)
  RollingBack  Failed(RESTORE)       -> Failed, journal KEPT, Degraded=True RollbackFailed,
                                        failures+1; Persist, Emit Warning, RetryAfter (always)
  any journal  Resume                -> attempt+1, holder=ctx.holder; Persist, Emit
                                        RotationResumed, Run the step's action (Pending:
                                        SNAPSHOT, Applied: VERIFY, Verified: PROMOTE,
                                        RollingBack: RESTORE)
  journal held Resume                -> unchanged; HeldElsewhere(holder, id, delay) when the
  by another                            holder's heartbeat is younger than takeover_after
                                        (delay: what remains of it)
  any          RetireDue(e)          -> unchanged; Run RETIRE(e)      (e retiring and due)
  any          Retired(e)            -> e removed (Retiring -> Promoted when none left);
                                        Persist, Emit Retired
  any          RetireBlocked(e, why) -> e kept with blockedReason; Persist, Emit Warning,
                                        RetryAfter(delay, entity=e)

Every other combination raises ``InvalidTransition`` (for example ``Succeeded(VERIFY)`` at step
Pending, any ``Succeeded``/``Failed`` without a journal, ``Succeeded/Failed(RETIRE)``: RETIRE
reports back as ``Retired``/``RetireBlocked``).
"""

from vaultbridge.rotation.events import (
    Action,
    Effect,
    Emit,
    Event,
    Failed,
    HeldElsewhere,
    Persist,
    Resume,
    RetireBlocked,
    Retired,
    RetireDue,
    RetryAfter,
    Run,
    Start,
    Succeeded,
)
from vaultbridge.rotation.machine import (
    RESUME_ACTIONS,
    Context,
    InvalidTransition,
    blocked,
    in_sync,
    step,
)
from vaultbridge.rotation.timing import (
    backoff_delay,
    compliance,
    due_retirements,
    next_retirement_wake,
)

__all__ = [
    "RESUME_ACTIONS",
    "Action",
    "Context",
    "Effect",
    "Emit",
    "Event",
    "Failed",
    "HeldElsewhere",
    "InvalidTransition",
    "Persist",
    "Resume",
    "RetireBlocked",
    "RetireDue",
    "Retired",
    "RetryAfter",
    "Run",
    "Start",
    "Succeeded",
    "backoff_delay",
    "blocked",
    "compliance",
    "due_retirements",
    "in_sync",
    "next_retirement_wake",
    "step",
]
