"""The one place that wires the concrete adapters (Vault, Kubernetes, Ceph) into the engine."""

from __future__ import annotations

import errno
import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from vaultbridge.ceph import (
    CephConnection,
    CephRejected,
    CephxAuth,
    ConfigKeyStore,
    ConfigStore,
    cephx_key_is_valid,
    keyring_text,
    make_cephx_key,
)
from vaultbridge.engine.engine import ROTATION_ANNOTATION, VERSION_ANNOTATION, Engine, Observer
from vaultbridge.engine.ports import CephxEntity, ConfigKey, CredentialObject, StoredSecret
from vaultbridge.kube import (
    CredentialRotationClient,
    EventRecorder,
    KubeClient,
    KubeConflict,
    ObjectRef,
    OwnedSecret,
    OwnerInfo,
    SecretSink,
)
from vaultbridge.model.errors import BackendError, ConcurrentRotation, PreconditionError
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import (
    CephxTarget,
    ConfigKeyTarget,
    ConfigTarget,
    CredentialRef,
    CredentialSpec,
    DeletionPolicy,
    SpecError,
    parse_spec,
)
from vaultbridge.model.status import READY, Status
from vaultbridge.rotation import compliance
from vaultbridge.settings import Settings, SettingsError
from vaultbridge.vault import KvV2Source, VaultClient, VaultNotFound, make_authenticator

log = logging.getLogger(__name__)


# -- adapters: concrete clients shaped to the engine's ports -----------------------------------


class KubeCredentials:
    def __init__(self, crs: CredentialRotationClient) -> None:
        self.crs = crs

    def load(self, ref: CredentialRef) -> CredentialObject:
        return credential_from(self.crs.get(ref.namespace, ref.name))

    def save_status(
        self, credential: CredentialObject, status: Status, *, expect_version: str | None = None
    ) -> CredentialObject | None:
        body = status.to_dict()
        body["targetDescription"] = describe_target(credential.spec)
        ref = credential.ref

        def status_unchanged(current: dict[str, Any]) -> bool:
            return Status.from_dict(current.get("status")) == credential.status

        try:
            if expect_version is not None:  # the claim: nothing may have changed
                written = self.crs.write_status(ref.namespace, ref.name, body, expect_version)
            else:  # anything but the status may have changed (a spec edit)
                written = self.crs.write_status(
                    ref.namespace,
                    ref.name,
                    body,
                    credential.resource_version or None,
                    still_applies=status_unchanged,
                )
        except KubeConflict as exc:
            raise ConcurrentRotation(
                f"{ref} changed since it was read (another vaultbridge is rotating it, or it "
                "was edited); nothing was changed"
            ) from exc
        try:
            return credential_from(written)
        except (KeyError, TypeError, ValueError, PreconditionError):
            return None

    def set_finalizer(self, credential: CredentialObject, finalizer: str, *, present: bool) -> None:
        ref = credential.ref
        self.crs.set_finalizer(ref.namespace, ref.name, finalizer, present)


def credential_from(raw: Mapping[str, Any]) -> CredentialObject:
    metadata = raw["metadata"]
    ref = CredentialRef(metadata["namespace"], metadata["name"])
    try:
        spec = parse_spec(raw.get("spec") or {})
    except SpecError as exc:
        raise PreconditionError("InvalidSpec", f"{ref}: {exc}") from None
    return CredentialObject(
        ref=ref,
        uid=metadata["uid"],
        generation=int(metadata.get("generation", 1)),
        resource_version=str(metadata.get("resourceVersion", "")),
        spec=spec,
        status=Status.from_dict(raw.get("status")),
        api_version=raw.get("apiVersion", "vaultbridge.io/v1alpha1"),
        kind=raw.get("kind", "CredentialRotation"),
        created=metadata.get("creationTimestamp"),
        deleting=bool(metadata.get("deletionTimestamp")),
        finalizers=tuple(metadata.get("finalizers") or ()),
    )


def _stored(secret: OwnedSecret) -> StoredSecret:
    return StoredSecret(
        data=secret.data,
        annotations=dict(secret.annotations),
        controller_uid=secret.linked_uid,
        handle=secret,
    )


class KubeSecrets:
    def __init__(self, sink: SecretSink) -> None:
        self.sink = sink
        # (namespace, name) -> the resourceVersion of our own last write, so the controller's
        # Secret watch can tell our promotions from someone else's edits
        self.written: dict[tuple[str, str], str] = {}

    def read(self, namespace: str, name: str) -> StoredSecret | None:
        secret = self.sink.get(namespace, name)
        return None if secret is None else _stored(secret)

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
    ) -> StoredSecret | None:
        spec = credential.spec
        is_main = name == spec.secret.name
        extra = {
            k: v
            for k, v in annotations.items()
            if k not in (VERSION_ANNOTATION, ROTATION_ANNOTATION)
        }
        written = self.sink.write(
            credential.ref.namespace,
            name,
            OwnerInfo(
                credential.api_version,
                credential.kind,
                credential.ref.name,
                credential.uid,
                credential.created,
            ),
            [(o.api_version, o.kind, o.name) for o in spec.secret.extra_owners] if is_main else [],
            data,
            annotations.get(VERSION_ANNOTATION, "preimage"),
            annotations.get(ROTATION_ANNOTATION, ""),
            adopt,
            extra_annotations=extra,
            known=known.handle
            if known is not None and isinstance(known.handle, OwnedSecret)
            else None,
            policy=policy,
        )
        self.written[(credential.ref.namespace, name)] = written.resource_version
        return _stored(written)

    def delete(self, namespace: str, name: str) -> None:
        self.sink.delete(namespace, name)

    def release(self, namespace: str, name: str, owner_uid: str) -> bool:
        return self.sink.release(namespace, name, owner_uid)


class KubeEvents:
    """Records Events from a background thread: an Event is a courtesy and must not add its
    round trip to a rotation. ``flush`` (called on close) waits for the queue to drain."""

    def __init__(self, recorder: EventRecorder, capacity: int = 10_000) -> None:
        self.recorder = recorder
        self.queue: queue.Queue[tuple[ObjectRef, Literal["Normal", "Warning"], str, str] | None]
        self.queue = queue.Queue(maxsize=capacity)
        self.worker = threading.Thread(target=self._drain, name="vaultbridge-events", daemon=True)
        self.worker.start()

    def emit(
        self,
        credential: CredentialObject,
        type: Literal["Normal", "Warning"],
        reason: str,
        message: str,
    ) -> None:
        ref = ObjectRef(
            credential.ref.namespace,
            credential.ref.name,
            credential.uid,
            credential.kind,
            credential.api_version,
        )
        try:
            self.queue.put_nowait((ref, type, reason, message))
        except queue.Full:
            log.warning("event queue full; dropped Event %s on %s", reason, credential.ref)

    def _drain(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is None:
                    return
                self.recorder.emit(*item)
            finally:
                self.queue.task_done()

    def flush(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)


class VaultKv:
    def __init__(self, kv: KvV2Source) -> None:
        self.kv = kv

    def current_version(self, mount: str, path: str) -> int:
        return self.kv.metadata(mount, path).current_version

    def read(self, mount: str, path: str, version: int) -> Mapping[str, Sensitive]:
        found = self.kv.read(mount, path, version)
        if found.deleted or getattr(found, "destroyed", False):
            raise VaultNotFound(f"Vault {mount}/{path}: version {version} is deleted")
        return found.data

    def read_latest(self, mount: str, path: str) -> tuple[int, Mapping[str, Sensitive]]:
        found = self.kv.read(mount, path)
        if found.deleted or getattr(found, "destroyed", False):
            raise VaultNotFound(f"Vault {mount}/{path}: the latest version is deleted")
        return found.version, found.data

    def write(self, mount: str, path: str, data: Mapping[str, Sensitive], cas: int) -> int:
        return self.kv.write(mount, path, data, cas=cas)

    def set_labels(
        self,
        mount: str,
        path: str,
        *,
        current: int | None,
        previous: int | None,
        pending: int | None,
    ) -> None:
        self.kv.set_labels(mount, path, current, previous, pending)

    def generate_password(self) -> Sensitive:
        return self.kv.generate_password()

    def random_bytes(self, n: int) -> bytes:
        return self.kv.random_bytes(n)


class CephxMon:
    """The cephx auth database, shaped to the engine's ``CephxStore`` port."""

    VERSION_TTL = 300.0  # seconds a detected mon version is trusted

    def __init__(self, conn: CephConnection) -> None:
        self.conn = conn
        self.auth = CephxAuth(conn)
        self._version: tuple[tuple[int, int, int], float] | None = None

    def ceph_version(self) -> tuple[int, int, int]:
        now = time.monotonic()
        if self._version is None or now - self._version[1] > self.VERSION_TTL:
            self._version = (self.conn.version(), now)
        return self._version[0]

    def get_entity(self, name: str) -> CephxEntity | None:
        found = self.auth.get_entity(name)
        return None if found is None else CephxEntity(found.name, found.key, dict(found.caps))

    def add_entity(self, name: str, key: Sensitive, caps: Mapping[str, str]) -> None:
        self.auth.add_entity(name, key, caps)

    def import_entity(self, name: str, key: Sensitive, caps: Mapping[str, str]) -> None:
        self.auth.import_entity(name, key, caps)

    def set_caps(self, name: str, caps: Mapping[str, str]) -> None:
        self.auth.set_caps(name, caps)

    def remove_entity(self, name: str) -> None:
        self.auth.remove_entity(name)

    def verify_key(
        self,
        name: str,
        key: Sensitive,
        probe_allowed: Mapping[str, Any],
        probe_refused: Mapping[str, Any] | None,
    ) -> None:
        self.auth.verify_key(name, key, probe_allowed, probe_refused)

    def sessions(self, entity: str) -> list[str]:
        return self.auth.sessions(entity)

    def make_key(self, random16: bytes, created: int) -> Sensitive:
        return Sensitive(make_cephx_key(random16, created))

    def key_is_valid(self, key: Sensitive) -> bool:
        return cephx_key_is_valid(key.reveal())

    def keyring_text(self, name: str, key: Sensitive, caps: Mapping[str, str] | None) -> Sensitive:
        return keyring_text(name, key, caps)

    # Ceph >= 17 (Quincy): pending keys. Not exercised by the Pacific test cluster.
    def get_or_create_pending(self, entity: str) -> Sensitive:
        rows = self.conn.mon_json({"prefix": "auth get-or-create-pending", "entity": entity})
        for row in rows if isinstance(rows, list) else [rows]:
            if isinstance(row, dict) and row.get("pending_key"):
                return Sensitive(str(row["pending_key"]))
        raise CephRejected(f"auth get-or-create-pending {entity}: no pending key in the answer")

    def commit_pending(self, entity: str) -> None:
        self._pending("auth commit-pending", entity)

    def clear_pending(self, entity: str) -> None:
        self._pending("auth clear-pending", entity)

    def _pending(self, prefix: str, entity: str) -> None:
        try:
            self.conn.mon_command({"prefix": prefix, "entity": entity})
        except CephRejected as exc:
            if exc.errno != errno.ENOENT:  # no pending key: nothing to commit or clear
                raise


class CephMon:
    def __init__(self, conn: CephConnection) -> None:
        self.conn = conn
        self.config = ConfigStore(conn)
        self.config_keys = ConfigKeyStore(conn)

    def config_get(self, who: str, option: str) -> Sensitive | None:
        return self.config.get(who, option)

    def config_snapshot(self, entries: Sequence[ConfigKey]) -> dict[ConfigKey, Sensitive | None]:
        return self.config.snapshot(list(entries))

    def config_read(self, who: str, option: str) -> Sensitive | None:
        return self.config.get_fast(who, option)

    def config_apply_all(
        self,
        values: Sequence[tuple[str, str, Sensitive]],
        *,
        before: Mapping[ConfigKey, Sensitive | None] | None = None,
        read_back: bool = True,
    ) -> None:
        self.config.apply_all(
            list(values), before=dict(before) if before is not None else None, read_back=read_back
        )

    def config_restore(self, snapshot: Mapping[ConfigKey, Sensitive | None]) -> None:
        self.config.restore(dict(snapshot))

    def config_option_known(self, option: str) -> bool:
        try:
            self.conn.mon_command({"prefix": "config help", "key": option})
        except CephRejected:
            return False
        return True

    def config_key_get(self, key: str) -> Sensitive | None:
        return self.config_keys.get(key)

    def config_key_set(self, key: str, value: Sensitive) -> None:
        self.config_keys.set(key, value)

    def config_key_remove(self, key: str) -> None:
        self.config_keys.remove(key)


# -- the application -------------------------------------------------------------------------


def describe_target(spec: CredentialSpec) -> str:
    target = spec.target
    if isinstance(target, ConfigTarget):
        first = target.entries[0]
        more = f" +{len(target.entries) - 1}" if len(target.entries) > 1 else ""
        return f"config {first.who}/{first.option}{more}"
    if isinstance(target, ConfigKeyTarget):
        return f"config-key {target.key}"
    assert isinstance(target, CephxTarget)
    return f"cephx {target.entity} ({target.strategy})"


@dataclass
class App:
    settings: Settings
    kube: KubeClient
    crs: CredentialRotationClient
    engine: Engine
    vault: VaultClient | None = None
    ceph: CephConnection | None = None
    closers: list[Any] = field(default_factory=list)

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
            try:
                spec = parse_spec(raw.get("spec") or {})
                target = describe_target(spec)
                compliant = compliance(status, spec.max_age, now, status.observed_generation)
                compliant_text = compliant.status
            except SpecError:
                target, compliant_text = "invalid spec", "Unknown"
            ready = status.condition(READY)
            rows.append(
                {
                    "credential": name,
                    "target": target,
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

    def run_controller(self) -> None:
        from vaultbridge.controller import Controller

        Controller(self).run()


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


def build(
    settings: Settings, *, vault: bool = True, ceph: bool = True, observer: Observer | None = None
) -> App:
    kube = KubeClient.from_settings(settings.kube.kubeconfig)
    crs = CredentialRotationClient(kube)
    vault_client = connect_vault(settings) if vault else None
    ceph_conn = connect_ceph(settings) if ceph else None
    events = KubeEvents(EventRecorder(kube))
    engine = Engine(
        KubeCredentials(crs),
        KubeSecrets(SecretSink(kube)),
        events,
        VaultKv(KvV2Source(vault_client)) if vault_client else None,
        CephMon(ceph_conn) if ceph_conn else _NoCeph(),
        observer=observer,
        cephx=CephxMon(ceph_conn) if ceph_conn else None,
        takeover_after=timedelta(seconds=settings.rotation.takeover_after),
    )
    app = App(settings, kube, crs, engine, vault_client, ceph_conn)
    for closer in (
        events.flush,
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
    try:
        conn = connect_ceph(settings)
        major, minor, patch = conn.version()
        ConfigStore(conn).dump()
        results.append(
            CheckResult(
                "ceph",
                True,
                f"{settings.ceph.user} connected; mons run "
                f"{major}.{minor}.{patch}; config dump allowed",
            )
        )
        conn.close()
    except BackendError as exc:
        results.append(CheckResult("ceph", False, str(exc)))
    return results
