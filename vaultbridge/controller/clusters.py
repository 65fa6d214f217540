"""Follows the Kubernetes objects each Ceph cluster's connection is read from (``spec.cluster``).

Every ``CHECK_INTERVAL`` the follower compares the clusters the credentials work in (the
index keeps a count per cluster) with what it watches:

- a cluster newly in use gets one watch per object (its mon endpoints or ``ceph.conf``
  ConfigMap, and its Secret), each a list and watch of that one name;
- a cluster no longer in use has its watches stopped and its connection closed
  (``ClusterRegistry.retain``).

A change seen by a watch reads the objects again (``ClusterRegistry.refresh``). What it found
is logged, counted (``vaultbridge_ceph_mon_moves_total`` when the mons moved), told as an Event
on the cluster's credentials (at most ``EVENTS_PER_CHANGE`` of them), and those credentials are
reconciled: a fixed or newly broken cluster shows in their Ready condition at once. A watch
that fails backs off from 1 s, doubling to 30 s, with jitter.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Literal

from vaultbridge.adapters.clusters import ClusterChange, ClusterRegistry
from vaultbridge.controller.index import CredentialIndex
from vaultbridge.controller.leadership import Leadership
from vaultbridge.controller.outage import probe_delay
from vaultbridge.controller.work import Workers
from vaultbridge.engine.ports import EventRecorder
from vaultbridge.kube import KubeWatchExpired, NamedObjects
from vaultbridge.model.cluster import ClusterRef
from vaultbridge.model.errors import BackendError
from vaultbridge.model.status import READY
from vaultbridge.observability.metrics import Metrics

log = logging.getLogger(__name__)

CHECK_INTERVAL = 5.0
EVENTS_PER_CHANGE = 100
WATCH_PAUSE, WATCH_PAUSE_CAP = 1.0, 30.0

_EVENTS: dict[str, tuple[Literal["Normal", "Warning"], str]] = {
    "moved": ("Normal", "CephMonsMoved"),
    "credentials": ("Normal", "CephConnectionChanged"),
    "identity": ("Warning", "CephClusterIdentityChanged"),
    "broken": ("Warning", "CephClusterConfigInvalid"),
    "fixed": ("Normal", "CephClusterConfigValid"),
}


class ClusterFollower:
    def __init__(
        self,
        *,
        registry: ClusterRegistry,
        objects: NamedObjects,
        index: CredentialIndex,
        workers: Workers,
        events: EventRecorder,
        metrics: Metrics,
        leadership: Leadership,
    ) -> None:
        self.registry, self.objects, self.index = registry, objects, index
        self.workers, self.events, self.metrics = workers, events, metrics
        self.leadership = leadership
        self._watching: dict[str, threading.Event] = {}  # cluster key -> stop its watches

    def loop(self, epoch: int) -> None:
        """A term's following: start and stop watches as clusters come into and out of use."""
        acting, stopping = self.leadership.acting, self.leadership.stopping
        try:
            while acting(epoch):
                self.check(epoch)
                if stopping.wait(CHECK_INTERVAL):
                    break
        finally:
            for stop in self._watching.values():
                stop.set()
            self._watching.clear()

    def check(self, epoch: int) -> None:
        used = self.index.clusters()
        named = {key: ref for key, ref in used.items() if ref is not None}
        for key, ref in named.items():
            if key not in self._watching:
                stop = threading.Event()
                self._watching[key] = stop
                for kind, _namespace, name in ref.objects:
                    threading.Thread(
                        target=self._watch,
                        args=(ref, kind, epoch, stop),
                        name=f"vaultbridge-cluster-{kind.lower()}-{name}"[:60],
                        daemon=True,
                    ).start()
        for key in [k for k in self._watching if k not in named]:
            self._watching.pop(key).set()
            self.workers.forget_cluster(key)
        self.registry.retain(named)
        self.workers.clusters_in_use = max(1, len(used))
        self.metrics.clusters_connected.set(self.registry.connected())

    def _watch(
        self,
        ref: ClusterRef,
        kind: Literal["ConfigMap", "Secret"],
        epoch: int,
        stop: threading.Event,
    ) -> None:
        namespace = ref.namespace
        name = ref.config_map if kind == "ConfigMap" else ref.secret
        failures = 0
        version: str | None = None
        while not stop.is_set() and self.leadership.acting(epoch):
            try:
                if version is None:
                    version = self.objects.version(kind, namespace, name)
                    self.changed(ref)  # whatever happened while nobody watched
                for _ in self.objects.watch(kind, namespace, name, version, timeout_seconds=60):
                    failures = 0
                    if stop.is_set():
                        return
                    self.changed(ref)
                failures = 0
            except KubeWatchExpired:
                version = None
            except BackendError as exc:
                failures += 1
                version = None
                pause = probe_delay(failures - 1, random.random(), WATCH_PAUSE, WATCH_PAUSE_CAP)
                log.warning(
                    "watch of %s %s/%s failed (%s); again in %.1f s",
                    kind,
                    namespace,
                    name,
                    exc.reason,
                    pause,
                )
                if stop.wait(pause):
                    return

    def changed(self, ref: ClusterRef) -> ClusterChange | None:
        """Read ``ref``'s objects again; report and act on what changed."""
        try:
            change = self.registry.refresh(ref)
        except BackendError as exc:
            log.warning("cluster %s: cannot read its objects (%s)", ref.key, exc.reason)
            return None
        if change is None:
            return None
        log.info("%s", change.message)  # the message names the cluster
        if change.kind == "moved":
            self.metrics.mon_moves.labels(change.cluster).inc()
        self.metrics.cluster_problems.labels(change.cluster).set(
            1 if change.kind == "broken" else 0
        )
        event_type, reason = _EVENTS[change.kind]
        entries = self.index.in_cluster(change.cluster)
        for entry in entries[:EVENTS_PER_CHANGE]:
            credential = entry.credential()
            if credential is not None:
                self.events.emit(credential, event_type, reason, change.message)
        for entry in entries:
            ready = entry.status.condition(READY)
            # after a move the next request simply uses the new mons: only those that failed
            # (on the old ones) are tried again now
            if change.kind != "moved" or ready is None or ready.status != "True":
                self.workers.enqueue(entry.ref, "cluster")
        return change
