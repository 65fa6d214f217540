"""The one loop that applies the state machine's effects: ``rotation.step`` decides, the
handlers act, and what an action returns is fed back until the machine has nothing to run.

A rotation (``Engine._drive``), a retirement (``retire_due``) and a failure recorded before a
rotation starts (``_blocked``) differ only in their handlers: where a status goes (the
journal's write-behind queue, or one write), where an Event goes, and what an action does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, Protocol

from vaultbridge import rotation
from vaultbridge.model.status import Status


class Handlers(Protocol):
    """What the loop calls for each kind of effect."""

    def persist(self, status: Status) -> None: ...

    def emit(self, type: Literal["Normal", "Warning"], reason: str, message: str) -> None: ...

    def run(self, effect: rotation.Run) -> rotation.Event | None:
        """Perform the action; the event it produced, fed back into the machine."""
        ...


@dataclass
class Applied:
    """Where the loop ended: the last status, the earliest retry asked for, and the holder of
    a journal another engine drives (the loop stops at once on that)."""

    status: Status
    retry_after: timedelta | None = None
    held: rotation.HeldElsewhere | None = None


def apply(effects: Iterable[rotation.Effect], status: Status, handlers: Handlers) -> Applied:
    """Apply one batch of effects (no actions to run are expected in it)."""
    return _apply(effects, status, handlers, Applied(status))[0]


def drive(
    status: Status,
    event: rotation.Event,
    context: Callable[[], rotation.Context],
    handlers: Handlers,
) -> Applied:
    """Step the machine from ``event`` until an action produces no further event."""
    applied = Applied(status)
    next_event: rotation.Event | None = event
    while next_event is not None:
        status, effects = rotation.step(applied.status, next_event, context())
        applied.status = status
        applied, next_event = _apply(effects, status, handlers, applied)
        if applied.held is not None:
            break
    return applied


def _apply(
    effects: Iterable[rotation.Effect], status: Status, handlers: Handlers, applied: Applied
) -> tuple[Applied, rotation.Event | None]:
    next_event: rotation.Event | None = None
    for effect in effects:
        if isinstance(effect, rotation.Persist):
            handlers.persist(status)
        elif isinstance(effect, rotation.Emit):
            handlers.emit(effect.type, effect.reason, effect.message)
        elif isinstance(effect, rotation.RetryAfter):
            applied.retry_after = _earliest(applied.retry_after, effect.delay)
        elif isinstance(effect, rotation.HeldElsewhere):
            applied.held = effect
            return applied, None
        elif isinstance(effect, rotation.Run):
            next_event = handlers.run(effect)
    return applied, next_event


def _earliest(a: timedelta | None, b: timedelta | None) -> timedelta | None:
    if a is None:
        return b
    return a if b is None else min(a, b)
