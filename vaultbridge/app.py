"""The one place that wires the concrete adapters (``vaultbridge.adapters``: Vault,
Kubernetes, Ceph) into the engine, and the read-only views the CLI prints."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from vaultbridge.adapters import (
    KubeCredentials,
    KubeEvents,
    KubeSecrets,
    VaultKv,
)
from vaultbridge.adapters.clusters import ClusterRegistry, DefaultCluster, LiveCluster
from vaultbridge.adapters.kube import credential_from
from vaultbridge.ceph import (
    CephConnection,
    ConfigStore,
    read_mon_release,
)
from vaultbridge.engine.engine import Engine, Observer
from vaultbridge.engine.runtime import always
from vaultbridge.kube import (
    CredentialRotationClient,
    EventRecorder,
    KubeClient,
    NamedObjects,
    SecretSink,
    WorkloadClient,
)
from vaultbridge.model.cluster import DEFAULT_CLUSTER, ClusterRef, cluster_key
from vaultbridge.model.errors import BackendError, PreconditionError
from vaultbridge.model.spec import (
    CredentialRef,
    SpecError,
    describe_target,
    parse_spec,
)
from vaultbridge.model.status import READY, Status
from vaultbridge.observability.metrics import Metrics, counting
from vaultbridge.rotation import compliance
from vaultbridge.settings import Settings, SettingsError
from vaultbridge.vault import KvV2Source, VaultClient, make_authenticator

__all__ = ["App", "CheckResult", "build", "check", "credential_from", "describe_target"]

log = logging.getLogger(__name__)


# -- the application -------------------------------------------------------------------------


@dataclass
class App:
    settings: Settings
    kube: KubeClient
    crs: CredentialRotationClient
    engine: Engine
    vault: VaultClient | None = None
    ceph: CephConnection | None = None
    closers: list[Any] = field(default_factory=list)
    clusters: ClusterRegistry | None = None
    # the resourceVersion of the engine's own last write of each Secret (namespace, name)
    own_writes: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def close(self) -> None:
        for closer in self.closers:
            try:
                closer()
            except Exception as exc:
                log.debug("close failed: %s", exc)

    def credentials(self, ref: CredentialRef | None) -> list[dict[str, Any]]:
        if ref is not None:
            return [self.crs.get(ref.namespace, ref.name)]
        return self.crs.list(self.settings.kube.namespaces or None)

    def status_rows(self, ref: CredentialRef | None) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        rows = []
        for raw in self.credentials(ref):
            metadata = raw["metadata"]
            name = f"{metadata['namespace']}/{metadata['name']}"
            status = Status.from_dict(raw.get("status"))
            cluster = str((raw.get("status") or {}).get("cluster") or "")
            try:
                spec = parse_spec(raw.get("spec") or {})
                target = describe_target(spec)
                compliant = compliance(status, spec.max_age, now, status.observed_generation)
                compliant_text = compliant.status
                cluster = cluster_key(spec.cluster)
            except SpecError:
                target, compliant_text = "invalid spec", "Unknown"
            ready = status.condition(READY)
            rows.append(
                {
                    "credential": name,
                    "target": target,
                    "cluster": cluster,
                    "currentVersion": status.current_version,
                    "previousVersion": status.previous_version,
                    "lastRotationTime": status.last_rotation_time,
                    "lastVerifiedTime": status.last_verified_time,
                    "phase": str(status.phase),
                    "ready": ready.status if ready else "Unknown",
                    "readyReason": ready.reason if ready else "",
                    "compliant": compliant_text,
                }
            )
        return rows

    def history_rows(self, ref: CredentialRef) -> list[dict[str, Any]]:
        status = Status.from_dict(self.crs.get(ref.namespace, ref.name).get("status"))
        return [
            {
                "rotationId": e.rotation_id,
                "version": e.version,
                "result": e.result,
                "startedAt": e.started_at,
                "finishedAt": e.finished_at,
                "reason": e.reason,
                "message": e.message,
            }
            for e in status.history
        ]


def connect_vault(settings: Settings) -> VaultClient:
    vault = settings.vault
    missing = vault.missing()
    if missing:
        raise SettingsError(missing)
    authenticator = make_authenticator(
        vault.auth,
        token=vault.token.get_secret_value() if vault.token else None,
        role=vault.role,
        token_file=vault.token_file,
        kubernetes_jwt_path=vault.jwt_file,
        kubernetes_mount=vault.kubernetes_mount,
        approle_role_id=vault.role,
        approle_secret_id=vault.secret_id.get_secret_value() if vault.secret_id else None,
        approle_secret_id_file=vault.secret_id_file,
        approle_mount=vault.approle_mount,
    )
    return VaultClient(
        vault.addr,
        authenticator,
        cacert=str(vault.cacert) if vault.cacert else None,
        timeout=vault.timeout,
        namespace=vault.namespace,
    )


def connect_ceph(settings: Settings) -> CephConnection:
    ceph = settings.ceph
    return CephConnection(
        str(ceph.conf), ceph.user, str(ceph.keyring) if ceph.keyring else None, ceph.timeout
    )


_Port = TypeVar("_Port")


def build(
    settings: Settings,
    *,
    vault: bool = True,
    ceph: bool = True,
    observer: Observer | None = None,
    kube: KubeClient | None = None,
    metrics: Metrics | None = None,
    may_act: Callable[[], bool] = always,
    identity: str | None = None,
) -> App:
    """The engine on the real adapters. ``metrics``: every port call is counted as a request
    to its backend; ``may_act``: asked before each action of a rotation (the controller's
    Lease); ``identity``: the journal holder (default: this process)."""
    kube = kube or KubeClient.from_settings(settings.kube.kubeconfig)
    crs = CredentialRotationClient(kube)
    vault_client = connect_vault(settings) if vault else None
    ceph_conn = connect_ceph(settings) if ceph else None

    def counted(port: _Port, backend: str) -> _Port:
        return port if metrics is None else counting(port, backend, metrics, BackendError)

    def counted_cluster(port: _Port, cluster: str) -> _Port:
        if metrics is None:
            return port
        backend = "ceph" if cluster == DEFAULT_CLUSTER else ""  # readiness: the default only
        wrapped: _Port = counting(port, backend, metrics, BackendError, cluster=cluster)
        return wrapped

    default = DefaultCluster(ceph_conn, counted_cluster) if ceph_conn else None
    clusters = ClusterRegistry(
        default,
        NamedObjects(kube) if ceph else None,
        timeout=settings.ceph.timeout,
        limit=settings.ceph.max_clusters,
        wrap=counted_cluster,
    )

    events = KubeEvents(EventRecorder(kube))
    secrets = KubeSecrets(SecretSink(kube))
    engine = Engine(
        counted(KubeCredentials(crs), "kubernetes"),
        counted(secrets, "kubernetes"),
        counted(events, "kubernetes"),
        counted(VaultKv(KvV2Source(vault_client)), "vault") if vault_client else None,
        default.ceph if default else _NoCeph(),
        observer=observer,
        cephx=default.cephx if default else None,
        holder=identity,
        takeover_after=timedelta(seconds=settings.rotation.takeover_after),
        may_act=may_act,
        workloads=counted(WorkloadClient(kube), "kubernetes"),
        listing=default.listing if default else None,
        clusters=clusters,
    )
    app = App(
        settings,
        kube,
        crs,
        engine,
        vault_client,
        ceph_conn,
        own_writes=secrets.written,
        clusters=clusters,
    )
    for closer in (
        events.flush,
        clusters.close,
        getattr(ceph_conn, "close", None),
        getattr(vault_client, "close", None),
        kube.close,
    ):
        if closer is not None:
            app.closers.append(closer)
    return app


class _NoCeph:
    """Stands in when a command needs no Ceph; any use is a clear error."""

    def __getattr__(self, name: str) -> Any:
        raise PreconditionError("CephNotConfigured", "this command has no Ceph connection")


@dataclass
class CheckResult:
    backend: str
    ok: bool
    detail: str


def check(settings: Settings) -> list[CheckResult]:
    """Reach each backend and ask whether vaultbridge may do its job there."""
    results: list[CheckResult] = []
    items: list[dict[str, Any]] = []
    kube: KubeClient | None = None
    try:
        kube = KubeClient.from_settings(settings.kube.kubeconfig)
        items = CredentialRotationClient(kube).list(settings.kube.namespaces or None)
        results.append(
            CheckResult(
                "kubernetes", True, f"{kube.server}: {len(items)} CredentialRotation(s) visible"
            )
        )
    except BackendError as exc:
        results.append(CheckResult("kubernetes", False, str(exc)))
    try:
        client = connect_vault(settings)
        health = client.health()
        sealed = health.get("sealed")
        caps = client.capabilities(["sys/tools/random/32"])
        results.append(
            CheckResult(
                "vault",
                not sealed,
                f"{settings.vault.addr}: {'sealed' if sealed else 'unsealed'}, auth "
                f"{settings.vault.auth} ok, random bytes: "
                + ",".join(caps.get("sys/tools/random/32", [])),
            )
        )
    except (BackendError, SettingsError) as exc:
        results.append(CheckResult("vault", False, str(exc)))
    results += _cluster_rows(settings, kube, items)
    if kube is not None:
        kube.close()
    return results


def _cluster_rows(
    settings: Settings, kube: KubeClient | None, items: list[dict[str, Any]]
) -> list[CheckResult]:
    """One row per Ceph cluster: the default, then each one a CR's spec.cluster names."""
    results: list[CheckResult] = []
    named: dict[str, ClusterRef] = {}
    uses_default = not items
    for raw in items:
        try:
            ref = parse_spec(raw.get("spec") or {}).cluster
        except SpecError:
            continue
        if ref is not None:
            named[ref.key] = ref
        else:
            uses_default = True
    if not uses_default and not settings.ceph.conf.exists():
        results.append(
            CheckResult("ceph", True, "no default cluster: every credential names its cluster")
        )
    else:
        try:
            results.append(_check_ceph("ceph", connect_ceph(settings)))
        except BackendError as exc:
            results.append(CheckResult("ceph", False, str(exc)))
    if named and kube is not None:
        registry = ClusterRegistry(
            None, NamedObjects(kube), timeout=settings.ceph.timeout, limit=len(named)
        )
        for key, ref in sorted(named.items()):
            try:
                live = registry.cluster(ref)
                assert isinstance(live, LiveCluster)
                results.append(_check_ceph(f"ceph {key}", live.conn))
            except (BackendError, PreconditionError) as exc:
                results.append(CheckResult(f"ceph {key}", False, str(exc)))
        registry.close()
    return results


def _check_ceph(label: str, conn: CephConnection) -> CheckResult:
    """One cluster's row: connected, what the mons run, what its entity may do."""
    try:
        release = read_mon_release(conn)
        ConfigStore(conn).dump()
        pending = "pending keys" if release.pending_keys() else release.lacks_pending_keys()
        return CheckResult(
            label,
            True,
            f"{conn.user} connected (fsid {conn.fsid()}); {release.describe()}; key types "
            f"{', '.join(release.allowed_key_types)} (preferred "
            f"{release.preferred_key_type}); {pending}; config dump allowed",
        )
    finally:
        conn.close()
