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
    read_mon_release,
)
from vaultbridge.engine.ports import CephxEntity, ConfigKey
from vaultbridge.model.ceph_release import MonRelease
from vaultbridge.model.sensitive import Sensitive


class CephxMon:
    """The cephx auth database, shaped to the engine's ``CephxStore`` port."""

    RELEASE_TTL = 300.0  # seconds what the mons run is trusted (an upgrade changes it)

    def __init__(self, conn: CephConnection) -> None:
        self.conn = conn
        self.auth = CephxAuth(conn)
        self._release: tuple[MonRelease, float, int] | None = None

    def mon_release(self) -> MonRelease:
        """Read once per connection (and again after ``RELEASE_TTL``)."""
        now, connection = time.monotonic(), self.conn.connections
        cached = self._release
        if cached is None or cached[2] != connection or now - cached[1] > self.RELEASE_TTL:
            found = read_mon_release(self.conn)
            self._release = cached = (found, now, self.conn.connections)
        return cached[0]

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


class CephListings:
    """Whole listings for the drift sweep, shaped to the engine's ``CephListing`` port."""

    def __init__(self, conn: CephConnection) -> None:
        self.config = ConfigStore(conn)
        self.config_keys = ConfigKeyStore(conn)
        self.auth = CephxAuth(conn)

    def config_values(self) -> Mapping[ConfigKey, Sensitive]:
        return self.config.dump()

    def config_key_values(self, prefix: str) -> Mapping[str, Sensitive]:
        return self.config_keys.dump(prefix)

    def cephx_entities(self) -> Mapping[str, CephxEntity]:
        return {
            name: CephxEntity(found.name, found.key, dict(found.caps), found.pending_key)
            for name, found in self.auth.dump().items()
        }
