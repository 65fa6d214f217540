"""In-memory implementations of every engine port, for unit tests of the engine itself.

In the spirit of httpx's ``MockTransport``: each port keeps its state in plain dicts and
behaves as its real adapter does where the engine can tell (resourceVersions and the claim's
precondition, Secret ownership, KV versions and check-and-set, config values and config-key
entries, cephx entities and sessions). A ``Faults`` table shared by all of them lets a test
make any call fail, or answer from a stale copy, at any point of a rotation:

    faults = Faults()
    faults.fail("vault.set_labels", VaultUnavailable("down"), times=1)
    faults.stale("crs.load")          # the next load returns the object as it was before

Nothing here touches a network; the integration tests run the same engine against the real
servers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from vaultbridge.engine.memory.backends import MemoryCeph, MemoryCephx, MemoryListing, MemoryVault
from vaultbridge.engine.memory.faults import Faults, MemoryNotFound, MemoryRejected
from vaultbridge.engine.memory.kube import MemoryCredentials, MemoryEvents, MemorySecrets

__all__ = [
    "Clock",
    "Faults",
    "MemoryCeph",
    "MemoryCephx",
    "MemoryCredentials",
    "MemoryEvents",
    "MemoryListing",
    "MemoryNotFound",
    "MemoryRejected",
    "MemorySecrets",
    "MemoryVault",
    "MemoryWorld",
]


@dataclass
class Clock:
    """A clock the test moves: ``clock.advance(seconds)``."""

    now: datetime = field(default_factory=lambda: datetime(2026, 12, 1, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class MemoryWorld:
    """Every port over one ``Faults`` table, and a ``Clock``."""

    faults: Faults = field(default_factory=Faults)
    clock: Clock = field(default_factory=Clock)
    crs: MemoryCredentials = field(init=False)
    secrets: MemorySecrets = field(init=False)
    events: MemoryEvents = field(default_factory=MemoryEvents)
    vault: MemoryVault = field(init=False)
    ceph: MemoryCeph = field(init=False)
    cephx: MemoryCephx = field(init=False)
    listing: MemoryListing = field(init=False)

    def __post_init__(self) -> None:
        self.crs = MemoryCredentials(self.faults)
        self.secrets = MemorySecrets(self.faults)
        self.vault = MemoryVault(self.faults)
        self.ceph = MemoryCeph(self.faults)
        self.cephx = MemoryCephx(self.faults)
        self.listing = MemoryListing(self.faults, self.ceph, self.cephx)

    def engine_ports(self) -> dict[str, Callable[..., Any] | Any]:
        """Keyword arguments for ``Engine(...)``."""
        return {
            "credentials": self.crs,
            "secrets": self.secrets,
            "events": self.events,
            "vault": self.vault,
            "ceph": self.ceph,
            "cephx": self.cephx,
            "listing": self.listing,
            "clock": self.clock,
            "jitter": lambda: 0.5,
        }
