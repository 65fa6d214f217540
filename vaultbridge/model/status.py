"""The ``status`` of a CredentialRotation: phase, conditions, versions, journal, history.

``Status.to_dict()`` and ``Status.from_dict()`` convert to and from the CRD's camelCase JSON.
Fields that are absent are written as ``null`` so that a JSON merge patch clears them.
Nothing here ever holds a credential value: only versions, entity names, reasons and times.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any, Final, Literal, cast

from vaultbridge.model.sensitive import Sensitive

_INTERNED_LENGTH = 200  # texts up to this long are kept once (sys.intern)

READY: Final = "Ready"
ROTATING: Final = "Rotating"
DEGRADED: Final = "Degraded"
COMPLIANT: Final = "Compliant"

ConditionStatus = Literal["True", "False", "Unknown"]
HistoryResult = Literal["Promoted", "RolledBack", "Failed"]

_CONDITION_STATUSES: Final = ("True", "False", "Unknown")
_HISTORY_RESULTS: Final = ("Promoted", "RolledBack", "Failed")


class StatusError(ValueError):
    """A stored status could not be read back."""


class Phase(StrEnum):
    IDLE = "Idle"
    PENDING = "Pending"
    APPLIED = "Applied"
    VERIFIED = "Verified"
    PROMOTED = "Promoted"
    RETIRING = "Retiring"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class JournalStep(StrEnum):
    """How far the in-flight rotation got; the next action follows from it."""

    PENDING = "Pending"
    APPLIED = "Applied"
    VERIFIED = "Verified"
    ROLLING_BACK = "RollingBack"


@dataclass(frozen=True, slots=True)
class Condition:
    """A condition in the shape of ``metav1.Condition``."""

    type: str
    status: ConditionStatus
    reason: str
    message: str
    last_transition_time: datetime
    observed_generation: int


def set_condition(  # noqa: PLR0917 - mirrors metav1.Condition's fields
    conditions: tuple[Condition, ...],
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int,
) -> tuple[Condition, ...]:
    """Set condition ``type``; ``last_transition_time`` only moves when ``status`` changes."""
    existing = find_condition(conditions, type)
    since = existing.last_transition_time if existing and existing.status == status else now
    updated = Condition(type, status, reason, message, since, generation)
    if existing is None:
        return (*conditions, updated)
    return tuple(updated if condition.type == type else condition for condition in conditions)


def find_condition(conditions: tuple[Condition, ...], type: str) -> Condition | None:
    return next((condition for condition in conditions if condition.type == type), None)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One finished rotation. ``reason`` is empty for a promotion."""

    rotation_id: str
    version: int
    result: HistoryResult
    started_at: datetime
    finished_at: datetime
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class Journal:
    """The in-flight rotation, written to the status before each side effect.

    ``entity`` is the cephx entity the new version lives in (alternate strategy), else None.
    ``reason``/``message``/``transient`` record the failure that started a rollback, so the
    outcome can be reported even after a restart in the middle of it.

    ``holder`` is the engine driving the rotation and ``heartbeat`` when it last wrote the
    journal: another engine takes the rotation over only after the holder has been silent for
    a while (None: nobody drives it, e.g. a rollback that failed, or a journal of an older
    vaultbridge; it may be resumed at once).
    """

    id: str
    version: int
    step: JournalStep
    started_at: datetime
    attempt: int = 1
    entity: str | None = None
    reason: str | None = None
    message: str | None = None
    transient: bool = True
    holder: str | None = None
    heartbeat: datetime | None = None
    # the cluster the rotation runs in (its key; None: the default) and that cluster's fsid
    # when it started: every step checks it still talks to that cluster
    cluster: str | None = None
    fsid: str | None = None

    def held_by(self, holder: str | None, now: datetime) -> Journal:
        """The journal as ``holder`` writes it at ``now``."""
        return replace(self, holder=holder, heartbeat=now)


@dataclass(frozen=True, slots=True)
class Retirement:
    """An earlier cephx generation (alternate strategy) awaiting removal after ``not_before``."""

    entity: str
    not_before: datetime
    blocked_reason: str | None = None
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class Status:
    phase: Phase = Phase.IDLE
    conditions: tuple[Condition, ...] = ()
    current_version: int | None = None
    previous_version: int | None = None
    pending_version: int | None = None
    current_entity: str | None = None
    last_rotation_time: datetime | None = None
    last_verified_time: datetime | None = None
    rotation: Journal | None = None
    history: tuple[HistoryEntry, ...] = ()
    observed_generation: int = 0
    consecutive_failures: int = 0
    next_retry_time: datetime | None = None
    retiring: tuple[Retirement, ...] = ()

    def condition(self, type: str) -> Condition | None:
        return find_condition(self.conditions, type)

    def with_condition(  # noqa: PLR0917 - same order as set_condition
        self,
        type: str,
        status: ConditionStatus,
        reason: str,
        message: str,
        now: datetime,
        generation: int,
    ) -> Status:
        conditions = set_condition(self.conditions, type, status, reason, message, now, generation)
        return replace(self, conditions=conditions)

    def to_dict(self) -> dict[str, Any]:
        """The CRD ``status`` object (camelCase, RFC 3339 UTC times, ``null`` for absent)."""
        result: dict[str, Any] = {
            "phase": str(self.phase),
            "conditions": [
                {
                    "type": c.type,
                    "status": c.status,
                    "reason": c.reason,
                    "message": c.message,
                    "lastTransitionTime": format_time(c.last_transition_time),
                    "observedGeneration": c.observed_generation,
                }
                for c in self.conditions
            ],
            "currentVersion": self.current_version,
            "previousVersion": self.previous_version,
            "pendingVersion": self.pending_version,
            "currentEntity": self.current_entity,
            "lastRotationTime": _format_optional(self.last_rotation_time),
            "lastVerifiedTime": _format_optional(self.last_verified_time),
            "rotation": None if self.rotation is None else _journal_to_dict(self.rotation),
            "history": [
                {
                    "rotationId": h.rotation_id,
                    "version": h.version,
                    "result": h.result,
                    "startedAt": format_time(h.started_at),
                    "finishedAt": format_time(h.finished_at),
                    "reason": h.reason,
                    "message": h.message,
                }
                for h in self.history
            ],
            "observedGeneration": self.observed_generation,
            "consecutiveFailures": self.consecutive_failures,
            "nextRetryTime": _format_optional(self.next_retry_time),
            "retiring": [
                {
                    "entity": r.entity,
                    "notBefore": format_time(r.not_before),
                    "blockedReason": r.blocked_reason,
                    "attempts": r.attempts,
                }
                for r in self.retiring
            ],
        }
        _refuse_sensitive(result, "status")
        return result

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any] | None) -> Status:
        """Read a stored status; ``None`` or ``{}`` gives the initial (Idle) status."""
        if not obj:
            return cls()
        reader = _Reader(obj, "status")
        phase_text = reader.optional_str("phase") or Phase.IDLE.value
        try:
            phase = Phase(phase_text)
        except ValueError:
            raise StatusError(f"status.phase: unknown phase {phase_text!r}") from None
        return cls(
            phase=phase,
            conditions=tuple(_condition_from(item) for item in reader.items("conditions")),
            current_version=reader.optional_int("currentVersion"),
            previous_version=reader.optional_int("previousVersion"),
            pending_version=reader.optional_int("pendingVersion"),
            current_entity=reader.optional_str("currentEntity"),
            last_rotation_time=reader.optional_time("lastRotationTime"),
            last_verified_time=reader.optional_time("lastVerifiedTime"),
            rotation=_journal_from(reader.optional_mapping("rotation")),
            history=tuple(_history_from(item) for item in reader.items("history")),
            observed_generation=reader.optional_int("observedGeneration") or 0,
            consecutive_failures=reader.optional_int("consecutiveFailures") or 0,
            next_retry_time=reader.optional_time("nextRetryTime"),
            retiring=tuple(_retirement_from(item) for item in reader.items("retiring")),
        )


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix; fractional seconds only when present."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    timespec = "microseconds" if moment.microsecond else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


@lru_cache(maxsize=4096)
def _parse_time_shared(text: str) -> datetime:
    """``parse_time``, one object for equal texts (a status's conditions share their times)."""
    return parse_time(text)


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 time (``Z`` or offset) into an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise StatusError(f"invalid RFC 3339 time {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _format_optional(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


def _journal_to_dict(journal: Journal) -> dict[str, Any]:
    body = {
        "id": journal.id,
        "version": journal.version,
        "step": str(journal.step),
        "startedAt": format_time(journal.started_at),
        "attempt": journal.attempt,
        "entity": journal.entity,
        "reason": journal.reason,
        "message": journal.message,
        "transient": journal.transient,
        "holder": journal.holder,
        "heartbeatAt": _format_optional(journal.heartbeat),
    }
    if journal.cluster is not None:
        body["cluster"] = journal.cluster
    if journal.fsid is not None:
        body["fsid"] = journal.fsid
    return body


def _refuse_sensitive(value: object, path: str) -> None:
    if isinstance(value, Sensitive):
        raise TypeError(f"{path}: a Sensitive value must never be stored in the status")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_sensitive(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_sensitive(item, f"{path}[{index}]")


class _Reader:
    """Typed, path-aware access to one JSON object of the stored status."""

    def __init__(self, obj: Mapping[str, Any], path: str) -> None:
        if not isinstance(obj, Mapping):
            raise StatusError(f"{path}: must be an object")
        self.obj = obj
        self.path = path

    def fail(self, key: str, what: str) -> StatusError:
        return StatusError(f"{self.path}.{key}: {what}")

    def optional_str(self, key: str, *, shared: bool = True) -> str | None:
        value = self.obj.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            # one copy of each short text: the controller holds a parsed status per CR, and
            # most of their condition types, reasons and messages are the same; texts unique
            # to one status (``shared=False``: times, rotation ids) would only grow the table
            return sys.intern(value) if shared and len(value) <= _INTERNED_LENGTH else value
        raise self.fail(key, "must be a string")

    def required_str(self, key: str, *, shared: bool = True) -> str:
        value = self.optional_str(key, shared=shared)
        if value is None:
            raise self.fail(key, "required")
        return value

    def optional_int(self, key: str) -> int | None:
        value = self.obj.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, "must be an integer")
        return value

    def required_int(self, key: str) -> int:
        value = self.optional_int(key)
        if value is None:
            raise self.fail(key, "required")
        return value

    def optional_bool(self, key: str, default: bool) -> bool:
        value = self.obj.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false")
        return value

    def optional_time(self, key: str) -> datetime | None:
        value = self.optional_str(key, shared=False)
        if not value:
            return None
        try:
            return _parse_time_shared(value)
        except StatusError as exc:
            raise self.fail(key, str(exc)) from None

    def required_time(self, key: str) -> datetime:
        value = self.optional_time(key)
        if value is None:
            raise self.fail(key, "required")
        return value

    def optional_mapping(self, key: str) -> _Reader | None:
        value = self.obj.get(key)
        if not value:
            return None
        if not isinstance(value, Mapping):
            raise self.fail(key, "must be an object")
        return _Reader(value, f"{self.path}.{key}")

    def items(self, key: str) -> list[_Reader]:
        value = self.obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(key, "must be a list")
        return [_Reader(item, f"{self.path}.{key}[{index}]") for index, item in enumerate(value)]


def _condition_from(reader: _Reader) -> Condition:
    status = reader.required_str("status")
    if status not in _CONDITION_STATUSES:
        raise reader.fail("status", f"must be True, False or Unknown, got {status!r}")
    return Condition(
        type=reader.required_str("type"),
        status=cast(ConditionStatus, status),
        reason=reader.optional_str("reason") or "",
        message=reader.optional_str("message") or "",
        last_transition_time=reader.required_time("lastTransitionTime"),
        observed_generation=reader.optional_int("observedGeneration") or 0,
    )


def _journal_from(reader: _Reader | None) -> Journal | None:
    if reader is None:
        return None
    step = reader.required_str("step")
    try:
        journal_step = JournalStep(step)
    except ValueError:
        raise reader.fail("step", f"unknown step {step!r}") from None
    return Journal(
        id=reader.required_str("id", shared=False),
        version=reader.required_int("version"),
        step=journal_step,
        started_at=reader.required_time("startedAt"),
        attempt=reader.optional_int("attempt") or 1,
        entity=reader.optional_str("entity"),
        reason=reader.optional_str("reason"),
        message=reader.optional_str("message"),
        transient=reader.optional_bool("transient", True),
        holder=reader.optional_str("holder"),
        heartbeat=reader.optional_time("heartbeatAt"),
        cluster=reader.optional_str("cluster"),
        fsid=reader.optional_str("fsid"),
    )


def _history_from(reader: _Reader) -> HistoryEntry:
    result = reader.required_str("result")
    if result not in _HISTORY_RESULTS:
        raise reader.fail("result", f"must be Promoted, RolledBack or Failed, got {result!r}")
    return HistoryEntry(
        rotation_id=reader.required_str("rotationId", shared=False),
        version=reader.required_int("version"),
        result=cast(HistoryResult, result),
        started_at=reader.required_time("startedAt"),
        finished_at=reader.required_time("finishedAt"),
        reason=reader.optional_str("reason") or "",
        message=reader.optional_str("message") or "",
    )


def _retirement_from(reader: _Reader) -> Retirement:
    return Retirement(
        entity=reader.required_str("entity"),
        not_before=reader.required_time("notBefore"),
        blocked_reason=reader.optional_str("blockedReason"),
        attempts=reader.optional_int("attempts") or 0,
    )
