"""What an entry point of the engine did: the ``Outcome`` the CLI prints and the controller
schedules from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from vaultbridge.model.spec import CredentialRef

Result = Literal[
    "promoted", "unchanged", "rolled-back", "failed", "planned", "in-flight", "finalized"
]


@dataclass
class Outcome:
    """What a sync/rotate/rollback/reconcile did; ``ok`` is the CLI's exit status."""

    ref: CredentialRef
    result: Result
    version: int | None = None
    message: str = ""
    reason: str = ""
    retry_after: timedelta | None = None
    plan: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result in ("promoted", "unchanged", "planned", "finalized")


def earliest(a: timedelta | None, b: timedelta | None) -> timedelta | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
