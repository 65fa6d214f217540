"""Inputs (events) and outputs (effects) of the rotation state machine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Literal


class Action(StrEnum):
    """An I/O action the engine performs on the machine's behalf."""

    SNAPSHOT = "Snapshot"
    APPLY = "Apply"
    VERIFY = "Verify"
    PROMOTE = "Promote"
    RESTORE = "Restore"
    RETIRE = "Retire"


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """Begin rotating to Vault ``version``; ``entity`` is the new cephx entity (alternate)."""

    rotation_id: str
    version: int
    entity: str | None = None
    cluster: str | None = None  # the cluster's key (None: the default) and its fsid
    fsid: str | None = None


@dataclass(frozen=True)
class Resume:
    """The engine (re)started and found ``status.rotation`` set, or a retry is due."""


@dataclass(frozen=True)
class Succeeded:
    """The last ``Run(action)`` succeeded."""

    action: Action


@dataclass(frozen=True)
class Failed:
    """The last ``Run(action)`` failed. ``reason`` is CamelCase; neither may hold a secret.

    ``transient=False`` (a configuration or permission problem) means no automatic retry.
    """

    action: Action
    reason: str
    message: str
    transient: bool = True


@dataclass(frozen=True)
class RetireDue:
    """The grace period of a retiring entity has passed (or a blocked retire is retried)."""

    entity: str


@dataclass(frozen=True)
class RetireBlocked:
    """``Run(RETIRE)`` could not remove ``entity`` yet (for example, it is still in use)."""

    entity: str
    reason: str


@dataclass(frozen=True)
class Retired:
    """``Run(RETIRE)`` removed ``entity`` (or found it already gone)."""

    entity: str


Event = Start | Resume | Succeeded | Failed | RetireDue | RetireBlocked | Retired


# -- effects ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Persist:
    """Write the returned status to the CR now, before performing any later effect."""


@dataclass(frozen=True)
class Emit:
    """Record a Kubernetes Event on the CredentialRotation."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Run:
    """Perform ``action`` and feed back exactly one result event.

    For SNAPSHOT..RESTORE the result is ``Succeeded(action)`` or ``Failed(action, ...)``;
    for RETIRE it is ``Retired(entity)`` or ``RetireBlocked(entity, reason)``.
    ``version`` is None only for RETIRE.
    """

    action: Action
    version: int | None
    entity: str | None = None


@dataclass(frozen=True)
class RetryAfter:
    """Wake the credential up again after ``delay``.

    With ``entity`` set: send ``RetireDue(entity)``. Otherwise: if ``status.rotation`` is set
    send ``Resume()``; if not, re-evaluate the credential (a sync, which may ``Start`` anew).
    """

    delay: timedelta
    entity: str | None = None


@dataclass(frozen=True)
class HeldElsewhere:
    """The rotation in flight is driven by another engine (``holder``) that was heard of
    recently: do nothing now; it may be taken over after ``delay`` of silence from it."""

    holder: str
    rotation_id: str
    delay: timedelta


Effect = Persist | Emit | Run | RetryAfter | HeldElsewhere
