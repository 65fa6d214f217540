"""The work queue's consumers: one reconcile (or rotate) in flight per credential, failures
retried after capped, jittered backoff, and the outcome counted in the metrics."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from vaultbridge.controller import memory
from vaultbridge.controller.leadership import Leadership
from vaultbridge.controller.outage import OutageGate
from vaultbridge.engine.engine import Engine, Interrupted
from vaultbridge.engine.outcome import Outcome
from vaultbridge.kube import KubeNotFound
from vaultbridge.model.cluster import DEFAULT_CLUSTER
from vaultbridge.model.errors import BackendError, PreconditionError
from vaultbridge.model.spec import CredentialRef
from vaultbridge.observability.metrics import Metrics
from vaultbridge.rotation import backoff_delay
from vaultbridge.triggers.workqueue import Action, Item, WorkQueue

log = logging.getLogger(__name__)


def _reason(exc: BaseException) -> str:
    return exc.reason if isinstance(exc, (BackendError, PreconditionError)) else type(exc).__name__


ROTATING_RESULTS = frozenset({"promoted", "rolled-back", "failed"})
IN_FLIGHT_RECHECK = 5.0
TRIM_AFTER = 200  # items worked since the last trim, before an idle queue trims the heap


class Workers:
    def __init__(
        self,
        engine: Engine,
        queue: WorkQueue[CredentialRef],
        metrics: Metrics,
        leadership: Leadership,
        min_interval: float,
        *,
        cluster_of: Callable[[CredentialRef], str] = lambda _ref: DEFAULT_CLUSTER,
        cluster_cap: int = 0,
    ) -> None:
        self.engine = engine
        self.cluster_of = cluster_of
        # reconciles at once per cluster while more than one is in use (0: no cap)
        self.cluster_cap = cluster_cap
        self.clusters_in_use = 1
        self._in_cluster: dict[str, int] = {}
        # items of a cluster at its cap, queued again one by one as its reconciles finish
        self._parked: dict[str, dict[CredentialRef, Item[CredentialRef]]] = {}
        # the mons of one cluster being down holds that cluster's work only
        self.cluster_gates: dict[str, OutageGate[CredentialRef, Item[CredentialRef]]] = {}
        self.queue = queue
        self.metrics = metrics
        self.leadership = leadership
        self.min_interval = min_interval
        self.failures: dict[CredentialRef, int] = {}
        self.gate: OutageGate[CredentialRef, Item[CredentialRef]] = OutageGate(
            lambda item: item.key, self._requeue, on_change=self._outage
        )
        metrics.held.set_function(self.holding)
        self._running: dict[CredentialRef, int] = {}
        self._running_lock = threading.Lock()
        self.max_parallel_per_credential = 0
        self.worked_since_trim = 0
        # read at scrape time: counting the waiting credentials walks every key of the queue,
        # which at 10,000 credentials must not happen on every add
        metrics.queue_depth.set_function(queue.waiting)

    def _requeue(self, items: list[Item[CredentialRef]]) -> None:
        for item in items:
            self.queue.add(item.key, item.action, item.trigger)

    def _outage(self, down: str | None) -> None:
        for backend in ("vault", "kubernetes"):
            self.metrics.backend_down.labels(backend).set(1 if backend == down else 0)

    def holding(self) -> int:
        return self.gate.holding() + sum(g.holding() for g in list(self.cluster_gates.values()))

    def _cluster_gate(self, cluster: str) -> OutageGate[CredentialRef, Item[CredentialRef]]:
        gate = self.cluster_gates.get(cluster)
        if gate is None:

            def changed(down: str | None) -> None:
                self.metrics.cluster_down.labels(cluster).set(0 if down is None else 1)
                anywhere = any(g.down is not None for g in list(self.cluster_gates.values()))
                self.metrics.backend_down.labels("ceph").set(1 if anywhere else 0)

            gate = OutageGate(
                lambda item: item.key,
                self._requeue,
                on_change=changed,
                unavailable={"CephUnavailable": "ceph"},
            )
            gate = self.cluster_gates.setdefault(cluster, gate)
        return gate

    def forget_cluster(self, cluster: str) -> None:
        """No credential works in ``cluster`` any more: drop its gate (after requeuing what it
        held) and its gauges."""
        gate = self.cluster_gates.pop(cluster, None)
        if gate is not None and gate.held:
            self._requeue(list(gate.held.values()))
        self.metrics.cluster_down.labels(cluster).set(0)

    def enqueue(self, ref: CredentialRef, trigger: str, action: Action = "reconcile") -> None:
        self.metrics.triggers.labels(trigger).inc()
        self.queue.add(ref, action, trigger)

    def forget(self, ref: CredentialRef) -> None:
        self.queue.forget(ref)
        self.failures.pop(ref, None)

    def work(self, epoch: int, ready: threading.Event) -> None:
        """One worker thread's loop, for the term ``epoch``; it starts once ``ready`` is set."""
        acting = self.leadership.acting
        while acting(epoch) and not ready.wait(0.5):
            pass
        while acting(epoch):
            item = self.queue.get(timeout=0.5)
            if item is None:
                if self.worked_since_trim >= TRIM_AFTER:  # a burst of work is over
                    self.worked_since_trim = 0
                    memory.trim()
                continue
            self.worked_since_trim += 1
            if not acting(epoch) or not self.leadership.elector.is_leader:
                self.queue.done(item.key)
                return
            not_before = self._process(item)
            self.queue.done(item.key, not_before)

    def _process(self, item: Item[CredentialRef]) -> float | None:
        cluster = self.cluster_of(item.key)
        gate = self._cluster_gate(cluster)
        if not self.gate.admit(item) or not gate.admit(item):
            return None  # a backend is down: held until it answers (controller/outage.py)
        if not self._enter(cluster, item):
            self.metrics.cluster_deferred.labels(cluster).inc()
            return None  # parked until one of the cluster's reconciles finishes
        reason: str | None = "Crashed"
        try:
            not_before, reason = self._run(item, cluster)
        finally:
            self._leave(cluster)
            ceph_down = reason == "CephUnavailable"
            self.gate.result(item, None if ceph_down else reason)
            gate.result(item, reason)
        return not_before

    def _enter(self, cluster: str, item: Item[CredentialRef]) -> bool:
        """Count a reconcile in ``cluster``; False (``item`` parked) at the cluster's cap."""
        with self._running_lock:
            running = self._in_cluster.get(cluster, 0)
            if self.cluster_cap and self.clusters_in_use > 1 and running >= self.cluster_cap:
                self._parked.setdefault(cluster, {})[item.key] = item
                return False
            self._in_cluster[cluster] = running + 1
        self.metrics.cluster_in_flight.labels(cluster).inc()
        return True

    def _leave(self, cluster: str) -> None:
        """A reconcile in ``cluster`` finished: the next parked item of it is queued."""
        released: Item[CredentialRef] | None = None
        with self._running_lock:
            running = self._in_cluster.get(cluster, 1) - 1
            if running > 0:
                self._in_cluster[cluster] = running
            else:
                self._in_cluster.pop(cluster, None)
            parked = self._parked.get(cluster)
            if parked:
                released = parked.pop(next(iter(parked)))
                if not parked:
                    del self._parked[cluster]
        self.metrics.cluster_in_flight.labels(cluster).dec()
        if released is not None:
            self._requeue([released])

    def clear_parked(self) -> None:
        """A term ended: what was parked is relisted by the next one."""
        with self._running_lock:
            self._parked.clear()

    def _run(self, item: Item[CredentialRef], cluster: str) -> tuple[float | None, str | None]:
        """Work ``item``; when it may run again, and the reason it failed (None: it did not)."""
        ref = item.key
        self._count_running(ref, +1)
        self.metrics.in_flight.inc()
        started = time.monotonic()
        try:
            if item.action == "rotate":
                outcome = self.engine.rotate(ref)
            else:
                outcome = self.engine.reconcile(ref)
        except Interrupted as exc:
            log.warning("%s", exc)
            return None, None
        except KubeNotFound:
            log.info("%s: gone", ref)
            self.queue.forget(ref)
            return None, None
        except (BackendError, PreconditionError) as exc:
            return self._retry(item, f"{type(exc).__name__}: {exc}"), _reason(exc)
        except Exception as exc:
            log.exception("%s: reconcile crashed", ref)
            return self._retry(item, type(exc).__name__), type(exc).__name__
        finally:
            self.metrics.in_flight.dec()
            self._count_running(ref, -1)
        self.metrics.cluster_rotations.labels(cluster, outcome.result).inc()
        not_before = self._record(item, outcome, time.monotonic() - started)
        return not_before, None if outcome.ok else outcome.reason

    def _count_running(self, ref: CredentialRef, change: int) -> None:
        with self._running_lock:
            running = self._running.get(ref, 0) + change
            if running:
                self._running[ref] = running
            else:
                self._running.pop(ref, None)
            if running > self.max_parallel_per_credential:
                self.max_parallel_per_credential = running
                self.metrics.max_in_flight_per_credential.set(running)

    def _retry(self, item: Item[CredentialRef], why: str) -> float | None:
        ref = item.key
        failures = self.failures.get(ref, 0) + 1
        self.failures[ref] = failures
        self.metrics.rotations.labels("error", item.trigger).inc()
        delay = backoff_delay(failures, random.random()).total_seconds()
        log.warning("%s: %s; retrying in %.1f s", ref, why, delay)
        self.queue.add(ref, item.action, "retry", delay=delay)
        return None

    def _record(self, item: Item[CredentialRef], outcome: Outcome, seconds: float) -> float | None:
        ref, result = item.key, outcome.result
        self.metrics.rotations.labels(result, item.trigger).inc()
        if result != "unchanged":
            self.metrics.rotation_duration.labels(result).observe(seconds)
        if result == "promoted":
            latency = time.monotonic() - item.enqueued_at
            self.metrics.propagation.labels(item.trigger).observe(latency)
            log.info(
                "%s: version %s promoted (trigger %s, %.0f ms after it)",
                ref,
                outcome.version,
                item.trigger,
                latency * 1000,
            )
        if outcome.ok:
            self.failures.pop(ref, None)
            if outcome.retry_after is not None:  # a retirement is due then, or may be tried again
                delay = outcome.retry_after.total_seconds()
                self.queue.add(ref, "reconcile", "retire", delay=delay)
        else:
            self.failures[ref] = self.failures.get(ref, 0) + 1
            log.warning("%s: %s: %s [%s]", ref, result, outcome.message, outcome.reason)
            if outcome.retry_after is not None:
                self.queue.add(ref, "reconcile", "retry", delay=outcome.retry_after.total_seconds())
            elif result == "in-flight":  # another writer claimed the journal: look again later
                self.queue.add(ref, "reconcile", "retry", delay=IN_FLIGHT_RECHECK)
        if result in ROTATING_RESULTS:
            return time.monotonic() + self.min_interval
        return None
