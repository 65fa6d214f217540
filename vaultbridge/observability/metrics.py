"""Prometheus metrics of the controller, in a registry of its own.

Labels are never values: credentials are labelled ``namespace``/``name`` only, backends by name,
results and triggers by a small fixed vocabulary. Per-credential gauges (age, last success) are
computed at scrape time from the controller's view, so deleted credentials disappear by
themselves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

ROTATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass(frozen=True)
class CredentialSample:
    namespace: str
    name: str
    age_seconds: float | None
    last_success: float | None
    """Unix time of the last verified rotation (``lastVerifiedTime``)."""
    compliant: bool | None


class _CredentialCollector(Collector):
    def __init__(self, samples: Callable[[], Iterable[CredentialSample]]) -> None:
        self.samples = samples

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families without samples: a scrape that names other metrics never collects."""
        return self._families(())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return self._families(self.samples())

    def _families(self, samples: Iterable[CredentialSample]) -> Iterator[GaugeMetricFamily]:
        age = GaugeMetricFamily(
            "vaultbridge_credential_age_seconds",
            "Seconds since the live credential was last rotated",
            labels=["namespace", "name"],
        )
        success = GaugeMetricFamily(
            "vaultbridge_credential_last_success_timestamp_seconds",
            "Unix time of the last verified rotation of the credential",
            labels=["namespace", "name"],
        )
        compliant = GaugeMetricFamily(
            "vaultbridge_credential_compliant",
            "1 when the credential is younger than spec.maxAge (or has none), else 0",
            labels=["namespace", "name"],
        )
        for sample in samples:
            labels = [sample.namespace, sample.name]
            if sample.age_seconds is not None:
                age.add_metric(labels, sample.age_seconds)
            if sample.last_success is not None:
                success.add_metric(labels, sample.last_success)
            if sample.compliant is not None:
                compliant.add_metric(labels, 1.0 if sample.compliant else 0.0)
        yield age
        yield success
        yield compliant


class Metrics:
    """Every metric the controller exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.rotations = Counter(
            "vaultbridge_rotations_total",
            "Reconciles and rotations by result (promoted, unchanged, rolled-back, failed, ...)",
            ["result", "trigger"],
            registry=r,
        )
        self.rotation_duration = Histogram(
            "vaultbridge_rotation_duration_seconds",
            "Wall time of one reconcile or rotation that changed something",
            ["result"],
            buckets=ROTATION_BUCKETS,
            registry=r,
        )
        self.propagation = Histogram(
            "vaultbridge_propagation_latency_seconds",
            "From the trigger (watch event, webhook, agent file, poll, schedule) to the new "
            "version verified in Ceph and promoted",
            ["trigger"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.backend_requests = Counter(
            "vaultbridge_backend_requests_total",
            "Requests to a backend (vault, ceph, kubernetes)",
            ["backend"],
            registry=r,
        )
        self.backend_errors = Counter(
            "vaultbridge_backend_errors_total",
            "Failed requests to a backend",
            ["backend"],
            registry=r,
        )
        self.leader = Gauge(
            "vaultbridge_leader", "1 while this process holds the leader Lease", registry=r
        )
        self.in_flight = Gauge(
            "vaultbridge_rotations_in_flight", "Reconciles running now", registry=r
        )
        self.max_in_flight_per_credential = Gauge(
            "vaultbridge_max_in_flight_per_credential",
            "The most reconciles ever seen running at once for one credential (must stay 1)",
            registry=r,
        )
        self.queue_depth = Gauge(
            "vaultbridge_queue_depth", "Credentials waiting in the work queue", registry=r
        )
        self.triggers = Counter(
            "vaultbridge_triggers_total",
            "Triggers received, by kind (watch, webhook, agent, poll, schedule, retry, resync)",
            ["trigger"],
            registry=r,
        )
        self.webhook_rejected = Counter(
            "vaultbridge_webhook_rejected_total",
            "Trigger requests rejected, by HTTP status",
            ["status"],
            registry=r,
        )
        self.watch_restarts = Counter(
            "vaultbridge_watch_relists_total",
            "Relists after a watch expired (410 Gone) or failed",
            ["resource"],
            registry=r,
        )
        self._sweep_and_push_metrics(r)
        self._cluster_metrics(r)
        self.schedule_errors = Counter(
            "vaultbridge_schedule_invalid_total",
            "Credentials whose spec.schedule could not be parsed",
            registry=r,
        )
        self._backend_ok: dict[str, float] = {}
        self._backend_failed: dict[str, float] = {}
        self._backend_reason: dict[str, str] = {}
        self._lock = threading.Lock()

    def _sweep_and_push_metrics(self, r: CollectorRegistry) -> None:
        self.audit_entries = Counter(
            "vaultbridge_audit_entries_total",
            "Audit-device entries received, by result (queued, unwatched, ignored, malformed)",
            ["result"],
            registry=r,
        )
        self.audit_rejected = Counter(
            "vaultbridge_audit_rejected_total",
            "Audit senders refused, by reason (token, peer, busy)",
            ["reason"],
            registry=r,
        )
        self.drift_sweeps = Counter(
            "vaultbridge_drift_sweeps_total",
            "Drift sweeps (every credential checked against one listing of Ceph per kind), "
            "by result (ok, failed)",
            ["result"],
            registry=r,
        )
        self.drift_due = Counter(
            "vaultbridge_drift_due_total",
            "Credentials a drift sweep queued for a reconcile, by reason",
            ["reason"],
            registry=r,
        )
        self.backend_down = Gauge(
            "vaultbridge_backend_down",
            "1 while work is held because this backend is unavailable (one probe at a time)",
            ["backend"],
            registry=r,
        )
        self.held = Gauge(
            "vaultbridge_held_credentials",
            "Credentials held while a backend is down",
            registry=r,
        )
        self.catch_ups = Counter(
            "vaultbridge_catch_ups_total",
            "Terms of leadership caught up: the first sweep done and every Vault source not "
            "queued read once",
            registry=r,
        )

    def _cluster_metrics(self, r: CollectorRegistry) -> None:
        """Per Ceph cluster (``spec.cluster``; ``default`` for the settings' cluster)."""
        self.cluster_requests = Counter(
            "vaultbridge_ceph_cluster_requests_total",
            "Requests to a Ceph cluster's mons",
            ["cluster"],
            registry=r,
        )
        self.cluster_errors = Counter(
            "vaultbridge_ceph_cluster_errors_total",
            "Failed requests to a Ceph cluster's mons (unreachable, timed out, refused login)",
            ["cluster"],
            registry=r,
        )
        self.cluster_in_flight = Gauge(
            "vaultbridge_ceph_cluster_in_flight",
            "Reconciles running now in a Ceph cluster (capped by ceph.max_in_flight_per_cluster)",
            ["cluster"],
            registry=r,
        )
        self.cluster_deferred = Counter(
            "vaultbridge_ceph_cluster_deferred_total",
            "Work items parked because their cluster was at its concurrency cap",
            ["cluster"],
            registry=r,
        )
        self.cluster_rotations = Counter(
            "vaultbridge_ceph_cluster_rotations_total",
            "Reconciles and rotations by cluster and result",
            ["cluster", "result"],
            registry=r,
        )
        self.cluster_down = Gauge(
            "vaultbridge_ceph_cluster_down",
            "1 while work of this cluster is held because its mons are unavailable",
            ["cluster"],
            registry=r,
        )
        self.mon_moves = Counter(
            "vaultbridge_ceph_mon_moves_total",
            "Times a cluster's mon endpoints changed and its connection followed them",
            ["cluster"],
            registry=r,
        )
        self.cluster_problems = Gauge(
            "vaultbridge_ceph_cluster_config_invalid",
            "1 while the objects a cluster's connection is read from are missing or malformed",
            ["cluster"],
            registry=r,
        )
        self.clusters_connected = Gauge(
            "vaultbridge_ceph_clusters",
            "Ceph clusters with a connection open (the default one included)",
            registry=r,
        )

    def cluster_call(self, cluster: str, ok: bool) -> None:
        self.cluster_requests.labels(cluster).inc()
        if not ok:
            self.cluster_errors.labels(cluster).inc()

    def track_credentials(self, samples: Callable[[], Iterable[CredentialSample]]) -> None:
        self.registry.register(_CredentialCollector(samples))

    def backend_call(self, backend: str, ok: bool, reason: str = "") -> None:
        """Count a request; ``reason``: a failure's (secret-free, translated) error text."""
        self.backend_requests.labels(backend).inc()
        now = time.monotonic()
        with self._lock:
            if ok:
                self._backend_ok[backend] = now
            else:
                self.backend_errors.labels(backend).inc()
                self._backend_failed[backend] = now
                self._backend_reason[backend] = reason[:300]

    def backend_health(self) -> dict[str, bool]:
        """Per backend: False when its latest request failed."""
        with self._lock:
            names = set(self._backend_ok) | set(self._backend_failed)
            return {
                name: self._backend_failed.get(name, -1.0) <= self._backend_ok.get(name, -1.0)
                for name in names
            }

    def backend_failure(self, backend: str) -> str:
        """Why the latest failed request of ``backend`` failed ("" when none did)."""
        with self._lock:
            return self._backend_reason.get(backend, "")

    def render(self, names: frozenset[str] = frozenset()) -> bytes:
        """The Prometheus text; only the metrics ``names`` names, when it names any (a scrape
        of a few counters then skips the 30,000 per-credential samples of 10,000 credentials)."""
        if names:
            return generate_latest(self.registry.restricted_registry(names))
        return generate_latest(self.registry)


def counting(
    target: Any,
    backend: str,
    metrics: Metrics,
    failure: type[BaseException],
    *,
    cluster: str | None = None,
) -> Any:
    """A proxy of ``target`` whose method calls count as requests to ``backend`` (and to
    Ceph cluster ``cluster``; with ``backend`` "", only to the cluster).

    A call raising ``failure`` counts as an error when the error is transient (unreachable,
    timed out) or makes the backend unusable (our login refused); a "not found" answer is still
    a reachable backend.
    """
    return _Counting(target, backend, metrics, failure, cluster)


class _Counting:
    def __init__(
        self,
        target: Any,
        backend: str,
        metrics: Metrics,
        failure: type[BaseException],
        cluster: str | None,
    ):
        self._target = target
        self._backend = backend
        self._metrics = metrics
        self._failure = failure
        self._cluster = cluster

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr) or name.startswith("_"):
            return attr
        backend, metrics, failure = self._backend, self._metrics, self._failure
        cluster = self._cluster

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                result = attr(*args, **kwargs)
            except failure as exc:
                usable = not getattr(exc, "transient", True) and not getattr(exc, "unusable", False)
                if backend:
                    metrics.backend_call(backend, usable, str(exc))
                if cluster is not None:
                    metrics.cluster_call(cluster, usable)
                raise
            if backend:
                metrics.backend_call(backend, True)
            if cluster is not None:
                metrics.cluster_call(cluster, True)
            return result

        return call
