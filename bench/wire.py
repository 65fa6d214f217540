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


class Wire(Counter[str]):
    """Requests per kind, and the last ones in order (``trail``: what each was)."""

    def __init__(self) -> None:
        super().__init__()
        self.trail: list[str] = []

    def note(self, kind: str, what: str) -> None:
        self[kind] += 1
        self.trail.append(what)
        del self.trail[:-200]


def _what(label: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    if label == "kubernetes":  # (Operation, method, path, ...)
        op = args[0]
        return f"kubernetes {args[1]} {getattr(op, 'resource', '?')}"
    if label == "vault":
        return f"vault {kwargs.get('op', '?')}"
    cmd = args[0] if args else kwargs.get("cmd", {})
    return f"ceph {cmd.get('prefix', '?') if isinstance(cmd, dict) else '?'}"


def _wrapped(wire: Wire, label: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        wire.note(label, _what(label, args, kwargs))
        return original(self, *args, **kwargs)

    return call


def _connect(wire: Wire, original: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: CephConnection, *args: Any, **kwargs: Any) -> Any:
        if self._handle is None:
            wire.note("ceph connections", f"ceph connect as {self.user}")
        return original(self, *args, **kwargs)

    return call


@contextmanager
def counted() -> Iterator[Wire]:
    """Count Kubernetes requests, Vault requests, mon commands and new librados connections
    made inside the block (every thread)."""
    counts = Wire()
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
