"""Backoff bounds, compliance and retirement timing."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from vaultbridge.model.status import COMPLIANT, Retirement, Status, set_condition
from vaultbridge.rotation import backoff_delay, compliance, due_retirements, next_retirement_wake

NOW = datetime(2024, 5, 1, 3, 0, 0, tzinfo=UTC)
BASE = timedelta(seconds=5)
CAP = timedelta(minutes=10)


def test_backoff_bounds_random() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        failures = rng.randint(-2, 200)
        jitter = rng.random()
        delay = backoff_delay(failures, jitter)
        assert BASE / 2 <= delay <= CAP
        ceiling = min(CAP, BASE * 2 ** min(max(failures - 1, 0), 32))
        assert delay <= max(ceiling, BASE / 2)


def test_backoff_grows_and_caps() -> None:
    almost_one = 0.999999
    assert backoff_delay(1, almost_one) == BASE * almost_one
    assert backoff_delay(2, almost_one) > backoff_delay(1, almost_one)
    assert backoff_delay(4, almost_one) == BASE * 8 * almost_one
    assert backoff_delay(100, almost_one) == CAP * almost_one
    assert backoff_delay(10**9, 0.5) == CAP / 2


def test_backoff_never_hot_loops() -> None:
    assert backoff_delay(1, 0.0) == BASE / 2
    assert backoff_delay(50, 0.0) == BASE / 2
    custom = backoff_delay(3, 0.0, base=timedelta(seconds=1), cap=timedelta(seconds=30))
    assert custom == timedelta(milliseconds=500)


@pytest.mark.parametrize("jitter", [-0.1, 1.0, 2.0])
def test_backoff_rejects_bad_jitter(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter must be in"):
        backoff_delay(1, jitter)


def test_compliance_states() -> None:
    never = Status()
    assert compliance(never, None, NOW, 2).status == "True"
    assert compliance(never, None, NOW, 2).reason == "NoMaxAge"
    unknown = compliance(never, timedelta(days=30), NOW, 2)
    assert (unknown.status, unknown.reason, unknown.observed_generation) == (
        "Unknown",
        "NeverRotated",
        2,
    )
    fresh = replace(never, last_rotation_time=NOW - timedelta(days=3, hours=2))
    within = compliance(fresh, timedelta(hours=720), NOW, 2)
    assert (within.type, within.status, within.reason) == (COMPLIANT, "True", "WithinMaxAge")
    assert within.message == "last rotation 3d2h ago, maxAge 30d"
    stale = replace(never, last_rotation_time=NOW - timedelta(days=31))
    exceeded = compliance(stale, timedelta(hours=720), NOW, 2)
    assert (exceeded.status, exceeded.reason) == ("False", "MaxAgeExceeded")
    assert exceeded.last_transition_time == NOW
    exactly = replace(never, last_rotation_time=NOW - timedelta(hours=720))
    assert compliance(exactly, timedelta(hours=720), NOW, 2).status == "True"


def test_compliance_keeps_transition_time_while_status_holds() -> None:
    earlier = NOW - timedelta(days=1)
    conditions = set_condition((), COMPLIANT, "False", "MaxAgeExceeded", "", earlier, 1)
    status = Status(conditions=conditions, last_rotation_time=NOW - timedelta(days=40))
    assert compliance(status, timedelta(days=30), NOW, 2).last_transition_time == earlier
    rotated = replace(status, last_rotation_time=NOW)
    assert compliance(rotated, timedelta(days=30), NOW, 2).last_transition_time == NOW


def test_retirement_timing() -> None:
    status = Status(
        retiring=(
            Retirement("client.app.3", NOW + timedelta(minutes=5)),
            Retirement("client.app.2", NOW),
            Retirement("client.app.1", NOW - timedelta(minutes=1)),
        )
    )
    assert due_retirements(status, NOW) == ("client.app.2", "client.app.1")
    assert next_retirement_wake(status, NOW) == timedelta(minutes=5)
    assert next_retirement_wake(Status(), NOW) is None
