"""What one rotation reads once (the per-rotation read cache), and the bounded copies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from vaultbridge.engine.ports import StoredSecret
from vaultbridge.model.sensitive import Sensitive

_T = TypeVar("_T")


@dataclass
class Reads:
    """What one rotation reads once: Secrets, Vault versions, and the latest Vault version
    (read from the engine's copy of the CR, handed to the fresh read that follows)."""

    secrets: dict[tuple[str, str], StoredSecret | None] = field(default_factory=dict)
    vault: dict[tuple[str, str, int], Mapping[str, Sensitive]] = field(default_factory=dict)
    latest: dict[tuple[str, str], tuple[int, Mapping[str, Sensitive]]] = field(default_factory=dict)


_K = TypeVar("_K")


def keep(cache: dict[_K, _T], key: _K, value: _T, limit: int = 100_000) -> None:
    """``cache[key] = value`` in a cache kept below ``limit`` entries (emptied when full)."""
    if len(cache) > limit:
        cache.clear()
    cache[key] = value
