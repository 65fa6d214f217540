"""Fail fast while the API server does not answer at all.

When the API server is down, every thread with work in flight (journal writes, Events, the
Lease, the watches) sends its own requests into the outage, each costing a connection attempt.
After ``threshold`` connection failures in a row the breaker opens: requests fail at once, as
"API server unavailable (ApiServerBackingOff)", without touching the network, for a pause that
doubles (0.5 s up to 10 s). After each pause one request goes through; an answer of any kind
closes the breaker, another connection failure opens it for the next pause.

A request that failed at once was never sent, so nothing it would have written can have
landed. An HTTP error status is an answer, never a connection failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import urllib3

THRESHOLD = 3
BASE = 0.5
CAP = 10.0


class ApiServerBackingOff(urllib3.exceptions.HTTPError):
    """Raised instead of sending while the breaker is open (translated to KubeUnavailable)."""


class ConnectionBreaker:
    def __init__(
        self,
        *,
        threshold: int = THRESHOLD,
        base: float = BASE,
        cap: float = CAP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold, self.base, self.cap, self.clock = threshold, base, cap, clock
        self.failures = 0
        self.open_until: float | None = None
        self.trial = False  # one request let through after a pause, its answer awaited
        self.refused = 0
        self._lock = threading.Lock()

    def before(self) -> None:
        """Raise :class:`ApiServerBackingOff` unless this request may be sent."""
        with self._lock:
            if self.open_until is None:
                return
            if self.trial or self.clock() < self.open_until:
                self.refused += 1
                raise ApiServerBackingOff("the API server did not answer; backing off")
            self.trial = True

    def answered(self) -> None:
        with self._lock:
            self.failures, self.open_until, self.trial = 0, None, False

    def failed(self) -> None:
        """A connection failure (no answer at all)."""
        with self._lock:
            self.failures += 1
            self.trial = False
            if self.failures >= self.threshold:
                step = self.base * 2.0 ** min(self.failures - self.threshold, 8)
                self.open_until = self.clock() + min(self.cap, step)
