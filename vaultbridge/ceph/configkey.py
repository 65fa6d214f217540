"""The mon config-key store (``ceph config-key``), e.g. ``mgr/dashboard/...`` secrets.

Values are written through the command's input buffer, so they never appear in the command
JSON (which the mons write to their audit log).
"""

from __future__ import annotations

import errno

from vaultbridge.ceph.connection import CephConnection
from vaultbridge.ceph.errors import CephError, CephRejected, CephUnavailable
from vaultbridge.model.sensitive import Sensitive

__all__ = ["ConfigKeyStore"]


class ConfigKeyStore:
    """get/set/remove/exists on config-key entries, each write verified by reading back."""

    def __init__(self, conn: CephConnection, *, write_attempts: int = 2) -> None:
        self.conn = conn
        self.write_attempts = max(1, write_attempts)

    def get(self, key: str) -> Sensitive | None:
        try:
            out = self.conn.mon_command({"prefix": "config-key get", "key": key})
        except CephRejected as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return Sensitive(out.decode("utf-8", errors="surrogateescape"))

    def dump(self, prefix: str = "") -> dict[str, Sensitive]:
        """Every entry whose key starts with ``prefix``, from one ``config-key dump``."""
        command: dict[str, str] = {"prefix": "config-key dump"}
        if prefix:
            command["key"] = prefix
        found = self.conn.mon_json(command)
        if not isinstance(found, dict):
            raise CephRejected(f"config-key dump: unexpected answer ({self.conn.where})")
        return {str(key): Sensitive(str(value)) for key, value in found.items()}

    def exists(self, key: str) -> bool:
        try:
            self.conn.mon_command({"prefix": "config-key exists", "key": key})
        except CephRejected as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True

    def _matches(self, key: str, value: Sensitive | None) -> bool:
        try:
            stored = self.get(key)
        except CephUnavailable:
            return False
        return stored == value if value is not None else stored is None

    def set(self, key: str, value: Sensitive) -> None:
        """Store ``value`` (skipped when already there) and read it back exactly."""
        current = self.get(key)
        if current is not None and current == value:
            return
        what = f"config-key set {key}"
        for attempt in range(1, self.write_attempts + 1):
            try:
                self.conn.mon_command(
                    {"prefix": "config-key set", "key": key},
                    inbuf=value.reveal().encode("utf-8", errors="surrogateescape"),
                    secrets=(value,),
                )
                break
            except CephUnavailable:
                if self._matches(key, value):
                    return
                if attempt == self.write_attempts:
                    raise
            except CephError as exc:
                raise type(exc)(f"{what}: {exc.message}", errno=exc.errno) from exc
        if not self._matches(key, value):
            raise CephRejected(f"{what}: read-back differs from the value written")

    def remove(self, key: str) -> None:
        """``config-key rm``; absent is fine."""
        for attempt in range(1, self.write_attempts + 1):
            try:
                self.conn.mon_command({"prefix": "config-key rm", "key": key})
                return
            except CephRejected as exc:
                if exc.errno == errno.ENOENT:
                    return
                raise
            except CephUnavailable:
                if self._matches(key, None):
                    return
                if attempt == self.write_attempts:
                    raise
