"""The periodic drift sweep (``controller.resync_interval``), and the one a term of leadership
starts with: every credential the index holds is checked at once against what the watches
hold and one listing of Ceph per target kind, and only those that differ are queued
(``engine/drift.py``). After a term's first sweep, every Vault source's current version is read
once (one metadata read each): a trigger the previous leader accepted and never finished is
found there. A sweep that cannot list Ceph is tried again after capped, jittered
backoff; it never falls back to reconciling everything."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from vaultbridge.controller import memory
from vaultbridge.controller.index import CredentialIndex, Entry
from vaultbridge.controller.leadership import Leadership
from vaultbridge.controller.watches import Watches
from vaultbridge.controller.work import Workers
from vaultbridge.engine.drift import Observed, Sweep
from vaultbridge.engine.engine import Engine
from vaultbridge.model.errors import BackendError, PreconditionError
from vaultbridge.observability.metrics import Metrics
from vaultbridge.rotation import backoff_delay

log = logging.getLogger(__name__)

LISTED_WAIT = 0.2  # seconds between looks at whether both watches have listed


class Sweeper:
    def __init__(
        self,
        *,
        engine: Engine,
        index: CredentialIndex,
        watches: Watches,
        workers: Workers,
        leadership: Leadership,
        metrics: Metrics,
        interval: float,
        catch_up: Callable[[], object] = lambda: None,
    ) -> None:
        self.engine, self.index, self.watches, self.workers = engine, index, watches, workers
        # after a term's first sweep: what the previous leader may have accepted and not
        # finished (a trigger, a push) is only in Vault, which the sweep does not read
        self.catch_up = catch_up
        self.leadership, self.metrics, self.interval = leadership, metrics, interval
        self.last: Sweep | None = None
        self.last_seconds = 0.0

    def observed(self) -> list[tuple[Entry, Observed]]:
        return [
            (
                entry,
                Observed(
                    entry.ref,
                    entry.generation,
                    entry.spec,
                    entry.status,
                    entry.deleting,
                    self.watches.secret_seen(entry.ref.namespace, entry.spec.secret.name)
                    if entry.spec is not None
                    else None,
                ),
            )
            for entry in self.index.entries()
        ]

    def sweep(self, trigger: str = "resync") -> Sweep:
        """One sweep; the credentials found to differ are queued with ``trigger``."""
        started = time.monotonic()
        pairs = self.observed()
        try:
            result = self.engine.drift([item for _, item in pairs])
        except (BackendError, PreconditionError):
            self.metrics.drift_sweeps.labels("failed").inc()
            raise
        self.last_seconds = time.monotonic() - started
        self.last = result
        self.metrics.drift_sweeps.labels("ok").inc()
        seen = {entry.ref: entry for entry, _ in pairs}
        for ref, why in result.due:
            # a credential queued or changed since the snapshot is the watch's and the
            # workers' already: queuing it again would reconcile it twice
            if self.workers.queue.busy(ref) or self.index.get(ref) is not seen[ref]:
                continue
            self.metrics.drift_due.labels(why).inc()
            self.workers.enqueue(ref, trigger)
        log.info(
            "drift sweep: %d credentials checked with %d listings of Ceph in %.0f ms; %d queued%s",
            result.checked,
            result.listings,
            self.last_seconds * 1000,
            len(result.due),
            f" (refused by the caps, read one by one: {', '.join(result.refused)})"
            if result.refused
            else "",
        )
        return result

    def _catch_up(self) -> None:
        try:
            self.catch_up()
        except Exception:  # the poller logs each source's failure; this must not stop sweeps
            log.exception("catch-up with Vault failed")
        self.metrics.catch_ups.inc()

    def loop(self, epoch: int) -> None:
        """A term's sweeps: one as soon as both watches have listed, then every ``interval``
        (none after the first when it is 0)."""
        acting, stopping = self.leadership.acting, self.leadership.stopping
        watches = self.watches
        while acting(epoch) and not (watches.crs_listed.is_set() and watches.secrets_listed()):
            stopping.wait(LISTED_WAIT)
        failures, caught_up = 0, False
        while acting(epoch):
            try:
                self.sweep()
                if not caught_up:
                    caught_up = True
                    self._catch_up()
                memory.trim()  # what the sweep's listings and snapshot held
                failures, wait = 0, self.interval
            except (BackendError, PreconditionError) as exc:
                failures += 1
                wait = backoff_delay(failures, random.random()).total_seconds()
                if self.interval > 0:
                    wait = min(wait, self.interval)
                log.warning("drift sweep failed: %s; trying again in %.0f s", exc, wait)
            if wait <= 0 or stopping.wait(wait):
                return
