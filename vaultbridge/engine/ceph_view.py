"""Ceph as the drift sweep reads it: the drivers' reads (``config_read``, ``config_key_get``,
``get_entity``) answered from one whole listing per kind, each made at most once per sweep.

A listing the caps refuse (the least-privilege policy may leave ``config-key dump`` or
``auth ls`` out) falls back, for that kind only, to one read per credential through the
engine's own stores. Every write is refused: the sweep only decides what to reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from vaultbridge.engine.ports import CephListing, CephStore, CephxEntity, CephxStore, ConfigKey
from vaultbridge.model.ceph_release import MonRelease
from vaultbridge.model.errors import BackendError, PreconditionError
from vaultbridge.model.sensitive import Sensitive

REFUSED = "CephPermissionDenied"


def _read_only() -> NoReturn:
    raise PreconditionError("ReadOnlyView", "the drift sweep never writes to Ceph")


class CephView:
    """A read-only :class:`CephStore` and :class:`CephxStore` over whole listings."""

    def __init__(
        self,
        ceph: CephStore,
        cephx: CephxStore | None,
        listing: CephListing | None,
        *,
        key_prefix: str = "",
    ) -> None:
        self.ceph, self.cephx, self.listing = ceph, cephx, listing
        self.key_prefix = key_prefix  # every config-key a credential names starts with it
        self._config: Mapping[ConfigKey, Sensitive] | None = None
        self._keys: Mapping[str, Sensitive] | None = None
        self._entities: Mapping[str, CephxEntity] | None = None
        self.refused: set[str] = set()  # listings the caps refused (one read per credential)
        self.listings = 0  # mon commands made for listings

    def _list(self, what: str, read: Any) -> Any:
        if self.listing is None or what in self.refused:
            return None
        try:
            found = read()
        except BackendError as exc:
            if exc.reason != REFUSED:
                raise
            self.refused.add(what)
            return None
        self.listings += 1
        return found

    # -- CephStore reads -------------------------------------------------------------------------

    def config_read(self, who: str, option: str) -> Sensitive | None:
        if self._config is None and self.listing is not None:
            self._config = self._list("config dump", self.listing.config_values)
        if self._config is None:
            return self.ceph.config_read(who, option)
        return self._config.get((who, option))

    def config_key_get(self, key: str) -> Sensitive | None:
        if self._keys is None and self.listing is not None and key.startswith(self.key_prefix):
            listing = self.listing
            self._keys = self._list(
                "config-key dump", lambda: listing.config_key_values(self.key_prefix)
            )
        if self._keys is None or not key.startswith(self.key_prefix):
            return self.ceph.config_key_get(key)
        return self._keys.get(key)

    def config_option_known(self, option: str) -> bool:
        return self.ceph.config_option_known(option)

    # -- CephxStore reads ------------------------------------------------------------------------

    def _store(self) -> CephxStore:
        if self.cephx is None:
            raise PreconditionError(
                "CephNotConfigured", "cephx targets need a Ceph connection (VAULTBRIDGE_CEPH__*)"
            )
        return self.cephx

    def get_entity(self, name: str) -> CephxEntity | None:
        if self._entities is None and self.listing is not None:
            self._entities = self._list("auth ls", self.listing.cephx_entities)
        if self._entities is None:
            return self._store().get_entity(name)
        return self._entities.get(name)

    def mon_release(self) -> MonRelease:
        return self._store().mon_release()

    def key_is_valid(self, key: Sensitive) -> bool:
        return self._store().key_is_valid(key)

    def key_type_of(self, key: Sensitive) -> str | None:
        return self._store().key_type_of(key)

    def keyring_text(self, name: str, key: Sensitive, caps: Mapping[str, str] | None) -> Sensitive:
        return self._store().keyring_text(name, key, caps)

    def make_key(self, secret: bytes, created: int, key_type: str = "aes") -> Sensitive:
        return self._store().make_key(secret, created, key_type)

    def sessions(self, entity: str) -> list[str]:
        return self._store().sessions(entity)

    # -- writes: refused -------------------------------------------------------------------------

    def config_apply_all(
        self,
        values: Sequence[tuple[str, str, Sensitive]],
        *,
        before: Mapping[ConfigKey, Sensitive | None] | None = None,
        read_back: bool = True,
    ) -> None:
        _read_only()

    def config_restore(self, snapshot: Mapping[ConfigKey, Sensitive | None]) -> None:
        _read_only()

    def config_key_set(self, key: str, value: Sensitive) -> None:
        _read_only()

    def config_key_remove(self, key: str) -> None:
        _read_only()

    def add_entity(self, name: str, key: Sensitive, caps: Mapping[str, str]) -> None:
        _read_only()

    def import_entity(self, name: str, key: Sensitive, caps: Mapping[str, str]) -> None:
        _read_only()

    def set_caps(self, name: str, caps: Mapping[str, str]) -> None:
        _read_only()

    def remove_entity(self, name: str) -> None:
        _read_only()

    def verify_key(
        self,
        name: str,
        key: Sensitive,
        probe_allowed: Mapping[str, Any],
        probe_refused: Mapping[str, Any] | None,
    ) -> None:
        _read_only()

    def get_or_create_pending(self, entity: str) -> Sensitive:
        _read_only()

    def commit_pending(self, entity: str) -> None:
        _read_only()

    def clear_pending(self, entity: str) -> None:
        _read_only()
