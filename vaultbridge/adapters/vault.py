"""The Vault adapter: KV v2 shaped to the engine's ``VaultStore`` port."""

from __future__ import annotations

from collections.abc import Mapping

from vaultbridge.model.sensitive import Sensitive
from vaultbridge.vault import KvV2Source, VaultNotFound


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

    def labels(self, mount: str, path: str) -> tuple[int | None, int | None, int | None]:
        found = self.kv.labels(mount, path)
        return found.current, found.previous, found.pending

    def generate_password(self) -> Sensitive:
        return self.kv.generate_password()

    def random_bytes(self, n: int) -> bytes:
        return self.kv.random_bytes(n)
