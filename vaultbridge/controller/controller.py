"""The controller's wiring: one index, one work queue and its workers, the watches, the drift
sweep, the triggers and the HTTP server, started and stopped with each term of leadership."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from vaultbridge.adapters.clusters import ClusterRegistry
from vaultbridge.app import App, build
from vaultbridge.controller import memory
from vaultbridge.controller.clusters import ClusterFollower
from vaultbridge.controller.http import routes
from vaultbridge.controller.index import CredentialIndex
from vaultbridge.controller.leadership import Leadership
from vaultbridge.controller.sweep import Sweeper
from vaultbridge.controller.triggers import Triggers
from vaultbridge.controller.watches import SecretKey, Watches
from vaultbridge.controller.work import Workers
from vaultbridge.engine.engine import Engine, default_holder
from vaultbridge.kube import CredentialRotationClient, KubeClient, LeaderElector, NamedObjects
from vaultbridge.model.spec import CredentialRef
from vaultbridge.observability.http import HttpServer
from vaultbridge.observability.metrics import Metrics
from vaultbridge.settings import Settings
from vaultbridge.triggers.workqueue import WorkQueue

log = logging.getLogger(__name__)


class Controller:
    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        crs: CredentialRotationClient,
        kube: KubeClient,
        metrics: Metrics,
        leadership: Leadership,
        own_writes: Mapping[SecretKey, str],
        close: Callable[[], None] = lambda: None,
        clusters: ClusterRegistry | None = None,
    ) -> None:
        self.settings, self.engine = settings, engine
        self.metrics, self.leadership = metrics, leadership
        self.identity = leadership.elector.identity
        self._close = close
        self.namespaces = list(settings.kube.namespaces) or None
        self.index = CredentialIndex()
        engine.claim_from(self.index.credential)
        self.queue: WorkQueue[CredentialRef] = WorkQueue()
        self.workers = self._workers()
        self.clusters = None if clusters is None else self._follower(clusters, kube)
        self.triggers = Triggers(
            settings=settings,
            index=self.index,
            workers=self.workers,
            leadership=leadership,
            metrics=metrics,
            vault=engine.vault,
            events=engine.events,
            kube=kube,
        )
        self.watches = Watches(
            crs=crs,
            kube=kube,
            engine=engine,
            index=self.index,
            workers=self.workers,
            scheduling=self.triggers,
            leadership=leadership,
            metrics=metrics,
            namespaces=self.namespaces,
            own_writes=own_writes,
        )
        self.sweeper = Sweeper(
            engine=engine,
            index=self.index,
            watches=self.watches,
            workers=self.workers,
            leadership=leadership,
            metrics=metrics,
            interval=settings.controller.resync_interval,
            catch_up=self._catch_up_with_vault,
        )
        self.metrics.track_credentials(self.index.samples)
        self._threads: list[threading.Thread] = []
        self.http: HttpServer | None = None

    def _workers(self) -> Workers:
        settings = self.settings
        workers = settings.controller.max_concurrent_rotations
        return Workers(
            self.engine,
            self.queue,
            self.metrics,
            self.leadership,
            settings.controller.min_interval,
            cluster_of=self.index.cluster_key_of,
            cluster_cap=settings.ceph.max_in_flight_per_cluster or max(1, workers // 2),
        )

    def _follower(self, clusters: ClusterRegistry, kube: KubeClient) -> ClusterFollower:
        return ClusterFollower(
            registry=clusters,
            objects=NamedObjects(kube),
            index=self.index,
            workers=self.workers,
            events=self.engine.events,
            metrics=self.metrics,
            leadership=self.leadership,
        )

    def _catch_up_with_vault(self) -> None:
        # a credential queued or in flight reads Vault's latest version when it runs
        if self.engine.vault is not None:
            self.triggers.poller.cycle(unlimited=True, trigger="resync", skip=self.queue.busy)

    # -- a term of leadership --------------------------------------------------------------------

    def _spawn(self, target: Callable[[int], None], name: str, epoch: int) -> None:
        thread = threading.Thread(target=target, args=(epoch,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _start_leading(self) -> None:
        epoch = self.leadership.begin()
        self.metrics.leader.set(1)
        self.queue.clear()
        self.queue.reopen()
        self.watches.reset()
        self._threads = []
        self.triggers.start()
        self._spawn(self.watches.watch_credentials, "vaultbridge-watch-crs", epoch)
        self._spawn(self.watches.watch_secrets, "vaultbridge-watch-secrets", epoch)
        ready = self.watches.secrets_watched
        for n in range(self.settings.controller.max_concurrent_rotations):
            self._spawn(lambda e: self.workers.work(e, ready), f"vaultbridge-worker-{n}", epoch)
        if self.settings.triggers.poll_interval > 0:
            self._spawn(self.triggers.poll_loop, "vaultbridge-poll", epoch)
        self._spawn(self.sweeper.loop, "vaultbridge-sweep", epoch)
        if self.clusters is not None:
            self._spawn(self.clusters.loop, "vaultbridge-clusters", epoch)

    def _stop_leading(self, why: str) -> None:
        if not self.leadership.end(why):
            return
        self.metrics.leader.set(0)
        self.queue.clear()
        self.queue.close()
        self.workers.clear_parked()
        self.triggers.stop()
        self.index.clear()
        self.watches.ok.clear()

    def _election_loop(self) -> None:
        while not self.leadership.stopping.is_set():
            began = self.leadership.renew()
            if began is True:
                self._start_leading()
            elif began is False:
                self._stop_leading("lost the lease")
            self.leadership.pause()

    # -- running -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start serving HTTP and the election loop in the background."""
        http = self.settings.http
        self.http = HttpServer(
            http.bind,
            http.port,
            routes(self.metrics, self.leadership, self.triggers, self.watches.ok),
            reuse_port=http.reuse_port,
            socket_path=str(http.socket) if http.socket is not None else None,
        )
        self.http.start()
        self.triggers.serve_audit_socket()
        elector = self.leadership.elector
        log.info(
            "vaultbridge controller %s serving HTTP on port %d; lease %s/%s",
            self.identity,
            self.http.port,
            elector.namespace,
            elector.name,
        )
        self.leadership.heartbeat = time.monotonic()
        thread = threading.Thread(target=self._election_loop, name="vaultbridge-election")
        thread.daemon = True
        thread.start()

    def stop(self) -> None:
        self.leadership.stopping.set()
        self._stop_leading("shutting down")
        for thread in list(self._threads):  # workers finish or stop at their next step;
            if thread.name.startswith("vaultbridge-worker"):  # watches are daemons, not awaited
                thread.join(timeout=5)
        self.leadership.elector.release()
        self.triggers.close_audit_socket()
        if self.http is not None:
            self.http.stop()

    def run(self) -> None:
        """Until SIGTERM/SIGINT."""
        done = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("signal %d: stopping", signum)
            done.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        try:
            while not done.wait(1.0):
                pass
        finally:
            self.stop()
            self._close()


def build_controller(settings: Settings, *, log_level: str | None = None) -> Controller:
    """The controller of ``vaultbridge run``: one identity for its Lease and its journals, the
    ports counted in its metrics, and the engine stopped before each action once the Lease is
    lost."""
    memory.limit_arenas()  # before any of its threads start
    identity = settings.controller.identity or default_holder()
    metrics = Metrics()
    kube = KubeClient.from_settings(settings.kube.kubeconfig)
    cs = settings.controller
    elector = LeaderElector(
        kube,
        settings.kube.lease_namespace or os.environ.get("POD_NAMESPACE") or "default",
        settings.kube.lease_name,
        identity,
        lease_duration=cs.lease_duration,
        renew_deadline=cs.renew_deadline,
        retry_period=cs.retry_period,
    )
    leadership = Leadership(elector, cs.retry_period)
    app: App = build(
        settings, kube=kube, metrics=metrics, may_act=leadership.leading_now, identity=identity
    )
    return Controller(
        settings=settings,
        engine=app.engine,
        crs=app.crs,
        kube=app.kube,
        metrics=metrics,
        leadership=leadership,
        own_writes=app.own_writes,
        close=app.close,
        clusters=app.clusters,
    )
