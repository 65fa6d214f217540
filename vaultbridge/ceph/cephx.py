"""cephx primitives: entities, keys, caps, fresh-connection verification, live sessions.

The rotation strategies (alternate entities, in-place key swap) are built on these elsewhere.
Keys are never generated here: they come from Vault; :func:`make_cephx_key` turns 16 random
bytes from Vault into the cephx key format, :func:`cephx_key_is_valid` checks one.

Pacific (16.x) keeps one key per entity and has no pending keys; a client already connected keeps
working after its key changes until it re-authenticates, but every new connection needs the
current key at once.
"""

from __future__ import annotations

import base64
import binascii
import errno
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vaultbridge.ceph.connection import CephConnection
from vaultbridge.ceph.errors import CephError, CephPermissionDenied, CephRejected, CephUnavailable
from vaultbridge.ceph.release import key_types_of
from vaultbridge.model.sensitive import Sensitive

__all__ = [
    "CephxAuth",
    "Entity",
    "cephx_key_is_valid",
    "cephx_key_type",
    "keyring_text",
    "make_cephx_key",
]

# CryptoKey encoding: u16 type, utime_t created (u32 sec, u32 nsec), u16 len, secret. Type 1 is
# AES (16-byte secret, 40 characters of base64); type 2 is AES256K (CEPH_CRYPTO_AES256KRB5,
# 32-byte secret, 60 characters), the only type a new Tentacle (20.2.4+) cluster allows
_HEADER = struct.Struct("<HIIH")
KEY_TYPES: dict[str, tuple[int, int]] = {"aes": (1, 16), "aes256k": (2, 32)}


def make_cephx_key(secret: bytes, created: int, key_type: str = "aes") -> str:
    """A cephx key of ``key_type`` (``aes`` or ``aes256k``) from random bytes (16 or 32) and a
    Unix time."""
    if key_type not in KEY_TYPES:
        raise ValueError(f"unknown cephx key type {key_type!r} (known: {', '.join(KEY_TYPES)})")
    kind, length = KEY_TYPES[key_type]
    if len(secret) != length:
        raise ValueError(f"a cephx {key_type} secret needs exactly {length} random bytes")
    if not 0 <= created < 2**32:
        raise ValueError("created must be a Unix time that fits in 32 bits")
    blob = _HEADER.pack(kind, created, 0, length) + secret
    return base64.b64encode(blob).decode("ascii")


def cephx_key_type(key: str) -> str | None:
    """The type of a cephx key (``aes``, ``aes256k``), or None when it is not a valid one."""
    try:
        blob = base64.b64decode(key.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    if len(blob) < _HEADER.size:
        return None
    kind, _sec, _nsec, length = _HEADER.unpack_from(blob)
    for name, (known_kind, known_length) in KEY_TYPES.items():
        if (kind, length) == (known_kind, known_length) and len(blob) == _HEADER.size + length:
            return name
    return None


def cephx_key_is_valid(key: str) -> bool:
    """True when ``key`` is base64 of an AES or AES256K cephx secret blob."""
    return cephx_key_type(key) is not None


def _quote(cap: str) -> str:
    return '"' + cap.replace("\\", "\\\\").replace('"', '\\"') + '"'


def keyring_text(name: str, key: Sensitive, caps: Mapping[str, str] | None = None) -> Sensitive:
    """The keyring file text for one entity (a secret itself, hence :class:`Sensitive`)."""
    lines = [f"[{name}]", f"\tkey = {key.reveal()}"]
    for service, cap in sorted((caps or {}).items()):
        lines.append(f"\tcaps {service} = {_quote(cap)}")
    return Sensitive("\n".join(lines) + "\n")


def _caps_list(caps: Mapping[str, str]) -> list[str]:
    flat: list[str] = []
    for service, cap in sorted(caps.items()):
        flat += [service, cap]
    return flat


@dataclass(frozen=True)
class Entity:
    """A cephx entity as the mons hold it. ``repr`` never shows the key."""

    name: str
    key: Sensitive
    caps: dict[str, str] = field(default_factory=dict)
    pending_key: Sensitive | None = None  # Reef and later: staged, committed on first use


def _entity_from(name: str, row: dict[str, Any]) -> Entity:
    caps = row.get("caps") or {}
    pending = row.get("pending_key")
    return Entity(
        name=name,
        key=Sensitive(str(row.get("key", ""))),
        caps={str(k): str(v) for k, v in caps.items()},
        pending_key=Sensitive(str(pending)) if pending else None,
    )


class CephxAuth:
    """``auth get/add/import/caps/rm/ls`` on one connection, plus key verification."""

    def __init__(self, conn: CephConnection, *, write_attempts: int = 2) -> None:
        self.conn = conn
        self.write_attempts = max(1, write_attempts)

    # ------------------------------------------------------------------ reads
    def key_types(self) -> tuple[str, tuple[str, ...]]:
        """The cluster's preferred cephx key type and the types it allows, from the monmap."""
        return key_types_of(self.conn.mon_json({"prefix": "mon dump"}) or {})

    def get_entity(self, name: str) -> Entity | None:
        try:
            rows = self.conn.mon_json({"prefix": "auth get", "entity": name})
        except CephRejected as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and row.get("entity") == name:
                return _entity_from(name, row)
        return None

    def dump(self) -> dict[str, Entity]:
        """Every entity with its key, pending key and caps, from one ``auth ls``."""
        dump = self.conn.mon_json({"prefix": "auth ls"})
        rows = dump.get("auth_dump", []) if isinstance(dump, dict) else []
        found: dict[str, Entity] = {}
        for row in rows:
            if isinstance(row, dict) and row.get("entity"):
                name = str(row["entity"])
                found[name] = _entity_from(name, row)
        return found

    def list_entities(self, prefix: str = "") -> list[str]:
        """Names of all entities starting with ``prefix`` (keys are read and dropped)."""
        dump = self.conn.mon_json({"prefix": "auth ls"})
        rows = dump.get("auth_dump", []) if isinstance(dump, dict) else []
        return sorted(
            str(row["entity"])
            for row in rows
            if isinstance(row, dict) and str(row.get("entity", "")).startswith(prefix)
        )

    def _matches(self, name: str, key: Sensitive | None, caps: Mapping[str, str] | None) -> bool:
        try:
            found = self.get_entity(name)
        except CephUnavailable:
            return False
        if found is None:
            return key is None and caps is None
        if key is not None and found.key != key:
            return False
        return caps is None or found.caps == dict(caps)

    def _write(
        self,
        what: str,
        cmd: dict[str, Any],
        inbuf: Sensitive | None,
        done: tuple[Sensitive | None, Mapping[str, str] | None],
        name: str,
    ) -> None:
        """Send a write; a timed-out one is read back before it is retried; verify after."""
        for attempt in range(1, self.write_attempts + 1):
            try:
                self.conn.mon_command(
                    cmd,
                    inbuf=inbuf.reveal().encode() if inbuf is not None else b"",
                    secrets=(inbuf,) if inbuf is not None else (),
                )
                break
            except CephUnavailable:
                if self._matches(name, *done):
                    return
                if attempt == self.write_attempts:
                    raise
            except CephError as exc:
                raise type(exc)(f"{what}: {exc.message}", errno=exc.errno) from exc
        if not self._matches(name, *done):
            raise CephRejected(f"{what}: read-back differs from what was written")

    # ------------------------------------------------------------------ writes
    def add_entity(self, name: str, key: Sensitive, caps: Mapping[str, str]) -> None:
        """Create ``name`` with this exact key and caps (``auth add`` with a keyring as input).

        Idempotent: nothing happens when it already exists with that key and caps; an existing
        entity with another key or caps is refused (EEXIST) rather than changed.
        """
        self._check_key(f"auth add {name}", key)
        existing = self.get_entity(name)
        if existing is not None:
            if existing.key == key and existing.caps == dict(caps):
                return
            raise CephRejected(
                f"auth add {name}: the entity exists with a different key or caps",
                errno=errno.EEXIST,
            )
        self._write(
            f"auth add {name}",
            {"prefix": "auth add", "entity": name, "caps": _caps_list(caps)},
            keyring_text(name, key),
            (key, caps),
            name,
        )

    def import_entity(self, name: str, key: Sensitive, caps: Mapping[str, str]) -> None:
        """Create or overwrite ``name`` with this key and caps (``auth import``, in-place).

        Pacific's ``auth import`` stores caps without parsing them, so changed caps are first
        applied (and so validated) with ``auth caps``; a new entity goes through ``auth add``.
        """
        self._check_key(f"auth import {name}", key)
        existing = self.get_entity(name)
        if existing is None:
            self.add_entity(name, key, caps)
            return
        if existing.key == key and existing.caps == dict(caps):
            return
        if existing.caps != dict(caps):
            self.set_caps(name, caps)
        self._write(
            f"auth import {name}",
            {"prefix": "auth import"},
            keyring_text(name, key, caps),
            (key, caps),
            name,
        )

    def set_caps(self, name: str, caps: Mapping[str, str]) -> None:
        """Replace the caps of an existing entity (``auth caps``)."""
        if self._matches(name, None, caps) and self.get_entity(name) is not None:
            return
        self._write(
            f"auth caps {name}",
            {"prefix": "auth caps", "entity": name, "caps": _caps_list(caps)},
            None,
            (None, caps),
            name,
        )

    def remove_entity(self, name: str) -> None:
        """``auth rm``; a missing entity is fine."""
        for attempt in range(1, self.write_attempts + 1):
            try:
                self.conn.mon_command({"prefix": "auth rm", "entity": name})
                break
            except CephRejected as exc:
                if exc.errno == errno.ENOENT:
                    return
                raise type(exc)(f"auth rm {name}: {exc.message}", errno=exc.errno) from exc
            except CephUnavailable:
                if attempt == self.write_attempts:
                    raise
        if self.get_entity(name) is not None:
            raise CephRejected(f"auth rm {name}: the entity is still there")

    # ------------------------------------------------------------------ verification
    def verify_key(
        self,
        name: str,
        key: Sensitive,
        probe_allowed: Mapping[str, Any],
        probe_refused: Mapping[str, Any] | None = None,
    ) -> None:
        """Authenticate a FRESH librados connection as ``name`` with ``key``; run one command
        its caps allow and, optionally, one they must refuse with EACCES.

        Raises :class:`CephPermissionDenied` when authentication or the allowed probe fails,
        :class:`CephRejected` when the refused probe is allowed or the key is malformed.
        """
        self._check_key(f"verify {name}", key)
        fresh = self.conn.sibling(name, key)
        try:
            try:
                fresh.connect()
            except CephPermissionDenied as exc:
                raise CephPermissionDenied(
                    f"verify {name}: authentication with the given key was refused by the mons"
                    f" ({self.conn.label or self.conn.conf})",
                    errno=exc.errno,
                ) from exc
            allowed = str(probe_allowed.get("prefix"))
            try:
                fresh.mon_command(probe_allowed)
            except CephPermissionDenied as exc:
                raise CephPermissionDenied(
                    f"verify {name}: authenticated, but the caps do not allow {allowed!r}",
                    errno=exc.errno,
                ) from exc
            if probe_refused is not None:
                refused = str(probe_refused.get("prefix"))
                try:
                    fresh.mon_command(probe_refused)
                except CephPermissionDenied:
                    pass
                else:
                    raise CephRejected(
                        f"verify {name}: the caps allow {refused!r}, which they must refuse"
                    )
        finally:
            fresh.close()

    def sessions(self, entity: str) -> list[str]:
        """Ids of the mons (in quorum, each asked directly) that hold a session for ``entity``."""
        status = self.conn.mon_json({"prefix": "quorum_status"})
        names = [str(n) for n in (status or {}).get("quorum_names", [])]
        holding: list[str] = []
        for mon in names:
            rows = self.conn.mon_json({"prefix": "sessions"}, target=mon)
            if any(
                isinstance(row, dict) and row.get("entity_name") == entity for row in rows or []
            ):
                holding.append(mon)
        return holding

    @staticmethod
    def _check_key(what: str, key: Sensitive) -> None:
        # a malformed key would be echoed into the client log by librados: refuse it here
        if not cephx_key_is_valid(key.reveal()):
            raise CephRejected(f"{what}: the key is not a valid cephx key", errno=errno.EINVAL)
