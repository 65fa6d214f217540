"""Requests on the wire, counted by wrapping the three clients' lowest call (bench only):
a figure that does not depend on how fast the machine is."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from vaultbridge.ceph.connection import CephConnection
from vaultbridge.kube.client import KubeClient
from vaultbridge.vault.client import VaultClient


def _wrapped(counts: Counter[str], label: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts[label] += 1
        return original(self, *args, **kwargs)

    return call


def _connect(counts: Counter[str], original: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: CephConnection, *args: Any, **kwargs: Any) -> Any:
        if self._handle is None:
            counts["ceph connections"] += 1
        return original(self, *args, **kwargs)

    return call


@contextmanager
def counted() -> Iterator[Counter[str]]:
    """Count Kubernetes requests, Vault requests, mon commands and new librados connections
    made inside the block (every thread)."""
    counts: Counter[str] = Counter()
    patches: list[tuple[type, str, Any]] = [
        (KubeClient, "request", _wrapped(counts, "kubernetes", KubeClient.request)),
        (VaultClient, "call", _wrapped(counts, "vault", VaultClient.call)),
        (
            CephConnection,
            "mon_command",
            _wrapped(counts, "mon commands", CephConnection.mon_command),
        ),
        (CephConnection, "_connect", _connect(counts, CephConnection._connect)),
    ]
    originals = [(cls, name, cls.__dict__[name]) for cls, name, _ in patches]
    for cls, name, replacement in patches:
        setattr(cls, name, replacement)
    try:
        yield counts
    finally:
        for cls, name, original in originals:
            setattr(cls, name, original)
