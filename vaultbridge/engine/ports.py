"""What the engine needs from Vault, Kubernetes and Ceph, as small structural interfaces.

The concrete adapters live in ``vaultbridge.vault``, ``vaultbridge.kube`` and ``vaultbridge.ceph``;
``vaultbridge.app`` wires them in. Every method raises a ``BackendError`` subclass on failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from vaultbridge.model.ceph_release import MonRelease
from vaultbridge.model.cluster import ClusterRef
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import CredentialRef, CredentialSpec, DeletionPolicy
from vaultbridge.model.status import Status


@dataclass(frozen=True, slots=True)
class CredentialObject:
    """A CredentialRotation as read from the API server."""

    ref: CredentialRef
    uid: str
    generation: int
    resource_version: str
    spec: CredentialSpec
    status: Status
    api_version: str = "vaultbridge.io/v1alpha1"
    kind: str = "CredentialRotation"
    created: str | None = None  # metadata.creationTimestamp
    deleting: bool = False  # metadata.deletionTimestamp is set
    finalizers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """A Secret as read: its data (wrapped), annotations and the uid of the CredentialRotation
    it is linked to (by ownerReference or, when retained, by annotation)."""

    data: Mapping[str, Sensitive]
    annotations: Mapping[str, str] = field(default_factory=dict)
    controller_uid: str | None = None
    # the adapter's own copy, handed back on a write so it can skip a re-read
    handle: object = field(default=None, repr=False, compare=False)


class CredentialRepository(Protocol):
    def load(self, ref: CredentialRef) -> CredentialObject: ...

    def save_status(
        self, credential: CredentialObject, status: Status, *, expect_version: str | None = None
    ) -> CredentialObject | None:
        """Write ``status`` over ``credential`` (the object as last read or written). With
        ``expect_version`` the write only succeeds if the object is still at that
        resourceVersion (the claim of a rotation); without, if its status is still
        ``credential.status`` (its spec may have changed). Else ``ConcurrentRotation``: another
        writer got there first, and nothing is written. Returns the object as written (None if
        the API server's answer cannot be read)."""
        ...

    def set_finalizer(self, credential: CredentialObject, finalizer: str, *, present: bool) -> None:
        """Add or remove one finalizer of the CR (others are kept)."""
        ...


class SecretStore(Protocol):
    def read(self, namespace: str, name: str) -> StoredSecret | None: ...

    def write(
        self,
        credential: CredentialObject,
        name: str,
        data: Mapping[str, Sensitive],
        *,
        annotations: Mapping[str, str],
        adopt: bool,
        known: StoredSecret | None = None,
        policy: DeletionPolicy | None = None,
        absent: bool = False,
    ) -> StoredSecret | None:
        """Create or update the Secret; returns it as written (None: not known). ``policy``:
        how it is linked to the CR (Delete: owned, Retain: outlives it; None: the default for
        a created Secret, Delete, and for an adopted one, Retain). ``known``: the Secret as just
        read; ``absent``: just read as missing (either may be stale: a hint that saves a read)."""
        ...

    def delete(self, namespace: str, name: str) -> None: ...

    def release(self, namespace: str, name: str, owner_uid: str) -> bool:
        """Drop vaultbridge's label and link from a retained Secret whose CR is gone."""
        ...


class WorkloadStore(Protocol):
    """Deployments, StatefulSets and DaemonSets, by kind and name (``rolloutRestartTargets``)."""

    def template_annotation(self, namespace: str, kind: str, name: str, key: str) -> str | None:
        """The Pod template's annotation ``key`` (None when absent); KubeNotFound if no such
        workload."""
        ...

    def set_template_annotation(
        self, namespace: str, kind: str, name: str, key: str, value: str
    ) -> None:
        """Set the Pod template's annotation ``key``: the workload's controller rolls it."""
        ...


class EventRecorder(Protocol):
    def emit(
        self,
        credential: CredentialObject,
        type: Literal["Normal", "Warning"],
        reason: str,
        message: str,
    ) -> None: ...


class VaultStore(Protocol):
    def current_version(self, mount: str, path: str) -> int: ...

    def read(self, mount: str, path: str, version: int) -> Mapping[str, Sensitive]: ...

    def read_latest(self, mount: str, path: str) -> tuple[int, Mapping[str, Sensitive]]: ...

    def write(self, mount: str, path: str, data: Mapping[str, Sensitive], cas: int) -> int: ...

    def set_labels(
        self,
        mount: str,
        path: str,
        *,
        current: int | None,
        previous: int | None,
        pending: int | None,
    ) -> None: ...

    def labels(self, mount: str, path: str) -> tuple[int | None, int | None, int | None]:
        """The staging labels now: (current, previous, pending), None where absent."""
        ...

    def generate_password(self) -> Sensitive: ...

    def random_bytes(self, n: int) -> bytes: ...


ConfigKey = tuple[str, str]  # (who, option)


class CephStore(Protocol):
    def config_read(self, who: str, option: str) -> Sensitive | None:
        """The exact stored value, by the cheapest exact way the mons allow (snapshots)."""
        ...

    def config_apply_all(
        self,
        values: Sequence[tuple[str, str, Sensitive]],
        *,
        before: Mapping[ConfigKey, Sensitive | None] | None = None,
        read_back: bool = True,
    ) -> None: ...

    def config_restore(self, snapshot: Mapping[ConfigKey, Sensitive | None]) -> None: ...

    def config_option_known(self, option: str) -> bool: ...

    def config_key_get(self, key: str) -> Sensitive | None: ...

    def config_key_set(self, key: str, value: Sensitive) -> None: ...

    def config_key_remove(self, key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class CephxEntity:
    """A cephx entity as the mons hold it (``key`` stays wrapped)."""

    name: str
    key: Sensitive
    caps: Mapping[str, str]
    pending_key: Sensitive | None = None  # Reef and later: staged, not yet used


class CephListing(Protocol):
    """Whole listings of what the mons hold, one mon command each: the drift sweep compares
    every credential against them instead of reading each one (``engine/drift.py``)."""

    def config_values(self) -> Mapping[ConfigKey, Sensitive]:
        """Every unmasked option of the config database (``config dump``)."""
        ...

    def config_key_values(self, prefix: str) -> Mapping[str, Sensitive]:
        """Every config-key starting with ``prefix`` (``config-key dump``)."""
        ...

    def cephx_entities(self) -> Mapping[str, CephxEntity]:
        """Every cephx entity (``auth ls``)."""
        ...


class CephxStore(Protocol):
    """The cephx auth database (``vaultbridge.ceph.CephxAuth`` behind ``app.CephxMon``)."""

    def mon_release(self) -> MonRelease:
        """What the mons run and allow: versions, ``min_mon_release``, key types."""
        ...

    def get_entity(self, name: str) -> CephxEntity | None: ...

    def add_entity(self, name: str, key: Sensitive, caps: Mapping[str, str]) -> None: ...

    def import_entity(self, name: str, key: Sensitive, caps: Mapping[str, str]) -> None: ...

    def set_caps(self, name: str, caps: Mapping[str, str]) -> None: ...

    def remove_entity(self, name: str) -> None: ...

    def verify_key(
        self,
        name: str,
        key: Sensitive,
        probe_allowed: Mapping[str, Any],
        probe_refused: Mapping[str, Any] | None,
    ) -> None: ...

    def sessions(self, entity: str) -> list[str]: ...

    def make_key(self, secret: bytes, created: int, key_type: str = "aes") -> Sensitive: ...

    def key_is_valid(self, key: Sensitive) -> bool: ...

    def key_type_of(self, key: Sensitive) -> str | None: ...

    def keyring_text(
        self, name: str, key: Sensitive, caps: Mapping[str, str] | None
    ) -> Sensitive: ...

    # Ceph >= 17 only
    def get_or_create_pending(self, entity: str) -> Sensitive: ...

    def commit_pending(self, entity: str) -> None: ...

    def clear_pending(self, entity: str) -> None: ...


class CephCluster(Protocol):
    """One Ceph cluster's stores, as a credential's ``spec.cluster`` names it."""

    @property
    def name(self) -> str:
        """Its key (``model/cluster.py``): the journal, status and metrics name it so."""
        ...

    @property
    def ceph(self) -> CephStore: ...

    @property
    def cephx(self) -> CephxStore | None: ...

    @property
    def listing(self) -> CephListing | None: ...

    def fsid(self) -> str | None:
        """Its fsid as known without a request: what its mons last answered with, else what
        its objects declare (None: not known yet; the in-memory cluster)."""
        ...


class CephClusters(Protocol):
    """Every cluster the credentials name, found by their ``spec.cluster``."""

    def cluster(self, ref: ClusterRef | None) -> CephCluster:
        """The cluster's connection (None: the default). A PreconditionError (the objects it
        is read from are missing or malformed, naming them) or a BackendError otherwise."""
        ...
