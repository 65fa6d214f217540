"""What one rotation reads once (the per-rotation read cache), and the bounded copies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from vaultbridge.engine.ports import StoredSecret
from vaultbridge.model.errors import BackendError
from vaultbridge.model.sensitive import Sensitive

_T = TypeVar("_T")


@dataclass
class Reads:
    """What one rotation reads once: Secrets, Vault versions, and the latest Vault version
    (read from the engine's copy of the CR, handed to the fresh read that follows)."""

    secrets: dict[tuple[str, str], StoredSecret | None] = field(default_factory=dict)
    vault: dict[tuple[str, str, int], Mapping[str, Sensitive]] = field(default_factory=dict)
    latest: dict[tuple[str, str], tuple[int, Mapping[str, Sensitive]]] = field(default_factory=dict)
    # the latest version's read failed with a backend error: the fresh read reports it again
    # rather than asking a backend that just did not answer (one request per reconcile in an
    # outage, not two)
    failed: dict[tuple[str, str], BackendError] = field(default_factory=dict)


_K = TypeVar("_K")


# The copies serve the credentials rotated lately (a trigger's fast path); one beyond them
# costs a read. At 10,000 credentials, keeping all of them cost 43 MB (docs/benchmarks.md).
COPIES_LIMIT = 1024


def keep(cache: dict[_K, _T], key: _K, value: _T, limit: int = COPIES_LIMIT) -> None:
    """``cache[key] = value`` in a cache of at most ``limit`` entries, the least recently
    kept dropped first."""
    cache.pop(key, None)
    cache[key] = value
    while len(cache) > limit:
        try:  # worker threads share the cache: another may have changed it meanwhile
            del cache[next(iter(cache))]
        except (KeyError, RuntimeError, StopIteration):
            continue
