"""A work queue keyed by credential: deduplicating, rate-limited, one item in flight per key.

Every trigger (watch event, webhook, agent file, poll, schedule, retry) ends up as
:meth:`WorkQueue.add`. Adds for a key that is already waiting merge into one item (the stronger
action wins: ``rotate`` over ``reconcile``; the earliest enqueue time is kept, so the measured
propagation latency covers the whole wait). A key being worked on is never handed out again until
:meth:`WorkQueue.done`; adds that arrive meanwhile wait as one merged item. ``done`` takes the
earliest time the key may run again (the per-credential minimum interval after a rotation, or the
backoff of a failure), so a failing credential never spins in a hot loop.

The queue is thread-safe and has no I/O; workers call :meth:`get` (blocking) and :meth:`done`.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

K = TypeVar("K", bound=Hashable)

Action = Literal["reconcile", "rotate"]
_STRENGTH: dict[str, int] = {"reconcile": 0, "rotate": 1}


@dataclass
class Item(Generic[K]):
    """One unit of work handed to a worker."""

    key: K
    action: Action
    trigger: str
    enqueued_at: float
    """Monotonic time of the first add this item merges (for propagation latency)."""
    merged: int = 1
    """How many adds were merged into this item."""


@dataclass
class _State(Generic[K]):
    pending: Item[K] | None = None
    pending_due: float = 0.0  # the earliest due time of the adds merged into ``pending``
    in_flight: bool = False
    not_before: float = 0.0
    scheduled_at: float | None = None  # due time of the heap entry that is live for this key


@dataclass(order=True)
class _Due(Generic[K]):
    due: float
    seq: int
    key: K = field(compare=False)


class WorkQueue(Generic[K]):
    """Deduplicating delayed work queue with one-in-flight-per-key semantics."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Condition()
        self._states: dict[K, _State[K]] = {}
        self._heap: list[_Due[K]] = []
        self._seq = itertools.count()
        self._closed = False
        self.adds = 0
        self.merges = 0

    # -- producers ----------------------------------------------------------------------------

    def add(
        self, key: K, action: Action = "reconcile", trigger: str = "watch", delay: float = 0.0
    ) -> bool:
        """Queue ``key``; returns False when it merged into an item already waiting."""
        now = self._clock()
        with self._lock:
            if self._closed:
                return False
            self.adds += 1
            state = self._states.setdefault(key, _State())
            merged = state.pending is not None
            due = max(now + delay, state.not_before)
            if state.pending is None:
                state.pending = Item(key, action, trigger, now)
                state.pending_due = due
            else:
                state.pending_due = min(state.pending_due, due)
                self.merges += 1
                item = state.pending
                item.merged += 1
                if _STRENGTH[action] > _STRENGTH[item.action]:
                    item.action = action
                    item.trigger = trigger
            self._schedule(key, state, due)
            return not merged

    def _schedule(self, key: K, state: _State[K], due: float) -> None:
        if state.in_flight:
            return  # done() schedules it
        if state.scheduled_at is not None and state.scheduled_at <= due:
            return
        state.scheduled_at = due
        heapq.heappush(self._heap, _Due(due, next(self._seq), key))
        self._lock.notify()

    # -- workers ------------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Item[K] | None:
        """The next due item (blocking); ``None`` on timeout or after :meth:`close`."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._lock:
            while not self._closed:
                now = self._clock()
                while self._heap:
                    head = self._heap[0]
                    state = self._states.get(head.key)
                    if state is None or state.scheduled_at != head.due or state.in_flight:
                        heapq.heappop(self._heap)  # stale entry
                        continue
                    if head.due > now:
                        break
                    heapq.heappop(self._heap)
                    state.scheduled_at = None
                    item = state.pending
                    if item is None:
                        continue
                    state.pending = None
                    state.in_flight = True
                    return item
                wait = None if not self._heap else self._heap[0].due - now
                if deadline is not None:
                    remaining = deadline - now
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._lock.wait(wait)
            return None

    def done(self, key: K, not_before: float | None = None) -> None:
        """The worker finished ``key``; it may run again from ``not_before`` (monotonic)."""
        with self._lock:
            state = self._states.get(key)
            if state is None:
                return
            state.in_flight = False
            if not_before is not None:
                state.not_before = max(state.not_before, not_before)
            if state.pending is not None:
                # an add during the work keeps its delay (a failure's backoff added as a retry)
                self._schedule(key, state, max(state.pending_due, state.not_before))
            elif state.not_before <= self._clock():
                del self._states[key]

    def forget(self, key: K) -> None:
        """Drop anything waiting for ``key`` (the object was deleted)."""
        with self._lock:
            state = self._states.get(key)
            if state is None:
                return
            state.pending = None
            if not state.in_flight:
                del self._states[key]

    def clear(self) -> None:
        """Drop every waiting item (leadership lost); items in flight finish normally."""
        with self._lock:
            for key in list(self._states):
                state = self._states[key]
                state.pending = None
                state.scheduled_at = None
                if not state.in_flight:
                    del self._states[key]
            self._heap.clear()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def reopen(self) -> None:
        with self._lock:
            self._closed = False

    # -- introspection ------------------------------------------------------------------------

    def busy(self, key: K) -> bool:
        """Is ``key`` waiting or being worked on?"""
        with self._lock:
            state = self._states.get(key)
            return state is not None and (state.in_flight or state.pending is not None)

    def in_flight(self) -> list[K]:
        with self._lock:
            return [key for key, state in self._states.items() if state.in_flight]

    def waiting(self) -> int:
        with self._lock:
            return sum(1 for state in self._states.values() if state.pending is not None)

    def __len__(self) -> int:
        return self.waiting()
