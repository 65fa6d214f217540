"""The Ceph adapters: the mon config database, config-key store and cephx auth database
shaped to the engine's ``CephStore`` and ``CephxStore`` ports."""

from __future__ import annotations

import errno
import time
from collections.abc import Mapping, Sequence
from typing import Any

from vaultbridge.ceph import (
    CephConnection,
    CephRejected,
    CephxAuth,
    ConfigKeyStore,
    ConfigStore,
    cephx_key_is_valid,
    cephx_key_type,
    keyring_text,
    make_cephx_key,
)
from vaultbridge.engine.ports import CephxEntity, ConfigKey
from vaultbridge.model.sensitive import Sensitive


class CephxMon:
    """The cephx auth database, shaped to the engine's ``CephxStore`` port."""

    VERSION_TTL = 300.0  # seconds a detected mon version is trusted

    def __init__(self, conn: CephConnection) -> None:
        self.conn = conn
        self.auth = CephxAuth(conn)
        self._version: tuple[tuple[int, int, int], float] | None = None
        self._key_types: tuple[tuple[str, tuple[str, ...]], float] | None = None

    def ceph_version(self) -> tuple[int, int, int]:
        now = time.monotonic()
        if self._version is None or now - self._version[1] > self.VERSION_TTL:
            self._version = (self.conn.version(), now)
        return self._version[0]

    def get_entity(self, name: str) -> CephxEntity | None:
        found = self.auth.get_entity(name)
        if found is None:
            return None
        return CephxEntity(found.name, found.key, dict(found.caps), found.pending_key)

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

    def key_types(self) -> tuple[str, tuple[str, ...]]:
        now = time.monotonic()
        if self._key_types is None or now - self._key_types[1] > self.VERSION_TTL:
            self._key_types = (self.auth.key_types(), now)
        return self._key_types[0]

    def make_key(self, secret: bytes, created: int, key_type: str = "aes") -> Sensitive:
        return Sensitive(make_cephx_key(secret, created, key_type))

    def key_is_valid(self, key: Sensitive) -> bool:
        return cephx_key_is_valid(key.reveal())

    def key_type_of(self, key: Sensitive) -> str | None:
        return cephx_key_type(key.reveal())

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
