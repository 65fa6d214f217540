"""In-memory implementations of every engine port, for unit tests of the engine itself.

In the spirit of httpx's ``MockTransport``: each port keeps its state in plain dicts and
behaves as its real adapter does where the engine can tell (resourceVersions and the claim's
precondition, Secret ownership, KV versions and check-and-set, config values and config-key
entries, cephx entities and sessions). A ``Faults`` table shared by all of them lets a test
make any call fail, or answer from a stale copy, at any point of a rotation:

    faults = Faults()
    faults.fail("vault.set_labels", VaultUnavailable("down"), times=1)
    faults.stale("crs.load")          # the next load returns the object as it was before

Nothing here touches a network; the integration tests run the same engine against the real
servers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from vaultbridge.engine.ports import (
    CephxEntity,
    ConfigKey,
    CredentialObject,
    StoredSecret,
)
from vaultbridge.model.errors import BackendError, ConcurrentRotation
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import CredentialRef, DeletionPolicy, parse_spec
from vaultbridge.model.status import Status


class MemoryNotFound(BackendError):  # noqa: N818 - named like the adapters' KubeNotFound
    """The object does not exist (the real adapters raise KubeNotFound, VaultNotFound)."""

    transient = False

    def __init__(self, message: str, reason: str = "NotFound") -> None:
        super().__init__(message)
        self._reason = reason

    @property
    def reason(self) -> str:
        return self._reason


class MemoryRejected(BackendError):  # noqa: N818 - named like CephRejected
    """The backend refused the request (ownership, check-and-set, an unknown option)."""

    transient = False

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self._reason = reason

    @property
    def reason(self) -> str:
        return self._reason


@dataclass
class _Rule:
    error: BaseException | None
    times: int
    after: int  # calls to let through first
    stale: bool = False


@dataclass
class Faults:
    """Which calls fail (or answer stale) next; ``calls`` records every call by name."""

    rules: dict[str, list[_Rule]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def fail(self, name: str, error: BaseException, *, times: int = 1, after: int = 0) -> None:
        """``name`` (``"<port>.<method>"``) raises ``error`` ``times`` times, after ``after``
        calls that pass."""
        self.rules.setdefault(name, []).append(_Rule(error, times, after))

    def stale(self, name: str, *, times: int = 1, after: int = 0) -> None:
        """``name`` answers from the state before the latest write (crs.load, secrets.read)."""
        self.rules.setdefault(name, []).append(_Rule(None, times, after, stale=True))

    def check(self, name: str) -> bool:
        """Record the call; raise its fault, or return True when it should answer stale."""
        self.calls.append(name)
        for rule in self.rules.get(name, []):
            if rule.times <= 0:
                continue
            if rule.after > 0:
                rule.after -= 1
                continue
            rule.times -= 1
            if rule.stale:
                return True
            assert rule.error is not None
            raise rule.error
        return False

    def count(self, name: str) -> int:
        return self.calls.count(name)


class MemoryCredentials:
    """CredentialRotations: resourceVersions, the claim's precondition, finalizers."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.objects: dict[CredentialRef, CredentialObject] = {}
        self.previous: dict[CredentialRef, CredentialObject] = {}
        self._versions = itertools.count(1)
        self.writes = 0

    def create(self, ref: CredentialRef, spec: Mapping[str, Any]) -> CredentialObject:
        obj = CredentialObject(
            ref=ref,
            uid=f"uid-{ref.name}",
            generation=1,
            resource_version=str(next(self._versions)),
            spec=parse_spec(spec),
            status=Status(),
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        self.objects[ref] = obj
        return obj

    def _put(self, obj: CredentialObject, **changes: Any) -> CredentialObject:
        self.previous[obj.ref] = self.objects[obj.ref]
        new = replace(obj, resource_version=str(next(self._versions)), **changes)
        self.objects[obj.ref] = new
        return new

    def edit_spec(self, ref: CredentialRef, spec: Mapping[str, Any]) -> None:
        current = self.objects[ref]
        self._put(current, spec=parse_spec(spec), generation=current.generation + 1)

    def load(self, ref: CredentialRef) -> CredentialObject:
        stale = self.faults.check("crs.load")
        if ref not in self.objects:
            raise MemoryNotFound(f"{ref}: no such CredentialRotation")
        if stale and ref in self.previous:
            return self.previous[ref]
        return self.objects[ref]

    def save_status(
        self, credential: CredentialObject, status: Status, *, expect_version: str | None = None
    ) -> CredentialObject | None:
        self.faults.check("crs.save_status")
        current = self.objects.get(credential.ref)
        if current is None:
            raise MemoryNotFound(f"{credential.ref}: no such CredentialRotation")
        if expect_version is not None and current.resource_version != expect_version:
            raise ConcurrentRotation(f"{credential.ref} changed since it was read")
        if expect_version is None and current.status != credential.status:
            raise ConcurrentRotation(f"{credential.ref}: its status was changed by another writer")
        self.writes += 1
        return self._put(current, status=status)

    def set_finalizer(self, credential: CredentialObject, finalizer: str, *, present: bool) -> None:
        self.faults.check("crs.set_finalizer")
        current = self.objects[credential.ref]
        kept = tuple(f for f in current.finalizers if f != finalizer)
        self._put(current, finalizers=(*kept, finalizer) if present else kept)

    def delete(self, ref: CredentialRef) -> None:
        current = self.objects[ref]
        if current.finalizers:
            self._put(current, deleting=True)
        else:
            del self.objects[ref]


@dataclass
class _Secret:
    stored: StoredSecret
    policy: DeletionPolicy


class MemorySecrets:
    """Secrets: ownership (adopt), data keys kept, the deletion policy's link."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.secrets: dict[tuple[str, str], _Secret] = {}
        self.previous: dict[tuple[str, str], _Secret] = {}

    def put(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        """A Secret as a user creates it: nobody's."""
        stored = StoredSecret({k: Sensitive(v) for k, v in data.items()}, {}, None)
        self.secrets[(namespace, name)] = _Secret(stored, "Retain")

    def read(self, namespace: str, name: str) -> StoredSecret | None:
        stale = self.faults.check("secrets.read")
        found = (self.previous if stale else self.secrets).get((namespace, name))
        return None if found is None else found.stored

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
        self.faults.check("secrets.write")
        key = (credential.ref.namespace, name)
        current = self.secrets.get(key)
        if current is not None and current.stored.controller_uid != credential.uid and not adopt:
            raise MemoryRejected(f"Secret {key} is not owned", "KubeOwnershipError")
        if policy is None:
            policy = "Delete" if current is None else current.policy
            if current is not None and current.stored.controller_uid != credential.uid:
                policy = "Retain"  # adopted
        merged = {**(current.stored.data if current else {}), **data}
        kept = dict(current.stored.annotations) if current else {}
        stored = StoredSecret(merged, {**kept, **annotations}, credential.uid)
        if current is not None:
            self.previous[key] = current
        self.secrets[key] = _Secret(stored, policy)
        return stored

    def delete(self, namespace: str, name: str) -> None:
        self.faults.check("secrets.delete")
        self.secrets.pop((namespace, name), None)

    def release(self, namespace: str, name: str, owner_uid: str) -> bool:
        found = self.secrets.get((namespace, name))
        if found is None or found.stored.controller_uid != owner_uid:
            return False
        found.stored = replace(found.stored, controller_uid=None, annotations={})
        return True

    def policy(self, namespace: str, name: str) -> DeletionPolicy:
        return self.secrets[(namespace, name)].policy


@dataclass
class MemoryEvents:
    events: list[tuple[str, str, str, str]] = field(default_factory=list)

    def emit(
        self,
        credential: CredentialObject,
        type: Literal["Normal", "Warning"],
        reason: str,
        message: str,
    ) -> None:
        self.events.append((str(credential.ref), type, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _ref, _type, reason, _message in self.events]


class MemoryVault:
    """KV v2: versions per path, check-and-set, staging labels."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.versions: dict[tuple[str, str], list[dict[str, Sensitive]]] = {}
        self.labels: dict[tuple[str, str], dict[str, int | None]] = {}
        self._random = itertools.count(1)

    def put(self, mount: str, path: str, data: Mapping[str, str]) -> int:
        self.versions.setdefault((mount, path), []).append(
            {k: Sensitive(v) for k, v in data.items()}
        )
        return len(self.versions[(mount, path)])

    def current_version(self, mount: str, path: str) -> int:
        self.faults.check("vault.current_version")
        if (mount, path) not in self.versions:
            raise MemoryNotFound(f"Vault {mount}/{path}: no versions", "VaultNotFound")
        return len(self.versions[(mount, path)])

    def read(self, mount: str, path: str, version: int) -> Mapping[str, Sensitive]:
        self.faults.check("vault.read")
        versions = self.versions.get((mount, path), [])
        if not 1 <= version <= len(versions):
            raise MemoryNotFound(f"Vault {mount}/{path}: no version {version}", "VaultNotFound")
        return dict(versions[version - 1])

    def read_latest(self, mount: str, path: str) -> tuple[int, Mapping[str, Sensitive]]:
        self.faults.check("vault.read_latest")
        versions = self.versions.get((mount, path), [])
        if not versions:
            raise MemoryNotFound(f"Vault {mount}/{path}: no versions", "VaultNotFound")
        return len(versions), dict(versions[-1])

    def write(self, mount: str, path: str, data: Mapping[str, Sensitive], cas: int) -> int:
        self.faults.check("vault.write")
        versions = self.versions.setdefault((mount, path), [])
        if cas != len(versions):
            raise MemoryRejected(f"Vault {mount}/{path}: check-and-set {cas} failed", "VaultCas")
        versions.append(dict(data))
        return len(versions)

    def set_labels(
        self,
        mount: str,
        path: str,
        *,
        current: int | None,
        previous: int | None,
        pending: int | None,
    ) -> None:
        self.faults.check("vault.set_labels")
        self.labels[(mount, path)] = {"current": current, "previous": previous, "pending": pending}

    def generate_password(self) -> Sensitive:
        self.faults.check("vault.generate_password")
        return Sensitive(f"generated-{next(self._random)}")

    def random_bytes(self, n: int) -> bytes:
        self.faults.check("vault.random_bytes")
        return bytes([next(self._random) % 256]) * n


class MemoryCeph:
    """The mon config database and the config-key store."""

    def __init__(self, faults: Faults, known_options: Sequence[str] = ()) -> None:
        self.faults = faults
        self.config: dict[ConfigKey, Sensitive] = {}
        self.config_keys: dict[str, Sensitive] = {}
        self.known_options = set(known_options)

    def config_read(self, who: str, option: str) -> Sensitive | None:
        self.faults.check("ceph.config_read")
        return self.config.get((who, option))

    def config_apply_all(
        self,
        values: Sequence[tuple[str, str, Sensitive]],
        *,
        before: Mapping[ConfigKey, Sensitive | None] | None = None,
        read_back: bool = True,
    ) -> None:
        for who, option, value in values:
            self.faults.check("ceph.config_set")
            if self.known_options and option not in self.known_options:
                raise MemoryRejected(
                    f"config set {who}/{option}: unrecognized option", "CephRejected"
                )
            self.config[(who, option)] = value

    def config_restore(self, snapshot: Mapping[ConfigKey, Sensitive | None]) -> None:
        self.faults.check("ceph.config_restore")
        for key, value in snapshot.items():
            if value is None:
                self.config.pop(key, None)
            else:
                self.config[key] = value

    def config_option_known(self, option: str) -> bool:
        return not self.known_options or option in self.known_options

    def config_key_get(self, key: str) -> Sensitive | None:
        self.faults.check("ceph.config_key_get")
        return self.config_keys.get(key)

    def config_key_set(self, key: str, value: Sensitive) -> None:
        self.faults.check("ceph.config_key_set")
        self.config_keys[key] = value

    def config_key_remove(self, key: str) -> None:
        self.faults.check("ceph.config_key_remove")
        self.config_keys.pop(key, None)


class MemoryCephx:
    """The cephx auth database: entities, keys, caps and the sessions the mons list."""

    def __init__(self, faults: Faults, version: tuple[int, int, int] = (16, 2, 15)) -> None:
        self.faults = faults
        self.entities: dict[str, CephxEntity] = {}
        self.sessions_of: dict[str, list[str]] = {}
        self.version = version

    def ceph_version(self) -> tuple[int, int, int]:
        return self.version

    def get_entity(self, name: str) -> CephxEntity | None:
        self.faults.check("cephx.get_entity")
        return self.entities.get(name)

    def add_entity(self, name: str, key: Sensitive, caps: Mapping[str, str]) -> None:
        self.faults.check("cephx.add_entity")
        existing = self.entities.get(name)
        if existing is not None and existing.key != key:
            raise MemoryRejected(f"auth add {name}: entity exists with another key", "EntityExists")
        self.entities[name] = CephxEntity(name, key, dict(caps))

    def import_entity(self, name: str, key: Sensitive, caps: Mapping[str, str]) -> None:
        self.faults.check("cephx.import_entity")
        self.entities[name] = CephxEntity(name, key, dict(caps))

    def set_caps(self, name: str, caps: Mapping[str, str]) -> None:
        self.faults.check("cephx.set_caps")
        self.entities[name] = replace(self.entities[name], caps=dict(caps))

    def remove_entity(self, name: str) -> None:
        self.faults.check("cephx.remove_entity")
        self.entities.pop(name, None)

    def verify_key(
        self,
        name: str,
        key: Sensitive,
        probe_allowed: Mapping[str, Any],
        probe_refused: Mapping[str, Any] | None,
    ) -> None:
        self.faults.check("cephx.verify_key")
        found = self.entities.get(name)
        if found is None or found.key != key:
            raise MemoryRejected(f"{name}: authentication refused", "CephPermissionDenied")

    def sessions(self, entity: str) -> list[str]:
        self.faults.check("cephx.sessions")
        return list(self.sessions_of.get(entity, []))

    def make_key(self, random16: bytes, created: int) -> Sensitive:
        return Sensitive(f"AQ{random16.hex()[:30]}{created % 1000:03d}==")

    def key_is_valid(self, key: Sensitive) -> bool:
        return key.reveal().startswith("AQ")

    def keyring_text(self, name: str, key: Sensitive, caps: Mapping[str, str] | None) -> Sensitive:
        return Sensitive(f"[{name}]\n\tkey = {key.reveal()}\n")

    def get_or_create_pending(self, entity: str) -> Sensitive:
        raise MemoryRejected("pending keys need Ceph >= 17", "CephRejected")

    def commit_pending(self, entity: str) -> None:
        raise MemoryRejected("pending keys need Ceph >= 17", "CephRejected")

    def clear_pending(self, entity: str) -> None:
        raise MemoryRejected("pending keys need Ceph >= 17", "CephRejected")


@dataclass
class Clock:
    """A clock the test moves: ``clock.advance(seconds)``."""

    now: datetime = field(default_factory=lambda: datetime(2026, 12, 1, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class MemoryWorld:
    """Every port over one ``Faults`` table, and a ``Clock``."""

    faults: Faults = field(default_factory=Faults)
    clock: Clock = field(default_factory=Clock)
    crs: MemoryCredentials = field(init=False)
    secrets: MemorySecrets = field(init=False)
    events: MemoryEvents = field(default_factory=MemoryEvents)
    vault: MemoryVault = field(init=False)
    ceph: MemoryCeph = field(init=False)
    cephx: MemoryCephx = field(init=False)

    def __post_init__(self) -> None:
        self.crs = MemoryCredentials(self.faults)
        self.secrets = MemorySecrets(self.faults)
        self.vault = MemoryVault(self.faults)
        self.ceph = MemoryCeph(self.faults)
        self.cephx = MemoryCephx(self.faults)

    def engine_ports(self) -> dict[str, Callable[..., Any] | Any]:
        """Keyword arguments for ``Engine(...)``."""
        return {
            "credentials": self.crs,
            "secrets": self.secrets,
            "events": self.events,
            "vault": self.vault,
            "ceph": self.ceph,
            "cephx": self.cephx,
            "clock": self.clock,
            "jitter": lambda: 0.5,
        }
