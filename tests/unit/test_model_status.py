"""Status: conditions, JSON round trip, tolerance of empty or partial status."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.status import (
    Condition,
    HistoryEntry,
    Journal,
    JournalStep,
    Phase,
    Retirement,
    Status,
    StatusError,
    format_time,
    parse_time,
    set_condition,
)

T0 = datetime(2024, 5, 1, 3, 0, 0, tzinfo=UTC)


def test_phase_strings_are_exact() -> None:
    assert [str(p) for p in Phase] == [
        "Idle",
        "Pending",
        "Applied",
        "Verified",
        "Promoted",
        "Retiring",
        "RolledBack",
        "Failed",
    ]
    assert [str(s) for s in JournalStep] == ["Pending", "Applied", "Verified", "RollingBack"]


def test_set_condition_adds_then_keeps_transition_time_when_status_unchanged() -> None:
    conditions = set_condition((), "Ready", "False", "Init", "starting", T0, 1)
    assert conditions == (Condition("Ready", "False", "Init", "starting", T0, 1),)
    later = T0 + timedelta(minutes=5)
    same = set_condition(conditions, "Ready", "False", "Other", "still not", later, 2)
    assert same == (Condition("Ready", "False", "Other", "still not", T0, 2),)
    flipped = set_condition(same, "Ready", "True", "Promoted", "ok", later, 2)
    assert flipped[0].last_transition_time == later
    assert flipped[0].status == "True"


def test_set_condition_leaves_other_conditions_and_order() -> None:
    conditions = set_condition((), "Ready", "True", "A", "", T0, 1)
    conditions = set_condition(conditions, "Degraded", "False", "B", "", T0, 1)
    updated = set_condition(conditions, "Ready", "False", "C", "", T0 + timedelta(1), 1)
    assert [c.type for c in updated] == ["Ready", "Degraded"]
    assert updated[1] == conditions[1]


def full_status() -> Status:
    return Status(
        phase=Phase.RETIRING,
        conditions=(
            Condition("Ready", "True", "Promoted", "version 7 promoted", T0, 3),
            Condition("Degraded", "False", "Promoted", "", T0 + timedelta(microseconds=5), 3),
        ),
        current_version=7,
        previous_version=6,
        pending_version=8,
        current_entity="client.app.7",
        last_rotation_time=T0,
        last_verified_time=T0 - timedelta(seconds=1),
        rotation=Journal(
            id="r-8",
            version=8,
            step=JournalStep.ROLLING_BACK,
            started_at=T0,
            attempt=2,
            entity="client.app.8",
            reason="VerifyFailed",
            message="read back differs",
            transient=False,
            holder="host-1/42/ab12cd",
            heartbeat=T0 + timedelta(seconds=3),
        ),
        history=(
            HistoryEntry("r-7", 7, "Promoted", T0 - timedelta(minutes=1), T0),
            HistoryEntry("r-6", 6, "RolledBack", T0, T0, "ApplyFailed", "mon said no"),
        ),
        observed_generation=3,
        consecutive_failures=2,
        next_retry_time=T0 + timedelta(seconds=30),
        retiring=(Retirement("client.app.6", T0 + timedelta(minutes=10), "in use", 2),),
    )


def test_to_dict_shape() -> None:
    data = full_status().to_dict()
    assert data["phase"] == "Retiring"
    assert data["currentVersion"] == 7
    assert data["previousVersion"] == 6
    assert data["pendingVersion"] == 8
    assert data["currentEntity"] == "client.app.7"
    assert data["lastRotationTime"] == "2024-05-01T03:00:00Z"
    assert data["lastVerifiedTime"] == "2024-05-01T02:59:59Z"
    assert data["rotation"] == {
        "id": "r-8",
        "version": 8,
        "step": "RollingBack",
        "startedAt": "2024-05-01T03:00:00Z",
        "attempt": 2,
        "entity": "client.app.8",
        "reason": "VerifyFailed",
        "message": "read back differs",
        "transient": False,
        "holder": "host-1/42/ab12cd",
        "heartbeatAt": "2024-05-01T03:00:03Z",
    }
    assert data["conditions"][0] == {
        "type": "Ready",
        "status": "True",
        "reason": "Promoted",
        "message": "version 7 promoted",
        "lastTransitionTime": "2024-05-01T03:00:00Z",
        "observedGeneration": 3,
    }
    assert data["conditions"][1]["lastTransitionTime"] == "2024-05-01T03:00:00.000005Z"
    assert data["history"][1] == {
        "rotationId": "r-6",
        "version": 6,
        "result": "RolledBack",
        "startedAt": "2024-05-01T03:00:00Z",
        "finishedAt": "2024-05-01T03:00:00Z",
        "reason": "ApplyFailed",
        "message": "mon said no",
    }
    assert data["observedGeneration"] == 3
    assert data["consecutiveFailures"] == 2
    assert data["nextRetryTime"] == "2024-05-01T03:00:30Z"
    assert data["retiring"] == [
        {
            "entity": "client.app.6",
            "notBefore": "2024-05-01T03:10:00Z",
            "blockedReason": "in use",
            "attempts": 2,
        }
    ]
    json.dumps(data)


def test_round_trip() -> None:
    status = full_status()
    assert Status.from_dict(json.loads(json.dumps(status.to_dict()))) == status


def test_initial_round_trip_writes_nulls_for_merge_patch() -> None:
    data = Status().to_dict()
    assert data["rotation"] is None
    assert data["pendingVersion"] is None
    assert Status.from_dict(data) == Status()


@pytest.mark.parametrize("empty", [None, {}])
def test_from_dict_tolerates_empty(empty: dict[str, object] | None) -> None:
    assert Status.from_dict(empty) == Status()


def test_from_dict_tolerates_partial_and_empty_rotation() -> None:
    status = Status.from_dict({"phase": "Promoted", "currentVersion": 3, "rotation": {}})
    assert status == Status(phase=Phase.PROMOTED, current_version=3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"phase": "Sleeping"}, "status.phase: unknown phase 'Sleeping'"),
        ({"currentVersion": "7"}, "status.currentVersion: must be an integer"),
        (
            {"lastRotationTime": "yesterday"},
            "status.lastRotationTime: invalid RFC 3339 time 'yesterday'",
        ),
        ({"history": {}}, "status.history: must be a list"),
        (
            {"history": [{"rotationId": "r", "version": 1, "result": "Maybe"}]},
            "status.history[0].result: must be",
        ),
        (
            {"rotation": {"id": "r", "version": 1, "step": "Dancing"}},
            "status.rotation.step: unknown step",
        ),
        (
            {"rotation": {"version": 1, "step": "Pending", "startedAt": "2024-01-01T00:00:00Z"}},
            "status.rotation.id: required",
        ),
        (
            {"conditions": [{"type": "Ready", "status": "Yes"}]},
            "status.conditions[0].status: must be True, False",
        ),
    ],
)
def test_from_dict_reports_bad_content(data: dict[str, object], message: str) -> None:
    with pytest.raises(StatusError, match=re.escape(message)):
        Status.from_dict(data)


def test_times() -> None:
    assert format_time(datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05Z"
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2024, 1, 2, 5, 4, 5, tzinfo=plus_two)) == "2024-01-02T03:04:05Z"
    assert parse_time("2024-01-02T05:04:05+02:00") == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_time("2024-01-02T03:04:05.25Z") == datetime(
        2024, 1, 2, 3, 4, 5, 250000, tzinfo=UTC
    )


def test_to_dict_refuses_a_sensitive_value_smuggled_in() -> None:
    canary = Sensitive("CANARY-s3cr3t")
    entry = HistoryEntry("r", 1, "Failed", T0, T0, reason="X", message=canary)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"status\.history\[0\]\.message: a Sensitive value"):
        replace(Status(), history=(entry,)).to_dict()
