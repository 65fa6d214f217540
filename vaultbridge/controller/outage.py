"""One probe at a time while a backend is down, instead of every credential retrying on its own.

Each credential backs off on its own (capped exponential, with jitter), but a hundred
credentials due during a Vault outage still make hundreds of requests a minute between them.
The gate closes after ``threshold`` results in a row that say a backend is unavailable
(VaultUnavailable, KubeUnavailable, CephUnavailable, with no other result in between). While it
is closed:

- work items are held, not run;
- one held item at a time is let through as the probe, on a capped exponential backoff with
  jitter: 2 s, 4 s, 8 s, and so on up to 30 s (each between half and all of its step);
- the first result that is not an unavailability (the probe's, or that of an item already in
  flight) opens the gate, and every held item is queued again at once.

A credential's own backoff still applies to its own failures. The gate only stops the herd.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

UNAVAILABLE = {
    "VaultUnavailable": "vault",
    "KubeUnavailable": "kubernetes",
    "CephUnavailable": "ceph",
}
THRESHOLD = 3
PROBE_BASE = 2.0
PROBE_CAP = 30.0


def probe_delay(
    attempt: int, jitter: float, base: float = PROBE_BASE, cap: float = PROBE_CAP
) -> float:
    """Seconds before probe ``attempt`` (0, 1, ...): ``base * 2**attempt`` capped, times a
    jitter factor in [0.5, 1.0) from ``jitter`` in [0, 1)."""
    return float(min(cap, base * 2.0 ** min(attempt, 16)) * (0.5 + jitter / 2))


class OutageGate(Generic[K, T]):
    """Holds work items (``T``, keyed by ``key_of``) while a backend is down; ``requeue`` puts
    items back into the work queue (the probe, then everything on recovery)."""

    def __init__(
        self,
        key_of: Callable[[T], K],
        requeue: Callable[[list[T]], None],
        *,
        threshold: int = THRESHOLD,
        on_change: Callable[[str | None], None] = lambda down: None,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        schedule: Callable[[float, Callable[[], None]], None] | None = None,
        unavailable: Mapping[str, str] = UNAVAILABLE,
    ) -> None:
        self.key_of, self.requeue, self.threshold = key_of, requeue, threshold
        self.unavailable = unavailable  # the reasons this gate counts, and their backend
        self.on_change, self.clock, self.jitter = on_change, clock, jitter
        self.schedule = schedule or _timer
        self.down: str | None = None  # the backend the gate is closed for
        self.streak = 0
        self.attempt = 0
        self.probe: K | None = None  # the held item let through to probe
        self.held: dict[K, T] = {}
        self.probes = 0
        self._lock = threading.Lock()

    def admit(self, item: T) -> bool:
        """True: run ``item`` now. False: it is held until the gate opens (or it probes)."""
        key = self.key_of(item)
        with self._lock:
            if self.down is None or key == self.probe:
                return True
            self.held[key] = item
            return False

    def result(self, item: T, reason: str | None) -> None:
        """What running ``item`` ended in: ``reason`` of a failure (None: it succeeded)."""
        backend = self.unavailable.get(reason or "")
        key = self.key_of(item)
        release: list[T] = []
        with self._lock:
            was_probe = key == self.probe
            if was_probe:
                self.probe = None
            if backend is None:
                self.streak = 0
                if self.down is not None:
                    log.info(
                        "%s answers again: %d held credentials queued", self.down, len(self.held)
                    )
                    self.down = None
                    release = list(self.held.values())
                    self.held.clear()
                    self._changed(None)
            else:
                self.streak += 1
                if self.down is None and self.streak >= self.threshold:
                    self.down, self.attempt = backend, 0
                    log.warning(
                        "%s is unavailable (%d failures in a row): holding work, one probe at a"
                        " time",
                        backend,
                        self.streak,
                    )
                    self._changed(backend)
                    self._next_probe()
                elif self.down is not None and was_probe:
                    self.attempt += 1
                    self._next_probe()
        if release:
            self.requeue(release)

    def _changed(self, down: str | None) -> None:
        try:
            self.on_change(down)
        except Exception:  # a metric must never stop the gate
            log.exception("outage gate: on_change failed")

    def _next_probe(self) -> None:
        delay = probe_delay(self.attempt, self.jitter())
        self.schedule(delay, self._release_probe)

    def _release_probe(self) -> None:
        with self._lock:
            if self.down is None or self.probe is not None:
                return
            if not self.held:  # nothing waits: probe with the next item that comes
                self.down, self.streak = None, 0
                self._changed(None)
                return
            key, item = next(iter(self.held.items()))
            del self.held[key]
            self.probe = key
            self.probes += 1
        self.requeue([item])

    def holding(self) -> int:
        with self._lock:
            return len(self.held)


def _timer(delay: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.start()
