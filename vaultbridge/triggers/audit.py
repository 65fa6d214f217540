"""Vault-triggered rotation pushed by Vault's own audit device (no polling, no Enterprise).

Vault and OpenBao send one JSON entry per request and per response to every audit device:
OpenBao 2.5 and later to an HTTP endpoint (the ``http`` device, ``POST /v1/audit`` here), both
to a socket (the ``socket`` device, ``audit_socket.py``). :func:`kv_write` picks out the
successful KV v2 writes: a create or update of ``<mount>/data/<path>``, a delete of it, the
``delete``, ``undelete`` and ``destroy`` of versions, and a delete of the metadata. Only the
mount and the path are kept; everything else in an entry (request and response bodies,
headers, tokens: Vault HMACs values, but they are treated as secret anyway) is dropped
unread, and nothing of an entry is ever logged.

Vault refuses requests when no audit device succeeds: this receiver must never be the only one
(docs/audit-trigger.md).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

# the KV v2 endpoints whose success may change a version, with the operations that do
KV_WRITES: dict[str, frozenset[str]] = {
    "data": frozenset({"create", "update", "delete"}),
    "delete": frozenset({"create", "update"}),
    "undelete": frozenset({"create", "update"}),
    "destroy": frozenset({"create", "update"}),
    "metadata": frozenset({"delete"}),
}
MAX_ENTRY = 1024 * 1024  # bytes of one entry; a longer one is dropped


def kv_write(entry: Any) -> tuple[str, str] | None:
    """``(mount, path)`` of a successful KV v2 write the entry reports, else None."""
    if not isinstance(entry, dict) or entry.get("type") != "response" or entry.get("error"):
        return None
    request = entry.get("request")
    if not isinstance(request, dict) or request.get("mount_type") not in ("kv", None):
        return None
    mount, path, operation = (
        request.get("mount_point"),
        request.get("path"),
        request.get("operation"),
    )
    if not (isinstance(mount, str) and isinstance(path, str) and isinstance(operation, str)):
        return None
    if not mount or not path.startswith(mount):
        return None
    endpoint, _, rest = path[len(mount) :].partition("/")
    if operation not in KV_WRITES.get(endpoint, ()) or not rest.strip("/"):
        return None
    return mount.strip("/"), rest.strip("/")


@dataclass
class AuditCounts:
    entries: int = 0
    queued: int = 0
    unwatched: int = 0
    ignored: int = 0
    malformed: int = 0


class AuditReceiver(Generic[K]):
    """Entries in, credentials queued: ``watching(mount, path)`` names the credentials that
    read a path; ``queue(key, trigger)`` is the work queue's add (it merges repeats)."""

    def __init__(
        self,
        watching: Callable[[str, str], Iterable[K]],
        queue: Callable[[K, str], None],
        *,
        token: str | None = None,
        counted: Callable[[str], None] = lambda result: None,
    ) -> None:
        self.watching, self.queue, self.token = watching, queue, token
        self.counted = counted
        self.counts = AuditCounts()

    def authorized(self, presented: str | None) -> bool:
        """Does ``presented`` (an Authorization header: ``Bearer <token>`` or the token) carry
        the configured token?"""
        if self.token is None or presented is None:
            return False
        value = presented.strip()
        if value[:7].lower() == "bearer ":
            value = value[7:].strip()
        return hmac.compare_digest(value.encode(), self.token.encode())

    def lines(self, data: bytes) -> int:
        """Every newline-separated entry of ``data``; returns how many credentials it queued."""
        return sum(self.entry(line) for line in data.split(b"\n") if line.strip())

    def entry(self, line: bytes) -> int:
        self.counts.entries += 1
        if len(line) > MAX_ENTRY:
            return self._count("malformed")
        try:
            parsed = json.loads(line)
        except (ValueError, RecursionError):
            return self._count("malformed")
        found = kv_write(parsed)
        if found is None:
            return self._count("ignored")
        keys = list(self.watching(*found))
        if not keys:
            return self._count("unwatched")
        for key in keys:
            self.queue(key, "audit")
        self.counts.queued += len(keys)
        self.counted("queued")
        return len(keys)

    def _count(self, result: str) -> int:
        setattr(self.counts, result, getattr(self.counts, result) + 1)
        self.counted(result)
        return 0
