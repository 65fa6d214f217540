"""What every part of the engine shares: the clock, the jitter, this process's identity as a
journal holder, the takeover delay, the observer, and the hook that says whether this process
may still act (the controller's leadership)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from vaultbridge import rotation
from vaultbridge.engine.ports import CredentialObject
from vaultbridge.model.spec import CredentialRef

Observer = Callable[[CredentialRef, str, str], None]
"""Told of every step (``run:apply``, ``Promoted``, ...): the CLI's progress, the demo's log."""


class Interrupted(Exception):  # noqa: N818 - an interruption, not an error of the rotation
    """This process may no longer act (it lost its Lease): stopped before the next action.

    Nothing is rolled back: the journal names the step, and whoever acts next resumes it."""


@dataclass(frozen=True)
class Retention:
    """How earlier generations outlive a rotation: ``retire_after`` (None: they do not, the
    target has one entity) and how many are kept at most."""

    retire_after: timedelta | None = None
    keep_prior: int = 1


def always() -> bool:
    return True


@dataclass
class Runtime:
    """The engine's shared, injectable surroundings (tests pin the clock and the jitter)."""

    # who drives the rotations this engine journals: another engine (a CLI sync, the next
    # leader) takes one over only after this one has been silent for takeover_after; a
    # rotation that takes long writes its journal again every third of that
    holder: str
    takeover_after: timedelta = timedelta(seconds=30)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    jitter: Callable[[], float] = random.random
    observer: Observer | None = None
    may_act: Callable[[], bool] = always

    def observe(self, ref: CredentialRef, what: str, detail: str) -> None:
        if self.observer is not None:
            self.observer(ref, what, detail)

    def check_may_act(self, ref: CredentialRef, step: str) -> None:
        if not self.may_act():
            raise Interrupted(f"{ref}: stopped before {step}: this process may no longer act")

    def context(self, credential: CredentialObject, retention: Retention) -> rotation.Context:
        """What the state machine needs besides the status, for one step of ``credential``."""
        return rotation.Context(
            now=self.clock(),
            generation=credential.generation,
            history_limit=credential.spec.history_limit,
            jitter=self.jitter(),
            retire_after=retention.retire_after,
            keep_prior=retention.keep_prior,
            holder=self.holder,
            takeover_after=self.takeover_after,
        )
