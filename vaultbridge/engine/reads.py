"""What one rotation reads once (the per-rotation read cache) and the engine's bounded copies."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TypeVar

from vaultbridge.engine.ports import StoredSecret
from vaultbridge.model.sensitive import Sensitive

_T = TypeVar("_T")


@dataclass
class Reads:
    """What one rotation reads once: Secrets (some started early), Vault versions, and the
    latest Vault version when its read was started while the CR was being read."""

    secrets: dict[tuple[str, str], Future[StoredSecret | None]] = field(default_factory=dict)
    vault: dict[tuple[str, str, int], Mapping[str, Sensitive]] = field(default_factory=dict)
    latest: dict[tuple[str, str], Future[tuple[int, Mapping[str, Sensitive]]]] = field(
        default_factory=dict
    )


def resolved(value: _T) -> Future[_T]:
    """A future that already holds ``value`` (what a read cache holds for a known result)."""
    done: Future[_T] = Future()
    done.set_result(value)
    return done


_K = TypeVar("_K")


def keep(cache: dict[_K, _T], key: _K, value: _T, limit: int = 100_000) -> None:
    """``cache[key] = value`` in a cache kept below ``limit`` entries (emptied when full)."""
    if len(cache) > limit:
        cache.clear()
    cache[key] = value
