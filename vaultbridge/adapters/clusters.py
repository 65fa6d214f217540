"""The Ceph clusters the credentials name (``spec.cluster``): one connection per cluster, shared
by its credentials, made from the Kubernetes objects the cluster names and remade when they
change (the engine's ``CephClusters`` port).

- **Read, not copied.** A Rook cluster's mons come from Rook's ``rook-ceph-mon-endpoints``
  ConfigMap, an external cluster's from its ``ceph.conf`` ConfigMap; the fsid, user and key
  from the Secret it names (``model/cluster.py`` parses them). :meth:`ClusterRegistry.refresh`
  reads them again (the controller calls it when a watch sees them change): new endpoints or a
  new key retarget the connection, and its next command connects with them. A command in
  progress finishes first; a rotation in flight checks the fsid before each step
  (``engine/clusters.py``).
- **Identity.** Each connection is pinned to the fsid its objects name: mons that answer with
  another fsid are refused before any command is sent.
- **Bounded.** At most ``limit`` clusters besides the default; :meth:`retain` closes the
  connections no credential names any more.
- **Bad objects.** A missing object, malformed endpoints or a malformed keyring is a
  ``PreconditionError`` naming the object and the problem; nothing is connected, and the
  credentials of that cluster fail with it until the objects are fixed. A key that does not
  authenticate is the connection's ``CephPermissionDenied``, which names the cluster's Secret.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from vaultbridge.adapters.ceph import CephListings, CephMon, CephxMon
from vaultbridge.ceph import CephConnection
from vaultbridge.engine.ports import CephCluster
from vaultbridge.model.cluster import (
    CONF_KEY,
    ROOK_ENDPOINTS_KEY,
    ClusterConfigError,
    ClusterConnectionSpec,
    ClusterRef,
    parse_ceph_conf,
    parse_keyring,
    parse_rook_endpoints,
    parse_rook_secret,
    rook_mon_host,
)
from vaultbridge.model.errors import PreconditionError
from vaultbridge.model.sensitive import Sensitive

log = logging.getLogger(__name__)

ChangeKind = Literal["moved", "credentials", "identity", "broken", "fixed"]


class ClusterObjects(Protocol):
    """Reads single named objects (``kube.NamedObjects``)."""

    def config_map(self, namespace: str, name: str) -> dict[str, str] | None: ...

    def secret(self, namespace: str, name: str) -> dict[str, Sensitive] | None: ...


def read_connection(ref: ClusterRef, objects: ClusterObjects) -> ClusterConnectionSpec:
    """What a connection to ``ref`` is made from; ClusterConfigError naming the object."""
    form = f"spec.cluster.{ref.kind}"
    where_map = f"ConfigMap {ref.namespace}/{ref.config_map}"
    where_secret = f"Secret {ref.namespace}/{ref.secret}"
    data = objects.config_map(ref.namespace, ref.config_map)
    if data is None:
        raise ClusterConfigError("ClusterObjectMissing", f"{where_map} does not exist ({form})")
    secret = objects.secret(ref.namespace, ref.secret)
    if secret is None:
        raise ClusterConfigError("ClusterObjectMissing", f"{where_secret} does not exist ({form})")
    if ref.kind == "rook":
        text = data.get(ROOK_ENDPOINTS_KEY)
        if text is None:
            raise ClusterConfigError(
                "MonEndpointsMalformed",
                f"{where_map} has no key {ROOK_ENDPOINTS_KEY} (Rook's mon endpoints)",
            )
        mons = parse_rook_endpoints(text, f"{where_map} key {ROOK_ENDPOINTS_KEY}")
        fsid, user, key = parse_rook_secret(secret, where_secret)
        return ClusterConnectionSpec(rook_mon_host(mons), user, key, fsid)
    conf = data.get(CONF_KEY)
    if conf is None:
        raise ClusterConfigError("CephConfMalformed", f"{where_map} has no key {CONF_KEY}")
    mon_host, conf_fsid, options = parse_ceph_conf(conf, f"{where_map} key {CONF_KEY}")
    user, key = parse_keyring(secret, where_secret)
    return ClusterConnectionSpec(mon_host, user, key, conf_fsid, options)


def _options(spec: ClusterConnectionSpec) -> dict[str, str]:
    return {**dict(spec.options), "mon_host": spec.mon_host}


class DefaultCluster:
    """The settings' cluster (``VAULTBRIDGE_CEPH__*``) as a :class:`CephCluster`."""

    name = "default"

    def __init__(self, conn: CephConnection, wrap: Callable[[Any, str], Any]) -> None:
        self.conn = conn
        self.ceph = wrap(CephMon(conn), self.name)
        self.cephx = CephxMon(conn)
        self.listing = wrap(CephListings(conn), self.name)

    def fsid(self) -> str | None:
        return self.conn.known_fsid()


class LiveCluster:
    """One named cluster's connection and the stores on it (a :class:`CephCluster`)."""

    def __init__(
        self,
        ref: ClusterRef,
        spec: ClusterConnectionSpec,
        *,
        timeout: float,
        wrap: Callable[[Any, str], Any],
    ) -> None:
        self.ref = ref
        self.spec = spec
        self.conn = CephConnection(
            None,
            spec.user,
            timeout=timeout,
            key=spec.key,
            options=_options(spec),
            label=f"{ref.key} (Secret {ref.namespace}/{ref.secret})",
            expect_fsid=spec.fsid,
        )
        self.name = ref.key
        self.ceph = wrap(CephMon(self.conn), self.name)
        self.cephx = CephxMon(self.conn)
        self.listing = wrap(CephListings(self.conn), self.name)

    def fsid(self) -> str | None:
        return self.conn.known_fsid()

    def retarget(self, spec: ClusterConnectionSpec) -> None:
        self.spec = spec
        self.conn.retarget(_options(spec), key=spec.key, user=spec.user, expect_fsid=spec.fsid)

    def close(self) -> None:
        self.conn.close()


@dataclass
class ClusterChange:
    """What a refresh found: the cluster's key, the kind of change, and a secret-free line."""

    cluster: str
    kind: ChangeKind
    message: str


@dataclass
class _Entry:
    ref: ClusterRef
    live: LiveCluster | None = None
    problem: PreconditionError | None = None


class ClusterRegistry:
    """The engine's ``CephClusters``: the default cluster (the settings'), and one
    :class:`LiveCluster` per ``spec.cluster`` in use."""

    def __init__(
        self,
        default: CephCluster | None,
        objects: ClusterObjects | None,
        *,
        timeout: float = 5.0,
        limit: int = 16,
        wrap: Callable[[Any, str], Any] = lambda port, _cluster: port,
    ) -> None:
        self.default = default
        self.objects = objects
        self.timeout = timeout
        self.limit = limit
        self.wrap = wrap
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def cluster(self, ref: ClusterRef | None) -> CephCluster:
        if ref is None:
            if self.default is None:
                raise PreconditionError(
                    "CephNotConfigured",
                    "no default Ceph cluster is configured (VAULTBRIDGE_CEPH__CONF); name one "
                    "in spec.cluster",
                )
            return self.default
        with self._lock:
            entry = self._entries.get(ref.key)
        if entry is None:
            entry = self._open(ref)  # the objects are read outside the lock
        if entry.problem is not None:
            raise entry.problem
        assert entry.live is not None
        return entry.live

    def _open(self, ref: ClusterRef) -> _Entry:
        if self.objects is None:
            raise PreconditionError(
                "ClusterNotConfigured",
                f"spec.cluster names {ref}, but this command reads no Kubernetes objects",
            )
        with self._lock:
            full = len(self._entries) >= self.limit
        if full:
            raise PreconditionError(
                "TooManyClusters",
                f"spec.cluster names {ref}, but {self.limit} clusters are connected already "
                "(VAULTBRIDGE_CEPH__MAX_CLUSTERS)",
            )
        entry = _Entry(ref)
        try:
            entry.live = LiveCluster(
                ref, read_connection(ref, self.objects), timeout=self.timeout, wrap=self.wrap
            )
        except ClusterConfigError as exc:
            entry.problem = PreconditionError(exc.reason, str(exc))
        with self._lock:
            found = self._entries.setdefault(ref.key, entry)
        if found is not entry and entry.live is not None:  # another thread was first
            entry.live.close()
        return found

    def refresh(self, ref: ClusterRef) -> ClusterChange | None:
        """Read ``ref``'s objects again and follow them (None: nothing that matters changed,
        or no credential uses the cluster)."""
        with self._lock:
            entry = self._entries.get(ref.key)
        if entry is None or self.objects is None:
            return None
        try:
            spec = read_connection(ref, self.objects)
        except ClusterConfigError as exc:
            with self._lock:
                was, entry.problem = entry.problem, PreconditionError(exc.reason, str(exc))
            if was is not None and str(was) == str(exc):
                return None
            return ClusterChange(ref.key, "broken", str(exc))
        with self._lock:
            fixed, entry.problem = entry.problem is not None, None
            live = entry.live
            if live is None:
                entry.live = LiveCluster(ref, spec, timeout=self.timeout, wrap=self.wrap)
                return ClusterChange(ref.key, "fixed", f"{ref.key}: its objects are valid again")
        old = live.spec
        if spec == old and not fixed:
            return None
        live.retarget(spec)
        if old.fsid != spec.fsid:
            return ClusterChange(
                ref.key,
                "identity",
                f"{ref.key}: the Secret now names fsid {spec.fsid} (was {old.fsid}); "
                "connections are made to that cluster",
            )
        if old.endpoints != spec.endpoints:
            return ClusterChange(
                ref.key,
                "moved",
                f"{ref.key}: mons moved from {old.endpoints} to {spec.endpoints}; new "
                "connections use the new endpoints",
            )
        if fixed:
            return ClusterChange(ref.key, "fixed", f"{ref.key}: its objects are valid again")
        return ClusterChange(ref.key, "credentials", f"{ref.key}: its user or key changed")

    def retain(self, keys: Iterable[str]) -> list[str]:
        """Close the connections of clusters not in ``keys``; returns the keys closed."""
        wanted = set(keys)
        with self._lock:
            gone = [key for key in self._entries if key not in wanted]
            closing = [self._entries.pop(key) for key in gone]
        for entry in closing:
            if entry.live is not None:
                entry.live.close()
        if gone:
            log.info("closed the connections of %s: no credential names them", ", ".join(gone))
        return gone

    def known(self) -> list[ClusterRef]:
        with self._lock:
            return [entry.ref for entry in self._entries.values()]

    def connected(self) -> int:
        with self._lock:
            named = sum(1 for entry in self._entries.values() if entry.live is not None)
        return named + (1 if self.default is not None else 0)

    def close(self) -> None:
        self.retain(())
