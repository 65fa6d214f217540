"""What the mons run and allow, read with two commands: ``versions`` and ``mon dump``."""

from __future__ import annotations

from typing import Any

from vaultbridge.ceph.connection import CephConnection
from vaultbridge.model.ceph_release import MonRelease


def key_types_of(monmap: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The preferred cephx key type and the allowed ones, from a monmap
    (``auth_preferred_cipher``, ``auth_allowed_ciphers``: Tentacle 20.2.4 and later). Older
    releases name neither: AES only."""
    preferred = (monmap.get("auth_preferred_cipher") or {}).get("name") or "aes"
    allowed = tuple(
        str(c.get("name")) for c in monmap.get("auth_allowed_ciphers") or [] if c.get("name")
    )
    return str(preferred), allowed or ("aes",)


def min_mon_release_of(monmap: dict[str, Any]) -> int | None:
    value = monmap.get("min_mon_release")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def read_mon_release(conn: CephConnection) -> MonRelease:
    """The mons' versions, ``min_mon_release`` and ciphers (``versions`` + ``mon dump``)."""
    versions = tuple(conn.mon_versions())
    monmap = conn.mon_json({"prefix": "mon dump"}) or {}
    preferred, allowed = key_types_of(monmap)
    return MonRelease(versions, min_mon_release_of(monmap), preferred, allowed)
