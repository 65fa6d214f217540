"""``vaultbridge run``: the controller that keeps every CredentialRotation reconciled.

One process per replica. Each runs the HTTP server (``/metrics``, ``/healthz``, ``/readyz``,
``POST /v1/trigger``, ``POST /v1/schedules/run``) and a leader-election loop on a Lease; only
the leader acts. While leading it

- lists and watches CredentialRotations and the Secrets it manages (bookmarks; a relist on 410
  Gone), keeping an index of specs and statuses, and reconciles every CR once on start (which
  also resumes journaled rotations left by a crashed leader);
- runs one APScheduler job per ``spec.schedule`` (``Engine.rotate``), polls Vault KV metadata,
  watches the Vault Agent file, and accepts webhook triggers;
- feeds all of that into one work queue keyed by credential: one reconcile in flight per
  credential, ``max_concurrent_rotations`` workers, a minimum interval between rotations of one
  credential, and failures retried after the engine's capped, jittered backoff.

Losing the Lease stops everything at once: waiting work is dropped, and a rotation in flight is
interrupted before its next step (the engine has journaled it; the next leader resumes it).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vaultbridge.adapters import credential_from
from vaultbridge.engine.deletion import CEPHX_FINALIZER
from vaultbridge.engine.outcome import Outcome
from vaultbridge.engine.preimage import PREIMAGE_SUFFIX
from vaultbridge.kube import (
    KIND,
    OWNER_ANNOTATION,
    OWNER_UID_ANNOTATION,
    KubeError,
    KubeNotFound,
    KubeWatchExpired,
    LeaderElector,
    ManagedSecretWatch,
    TokenClient,
)
from vaultbridge.model.errors import BackendError, PreconditionError
from vaultbridge.model.spec import CredentialRef, CredentialSpec, SpecError, parse_spec
from vaultbridge.model.status import Status
from vaultbridge.observability.http import HttpServer, Routes
from vaultbridge.observability.metrics import CONTENT_TYPE, CredentialSample, Metrics, counting
from vaultbridge.rotation import backoff_delay, compliance
from vaultbridge.triggers.detect import AgentFileWatcher, Poller, Source, source_name
from vaultbridge.triggers.schedules import InvalidSchedule, Schedules
from vaultbridge.triggers.webhook import Authorizer, Rejected, TriggerEndpoint
from vaultbridge.triggers.workqueue import Action, Item, WorkQueue

if TYPE_CHECKING:
    from vaultbridge.app import App

log = logging.getLogger(__name__)

ROTATING_RESULTS = frozenset({"promoted", "rolled-back", "failed"})
WATCH_ERROR_PAUSE = 1.0
IN_FLIGHT_RECHECK = 5.0
ORPHAN_SWEEP_WAIT = 30.0  # how long the start's release of retained Secrets waits for the CRs


class LeadershipLost(Exception):  # noqa: N818 - reads better at the raise site
    """Raised into the engine (through its observer) to stop a rotation before its next step."""


@dataclass
class Entry:
    """What the controller knows of one CredentialRotation (from list/watch)."""

    ref: CredentialRef
    uid: str
    generation: int
    spec: CredentialSpec | None
    status: Status
    deleting: bool = False
    finalizers: tuple[str, ...] = ()


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Controller:
    def __init__(self, app: App, *, identity: str | None = None) -> None:
        self.app = app
        settings = app.settings
        self.settings = settings
        self.metrics = Metrics()
        self._instrument()
        self.namespaces = list(settings.kube.namespaces) or None
        self.identity = identity or settings.controller.identity or default_identity()
        lease_namespace = (
            settings.kube.lease_namespace or os.environ.get("POD_NAMESPACE") or "default"
        )
        cs = settings.controller
        self.elector = LeaderElector(
            app.kube,
            lease_namespace,
            settings.kube.lease_name,
            self.identity,
            lease_duration=cs.lease_duration,
            renew_deadline=cs.renew_deadline,
            retry_period=cs.retry_period,
        )
        self.queue: WorkQueue[CredentialRef] = WorkQueue()
        self.index: dict[CredentialRef, Entry] = {}
        self._index_lock = threading.Lock()
        self._failures: dict[CredentialRef, int] = {}
        self._running: dict[CredentialRef, int] = {}
        self._running_lock = threading.Lock()
        self.max_parallel_per_credential = 0
        self.schedules: Schedules[CredentialRef] = Schedules(
            lambda ref: self.enqueue(ref, "schedule", "rotate"),
            jitter=settings.triggers.schedule_jitter,
        )
        self._invalid_schedules: dict[CredentialRef, tuple[int, str]] = {}
        self.poller: Poller[CredentialRef] = Poller(
            self.sources, self._current_version, self.enqueue, budget=settings.triggers.poll_budget
        )
        self.agent: AgentFileWatcher[CredentialRef] | None = None
        if settings.triggers.agent_file is not None:
            self.agent = AgentFileWatcher(
                settings.triggers.agent_file,
                self.sources,
                self.enqueue,
                lambda: self.poller.cycle(unlimited=True, trigger="agent"),
                interval=settings.triggers.agent_interval,
            )
        token = settings.triggers.webhook_token
        tokens = TokenClient(app.kube)
        self.authorizer = Authorizer(
            token.get_secret_value() if token else None,
            review=tokens.review_token,
            allowed_subjects=tuple(settings.triggers.webhook_subjects),
        )
        self.endpoint: TriggerEndpoint[CredentialRef] = TriggerEndpoint(
            self.by_path, self.by_name, self.enqueue, ready=self.leading_now
        )
        self.leading = threading.Event()
        self.stopping = threading.Event()
        self._epoch = 0
        self._threads: list[threading.Thread] = []
        self._heartbeat = 0.0
        self._watch_ok: dict[str, bool] = {}
        # set once the managed-Secret watch is listening (or has failed): workers wait for it,
        # so an edit made right after a rotation's Secret write is never missed
        self._secrets_watched = threading.Event()
        self._crs_listed = threading.Event()  # the first list of CRs is in the index
        self.metrics.track_credentials(self._credential_samples)
        self.http: HttpServer | None = None

    # -- instrumentation ------------------------------------------------------------------------

    def _instrument(self) -> None:
        engine = self.app.engine
        m = self.metrics
        engine.credentials = counting(engine.credentials, "kubernetes", m, BackendError)
        engine.secrets = counting(engine.secrets, "kubernetes", m, BackendError)
        engine.events = counting(engine.events, "kubernetes", m, BackendError)
        if engine.vault is not None:
            engine.vault = counting(engine.vault, "vault", m, BackendError)
        engine.ceph = counting(engine.ceph, "ceph", m, BackendError)
        previous = engine.observer

        def observe(ref: CredentialRef, what: str, detail: str) -> None:
            if previous is not None:
                previous(ref, what, detail)
            if what.startswith("run:") and not self.leading_now():
                raise LeadershipLost(f"{ref}: leadership lost before {what[4:]}")

        engine.observer = observe

    # -- the credential index -----------------------------------------------------------------

    def _entry(self, raw: dict[str, Any]) -> Entry:
        metadata = raw["metadata"]
        ref = CredentialRef(metadata["namespace"], metadata["name"])
        try:
            spec: CredentialSpec | None = parse_spec(raw.get("spec") or {})
        except SpecError:
            spec = None
        return Entry(
            ref=ref,
            uid=str(metadata.get("uid", "")),
            generation=int(metadata.get("generation", 1) or 1),
            spec=spec,
            status=Status.from_dict(raw.get("status")),
            deleting=bool(metadata.get("deletionTimestamp")),
            finalizers=tuple(metadata.get("finalizers") or ()),
        )

    def sources(self) -> list[Source[CredentialRef]]:
        with self._index_lock:
            entries = list(self.index.values())
        return [
            Source(e.ref, e.spec.source.mount, e.spec.source.path, e.status.current_version)
            for e in entries
            if e.spec is not None and e.spec.source is not None and not e.spec.suspend
        ]

    def by_path(self, mount: str, path: str) -> list[CredentialRef]:
        wanted = source_name(mount, path)
        return [s.key for s in self.sources() if source_name(s.mount, s.path) == wanted]

    def by_name(self, namespace: str, name: str) -> CredentialRef | None:
        ref = CredentialRef(namespace, name)
        with self._index_lock:
            return ref if ref in self.index else None

    def _current_version(self, mount: str, path: str) -> int:
        vault = self.app.engine.vault
        if vault is None:
            raise PreconditionError("VaultNotConfigured", "no Vault connection")
        return vault.current_version(mount, path)

    def _credential_samples(self) -> Iterable[CredentialSample]:
        now = datetime.now(UTC)
        with self._index_lock:
            entries = list(self.index.values())
        for e in entries:
            last = e.status.last_rotation_time
            verified = e.status.last_verified_time
            compliant: bool | None = None
            if e.spec is not None:
                condition = compliance(e.status, e.spec.max_age, now, e.generation)
                compliant = None if condition.status == "Unknown" else condition.status == "True"
            yield CredentialSample(
                e.ref.namespace,
                e.ref.name,
                (now - last).total_seconds() if last else None,
                verified.timestamp() if verified else None,
                compliant,
            )

    # -- queueing ------------------------------------------------------------------------------

    def leading_now(self) -> bool:
        return self.leading.is_set() and self.elector.is_leader

    def enqueue(self, ref: CredentialRef, trigger: str, action: Action = "reconcile") -> None:
        self.metrics.triggers.labels(trigger).inc()
        self.queue.add(ref, action, trigger)
        self.metrics.queue_depth.set(self.queue.waiting())

    # -- watches -------------------------------------------------------------------------------

    def _apply(self, raw: dict[str, Any], kind: str, trigger: str) -> None:
        if kind == "BOOKMARK":
            return
        entry = self._entry(raw)
        ref = entry.ref
        if kind != "DELETED" and entry.deleting and CEPHX_FINALIZER in entry.finalizers:
            # waits for us: the engine removes its cephx entities, then releases it
            with self._index_lock:
                old = self.index.get(ref)
                self.index[ref] = entry
            self.schedules.remove(ref)
            if old is None or not old.deleting:
                self.enqueue(ref, trigger)
            return
        if kind == "DELETED" or entry.deleting:
            with self._index_lock:
                gone = self.index.pop(ref, None)
            if kind == "DELETED" and gone is not None:
                self._release_secret(gone)
            self.schedules.remove(ref)
            self._invalid_schedules.pop(ref, None)
            self.queue.forget(ref)
            self._failures.pop(ref, None)
            self.app.engine.forget(ref)
            return
        with self._index_lock:
            old = self.index.get(ref)
            self.index[ref] = entry
        self._sync_schedule(entry, raw)
        changed = old is None or old.generation != entry.generation or old.uid != entry.uid
        if changed:
            self.enqueue(ref, trigger)

    def _release_secret(self, gone: Entry) -> None:
        """The CR is gone: a Secret it retained loses vaultbridge's label and link (best
        effort; without a controller they stay, inert: they name a uid that no longer is)."""
        if gone.spec is None:
            return
        try:
            self.app.engine.secrets.release(gone.ref.namespace, gone.spec.secret.name, gone.uid)
        except BackendError as exc:
            log.warning("%s: could not release its retained Secret: %s", gone.ref, exc)

    def _release_orphans(self, secrets: list[dict[str, Any]], epoch: int) -> None:
        """Release retained Secrets whose CR was deleted while no controller ran. Decided on the
        index once the CRs are listed, so a start costs no request per Secret; a Secret whose CR
        the index does not know is released only after a read of the CR says it is gone (or is
        another object by now): it may be one created since the list."""
        deadline = time.monotonic() + ORPHAN_SWEEP_WAIT
        while not self._crs_listed.wait(0.5):
            if not self._acting(epoch) or time.monotonic() > deadline:
                return  # best effort: a Secret not released keeps an inert link
        for obj in secrets:
            metadata = obj.get("metadata") or {}
            annotations = metadata.get("annotations") or {}
            uid, name = annotations.get(OWNER_UID_ANNOTATION), annotations.get(OWNER_ANNOTATION)
            if not uid or not name:
                continue
            namespace = str(metadata.get("namespace", ""))
            with self._index_lock:
                known = self.index.get(CredentialRef(namespace, str(name)))
            if known is not None and known.uid == uid:
                continue
            try:
                try:
                    live = self.app.crs.get(namespace, str(name))
                    if (live.get("metadata") or {}).get("uid") == uid:
                        continue
                except KubeNotFound:
                    pass
                self.app.engine.secrets.release(namespace, str(metadata.get("name")), uid)
            except BackendError as exc:
                log.warning(
                    "could not release Secret %s/%s: %s", namespace, metadata.get("name"), exc
                )

    def _sync_schedule(self, entry: Entry, raw: dict[str, Any]) -> None:
        spec = entry.spec
        expression = None if spec is None or spec.suspend else spec.schedule
        try:
            self.schedules.set(entry.ref, expression, entry.status.last_rotation_time)
            self._invalid_schedules.pop(entry.ref, None)
        except InvalidSchedule as exc:
            message = str(exc)
            if self._invalid_schedules.get(entry.ref) == (entry.generation, message):
                return
            self._invalid_schedules[entry.ref] = (entry.generation, message)
            self.metrics.schedule_errors.inc()
            log.warning("%s: %s; no compliance rotation is scheduled", entry.ref, message)
            self._warn(raw, "InvalidSchedule", f"{message}; no compliance rotation is scheduled")

    def _warn(self, raw: dict[str, Any], reason: str, message: str) -> None:
        try:
            credential = credential_from(raw)
            self.app.engine.events.emit(credential, "Warning", reason, message)
        except (BackendError, PreconditionError) as exc:
            log.debug("could not record event %s: %s", reason, exc)

    def _watch_credentials(self, epoch: int) -> None:
        first = True
        while self._acting(epoch):
            try:
                snapshot = self.app.crs.list_snapshot(self.namespaces)
                seen = set()
                for raw in snapshot.items:
                    entry_ref = CredentialRef(raw["metadata"]["namespace"], raw["metadata"]["name"])
                    seen.add(entry_ref)
                    if first:
                        with self._index_lock:
                            self.index.pop(entry_ref, None)  # reconcile every CR on start
                    self._apply(raw, "ADDED", "resync" if first else "watch")
                with self._index_lock:
                    gone = [ref for ref in self.index if ref not in seen]
                for ref in gone:
                    self._apply(
                        {"metadata": {"namespace": ref.namespace, "name": ref.name}},
                        "DELETED",
                        "watch",
                    )
                first = False
                self._watch_ok["credentialrotations"] = True
                self._crs_listed.set()
                for kind, obj in self.app.crs.watch(self.namespaces, snapshot.resource_versions):
                    if not self._acting(epoch):
                        return
                    self._apply(obj, kind, "watch")
            except KubeWatchExpired:
                self.metrics.watch_restarts.labels("credentialrotations").inc()
                log.info("watch of CredentialRotations expired; listing again")
            except KubeError as exc:
                self._watch_ok["credentialrotations"] = False
                self.metrics.watch_restarts.labels("credentialrotations").inc()
                log.warning("watch of CredentialRotations failed: %s; listing again", exc)
                self.stopping.wait(WATCH_ERROR_PAUSE)

    def _secret_owner(self, obj: dict[str, Any]) -> CredentialRef | None:
        metadata = obj.get("metadata") or {}
        name = str(metadata.get("name", ""))
        if name.endswith(PREIMAGE_SUFFIX):
            return None  # the engine's own rollback stash
        annotations = metadata.get("annotations") or {}
        linked = annotations.get(OWNER_UID_ANNOTATION)
        if linked:  # a retained Secret: linked by annotations, not by an ownerReference
            ref = CredentialRef(
                str(metadata.get("namespace", "")), str(annotations.get(OWNER_ANNOTATION))
            )
            with self._index_lock:
                entry = self.index.get(ref)
            return ref if entry is not None and entry.uid == linked else None
        for owner in metadata.get("ownerReferences") or []:
            if owner.get("controller") and owner.get("kind") == KIND:
                ref = CredentialRef(str(metadata.get("namespace", "")), str(owner.get("name")))
                with self._index_lock:
                    entry = self.index.get(ref)
                if entry is not None and entry.uid == owner.get("uid"):
                    return ref
        return None

    def _our_own_write(self, obj: dict[str, Any]) -> bool:
        metadata = obj.get("metadata") or {}
        written = getattr(self.app.engine.secrets, "written", None)
        if not isinstance(written, dict):
            return False
        key = (str(metadata.get("namespace", "")), str(metadata.get("name", "")))
        return bool(metadata.get("resourceVersion")) and written.get(key) == metadata.get(
            "resourceVersion"
        )

    def _watch_secrets(self, epoch: int) -> None:
        watcher = ManagedSecretWatch(self.app.kube)
        # (namespace, name) -> the last metadata seen, to find what changed while not watching
        seen: dict[tuple[str, str], dict[str, Any]] | None = None
        while self._acting(epoch):
            try:
                snapshot = watcher.list_snapshot(self.namespaces)
                first = seen is None
                if seen is not None:
                    for obj in self._changed_while_away(seen, snapshot.items):
                        self._secret_changed(obj)
                seen = {_key(obj): obj for obj in snapshot.items}
                self._watch_ok["secrets"] = True
                self._secrets_watched.set()
                if first:  # after the workers may start: it waits for the CRs' first list
                    self._release_orphans(snapshot.items, epoch)
                events = watcher.watch(self.namespaces, snapshot.resource_versions)
                if not self._follow_secrets(events, seen, epoch):
                    return
            except KubeWatchExpired:
                self.metrics.watch_restarts.labels("secrets").inc()
                log.info("watch of managed Secrets expired; listing again")
            except KubeError as exc:
                self._watch_ok["secrets"] = False
                self._secrets_watched.set()  # drift detection is down (readyz says so)
                self.metrics.watch_restarts.labels("secrets").inc()
                log.warning("watch of managed Secrets failed: %s; listing again", exc)
                self.stopping.wait(WATCH_ERROR_PAUSE)

    def _follow_secrets(
        self,
        events: Iterable[tuple[str, dict[str, Any]]],
        seen: dict[tuple[str, str], dict[str, Any]],
        epoch: int,
    ) -> bool:
        """Apply the watch's events to ``seen`` and enqueue the CRs whose Secret someone else
        changed; False once this process no longer acts (the watch is abandoned)."""
        for kind, obj in events:
            if not self._acting(epoch):
                return False
            if kind == "BOOKMARK":
                continue
            if kind == "DELETED":
                seen.pop(_key(obj), None)
            else:
                seen[_key(obj)] = obj
            if kind == "MODIFIED" and self._our_own_write(obj):
                continue  # a promotion we just made, not drift
            if kind in ("MODIFIED", "DELETED"):
                self._secret_changed(obj)
        return True

    def _changed_while_away(
        self, seen: dict[tuple[str, str], dict[str, Any]], listed: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Secrets edited or deleted between two watches (a relist after 410 or an error)."""
        now = {_key(obj): obj for obj in listed}
        changed = [
            obj
            for key, obj in now.items()
            if key in seen
            and obj["metadata"].get("resourceVersion")
            != seen[key]["metadata"].get("resourceVersion")
            and not self._our_own_write(obj)
        ]
        return changed + [obj for key, obj in seen.items() if key not in now]

    def _secret_changed(self, obj: dict[str, Any]) -> None:
        ref = self._secret_owner(obj)
        if ref is not None:
            self.enqueue(ref, "secret")

    # -- workers -------------------------------------------------------------------------------

    def _acting(self, epoch: int) -> bool:
        return self._epoch == epoch and self.leading.is_set() and not self.stopping.is_set()

    def _worker(self, epoch: int) -> None:
        while self._acting(epoch) and not self._secrets_watched.wait(0.5):
            pass
        while self._acting(epoch):
            item = self.queue.get(timeout=0.5)
            if item is None:
                continue
            if not self._acting(epoch) or not self.elector.is_leader:
                self.queue.done(item.key)
                return
            not_before = self._process(item)
            self.queue.done(item.key, not_before)
            self.metrics.queue_depth.set(self.queue.waiting())

    def _process(self, item: Item[CredentialRef]) -> float | None:
        ref = item.key
        with self._running_lock:
            self._running[ref] = self._running.get(ref, 0) + 1
            self.max_parallel_per_credential = max(
                self.max_parallel_per_credential, self._running[ref]
            )
            self.metrics.max_in_flight_per_credential.set(self.max_parallel_per_credential)
        self.metrics.in_flight.inc()
        started = time.monotonic()
        try:
            if item.action == "rotate":
                outcome = self.app.engine.rotate(ref)
            else:
                outcome = self.app.engine.reconcile(ref)
        except LeadershipLost as exc:
            log.warning("%s", exc)
            return None
        except KubeNotFound:
            log.info("%s: gone", ref)
            self.queue.forget(ref)
            return None
        except (BackendError, PreconditionError) as exc:
            return self._retry(ref, item, f"{type(exc).__name__}: {exc}", transient=True)
        except Exception as exc:
            log.exception("%s: reconcile crashed", ref)
            return self._retry(ref, item, type(exc).__name__, transient=True)
        finally:
            self.metrics.in_flight.dec()
            with self._running_lock:
                self._running[ref] -= 1
                if not self._running[ref]:
                    del self._running[ref]
        return self._record(item, outcome, time.monotonic() - started)

    def _retry(
        self, ref: CredentialRef, item: Item[CredentialRef], why: str, *, transient: bool
    ) -> float | None:
        failures = self._failures.get(ref, 0) + 1
        self._failures[ref] = failures
        self.metrics.rotations.labels("error", item.trigger).inc()
        delay = backoff_delay(failures, random.random()).total_seconds()
        log.warning("%s: %s; retrying in %.1f s", ref, why, delay)
        if transient:
            self.queue.add(ref, item.action, "retry", delay=delay)
        return None

    def _record(self, item: Item[CredentialRef], outcome: Outcome, seconds: float) -> float | None:
        ref = item.key
        result = outcome.result
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
            self._failures.pop(ref, None)
        else:
            self._failures[ref] = self._failures.get(ref, 0) + 1
            log.warning("%s: %s: %s [%s]", ref, result, outcome.message, outcome.reason)
            if outcome.retry_after is not None:
                self.queue.add(ref, "reconcile", "retry", delay=outcome.retry_after.total_seconds())
            elif result == "in-flight":  # another writer claimed the journal: look again later
                self.queue.add(ref, "reconcile", "retry", delay=IN_FLIGHT_RECHECK)
        if result in ROTATING_RESULTS:
            return time.monotonic() + self.settings.controller.min_interval
        return None

    # -- periodic loops --------------------------------------------------------------------------

    def _poll_loop(self, epoch: int) -> None:
        interval = self.settings.triggers.poll_interval
        while self._acting(epoch) and not self.stopping.wait(interval):
            if not self._acting(epoch):
                return
            try:
                self.poller.cycle()
            except Exception:
                log.exception("poll cycle failed")

    def _resync_loop(self, epoch: int) -> None:
        interval = self.settings.controller.resync_interval
        while self._acting(epoch) and not self.stopping.wait(interval):
            if not self._acting(epoch):
                return
            with self._index_lock:
                refs = list(self.index)
            for ref in refs:
                self.enqueue(ref, "resync")

    # -- leadership ----------------------------------------------------------------------------

    def _spawn(self, target: Any, name: str, epoch: int) -> None:
        thread = threading.Thread(target=target, args=(epoch,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _start_leading(self) -> None:
        self._epoch += 1
        epoch = self._epoch
        log.info("%s is the leader: reconciling", self.identity)
        self.metrics.leader.set(1)
        self.queue.clear()
        self.queue.reopen()
        self._secrets_watched.clear()
        self._crs_listed.clear()
        self.leading.set()
        self._threads = []
        self.schedules.start()
        self._spawn(self._watch_credentials, "vaultbridge-watch-crs", epoch)
        self._spawn(self._watch_secrets, "vaultbridge-watch-secrets", epoch)
        for n in range(self.settings.controller.max_concurrent_rotations):
            self._spawn(self._worker, f"vaultbridge-worker-{n}", epoch)
        if self.settings.triggers.poll_interval > 0:
            self._spawn(self._poll_loop, "vaultbridge-poll", epoch)
        if self.settings.controller.resync_interval > 0:
            self._spawn(self._resync_loop, "vaultbridge-resync", epoch)
        if self.agent is not None:
            self.agent.start()

    def _stop_leading(self, why: str) -> None:
        if not self.leading.is_set():
            return
        log.warning("%s stops acting: %s", self.identity, why)
        self.leading.clear()
        self._epoch += 1
        self.metrics.leader.set(0)
        self.queue.clear()
        self.queue.close()
        self.schedules.shutdown()
        if self.agent is not None:
            self.agent.stop()
        with self._index_lock:
            self.index.clear()
        self._watch_ok.clear()

    def _election_loop(self) -> None:
        period = self.settings.controller.retry_period
        while not self.stopping.is_set():
            holds = self.elector.try_acquire_or_renew()
            self._heartbeat = time.monotonic()
            if holds and not self.leading.is_set():
                self._start_leading()
            elif not holds and self.leading.is_set() and not self.elector.is_leader:
                self._stop_leading("lost the lease")
            self.stopping.wait(period)

    # -- HTTP ------------------------------------------------------------------------------------

    def routes(self) -> Routes:
        return Routes(
            metrics=lambda: (self.metrics.render(), CONTENT_TYPE),
            healthz=lambda: (200, {"status": "ok"}),
            readyz=self.readiness,
            posts={"/v1/trigger": self._post_trigger, "/v1/schedules/run": self._post_schedule},
        )

    def readiness(self) -> tuple[int, dict[str, Any]]:
        problems = []
        period = self.settings.controller.retry_period
        if time.monotonic() - self._heartbeat > 3 * period + 10:
            problems.append("leader election loop is not running")
        for backend, ok in sorted(self.metrics.backend_health().items()):
            if not ok:
                problems.append(f"{backend}: last request failed")
        if self.leading.is_set():
            problems += [f"{w} watch failing" for w, ok in self._watch_ok.items() if not ok]
        role = "leader" if self.leading_now() else "standby"
        body: dict[str, Any] = {"role": role, "identity": self.identity}
        if problems:
            return 503, {**body, "status": "not ready", "problems": problems}
        return 200, {**body, "status": "ready"}

    def _authorize(self, authorization: str | None) -> tuple[int, dict[str, Any]] | None:
        try:
            self.authorizer.check(authorization)
        except Rejected as exc:
            self.metrics.webhook_rejected.labels(str(exc.status)).inc()
            log.info("trigger rejected: %s", exc.message)
            return exc.status, {"error": exc.message}
        return None

    def _post_trigger(self, body: bytes, authorization: str | None) -> tuple[int, dict[str, Any]]:
        denied = self._authorize(authorization)
        if denied is not None:
            return denied
        status, reply = self.endpoint.handle(body)
        if status != 202:
            self.metrics.webhook_rejected.labels(str(status)).inc()
            log.info("trigger rejected (%d): %s", status, reply.get("error"))
        return status, reply

    def _post_schedule(self, body: bytes, authorization: str | None) -> tuple[int, dict[str, Any]]:
        """Run a credential's compliance schedule now (through the scheduler)."""
        denied = self._authorize(authorization)
        if denied is not None:
            return denied
        if not self.leading_now():
            return 503, {"error": "not the leader; send this to the leader (or retry)"}
        try:
            refs = self.endpoint.resolve(body)
        except Rejected as exc:
            return exc.status, {"error": exc.message}
        missing = [str(ref) for ref in refs if not self.schedules.run_now(ref)]
        if missing:
            return 404, {"error": f"no schedule for {', '.join(missing)}"}
        return 202, {"scheduled": [str(ref) for ref in refs]}

    # -- running -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start serving HTTP and the election loop in the background."""
        self.http = HttpServer(self.settings.http.bind, self.settings.http.port, self.routes())
        self.http.start()
        log.info(
            "vaultbridge controller %s serving HTTP on port %d; lease %s/%s",
            self.identity,
            self.http.port,
            self.elector.namespace,
            self.elector.name,
        )
        self._heartbeat = time.monotonic()
        thread = threading.Thread(target=self._election_loop, name="vaultbridge-election")
        thread.daemon = True
        thread.start()
        self._election = thread

    def stop(self) -> None:
        self.stopping.set()
        self._stop_leading("shutting down")
        for thread in list(self._threads):  # workers finish or stop at their next step;
            if thread.name.startswith("vaultbridge-worker"):  # watches are daemons, not awaited
                thread.join(timeout=5)
        self.elector.release()
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
            self.app.close()


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace", "")), str(metadata.get("name", ""))
