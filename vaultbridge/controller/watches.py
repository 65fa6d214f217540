"""The controller's two watches: CredentialRotations (kept in the index; a new generation is
reconciled) and the Secrets vaultbridge manages (an edit or deletion someone else made is
drift: its CR is reconciled). Each lists, then watches from the list's resourceVersions, and
lists again on 410 Gone or an error."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from vaultbridge.controller.index import CredentialIndex, Entry, entry_from
from vaultbridge.controller.leadership import Leadership
from vaultbridge.controller.work import Workers
from vaultbridge.engine.deletion import CEPHX_FINALIZER
from vaultbridge.engine.drift import SecretSeen
from vaultbridge.engine.engine import Engine
from vaultbridge.kube import (
    OWNER_ANNOTATION,
    OWNER_UID_ANNOTATION,
    CredentialRotationClient,
    KubeClient,
    KubeError,
    KubeNotFound,
    KubeWatchExpired,
    ManagedSecretWatch,
)
from vaultbridge.model.errors import BackendError
from vaultbridge.model.spec import CredentialRef
from vaultbridge.observability.metrics import Metrics

log = logging.getLogger(__name__)

WATCH_ERROR_PAUSE = 1.0  # after a watch or list failed; doubled per failure in a row, up to
WATCH_ERROR_CAP = 30.0  # this (with jitter): an unreachable API server is asked rarely


def error_pause(failures: int) -> float:
    """Seconds before listing again after ``failures`` failures in a row (1, 2, ...)."""
    step = min(WATCH_ERROR_CAP, WATCH_ERROR_PAUSE * 2.0 ** min(failures - 1, 8))
    return float(step * (0.5 + random.random() / 2))


ORPHAN_SWEEP_WAIT = 30.0  # how long the start's release of retained Secrets waits for the CRs

SecretKey = tuple[str, str]


class Scheduling(Protocol):
    """What the watches tell the triggers: a CR's schedule as its spec says, or none."""

    def schedule(self, entry: Entry, raw: dict[str, Any]) -> None: ...

    def unschedule(self, ref: CredentialRef) -> None: ...


class Watches:
    def __init__(
        self,
        *,
        crs: CredentialRotationClient,
        kube: KubeClient,
        engine: Engine,
        index: CredentialIndex,
        workers: Workers,
        scheduling: Scheduling,
        leadership: Leadership,
        metrics: Metrics,
        namespaces: list[str] | None,
        own_writes: Mapping[SecretKey, str],
    ) -> None:
        self.crs, self.kube, self.engine = crs, kube, engine
        # the resourceVersion of vaultbridge's own last write of each Secret: its promotions
        # are not drift
        self.own_writes = own_writes
        self.index, self.workers, self.scheduling = index, workers, scheduling
        self.leadership, self.metrics, self.namespaces = leadership, metrics, namespaces
        self.ok: dict[str, bool] = {}  # watch -> healthy (readiness)
        # set once the managed-Secret watch is listening (or has failed): workers wait for it,
        # so an edit made right after a rotation's Secret write is never missed
        self.secrets_watched = threading.Event()
        self.crs_listed = threading.Event()  # the first list of CRs is in the index
        # (namespace, name) -> the managed Secret as last seen (metadata and fingerprints)
        self.secrets: dict[SecretKey, dict[str, Any]] | None = None

    def reset(self) -> None:
        self.secrets_watched.clear()
        self.crs_listed.clear()
        self.ok.clear()
        self.secrets = None

    def secrets_listed(self) -> bool:
        return self.secrets is not None

    def secret_seen(self, namespace: str, name: str) -> SecretSeen | None:
        """The managed Secret ``namespace/name`` as the watch last saw it (None: not seen)."""
        obj = (self.secrets or {}).get((namespace, name))
        if obj is None:
            return None
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        return SecretSeen(annotations, obj.get("digests") or {})

    # -- CredentialRotations ---------------------------------------------------------------------

    def watch_credentials(self, epoch: int) -> None:
        first = True
        failures = 0
        while self.leadership.acting(epoch):
            try:
                versions = self._list_credentials(first)
                first, failures = False, 0
                self.ok["credentialrotations"] = True
                self.crs_listed.set()
                for kind, obj in self.crs.watch(self.namespaces, versions):
                    if not self.leadership.acting(epoch):
                        return
                    self.apply(obj, kind, "watch")
            except KubeWatchExpired:
                self.metrics.watch_restarts.labels("credentialrotations").inc()
                log.info("watch of CredentialRotations expired; listing again")
            except KubeError as exc:
                self.ok["credentialrotations"] = False
                self.metrics.watch_restarts.labels("credentialrotations").inc()
                log.warning("watch of CredentialRotations failed: %s; listing again", exc)
                failures += 1
                self.leadership.stopping.wait(error_pause(failures))

    def _list_credentials(self, first: bool) -> dict[str | None, str]:
        """A (re)list: every CR applied as its page arrives (10,000 listed CRs are never held
        at once), those no longer listed deleted; the list's resourceVersions. The first list
        of a term queues none of them: the drift sweep that follows it
        (``controller/sweep.py``) queues those that differ, or have a rotation to resume."""
        seen = set()

        def each(raw: dict[str, Any]) -> None:
            seen.add(CredentialRef(raw["metadata"]["namespace"], raw["metadata"]["name"]))
            self.apply(raw, "ADDED", "watch", queue_new=not first)

        versions = self.crs.list_each(self.namespaces, each)
        for ref in [ref for ref in self.index.refs() if ref not in seen]:
            gone = {"metadata": {"namespace": ref.namespace, "name": ref.name}}
            self.apply(gone, "DELETED", "watch")
        return versions

    def apply(
        self, raw: dict[str, Any], kind: str, trigger: str, *, queue_new: bool = True
    ) -> None:
        if kind == "BOOKMARK":
            return
        entry = entry_from(raw)
        ref = entry.ref
        if kind != "DELETED" and entry.deleting and CEPHX_FINALIZER in entry.finalizers:
            # waits for us: the engine removes its cephx entities, then releases it
            old = self.index.put(entry)
            self.scheduling.unschedule(ref)
            if (old is None and queue_new) or (old is not None and not old.deleting):
                self.workers.enqueue(ref, trigger)
            return
        if kind == "DELETED" or entry.deleting:
            gone = self.index.pop(ref)
            if kind == "DELETED" and gone is not None:
                self._release_secret(gone)
            self.scheduling.unschedule(ref)
            self.workers.forget(ref)
            self.engine.forget(ref)
            return
        old = self.index.put(entry)
        self.scheduling.schedule(entry, raw)
        if old is None and not queue_new:
            return
        if old is None or old.generation != entry.generation or old.uid != entry.uid:
            self.workers.enqueue(ref, trigger)

    def _release_secret(self, gone: Entry) -> None:
        """The CR is gone: a Secret it retained loses vaultbridge's label and link (best
        effort; without a controller they stay, inert: they name a uid that no longer is)."""
        if gone.spec is None:
            return
        try:
            self.engine.secrets.release(gone.ref.namespace, gone.spec.secret.name, gone.uid)
        except BackendError as exc:
            log.warning("%s: could not release its retained Secret: %s", gone.ref, exc)

    # -- managed Secrets ---------------------------------------------------------------------------

    def watch_secrets(self, epoch: int) -> None:
        watcher = ManagedSecretWatch(self.kube)
        # (namespace, name) -> the last metadata seen, to find what changed while not watching
        seen: dict[SecretKey, dict[str, Any]] | None = None
        failures = 0
        while self.leadership.acting(epoch):
            try:
                snapshot = watcher.list_snapshot(self.namespaces)
                failures = 0
                first = seen is None
                if seen is not None:
                    for obj in self._changed_while_away(seen, snapshot.items):
                        self._secret_changed(obj)
                seen = {_key(obj): obj for obj in snapshot.items}
                self.secrets = seen
                self.ok["secrets"] = True
                self.secrets_watched.set()
                if first:  # after the workers may start: it waits for the CRs' first list
                    self._release_orphans(snapshot.items, epoch)
                events = watcher.watch(self.namespaces, snapshot.resource_versions)
                if not self._follow_secrets(events, seen, epoch):
                    return
            except KubeWatchExpired:
                self.metrics.watch_restarts.labels("secrets").inc()
                log.info("watch of managed Secrets expired; listing again")
            except KubeError as exc:
                self.ok["secrets"] = False
                self.secrets_watched.set()  # drift detection is down (readyz says so)
                self.metrics.watch_restarts.labels("secrets").inc()
                log.warning("watch of managed Secrets failed: %s; listing again", exc)
                failures += 1
                self.leadership.stopping.wait(error_pause(failures))

    def _follow_secrets(
        self,
        events: Iterable[tuple[str, dict[str, Any]]],
        seen: dict[SecretKey, dict[str, Any]],
        epoch: int,
    ) -> bool:
        """Apply the watch's events to ``seen`` and enqueue the CRs whose Secret someone else
        changed; False once this process no longer acts (the watch is abandoned)."""
        for kind, obj in events:
            if not self.leadership.acting(epoch):
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
        self, seen: dict[SecretKey, dict[str, Any]], listed: list[dict[str, Any]]
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

    def _our_own_write(self, obj: dict[str, Any]) -> bool:
        metadata = obj.get("metadata") or {}
        version = metadata.get("resourceVersion")
        return bool(version) and self.own_writes.get(_key(obj)) == version

    def _secret_changed(self, obj: dict[str, Any]) -> None:
        ref = self.index.owner_of(obj)
        if ref is not None:
            self.workers.enqueue(ref, "secret")

    def _release_orphans(self, secrets: list[dict[str, Any]], epoch: int) -> None:
        """Release retained Secrets whose CR was deleted while no controller ran. Decided on the
        index once the CRs are listed, so a start costs no request per Secret; a Secret whose CR
        the index does not know is released only after a read of the CR says it is gone (or is
        another object by now): it may be one created since the list."""
        deadline = time.monotonic() + ORPHAN_SWEEP_WAIT
        while not self.crs_listed.wait(0.5):
            if not self.leadership.acting(epoch) or time.monotonic() > deadline:
                return  # best effort: a Secret not released keeps an inert link
        for obj in secrets:
            metadata = obj.get("metadata") or {}
            annotations = metadata.get("annotations") or {}
            uid, name = annotations.get(OWNER_UID_ANNOTATION), annotations.get(OWNER_ANNOTATION)
            if not uid or not name:
                continue
            namespace = str(metadata.get("namespace", ""))
            known = self.index.get(CredentialRef(namespace, str(name)))
            if known is not None and known.uid == uid:
                continue
            try:
                if not self._cr_gone(namespace, str(name), uid):
                    continue
                self.engine.secrets.release(namespace, str(metadata.get("name")), uid)
            except BackendError as exc:
                log.warning(
                    "could not release Secret %s/%s: %s", namespace, metadata.get("name"), exc
                )

    def _cr_gone(self, namespace: str, name: str, uid: str) -> bool:
        try:
            live = self.crs.get(namespace, name)
        except KubeNotFound:
            return True
        return (live.get("metadata") or {}).get("uid") != uid


def _key(obj: dict[str, Any]) -> SecretKey:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace", "")), str(metadata.get("name", ""))
