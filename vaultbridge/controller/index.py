"""What the controller knows of every CredentialRotation, from its list and watch: the index
the triggers resolve against, the metrics sample, and the Secret-to-CR mapping."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vaultbridge.engine.ports import CredentialObject
from vaultbridge.engine.preimage import PREIMAGE_SUFFIX
from vaultbridge.kube import API_VERSION, KIND, OWNER_ANNOTATION, OWNER_UID_ANNOTATION
from vaultbridge.model.cluster import ClusterRef, cluster_key
from vaultbridge.model.spec import CredentialRef, CredentialSpec, SpecError, parse_spec
from vaultbridge.model.status import Status
from vaultbridge.observability.metrics import CredentialSample
from vaultbridge.rotation import compliance
from vaultbridge.triggers.detect import Source, source_name


@dataclass(slots=True)
class Entry:
    """What the controller knows of one CredentialRotation (from list/watch)."""

    ref: CredentialRef
    uid: str
    generation: int
    spec: CredentialSpec | None
    status: Status
    deleting: bool = False
    finalizers: tuple[str, ...] = ()
    resource_version: str = ""
    created: str | None = None
    api_version: str = API_VERSION

    def credential(self) -> CredentialObject | None:
        """The CR as the engine models it, sharing this entry's spec and status (None: its
        spec is invalid, or it is being deleted)."""
        if self.spec is None or self.deleting:
            return None
        return CredentialObject(
            ref=self.ref,
            uid=self.uid,
            generation=self.generation,
            resource_version=self.resource_version,
            spec=self.spec,
            status=self.status,
            api_version=self.api_version,
            created=self.created,
            finalizers=self.finalizers,
        )


def entry_from(raw: dict[str, Any]) -> Entry:
    """The index entry of a CR as the API server returned it (an invalid spec: None)."""
    metadata = raw["metadata"]
    try:
        spec: CredentialSpec | None = parse_spec(raw.get("spec") or {})
    except SpecError:
        spec = None
    # texts most entries share are kept once (sys.intern): 10,000 copies of a namespace or
    # the apiVersion are a megabyte
    return Entry(
        ref=CredentialRef(sys.intern(metadata["namespace"]), metadata["name"]),
        uid=str(metadata.get("uid", "")),
        generation=int(metadata.get("generation", 1) or 1),
        spec=spec,
        status=Status.from_dict(raw.get("status")),
        deleting=bool(metadata.get("deletionTimestamp")),
        finalizers=tuple(sys.intern(f) for f in metadata.get("finalizers") or ()),
        resource_version=str(metadata.get("resourceVersion", "")),
        created=metadata.get("creationTimestamp"),
        api_version=sys.intern(str(raw.get("apiVersion", API_VERSION))),
    )


def cluster_of(entry: Entry | None) -> ClusterRef | None:
    """The cluster ``entry`` works in: its rotation's while one is in flight (a move waits
    for it), else its spec's (None: the default cluster)."""
    if entry is None:
        return None
    journal = entry.status.rotation
    if journal is not None and journal.cluster is not None:
        try:
            return ClusterRef.from_key(journal.cluster)
        except ValueError:
            pass
    return None if entry.spec is None else entry.spec.cluster


def _source_of(entry: Entry | None) -> str | None:
    """The ``mount/path`` ``entry`` reads from Vault (None: no Vault source, or suspended)."""
    if entry is None or entry.spec is None or entry.spec.source is None or entry.spec.suspend:
        return None
    return source_name(entry.spec.source.mount, entry.spec.source.path)


class CredentialIndex:
    """The CRs by reference; safe to use from the watch, worker and HTTP threads."""

    def __init__(self) -> None:
        self._entries: dict[CredentialRef, Entry] = {}
        # "mount/path" -> the credentials reading it: a push of 10,000 entries a second must
        # not walk every entry for each
        # a tuple, not a set: nearly every path has one credential (a set costs 216 bytes)
        self._by_source: dict[str, tuple[CredentialRef, ...]] = {}
        # cluster key -> (its ref, how many entries work in it)
        self._clusters: dict[str, tuple[ClusterRef | None, int]] = {}
        self._lock = threading.Lock()

    def _count_cluster(self, entry: Entry | None, change: int) -> None:
        if entry is None:
            return
        ref = cluster_of(entry)
        key = cluster_key(ref)
        count = self._clusters.get(key, (ref, 0))[1] + change
        if count > 0:
            self._clusters[key] = (ref, count)
        else:
            self._clusters.pop(key, None)

    def clusters(self) -> dict[str, ClusterRef | None]:
        """Every cluster some entry works in, by key."""
        with self._lock:
            return {key: ref for key, (ref, _) in self._clusters.items()}

    def cluster_key_of(self, ref: CredentialRef) -> str:
        return cluster_key(cluster_of(self.get(ref)))

    def in_cluster(self, key: str) -> list[Entry]:
        with self._lock:
            return [e for e in self._entries.values() if cluster_key(cluster_of(e)) == key]

    def _unlink(self, entry: Entry | None) -> None:
        name = _source_of(entry)
        if name is not None and entry is not None:
            refs = tuple(ref for ref in self._by_source.get(name, ()) if ref != entry.ref)
            if refs:
                self._by_source[name] = refs
            else:
                self._by_source.pop(name, None)

    def get(self, ref: CredentialRef) -> Entry | None:
        with self._lock:
            return self._entries.get(ref)

    def credential(self, ref: CredentialRef) -> CredentialObject | None:
        """The watched CR, for the engine to claim from (``Access.watched``)."""
        entry = self.get(ref)
        return None if entry is None else entry.credential()

    def put(self, entry: Entry) -> Entry | None:
        """Store ``entry``; the entry it replaces, if any."""
        with self._lock:
            old = self._entries.get(entry.ref)
            self._unlink(old)
            self._count_cluster(old, -1)
            self._count_cluster(entry, +1)
            self._entries[entry.ref] = entry
            name = _source_of(entry)
            if name is not None:
                refs = self._by_source.get(name, ())
                if entry.ref not in refs:
                    self._by_source[name] = (*refs, entry.ref)
            return old

    def pop(self, ref: CredentialRef) -> Entry | None:
        with self._lock:
            old = self._entries.pop(ref, None)
            self._unlink(old)
            self._count_cluster(old, -1)
            return old

    def refs(self) -> list[CredentialRef]:
        with self._lock:
            return list(self._entries)

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries.values())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._by_source.clear()
            self._clusters.clear()

    def sources(self) -> list[Source[CredentialRef]]:
        """The Vault paths the poller and the Agent watcher follow."""
        return [
            Source(e.ref, e.spec.source.mount, e.spec.source.path, e.status.current_version)
            for e in self.entries()
            if e.spec is not None and e.spec.source is not None and not e.spec.suspend
        ]

    def by_path(self, mount: str, path: str) -> list[CredentialRef]:
        with self._lock:
            refs = self._by_source.get(source_name(mount, path), ())
            return sorted(refs, key=lambda ref: (ref.namespace, ref.name))

    def by_name(self, namespace: str, name: str) -> CredentialRef | None:
        ref = CredentialRef(namespace, name)
        return ref if self.get(ref) is not None else None

    def owner_of(self, secret: dict[str, Any]) -> CredentialRef | None:
        """The CR a managed Secret belongs to: linked by annotations (retained) or by a
        controller ownerReference, naming a CR of that name *and* uid (None otherwise)."""
        metadata = secret.get("metadata") or {}
        name = str(metadata.get("name", ""))
        if name.endswith(PREIMAGE_SUFFIX):
            return None  # the engine's own rollback stash
        namespace = str(metadata.get("namespace", ""))
        annotations = metadata.get("annotations") or {}
        linked = annotations.get(OWNER_UID_ANNOTATION)
        if linked:  # a retained Secret: linked by annotations, not by an ownerReference
            ref = CredentialRef(namespace, str(annotations.get(OWNER_ANNOTATION)))
            entry = self.get(ref)
            return ref if entry is not None and entry.uid == linked else None
        for owner in metadata.get("ownerReferences") or []:
            if owner.get("controller") and owner.get("kind") == KIND:
                ref = CredentialRef(namespace, str(owner.get("name")))
                entry = self.get(ref)
                if entry is not None and entry.uid == owner.get("uid"):
                    return ref
        return None

    def samples(self) -> Iterable[CredentialSample]:
        """Per-credential metrics: age, last verification, compliance."""
        now = datetime.now(UTC)
        for e in self.entries():
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
