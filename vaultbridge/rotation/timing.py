"""Pure timing around the state machine: retry backoff, compliance, retirement timing."""

from __future__ import annotations

from datetime import datetime, timedelta

from vaultbridge.model.status import COMPLIANT, Condition, ConditionStatus, Status

DEFAULT_BACKOFF_BASE = timedelta(seconds=5)
DEFAULT_BACKOFF_CAP = timedelta(minutes=10)
# A failure a human must fix (unknown option, permission denied) is still retried, slowly: the
# fix may come from outside (a Vault path created, a cap granted) without any change to the CR.
PERMANENT_BACKOFF_BASE = timedelta(minutes=1)
PERMANENT_BACKOFF_CAP = timedelta(hours=1)
_MAX_EXPONENT = 32  # 5s * 2**32 is far beyond any sane cap; avoids huge ints


def backoff_delay(
    failures: int,
    jitter: float,
    base: timedelta = DEFAULT_BACKOFF_BASE,
    cap: timedelta = DEFAULT_BACKOFF_CAP,
) -> timedelta:
    """Capped exponential backoff with full jitter, never below ``base / 2``.

    ``failures`` counts consecutive failures including the one just seen; ``jitter`` is a
    uniform draw in [0, 1). The ceiling is ``min(cap, base * 2 ** (failures - 1))``.
    """
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    exponent = min(max(failures - 1, 0), _MAX_EXPONENT)
    ceiling = min(cap, base * (1 << exponent))
    return max(base / 2, ceiling * jitter)


def retry_delay(failures: int, jitter: float, *, transient: bool) -> timedelta:
    """Backoff after a failure: fast for transient problems, slow for ones a human must fix."""
    if transient:
        return backoff_delay(failures, jitter)
    return backoff_delay(failures, jitter, PERMANENT_BACKOFF_BASE, PERMANENT_BACKOFF_CAP)


def compliance(
    status: Status, max_age: timedelta | None, now: datetime, generation: int
) -> Condition:
    """The ``Compliant`` condition: is the live credential younger than ``max_age``?

    Keeps the existing condition's ``last_transition_time`` when its status does not change.
    """
    last = status.last_rotation_time
    value: ConditionStatus
    if max_age is None:
        value, reason, message = "True", "NoMaxAge", "no maxAge is set"
    elif last is None:
        value, reason, message = "Unknown", "NeverRotated", "no rotation recorded yet"
    else:
        age = now - last
        shown = f"last rotation {_human(age)} ago, maxAge {_human(max_age)}"
        if age <= max_age:
            value, reason, message = "True", "WithinMaxAge", shown
        else:
            value, reason, message = "False", "MaxAgeExceeded", shown
    existing = status.condition(COMPLIANT)
    since = existing.last_transition_time if existing and existing.status == value else now
    return Condition(COMPLIANT, value, reason, message, since, generation)


def due_retirements(status: Status, now: datetime) -> tuple[str, ...]:
    """Entities whose grace has passed: send ``RetireDue`` for each."""
    return tuple(r.entity for r in status.retiring if r.not_before <= now)


def next_retirement_wake(status: Status, now: datetime) -> timedelta | None:
    """How long until the next retirement that is not yet due (None: none is waiting)."""
    future = [r.not_before for r in status.retiring if r.not_before > now]
    return min(future) - now if future else None


def _human(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [f"{days}d"] if days else []
    if hours:
        parts.append(f"{hours}h")
    if minutes and not days:
        parts.append(f"{minutes}m")
    if not parts:
        parts.append(f"{seconds}s")
    return "".join(parts)
