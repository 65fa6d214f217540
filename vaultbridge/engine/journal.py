"""The journal writes and other bookkeeping of one rotation, off the rotation's thread: the
status write-behind queue, Events coalesced behind it, and the heartbeat of a long step."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal

from vaultbridge.engine.lanes import Lane, Timer, Timers
from vaultbridge.engine.ports import CredentialObject
from vaultbridge.model.status import Status


@dataclass(frozen=True)
class StatusWrite:
    """One journal write: ``status`` over ``credential``; ``expect_version`` makes it a claim
    (refused if the CR changed since it was read)."""

    credential: CredentialObject
    status: Status
    expect_version: str | None = None


Bookkeeping = Callable[[], object]
"""Work beside the status writes (moving Vault's labels): no arguments, failures its own."""


class Journal:
    """The journal writes and other bookkeeping of one rotation, off the rotation's thread.

    The claim (the first status write) goes out at once. A later status write is deferred for
    ``defer`` seconds and replaced by any newer one in the meantime: a rotation that finishes
    quickly writes its final status only, one that hangs shows its progress. ``barrier()``
    sends what is deferred and waits until everything is written, re-raising the first
    failure; the engine calls it before every action whose journal step must be durable
    first. Other bookkeeping (Vault labels) runs beside the status writes, in its own order;
    bookkeeping submitted ``later`` (the pending label) waits like a status write, and is
    dropped if the rotation's next bookkeeping comes first: a quick rotation moves Vault's
    labels once, a slow one shows its pending version (never before its claim has landed).

    Events follow the status: a step's Normal Event waits as long as its status write may, and
    the steps that pass meanwhile are reported together in one Event (``Promoted: version 7
    promoted (steps: RotationStarted → Applied → Verified → Promoted)``). Each Event costs the
    API server as much as a status write, and four per rotation were a third of a rotation's
    CPU. A Warning goes out at once, after what was held back.
    """

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        timers: Timers,
        save: Callable[[StatusWrite], object],
        defer: float = 0.25,
    ) -> None:
        self.save = save
        self.status_lane = Lane(pool)
        self.side_lane = Lane(pool)
        self.timers = timers
        self.pending: list[Future[Any]] = []
        self.side_pending: list[Future[Any]] = []
        self.failed: BaseException | None = None
        self.defer = defer
        self.lock = threading.Lock()
        self.deferred: StatusWrite | None = None
        self.deferred_side: Bookkeeping | None = None
        self.after_status: list[Bookkeeping] = []
        self.timer: Timer | None = None
        self.held_events: list[tuple[str, str]] = []
        self.send_event: Callable[[Literal["Normal", "Warning"], str, str], None] | None = None
        self.last: StatusWrite | None = None
        self.beat: Timer | None = None
        self.closed = False

    def event(
        self,
        send: Callable[[Literal["Normal", "Warning"], str, str], None],
        type: Literal["Normal", "Warning"],
        reason: str,
        message: str,
    ) -> None:
        """Record an Event (``send`` must not block: it queues the Event for sending)."""
        with self.lock:
            self.send_event = send
            if type != "Normal":
                self._send_events()
                send(type, reason, message)
                return
            self.held_events.append((reason, message))
            self._arm()

    def _send_events(self) -> None:
        if not self.held_events or self.send_event is None:
            return
        reason, message = self.held_events[-1]
        if len(self.held_events) > 1:
            message += f" (steps: {' → '.join(r for r, _ in self.held_events)})"
        self.held_events = []
        self.send_event("Normal", reason, message)

    def _arm(self) -> None:
        if self.timer is None:
            self.timer = self.timers.call_later(self.defer, self._due)

    def _due(self) -> None:
        self.flush()
        with self.lock:
            self.timer = None
            if self.deferred_side is not None:
                call, self.deferred_side = self.deferred_side, None
                self.side_pending.append(
                    self.side_lane.submit(functools.partial(self._once_claimed, call))
                )
            self._send_events()

    def submit(self, call: Bookkeeping, *, later: bool = False, after_status: bool = False) -> None:
        """Bookkeeping that need not wait for the status writes (nor they for it); ``later``:
        only if the rotation is still under way when its deferred status goes out;
        ``after_status``: started just after the next status write is (the final labels: the
        final status, the longer request, goes first)."""
        with self.lock:
            if later:
                self.deferred_side = call
                self._arm()
                return
            self.deferred_side = None  # superseded
            if after_status:
                self.after_status.append(call)
                return
            self.side_pending.append(self.side_lane.submit(call))

    def _once_claimed(self, call: Bookkeeping) -> None:
        """Run ``call`` after the status writes sent so far, unless one of them failed."""
        with self.lock:
            sent = list(self.pending)
        for future in sent:
            future.exception()
        if self.failed is None:
            call()

    def drain_side(self) -> None:
        """Drop bookkeeping still held back and wait for what was sent (failures are the
        bookkeeping's own to report)."""
        with self.lock:
            self.deferred_side = None
            pending, self.side_pending = self.side_pending, []
        for future in pending:
            future.exception()

    def submit_status(self, write: StatusWrite) -> None:
        """A claim goes out at once; any other write is deferred (replaced by a newer one)."""
        with self.lock:
            if write.expect_version is not None:
                self._send(write)
                return
            self.deferred = write
            self._arm()

    def keep_alive(
        self, every: float, refreshed: Callable[[StatusWrite], StatusWrite | None]
    ) -> None:
        """While the rotation lasts, write the latest status again every ``every`` seconds,
        passed through ``refreshed`` (a fresh heartbeat; None: nothing to keep alive any more):
        the journal shows its holder is still at it."""

        def beat() -> None:
            with self.lock:
                latest = self.deferred or self.last
                fresh = refreshed(latest) if latest is not None else None
                if self.closed or fresh is None:
                    return  # over, or its final status is on its way: nothing to keep alive
                self.deferred = None  # what was held back goes out now, with the heartbeat
                self._send(fresh)
                self.beat = self.timers.call_later(every, beat)

        with self.lock:
            self.beat = self.timers.call_later(every, beat)

    def flush(self) -> None:
        """Send the deferred status write now, then what waits for it (held Events stay held)."""
        with self.lock:
            if self.deferred is not None:
                write, self.deferred = self.deferred, None
                self._send(write)
            for call in self.after_status:
                self.side_pending.append(self.side_lane.submit(call))
            self.after_status = []

    def _send(self, write: StatusWrite) -> None:
        # what a heartbeat writes again: never as a claim (that precondition held once)
        self.last = replace(write, expect_version=None)
        call = functools.partial(self._unless_failed, write)
        self.pending.append(self.status_lane.submit(call))

    def _unless_failed(self, write: StatusWrite) -> object:
        if self.failed is not None:  # nothing after a failed write (a lost claim) may land
            raise self.failed
        try:
            return self.save(write)
        except BaseException as exc:
            self.failed = exc
            raise

    def barrier(self, *, bookkeeping: bool = True) -> None:
        """Wait for the status writes, and with ``bookkeeping`` for the other writes too."""
        self.flush()
        with self.lock:
            pending, self.pending = self.pending, []
            if bookkeeping:
                pending += self.side_pending
                self.side_pending = []
        for future in pending:
            future.result()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if exc_info[0] is None:
                self.barrier()
            else:  # already failing: write what is queued, keep the original error
                self.flush()
                for future in [*self.pending, *self.side_pending]:
                    future.exception()
        finally:
            with self.lock:
                self.deferred_side = None  # the rotation is over: its pending label is moot
                self.closed = True
                for timer in (self.timer, self.beat):
                    if timer is not None:
                        timer.cancel()
                self.timer = self.beat = None
                self._send_events()
