"""``step(status, event, ctx) -> (status, effects)``: the rotation protocol, without I/O.

The journal (``status.rotation``) is authoritative: which events are valid depends on its step
(or its absence), never on ``status.phase``, which is what users see.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from vaultbridge.model.status import (
    DEGRADED,
    READY,
    ROTATING,
    HistoryEntry,
    HistoryResult,
    Journal,
    JournalStep,
    Phase,
    Retirement,
    Status,
)
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
from vaultbridge.rotation.timing import backoff_delay, retry_delay


class InvalidTransition(Exception):  # noqa: N818 - the name reads as the event it rejects
    """The event does not fit the current state; the status is unchanged."""


@dataclass(frozen=True)
class Context:
    """Everything ``step`` needs from outside: time, randomness and per-credential settings.

    ``retire_after`` is None when there is nothing to retire (any target but cephx alternate).
    ``holder`` names the engine stepping the machine (journals it writes are held by it);
    another holder's journal is taken over after ``takeover_after`` of silence.
    """

    now: datetime
    generation: int
    history_limit: int = 10
    jitter: float = 0.5
    retire_after: timedelta | None = None
    keep_prior: int = 1
    holder: str | None = None
    takeover_after: timedelta = timedelta(seconds=30)


# The action that continues a journal step after a restart.
RESUME_ACTIONS: dict[JournalStep, Action] = {
    JournalStep.PENDING: Action.SNAPSHOT,
    JournalStep.APPLIED: Action.VERIFY,
    JournalStep.VERIFIED: Action.PROMOTE,
    JournalStep.ROLLING_BACK: Action.RESTORE,
}

# The journal step in which each forward action may report back, and may fail into a rollback.
_ACTION_STEPS: dict[Action, JournalStep] = {
    Action.SNAPSHOT: JournalStep.PENDING,
    Action.APPLY: JournalStep.PENDING,
    Action.VERIFY: JournalStep.APPLIED,
    Action.PROMOTE: JournalStep.VERIFIED,
    Action.RESTORE: JournalStep.ROLLING_BACK,
}


def step(status: Status, event: Event, ctx: Context) -> tuple[Status, tuple[Effect, ...]]:
    """Apply one event. Raises ``InvalidTransition`` if it does not fit the current state."""
    match event:
        case Start():
            return _start(status, event, ctx)
        case Resume():
            return _resume(status, ctx)
        case Succeeded():
            return _succeeded(status, event, ctx)
        case Failed():
            return _failed(status, event, ctx)
        case RetireDue():
            return _retire_due(status, event, ctx)
        case RetireBlocked():
            return _retire_blocked(status, event, ctx)
        case Retired():
            return _retired(status, event, ctx)
    raise InvalidTransition(f"unknown event {event!r}")  # pragma: no cover - exhaustive match


# -- rotation --------------------------------------------------------------------------------


def _start(status: Status, event: Start, ctx: Context) -> tuple[Status, tuple[Effect, ...]]:
    journal = status.rotation
    if journal is not None:
        return status, (
            Emit(
                "Warning",
                "RotationInFlight",
                f"rotation {journal.id} to version {journal.version} is still in flight "
                f"(step {journal.step}); not starting {event.rotation_id}",
            ),
        )
    journal = Journal(
        id=event.rotation_id,
        version=event.version,
        step=JournalStep.PENDING,
        started_at=ctx.now,
        attempt=1,
        entity=event.entity,
        holder=ctx.holder,
        heartbeat=ctx.now,
        cluster=event.cluster,
        fsid=event.fsid,
    )
    new = _touch(
        replace(status, phase=Phase.PENDING, rotation=journal, pending_version=event.version),
        ctx,
    ).with_condition(
        ROTATING, "True", "RotationStarted", _describe(journal), ctx.now, ctx.generation
    )
    return new, (
        Persist(),
        Emit("Normal", "RotationStarted", f"started {_describe(journal)}"),
        Run(Action.SNAPSHOT, journal.version, journal.entity),
    )


def _resume(status: Status, ctx: Context) -> tuple[Status, tuple[Effect, ...]]:
    journal = status.rotation
    if journal is None:
        return status, ()
    if journal.holder is not None and journal.holder != ctx.holder and journal.heartbeat:
        silent = ctx.now - journal.heartbeat
        if silent < ctx.takeover_after:  # the holder may still be at it
            delay = min(ctx.takeover_after - silent, ctx.takeover_after)  # clocks may differ
            return status, (HeldElsewhere(journal.holder, journal.id, delay),)
    journal = _held(replace(journal, attempt=journal.attempt + 1), ctx)
    action = RESUME_ACTIONS[journal.step]
    new = _touch(replace(status, rotation=journal), ctx)
    return new, (
        Persist(),
        Emit(
            "Normal",
            "RotationResumed",
            f"resumed {_describe(journal)} at step {journal.step} (attempt {journal.attempt})",
        ),
        Run(action, journal.version, journal.entity),
    )


def _succeeded(status: Status, event: Succeeded, ctx: Context) -> tuple[Status, tuple[Effect, ...]]:
    journal = _expect(status, event, event.action)
    match event.action:
        case Action.SNAPSHOT:
            return status, (Run(Action.APPLY, journal.version, journal.entity),)
        case Action.APPLY:
            return _advance(status, journal, JournalStep.APPLIED, Phase.APPLIED, ctx)
        case Action.VERIFY:
            verified = replace(status, last_verified_time=ctx.now)
            return _advance(verified, journal, JournalStep.VERIFIED, Phase.VERIFIED, ctx)
        case Action.PROMOTE:
            return _promote(status, journal, ctx)
        case _:  # Action.RESTORE; RETIRE was refused by _expect
            return _rolled_back(status, journal, ctx)


def _failed(status: Status, event: Failed, ctx: Context) -> tuple[Status, tuple[Effect, ...]]:
    journal = _expect(status, event, event.action)
    if event.action is Action.SNAPSHOT and journal.attempt == 1:
        # Nothing was touched yet: the rotation simply failed. After a resume (attempt > 1)
        # APPLY may have run before the crash, so that case rolls back like any later failure.
        return _finish_failed(status, journal, event, ctx)
    if event.action is Action.RESTORE:
        return _rollback_failed(status, journal, event, ctx)
    rolling_back = replace(
        _held(journal, ctx),
        step=JournalStep.ROLLING_BACK,
        reason=event.reason,
        message=event.message,
        transient=event.transient,
    )
    new = _touch(replace(status, rotation=rolling_back), ctx).with_condition(
        ROTATING, "True", "RollingBack", f"{event.reason}: {event.message}", ctx.now, ctx.generation
    )
    return new, (
        Persist(),
        Emit(
            "Warning",
            event.reason,
            f"{event.action} failed for version {journal.version}, rolling back: {event.message}",
        ),
        Run(Action.RESTORE, journal.version, journal.entity),
    )


def _advance(
    status: Status, journal: Journal, to_step: JournalStep, phase: Phase, ctx: Context
) -> tuple[Status, tuple[Effect, ...]]:
    journal = replace(_held(journal, ctx), step=to_step)
    new = _touch(replace(status, phase=phase, rotation=journal), ctx)
    next_action = RESUME_ACTIONS[to_step]
    return new, (
        Persist(),
        Emit("Normal", str(phase), f"version {journal.version} {str(phase).lower()}"),
        Run(next_action, journal.version, journal.entity),
    )


def _promote(status: Status, journal: Journal, ctx: Context) -> tuple[Status, tuple[Effect, ...]]:
    retiring = status.retiring
    old_entity = status.current_entity
    new_entity = journal.entity if journal.entity is not None else old_entity
    if ctx.retire_after is not None and old_entity is not None and old_entity != new_entity:
        fresh = Retirement(entity=old_entity, not_before=ctx.now + ctx.retire_after)
        retiring = (fresh, *(r for r in retiring if r.entity != old_entity))
        # Keep at most keep_prior earlier generations in their grace period; the rest go now.
        keep = max(ctx.keep_prior, 0)
        retiring = tuple(
            r if index < keep else replace(r, not_before=min(r.not_before, ctx.now))
            for index, r in enumerate(retiring)
        )
    new = replace(
        status,
        phase=Phase.RETIRING if retiring else Phase.PROMOTED,
        current_version=journal.version,
        previous_version=status.current_version,
        pending_version=None,
        current_entity=new_entity,
        last_rotation_time=ctx.now,
        rotation=None,
        consecutive_failures=0,
        next_retry_time=None,
        retiring=retiring,
        history=_history(status, journal, "Promoted", ctx),
    )
    message = f"version {journal.version} promoted (rotation {journal.id})"
    new = (
        _touch(new, ctx)
        .with_condition(READY, "True", "Promoted", message, ctx.now, ctx.generation)
        .with_condition(ROTATING, "False", "Promoted", message, ctx.now, ctx.generation)
        .with_condition(DEGRADED, "False", "Promoted", message, ctx.now, ctx.generation)
    )
    return new, (Persist(), Emit("Normal", "Promoted", message))


def _finish_failed(
    status: Status, journal: Journal, event: Failed, ctx: Context
) -> tuple[Status, tuple[Effect, ...]]:
    message = f"version {journal.version}: {event.message}"
    journal = replace(journal, reason=event.reason, message=event.message)
    return _conclude(
        status,
        journal,
        result="Failed",
        phase=Phase.FAILED,
        retry=event.transient,
        message=message,
        ctx=ctx,
    )


def _rolled_back(
    status: Status, journal: Journal, ctx: Context
) -> tuple[Status, tuple[Effect, ...]]:
    message = f"version {journal.version} rolled back: {journal.message or journal.reason}"
    return _conclude(
        status,
        journal,
        result="RolledBack",
        phase=Phase.ROLLED_BACK,
        retry=journal.transient,
        message=message,
        ctx=ctx,
    )


def _conclude(
    status: Status,
    journal: Journal,
    *,
    result: HistoryResult,
    phase: Phase,
    retry: bool,
    message: str,
    ctx: Context,
) -> tuple[Status, tuple[Effect, ...]]:
    """End a rotation that did not promote: journal cleared, Ceph and Secret as before."""
    failures = status.consecutive_failures + 1
    delay = retry_delay(failures, ctx.jitter, transient=retry)
    reason = journal.reason or result
    new = replace(
        status,
        phase=phase,
        pending_version=None,
        rotation=None,
        consecutive_failures=failures,
        next_retry_time=None if delay is None else ctx.now + delay,
        history=_history(status, journal, result, ctx),
    )
    new = (
        _touch(new, ctx)
        .with_condition(READY, "False", reason, message, ctx.now, ctx.generation)
        .with_condition(ROTATING, "False", result, message, ctx.now, ctx.generation)
        .with_condition(DEGRADED, "True", reason, message, ctx.now, ctx.generation)
    )
    emit_reason = reason if result == "Failed" else "RolledBack"
    effects: tuple[Effect, ...] = (Persist(), Emit("Warning", emit_reason, message))
    if delay is not None:
        effects = (*effects, RetryAfter(delay))
    return new, effects


def _rollback_failed(
    status: Status, journal: Journal, event: Failed, ctx: Context
) -> tuple[Status, tuple[Effect, ...]]:
    """Restoring failed: keep the journal (step RollingBack) so the next Resume restores again.

    Always retried, whatever ``transient`` says: Ceph may hold an unverified credential. The
    journal is released (no holder): whichever engine comes next may resume it at once.
    """
    failures = status.consecutive_failures + 1
    delay = backoff_delay(failures, ctx.jitter)
    message = f"rollback failed for version {journal.version}: {event.message}"
    new = replace(
        status,
        rotation=replace(journal, holder=None, heartbeat=None),
        phase=Phase.FAILED,
        consecutive_failures=failures,
        next_retry_time=ctx.now + delay,
    )
    new = (
        _touch(new, ctx)
        .with_condition(READY, "False", "RollbackFailed", message, ctx.now, ctx.generation)
        .with_condition(ROTATING, "True", "RollbackFailed", message, ctx.now, ctx.generation)
        .with_condition(DEGRADED, "True", "RollbackFailed", message, ctx.now, ctx.generation)
    )
    return new, (Persist(), Emit("Warning", "RollbackFailed", message), RetryAfter(delay))


# -- retirement ------------------------------------------------------------------------------


def _retire_due(
    status: Status, event: RetireDue, ctx: Context
) -> tuple[Status, tuple[Effect, ...]]:
    retirement = _retirement(status, event.entity, event)
    if retirement.not_before > ctx.now:
        raise InvalidTransition(
            f"RetireDue({event.entity}): not due before {retirement.not_before.isoformat()}"
        )
    return status, (Run(Action.RETIRE, None, event.entity),)


def _retire_blocked(
    status: Status, event: RetireBlocked, ctx: Context
) -> tuple[Status, tuple[Effect, ...]]:
    retirement = _retirement(status, event.entity, event)
    attempts = retirement.attempts + 1
    blocked = replace(retirement, blocked_reason=event.reason, attempts=attempts)
    retiring = tuple(blocked if r.entity == event.entity else r for r in status.retiring)
    delay = backoff_delay(attempts, ctx.jitter)
    new = _touch(replace(status, retiring=retiring), ctx)
    return new, (
        Persist(),
        Emit("Warning", "RetireBlocked", f"cannot retire {event.entity} yet: {event.reason}"),
        RetryAfter(delay, entity=event.entity),
    )


def _retired(status: Status, event: Retired, ctx: Context) -> tuple[Status, tuple[Effect, ...]]:
    _retirement(status, event.entity, event)
    retiring = tuple(r for r in status.retiring if r.entity != event.entity)
    phase = status.phase
    if phase is Phase.RETIRING and not retiring:
        phase = Phase.PROMOTED
    new = _touch(replace(status, retiring=retiring, phase=phase), ctx)
    return new, (Persist(), Emit("Normal", "Retired", f"retired {event.entity}"))


# -- helpers ---------------------------------------------------------------------------------


def _held(journal: Journal, ctx: Context) -> Journal:
    """The journal as written now by the engine stepping the machine."""
    return journal.held_by(ctx.holder, ctx.now)


def _expect(status: Status, event: Succeeded | Failed, action: Action) -> Journal:
    """The journal, if ``action`` may report back in its current step."""
    name = f"{type(event).__name__}({action})"
    if action is Action.RETIRE:
        raise InvalidTransition(
            f"{name}: report the result of RETIRE as Retired(entity) or RetireBlocked(entity, ...)"
        )
    journal = status.rotation
    if journal is None:
        raise InvalidTransition(f"{name}: no rotation in flight (phase {status.phase})")
    expected = _ACTION_STEPS[action]
    if journal.step is not expected:
        raise InvalidTransition(
            f"{name}: rotation {journal.id} is at step {journal.step}, "
            f"{action} reports back only at step {expected}"
        )
    return journal


def _retirement(
    status: Status, entity: str, event: RetireDue | RetireBlocked | Retired
) -> Retirement:
    if entity == status.current_entity:
        raise InvalidTransition(f"{type(event).__name__}({entity}): {entity} is the current entity")
    for retirement in status.retiring:
        if retirement.entity == entity:
            return retirement
    raise InvalidTransition(f"{type(event).__name__}({entity}): {entity} is not retiring")


def _history(
    status: Status, journal: Journal, result: HistoryResult, ctx: Context
) -> tuple[HistoryEntry, ...]:
    entry = HistoryEntry(
        rotation_id=journal.id,
        version=journal.version,
        result=result,
        started_at=journal.started_at,
        finished_at=ctx.now,
        reason=journal.reason or "",
        message=journal.message or "",
    )
    return (entry, *status.history)[: max(ctx.history_limit, 1)]


def _touch(status: Status, ctx: Context) -> Status:
    return replace(status, observed_generation=ctx.generation)


def _describe(journal: Journal) -> str:
    where = f" as {journal.entity}" if journal.entity else ""
    return f"rotation {journal.id} to version {journal.version}{where}"


# -- outside a rotation ------------------------------------------------------------------------


def blocked(
    status: Status, reason: str, message: str, transient: bool, ctx: Context
) -> tuple[Status, tuple[Effect, ...]]:
    """A rotation could not even start (bad spec, missing Vault field, unreachable server).

    Nothing was changed anywhere: no journal, versions untouched. Ready=False and Degraded=True
    say why; a transient problem is retried after a capped, jittered backoff.
    """
    failures = status.consecutive_failures + 1
    delay = retry_delay(failures, ctx.jitter, transient=transient)
    new = replace(
        status,
        consecutive_failures=failures,
        next_retry_time=None if delay is None else ctx.now + delay,
    )
    new = (
        _touch(new, ctx)
        .with_condition(READY, "False", reason, message, ctx.now, ctx.generation)
        .with_condition(DEGRADED, "True", reason, message, ctx.now, ctx.generation)
    )
    effects: tuple[Effect, ...] = (Persist(), Emit("Warning", reason, message))
    if delay is not None:
        effects = (*effects, RetryAfter(delay))
    return new, effects


def in_sync(status: Status, ctx: Context) -> tuple[Status, tuple[Effect, ...]]:
    """A check found Ceph, the Secret and Vault agreeing on the current version.

    Clears an earlier failure (Ready=True, Degraded=False); no effects when nothing changes.
    """
    if status.rotation is not None:
        raise InvalidTransition("in_sync while a rotation is in flight")
    ready = status.condition(READY)
    degraded = status.condition(DEGRADED)
    if (
        status.consecutive_failures == 0
        and ready is not None
        and ready.status == "True"
        and (degraded is None or degraded.status == "False")
        and status.observed_generation == ctx.generation
    ):
        return status, ()
    message = f"version {status.current_version} is live and verified"
    new = replace(status, consecutive_failures=0, next_retry_time=None)
    new = (
        _touch(new, ctx)
        .with_condition(READY, "True", "InSync", message, ctx.now, ctx.generation)
        .with_condition(DEGRADED, "False", "InSync", message, ctx.now, ctx.generation)
    )
    return new, (Persist(),)
