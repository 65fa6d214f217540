"""The rotation state machine: exhaustive transition table, invariants and random walks."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.status import (
    DEGRADED,
    READY,
    ROTATING,
    HistoryEntry,
    Journal,
    JournalStep,
    Phase,
    Retirement,
    Status,
)
from vaultbridge.rotation import (
    RESUME_ACTIONS,
    Action,
    Context,
    Effect,
    Emit,
    Event,
    Failed,
    HeldElsewhere,
    InvalidTransition,
    Persist,
    Resume,
    RetireBlocked,
    Retired,
    RetireDue,
    RetryAfter,
    Run,
    Start,
    Succeeded,
    step,
)

NOW = datetime(2024, 5, 1, 3, 0, 0, tzinfo=UTC)
CANARY = Sensitive("CANARY-9f3b-never-in-status")
OLD = "client.app.5"


ME = "engine-a"
OTHER = "engine-b"


def ctx(**changes: object) -> Context:
    base = Context(now=NOW, generation=4, history_limit=10, jitter=0.5, holder=ME)
    return replace(base, **changes)  # type: ignore[arg-type]


def check_invariants(before: Status, after: Status, effects: tuple[Effect, ...]) -> None:
    if any(isinstance(e, HeldElsewhere) for e in effects):
        assert len(effects) == 1 and after == before, "held elsewhere: nothing is done"
    runs = [e for e in effects if isinstance(e, Run)]
    assert len(runs) <= 1, effects
    if runs:
        assert effects[-1] is runs[0], "Run must be the last effect"
    assert sum(isinstance(e, RetryAfter) for e in effects) <= 1
    assert not (runs and any(isinstance(e, RetryAfter) for e in effects))
    persists = [i for i, e in enumerate(effects) if isinstance(e, Persist)]
    assert len(persists) <= 1
    if after != before:
        assert persists == [0], f"a changed status is persisted first: {effects}"
    else:
        assert not persists
    before_step = before.rotation.step if before.rotation else None
    after_step = after.rotation.step if after.rotation else None
    if runs and (before_step != after_step or before.rotation != after.rotation):
        assert persists and persists[0] < effects.index(runs[0])
    if after.rotation is not None and before.rotation is not None:
        assert after.rotation.id == before.rotation.id, "never two rotations"
    for effect in effects:
        if isinstance(effect, Run) and effect.action is not Action.RETIRE:
            assert after.rotation is not None
            assert effect.version == after.rotation.version
            assert RESUME_ACTIONS[after.rotation.step] is effect.action or (
                effect.action is Action.APPLY and after.rotation.step is JournalStep.PENDING
            )
    data = after.to_dict()
    text = json.dumps(data)
    assert CANARY.reveal() not in text
    assert Status.from_dict(json.loads(text)) == after


def run(status: Status, event: Event, context: Context) -> tuple[Status, tuple[Effect, ...]]:
    after, effects = step(status, event, context)
    check_invariants(status, after, effects)
    return after, effects


# -- the exhaustive table --------------------------------------------------------------------

JOURNAL_STEPS: list[JournalStep | None] = [None, *JournalStep]
EVENTS: list[Event] = [
    Start("r-new", 9, "client.app.9"),
    Resume(),
    *(Succeeded(action) for action in Action),
    *(
        Failed(action, "Boom", "it broke", transient)
        for action in Action
        for transient in (True, False)
    ),
    RetireDue(OLD),
    RetireDue("client.app.unknown"),
    RetireDue("client.app.7"),
    RetireBlocked(OLD, "still connected"),
    RetireBlocked("client.app.unknown", "x"),
    Retired(OLD),
    Retired("client.app.unknown"),
]


def state(phase: Phase, journal_step: JournalStep | None, attempt: int = 1) -> Status:
    journal = None
    if journal_step is not None:
        journal = Journal(
            id="r-8",
            version=8,
            step=journal_step,
            started_at=NOW - timedelta(minutes=1),
            attempt=attempt,
            entity="client.app.8",
            reason="ApplyFailed" if journal_step is JournalStep.ROLLING_BACK else None,
            message="mon refused" if journal_step is JournalStep.ROLLING_BACK else None,
            # left by another engine that has been silent long enough to be taken over
            holder=OTHER,
            heartbeat=NOW - timedelta(minutes=1),
        )
    return Status(
        phase=phase,
        current_version=7,
        previous_version=6,
        pending_version=8 if journal else None,
        current_entity="client.app.7",
        rotation=journal,
        history=(
            HistoryEntry("r-7", 7, "Promoted", NOW - timedelta(days=1), NOW - timedelta(days=1)),
        ),
        observed_generation=3,
        consecutive_failures=1,
        retiring=(Retirement(OLD, NOW - timedelta(minutes=1)),),
    )


def expected_outcome(journal_step: JournalStep | None, attempt: int, event: Event) -> str:
    """An independent statement of the protocol: which outcome each pair must have."""
    match event:
        case Start():
            return "start" if journal_step is None else "in-flight"
        case Resume():
            return "noop" if journal_step is None else "resume"
        case RetireDue(entity) | RetireBlocked(entity) | Retired(entity):
            return type(event).__name__ if entity == OLD else "invalid"
        case Succeeded(action):
            table = {
                (JournalStep.PENDING, Action.SNAPSHOT): "apply",
                (JournalStep.PENDING, Action.APPLY): "applied",
                (JournalStep.APPLIED, Action.VERIFY): "verified",
                (JournalStep.VERIFIED, Action.PROMOTE): "promoted",
                (JournalStep.ROLLING_BACK, Action.RESTORE): "rolled-back",
            }
            return table.get((journal_step, action), "invalid")  # type: ignore[arg-type]
        case Failed(action):
            table = {
                (JournalStep.PENDING, Action.SNAPSHOT): "failed"
                if attempt == 1
                else "rolling-back",
                (JournalStep.PENDING, Action.APPLY): "rolling-back",
                (JournalStep.APPLIED, Action.VERIFY): "rolling-back",
                (JournalStep.VERIFIED, Action.PROMOTE): "rolling-back",
                (JournalStep.ROLLING_BACK, Action.RESTORE): "rollback-failed",
            }
            return table.get((journal_step, action), "invalid")  # type: ignore[arg-type]
    raise AssertionError(event)


CASES = [
    (phase, journal_step, attempt, event)
    for phase, journal_step, event in itertools.product(Phase, JOURNAL_STEPS, EVENTS)
    for attempt in ((1,) if journal_step is None else (1, 3))
]


@pytest.mark.parametrize(("phase", "journal_step", "attempt", "event"), CASES)
def test_every_state_and_event(
    phase: Phase, journal_step: JournalStep | None, attempt: int, event: Event
) -> None:
    before = state(phase, journal_step, attempt)
    context = ctx(retire_after=timedelta(minutes=10), keep_prior=1)
    outcome = expected_outcome(journal_step, attempt, event)
    if outcome == "invalid":
        with pytest.raises(InvalidTransition):
            step(before, event, context)
        return
    after, effects = run(before, event, context)
    journal = before.rotation
    match outcome:
        case "start":
            assert isinstance(event, Start)
            assert after.phase is Phase.PENDING
            assert after.rotation == Journal(
                "r-new", 9, JournalStep.PENDING, NOW, 1, "client.app.9", holder=ME, heartbeat=NOW
            )
            assert after.pending_version == 9
            assert after.observed_generation == 4
            assert after.condition(ROTATING) is not None
            assert after.condition(ROTATING).status == "True"  # type: ignore[union-attr]
            assert effects[1] == Emit(
                "Normal", "RotationStarted", "started rotation r-new to version 9 as client.app.9"
            )
            assert effects[2] == Run(Action.SNAPSHOT, 9, "client.app.9")
        case "in-flight":
            assert after == before
            assert len(effects) == 1
            assert isinstance(effects[0], Emit)
            assert (effects[0].type, effects[0].reason) == ("Warning", "RotationInFlight")
        case "noop":
            assert (after, effects) == (before, ())
        case "resume":
            assert journal is not None and after.rotation is not None
            assert after.rotation == replace(journal, attempt=attempt + 1, holder=ME, heartbeat=NOW)
            assert after.phase is before.phase
            assert effects[1] == Emit(
                "Normal",
                "RotationResumed",
                f"resumed rotation r-8 to version 8 as client.app.8 at step {journal.step} "
                f"(attempt {attempt + 1})",
            )
            assert effects[2] == Run(RESUME_ACTIONS[journal.step], 8, "client.app.8")
        case "apply":
            assert (after, effects) == (before, (Run(Action.APPLY, 8, "client.app.8"),))
        case "applied":
            assert after.phase is Phase.APPLIED
            assert after.rotation is not None and after.rotation.step is JournalStep.APPLIED
            assert effects[-1] == Run(Action.VERIFY, 8, "client.app.8")
        case "verified":
            assert after.phase is Phase.VERIFIED
            assert after.last_verified_time == NOW
            assert after.rotation is not None and after.rotation.step is JournalStep.VERIFIED
            assert effects[-1] == Run(Action.PROMOTE, 8, "client.app.8")
        case "promoted":
            assert after.phase is Phase.RETIRING
            assert (after.current_version, after.previous_version, after.pending_version) == (
                8,
                7,
                None,
            )
            assert after.current_entity == "client.app.8"
            assert after.rotation is None
            assert after.last_rotation_time == NOW
            assert after.consecutive_failures == 0
            assert after.next_retry_time is None
            assert after.history[0] == HistoryEntry(
                "r-8", 8, "Promoted", NOW - timedelta(minutes=1), NOW
            )
            assert after.retiring == (
                Retirement("client.app.7", NOW + timedelta(minutes=10)),
                Retirement(OLD, NOW - timedelta(minutes=1)),
            )
            for kind, value in ((READY, "True"), (ROTATING, "False"), (DEGRADED, "False")):
                assert after.condition(kind).status == value  # type: ignore[union-attr]
            assert effects[1:] == (Emit("Normal", "Promoted", "version 8 promoted (rotation r-8)"),)
        case "failed":
            assert isinstance(event, Failed)
            assert after.phase is Phase.FAILED
            assert after.rotation is None
            assert after.pending_version is None
            assert (after.current_version, after.previous_version) == (7, 6)
            assert after.consecutive_failures == 2
            assert after.history[0].result == "Failed"
            assert after.history[0].reason == "Boom"
            assert after.condition(READY).reason == "Boom"  # type: ignore[union-attr]
            assert after.condition(DEGRADED).status == "True"  # type: ignore[union-attr]
            assert effects[1] == Emit("Warning", "Boom", "version 8: it broke")
            assert isinstance(effects[-1], RetryAfter)
            assert after.next_retry_time == NOW + effects[-1].delay
            if not event.transient:  # a human must fix it: retried, but slowly
                assert effects[-1].delay >= timedelta(seconds=30)
        case "rolling-back":
            assert isinstance(event, Failed) and journal is not None
            assert after.phase is before.phase
            assert after.rotation == replace(
                journal,
                holder=ME,
                heartbeat=NOW,
                step=JournalStep.ROLLING_BACK,
                reason="Boom",
                message="it broke",
                transient=event.transient,
            )
            assert after.pending_version == 8
            assert effects[1] == Emit(
                "Warning", "Boom", f"{event.action} failed for version 8, rolling back: it broke"
            )
            assert effects[2] == Run(Action.RESTORE, 8, "client.app.8")
        case "rolled-back":
            assert after.phase is Phase.ROLLED_BACK
            assert after.rotation is None
            assert after.pending_version is None
            assert (after.current_version, after.previous_version) == (7, 6)
            assert after.current_entity == "client.app.7"
            assert after.history[0] == HistoryEntry(
                "r-8",
                8,
                "RolledBack",
                NOW - timedelta(minutes=1),
                NOW,
                "ApplyFailed",
                "mon refused",
            )
            assert after.condition(READY).reason == "ApplyFailed"  # type: ignore[union-attr]
            assert after.condition(DEGRADED).status == "True"  # type: ignore[union-attr]
            assert effects[1] == Emit("Warning", "RolledBack", "version 8 rolled back: mon refused")
            assert isinstance(effects[-1], RetryAfter)
        case "rollback-failed":
            assert journal is not None
            assert after.phase is Phase.FAILED
            assert after.rotation == replace(journal, holder=None, heartbeat=None)  # released
            assert after.condition(DEGRADED).reason == "RollbackFailed"  # type: ignore[union-attr]
            assert after.condition(DEGRADED).message == "rollback failed for version 8: it broke"  # type: ignore[union-attr]
            assert isinstance(effects[-1], RetryAfter)
            assert after.history == before.history
        case "RetireDue":
            assert (after, effects) == (before, (Run(Action.RETIRE, None, OLD),))
        case "RetireBlocked":
            assert after.retiring == (
                Retirement(OLD, NOW - timedelta(minutes=1), "still connected", 1),
            )
            assert effects[1] == Emit(
                "Warning", "RetireBlocked", f"cannot retire {OLD} yet: still connected"
            )
            assert isinstance(effects[2], RetryAfter) and effects[2].entity == OLD
        case "Retired":
            assert after.retiring == ()
            expected_phase = Phase.PROMOTED if before.phase is Phase.RETIRING else before.phase
            assert after.phase is expected_phase
            assert effects[1:] == (Emit("Normal", "Retired", f"retired {OLD}"),)
        case _:
            raise AssertionError(outcome)


def test_table_covers_every_outcome() -> None:
    outcomes = {expected_outcome(s, a, e) for _, s, a, e in CASES}
    assert outcomes == {
        "start", "in-flight", "noop", "resume", "apply", "applied", "verified", "promoted",
        "failed", "rolling-back", "rolled-back", "rollback-failed",
        "RetireDue", "RetireBlocked", "Retired", "invalid",
    }  # fmt: skip


# -- focused behaviours ----------------------------------------------------------------------


def happy_path(
    status: Status, rotation_id: str, version: int, context: Context, entity: str | None = None
) -> Status:
    status, _ = run(status, Start(rotation_id, version, entity), context)
    for action in (Action.SNAPSHOT, Action.APPLY, Action.VERIFY, Action.PROMOTE):
        status, _ = run(status, Succeeded(action), context)
    return status


def test_first_rotation_of_a_config_target() -> None:
    status = happy_path(Status(), "r-1", 1, ctx())
    assert status.phase is Phase.PROMOTED
    assert (status.current_version, status.previous_version) == (1, None)
    assert status.current_entity is None
    assert status.retiring == ()


def test_in_place_cephx_retires_nothing() -> None:
    status = replace(Status(), current_entity="client.app", current_version=1)
    status = happy_path(
        status, "r-2", 2, ctx(retire_after=timedelta(minutes=10)), entity="client.app"
    )
    assert status.phase is Phase.PROMOTED
    assert status.retiring == ()


def test_keep_prior_makes_older_generations_due_now() -> None:
    context = ctx(retire_after=timedelta(minutes=10), keep_prior=1)
    status = replace(Status(), current_entity="client.app.1", current_version=1)
    status = happy_path(status, "r-2", 2, context, entity="client.app.2")
    assert status.retiring == (Retirement("client.app.1", NOW + timedelta(minutes=10)),)
    status = happy_path(status, "r-3", 3, context, entity="client.app.3")
    assert status.retiring == (
        Retirement("client.app.2", NOW + timedelta(minutes=10)),
        Retirement("client.app.1", NOW),
    )
    with pytest.raises(InvalidTransition, match="not due before"):
        step(status, RetireDue("client.app.2"), context)
    status, effects = run(status, RetireDue("client.app.1"), context)
    assert effects == (Run(Action.RETIRE, None, "client.app.1"),)
    status, _ = run(status, Retired("client.app.1"), context)
    assert status.phase is Phase.RETIRING
    later = replace(context, now=NOW + timedelta(minutes=10))
    status, _ = run(status, RetireDue("client.app.2"), later)
    status, _ = run(status, Retired("client.app.2"), later)
    assert status.phase is Phase.PROMOTED
    assert status.retiring == ()


def test_current_entity_is_never_retired() -> None:
    status = replace(
        Status(), current_entity="client.app.1", retiring=(Retirement("client.app.1", NOW),)
    )
    with pytest.raises(InvalidTransition, match="is the current entity"):
        step(status, RetireDue("client.app.1"), ctx())


def test_history_is_trimmed_to_the_limit_newest_first() -> None:
    status = Status()
    context = ctx(history_limit=3)
    for version in range(1, 6):
        status = happy_path(status, f"r-{version}", version, context)
    assert [h.version for h in status.history] == [5, 4, 3]


def test_ready_transition_time_kept_across_promotions() -> None:
    status = happy_path(Status(), "r-1", 1, ctx())
    first = status.condition(READY)
    status = happy_path(status, "r-2", 2, ctx(now=NOW + timedelta(hours=1)))
    second = status.condition(READY)
    assert first is not None and second is not None
    assert second.last_transition_time == first.last_transition_time == NOW
    assert second.message == "version 2 promoted (rotation r-2)"


def test_rollback_failure_then_resume_restores_again() -> None:
    context = ctx()
    status, _ = run(Status(current_version=1), Start("r-2", 2), context)
    status, _ = run(status, Succeeded(Action.SNAPSHOT), context)
    status, _ = run(status, Succeeded(Action.APPLY), context)
    status, _ = run(status, Failed(Action.VERIFY, "VerifyFailed", "read-back differs"), context)
    status, effects = run(status, Failed(Action.RESTORE, "CephTimeout", "mon timed out"), context)
    assert status.phase is Phase.FAILED
    assert status.rotation is not None and status.rotation.step is JournalStep.ROLLING_BACK
    assert isinstance(effects[-1], RetryAfter)
    status, effects = run(status, Resume(), context)
    assert effects[-1] == Run(Action.RESTORE, 2, None)
    status, _ = run(status, Succeeded(Action.RESTORE), context)
    assert status.phase is Phase.ROLLED_BACK
    assert status.history[0].reason == "VerifyFailed"
    assert status.consecutive_failures == 2
    assert status.current_version == 1


def test_snapshot_failure_after_a_resume_rolls_back() -> None:
    context = ctx()
    status, _ = run(Status(current_version=1), Start("r-2", 2), context)
    status, _ = run(status, Resume(), context)
    status, effects = run(status, Failed(Action.SNAPSHOT, "SnapshotFailed", "mon down"), context)
    assert status.rotation is not None
    assert status.rotation.step is JournalStep.ROLLING_BACK
    assert effects[-1] == Run(Action.RESTORE, 2, None)


# -- the journal's holder: one engine drives a rotation at a time --------------------------


def held_journal(holder: str | None, heard_of: timedelta | None) -> Status:
    context = ctx(holder=holder, now=NOW - heard_of if heard_of is not None else NOW)
    status, _ = run(Status(current_version=1), Start("r-2", 2), context)
    status, _ = run(status, Succeeded(Action.SNAPSHOT), context)
    status, _ = run(status, Succeeded(Action.APPLY), context)
    if heard_of is None:
        assert status.rotation is not None
        status = replace(status, rotation=replace(status.rotation, heartbeat=None))
    return status


def test_every_journal_written_names_its_holder_and_when() -> None:
    context = ctx(holder="engine-7")
    status, _ = run(Status(current_version=1), Start("r-2", 2), context)
    assert status.rotation is not None
    assert (status.rotation.holder, status.rotation.heartbeat) == ("engine-7", NOW)
    later = ctx(holder="engine-7", now=NOW + timedelta(seconds=5))
    status, _ = run(status, Succeeded(Action.SNAPSHOT), later)
    status, _ = run(status, Succeeded(Action.APPLY), later)
    assert status.rotation is not None
    assert status.rotation.heartbeat == NOW + timedelta(seconds=5)
    status, _ = run(status, Failed(Action.VERIFY, "VerifyFailed", "differs"), later)
    assert status.rotation is not None and status.rotation.holder == "engine-7"


def test_a_journal_another_engine_drives_is_not_resumed() -> None:
    status = held_journal(OTHER, timedelta(seconds=10))
    after, effects = run(status, Resume(), ctx(takeover_after=timedelta(seconds=30)))
    assert after == status
    assert effects == (HeldElsewhere(OTHER, "r-2", timedelta(seconds=20)),)


def test_a_silent_holder_is_taken_over_after_takeover_after() -> None:
    status = held_journal(OTHER, timedelta(seconds=30))
    after, effects = run(status, Resume(), ctx(takeover_after=timedelta(seconds=30)))
    assert after.rotation is not None
    assert (after.rotation.holder, after.rotation.heartbeat) == (ME, NOW)
    assert after.rotation.attempt == 2
    assert effects[-1] == Run(Action.VERIFY, 2, None)


def test_own_unheld_and_old_journals_are_resumed_at_once() -> None:
    for holder, heard_of in ((ME, timedelta(seconds=1)), (None, timedelta(0)), (OTHER, None)):
        status = held_journal(holder, heard_of)
        after, effects = run(status, Resume(), ctx())
        assert after.rotation is not None and after.rotation.holder == ME, holder
        assert effects[-1] == Run(Action.VERIFY, 2, None)


def test_a_heartbeat_from_a_clock_ahead_waits_takeover_after_at_most() -> None:
    status = held_journal(OTHER, -timedelta(minutes=5))
    _, effects = run(status, Resume(), ctx(takeover_after=timedelta(seconds=30)))
    assert effects == (HeldElsewhere(OTHER, "r-2", timedelta(seconds=30)),)


def test_a_failed_rollback_releases_the_journal() -> None:
    context = ctx()
    status, _ = run(Status(current_version=1), Start("r-3", 3), context)
    status, _ = run(status, Succeeded(Action.SNAPSHOT), context)
    status, _ = run(status, Failed(Action.APPLY, "Boom", "x"), context)
    status, _ = run(status, Failed(Action.RESTORE, "CephTimeout", "x"), context)
    assert status.rotation is not None
    assert (status.rotation.holder, status.rotation.heartbeat) == (None, None)
    _, effects = run(status, Resume(), ctx(holder=OTHER))
    assert effects[-1] == Run(Action.RESTORE, 3, None)


def test_non_transient_rollback_is_retried_slowly() -> None:
    context = ctx()
    status, _ = run(Status(current_version=1), Start("r-2", 2), context)
    status, _ = run(
        status, Failed(Action.APPLY, "PermissionDenied", "EACCES", transient=False), context
    )
    status, effects = run(status, Succeeded(Action.RESTORE), context)
    retries = [e for e in effects if isinstance(e, RetryAfter)]
    assert len(retries) == 1 and retries[0].delay >= timedelta(seconds=30)
    assert status.next_retry_time == NOW + retries[0].delay


def test_failed_and_succeeded_retire_point_to_the_right_events() -> None:
    with pytest.raises(InvalidTransition, match=r"Retired\(entity\)"):
        step(Status(), Succeeded(Action.RETIRE), ctx())


def test_invalid_transition_message_names_the_step() -> None:
    status, _ = step(Status(), Start("r-1", 1), ctx())
    with pytest.raises(
        InvalidTransition,
        match=r"Succeeded\(Verify\): rotation r-1 is at step Pending, Verify reports back only at step Applied",
    ):
        step(status, Succeeded(Action.VERIFY), ctx())
    with pytest.raises(InvalidTransition, match="no rotation in flight"):
        step(Status(), Succeeded(Action.SNAPSHOT), ctx())


# -- random walks ----------------------------------------------------------------------------


class FakeEngine:
    """Drives the machine like the engine would, with random failures, crashes and retries."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = NOW
        self.status = Status()
        self.transitions = 0
        self.holder = "engine-0"
        self.restarts = 0

    def context(self, holder: str | None = None) -> Context:
        return Context(
            now=self.now,
            generation=1,
            history_limit=5,
            jitter=self.rng.random(),
            retire_after=timedelta(minutes=self.rng.choice([0, 5, 10])),
            keep_prior=self.rng.choice([1, 2]),
            holder=holder or self.holder,
            takeover_after=timedelta(seconds=60),
        )

    def feed(self, event: Event, holder: str | None = None) -> tuple[Effect, ...]:
        self.now += timedelta(seconds=self.rng.randint(1, 120))
        before = self.status
        self.status, effects = step(before, event, self.context(holder))
        check_invariants(before, self.status, effects)
        self.transitions += 1
        return effects

    def resume(self) -> tuple[Effect, ...]:
        """Resume as this engine, waiting out another holder as the engine's retry would."""
        effects = self.feed(Resume())
        while effects and isinstance(effects[0], HeldElsewhere):
            self.now += effects[0].delay
            effects = self.feed(Resume())
        return effects

    def outcome(self, run_effect: Run) -> Event:
        if run_effect.action is Action.RETIRE:
            assert run_effect.entity is not None
            if self.rng.random() < 0.3:
                return RetireBlocked(run_effect.entity, "in use")
            return Retired(run_effect.entity)
        if self.rng.random() < 0.75:
            return Succeeded(run_effect.action)
        # An adapter that (wrongly) formats the credential into its message gets "<redacted>".
        return Failed(run_effect.action, "Boom", f"failed with {CANARY}", self.rng.random() < 0.8)

    def drive(self, event: Event) -> None:
        """Feed ``event`` and every result until no Run is pending."""
        effects = self.feed(event)
        rotation_id = self.status.rotation.id if self.status.rotation else None
        for _ in range(200):
            runs = [e for e in effects if isinstance(e, Run)]
            if not runs:
                return
            if runs[0].action is not Action.RETIRE and self.rng.random() < 0.1:
                # Crash: the result is lost; the restarted engine (a new holder) resumes from
                # the journal once the old holder has been silent long enough.
                self.restarts += 1
                self.holder = f"engine-{self.restarts}"
                effects = self.resume()
            elif self.status.rotation is not None and self.rng.random() < 0.05:
                # Another engine (a CLI sync) tries to resume the rotation in flight: it may
                # only take it over from a holder silent for takeover_after.
                journal = self.status.rotation
                before = self.status
                self.restarts += 1
                name = f"intruder-{self.restarts}"
                intruder = self.feed(Resume(), holder=name)
                heard_of = self.now - journal.heartbeat if journal.heartbeat else None
                if intruder and isinstance(intruder[0], HeldElsewhere):
                    assert heard_of is not None and heard_of < timedelta(seconds=60)
                    assert self.status == before
                    continue
                assert (
                    journal.holder is None or heard_of is None or heard_of >= timedelta(seconds=60)
                )
                self.holder = name  # the intruder drives it now; the old holder stops
                effects = intruder
            elif self.status.rotation is not None and self.rng.random() < 0.05:
                # A second trigger while in flight changes nothing.
                before = self.status
                extra = self.feed(Start("intruder", 999))
                assert self.status == before
                assert extra[0].reason == "RotationInFlight"  # type: ignore[union-attr]
                continue
            else:
                effects = self.feed(self.outcome(runs[0]))
            if self.status.rotation is not None:
                assert self.status.rotation.id == rotation_id, "never two rotations"
        raise AssertionError("the machine did not settle")

    def settle_rotation(self) -> None:
        """Retry a failed rollback until the journal is gone, as RetryAfter would."""
        while self.status.rotation is not None:
            assert self.status.phase is Phase.FAILED
            assert self.status.rotation.step is JournalStep.ROLLING_BACK
            assert self.status.rotation.holder is None  # released
            self.drive(Resume())


@pytest.mark.parametrize("seed", range(60))
def test_random_walk(seed: int) -> None:
    engine = FakeEngine(seed)
    for number in range(1, 16):
        before = engine.status
        version = number
        entity = f"client.app.{version}"
        engine.drive(Start(f"r-{number}", version, entity))
        status = engine.status
        assert status.phase in {Phase.PROMOTED, Phase.RETIRING, Phase.ROLLED_BACK, Phase.FAILED}
        assert status.rotation is None or status.rotation.step is JournalStep.ROLLING_BACK
        engine.settle_rotation()
        status = engine.status
        assert status.rotation is None
        assert status.pending_version is None
        assert status.history[0].rotation_id == f"r-{number}"
        assert len(status.history) <= 5
        if status.history[0].result == "Promoted":
            assert status.current_version == version
            assert status.current_entity == entity
            assert status.previous_version == before.current_version
            assert status.consecutive_failures == 0
            assert status.condition(READY).status == "True"  # type: ignore[union-attr]
        else:
            assert status.current_version == before.current_version
            assert status.current_entity == before.current_entity
            assert status.consecutive_failures > before.consecutive_failures
            assert status.condition(DEGRADED).status == "True"  # type: ignore[union-attr]
        assert status.current_entity not in {r.entity for r in status.retiring}
        # Retire whatever is due, as the engine's timer would.
        for retirement in status.retiring:
            if retirement.not_before <= engine.now:
                engine.drive(RetireDue(retirement.entity))
        final = engine.status
        if final.history[0].result == "Promoted":
            assert (final.phase is Phase.RETIRING) == bool(final.retiring)
            assert final.phase in {Phase.PROMOTED, Phase.RETIRING}
    assert engine.transitions > 15
    assert CANARY.reveal() not in json.dumps(engine.status.to_dict())
