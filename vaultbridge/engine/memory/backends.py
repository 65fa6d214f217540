"""The in-memory Vault and Ceph ports: KV versions with check-and-set, config values and
config-key entries, cephx entities and sessions."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from vaultbridge.engine.memory.faults import Faults, MemoryNotFound, MemoryRejected
from vaultbridge.engine.ports import (
    CephxEntity,
    ConfigKey,
)
from vaultbridge.model.ceph_release import MonRelease
from vaultbridge.model.sensitive import Sensitive


class MemoryVault:
    """KV v2: versions per path, check-and-set, staging labels."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.versions: dict[tuple[str, str], list[dict[str, Sensitive]]] = {}
        self.labels_of: dict[tuple[str, str], dict[str, int | None]] = {}
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
        labels = {"current": current, "previous": previous, "pending": pending}
        self.labels_of[(mount, path)] = labels

    def labels(self, mount: str, path: str) -> tuple[int | None, int | None, int | None]:
        self.faults.check("vault.labels")
        found = self.labels_of.get((mount, path), {})
        return found.get("current"), found.get("previous"), found.get("pending")

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
        self.preferred_key_type = "aes"
        self.allowed_key_types: tuple[str, ...] = ("aes",)
        self.mon_versions: tuple[tuple[int, int, int], ...] | None = None  # mixed: several
        self.min_mon_release: int | None = None

    def mon_release(self) -> MonRelease:
        return MonRelease(
            self.mon_versions or (self.version,),
            self.min_mon_release,
            self.preferred_key_type,
            self.allowed_key_types,
        )

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

    def make_key(self, secret: bytes, created: int, key_type: str = "aes") -> Sensitive:
        prefix = "Ag" if key_type == "aes256k" else "AQ"
        return Sensitive(f"{prefix}{secret.hex()[:30]}{created % 1000:03d}==")

    def key_is_valid(self, key: Sensitive) -> bool:
        return self.key_type_of(key) is not None

    def key_type_of(self, key: Sensitive) -> str | None:
        text = key.reveal()
        return "aes" if text.startswith("AQ") else "aes256k" if text.startswith("Ag") else None

    def keyring_text(self, name: str, key: Sensitive, caps: Mapping[str, str] | None) -> Sensitive:
        return Sensitive(f"[{name}]\n\tkey = {key.reveal()}\n")

    def get_or_create_pending(self, entity: str) -> Sensitive:
        raise MemoryRejected("pending keys need Ceph >= 17", "CephRejected")

    def commit_pending(self, entity: str) -> None:
        raise MemoryRejected("pending keys need Ceph >= 17", "CephRejected")

    def clear_pending(self, entity: str) -> None:
        raise MemoryRejected("pending keys need Ceph >= 17", "CephRejected")


class MemoryListing:
    """Whole listings of a :class:`MemoryCeph` and a :class:`MemoryCephx` (the drift sweep)."""

    def __init__(self, faults: Faults, ceph: MemoryCeph, cephx: MemoryCephx) -> None:
        self.faults, self.ceph, self.cephx = faults, ceph, cephx

    def config_values(self) -> Mapping[ConfigKey, Sensitive]:
        self.faults.check("ceph.config_dump")
        return dict(self.ceph.config)

    def config_key_values(self, prefix: str) -> Mapping[str, Sensitive]:
        self.faults.check("ceph.config_key_dump")
        return {k: v for k, v in self.ceph.config_keys.items() if k.startswith(prefix)}

    def cephx_entities(self) -> Mapping[str, CephxEntity]:
        self.faults.check("cephx.auth_ls")
        return dict(self.cephx.entities)
