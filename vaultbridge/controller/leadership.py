"""Whether this process acts: the Lease it holds, and the term (epoch) it holds it in.

Everything a leader starts (watches, workers, loops) is given the epoch it started in and
stops once that is over, so nothing of an earlier term outlives a lost Lease. The engine asks
:meth:`Leadership.leading_now` before each action of a rotation (its ``may_act`` hook).
"""

from __future__ import annotations

import logging
import random
import threading
import time

from vaultbridge.kube import LeaderElector

log = logging.getLogger(__name__)


class Leadership:
    def __init__(self, elector: LeaderElector, retry_period: float) -> None:
        self.elector = elector
        self.retry_period = retry_period
        self.leading = threading.Event()
        self.stopping = threading.Event()
        self.epoch = 0
        self.heartbeat = 0.0  # when the election loop last ran (readiness)

    def leading_now(self) -> bool:
        return self.leading.is_set() and self.elector.is_leader

    def acting(self, epoch: int) -> bool:
        """Is the term ``epoch`` still this process's (and is it not shutting down)?"""
        return self.epoch == epoch and self.leading.is_set() and not self.stopping.is_set()

    def begin(self) -> int:
        """A new term: its epoch."""
        self.epoch += 1
        log.info("%s is the leader: reconciling", self.elector.identity)
        self.leading.set()
        return self.epoch

    def end(self, why: str) -> bool:
        """End the term (False: there was none)."""
        if not self.leading.is_set():
            return False
        log.warning("%s stops acting: %s", self.elector.identity, why)
        self.leading.clear()
        self.epoch += 1
        return True

    def renew(self) -> bool | None:
        """Acquire or renew the Lease: True when a term begins, False when it ends, None
        when nothing changed."""
        holds = self.elector.try_acquire_or_renew()
        self.heartbeat = time.monotonic()
        if holds and not self.leading.is_set():
            return True
        if not holds and self.leading.is_set() and not self.elector.is_leader:
            return False
        return None

    def pause(self) -> None:
        """Between two rounds: a leader waits ``retry_period``; a standby waits on its watch
        of the Lease; at least ``retry_period`` unless the Lease is free (a watch that fails at
        once is not a hot loop). After rounds that failed with an API error, and no lease to
        keep, it backs off: ``retry_period`` doubled per failure up to the lease duration, with
        jitter (the API server unreachable is not a reason to ask it 300 times a second)."""
        began = time.monotonic()
        if self.leading.is_set() or self.elector.is_leader:
            self.stopping.wait(self.retry_period)
            return
        if self.elector.failures:
            step = self.retry_period * 2 ** min(self.elector.failures - 1, 8)
            cap = max(self.retry_period, self.elector.lease_duration)
            self.stopping.wait(min(step, cap) * (0.5 + random.random() / 2))
            return
        if self.elector.wait_as_standby(self.stopping, self._beat):
            return
        self.stopping.wait(max(0.0, self.retry_period - (time.monotonic() - began)))

    def _beat(self) -> None:
        self.heartbeat = time.monotonic()

    def alive(self) -> bool:
        """Has the election loop run lately?"""
        return time.monotonic() - self.heartbeat <= 3 * self.retry_period + 10
