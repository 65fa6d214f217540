"""Pending keys (Quincy 17.2.6, Reef 18.2 and later): a second key staged beside an entity's
current one. Both authenticate until the pending key is first used; Ceph then commits it and
refuses the old key for new connections (seen on Tentacle 20.2.4 and Reef 18.2.7: within a
second). So nothing may authenticate with a pending key before consumers have it: see
docs/ceph-releases.md."""

from __future__ import annotations

from typing import Protocol

from vaultbridge.model.errors import PreconditionError
from vaultbridge.model.sensitive import Sensitive


class PendingKeys(Protocol):
    """The Ceph >= 17 pending-key commands (``auth get-or-create-pending`` and friends)."""

    def get_or_create_pending(self, entity: str) -> Sensitive: ...

    def commit_pending(self, entity: str) -> None: ...

    def clear_pending(self, entity: str) -> None: ...


class PendingKeySwap:
    """The in-place key swap with pending keys (Quincy and later).

    ``stage`` (Apply): ``auth get-or-create-pending``; the pending key must be the one vaultbridge
    wrote to Vault (it was obtained the same way when the version was generated), else the
    pending key is cleared and the swap refused. ``commit`` (``retireAfter`` after the
    promotion, unless a consumer's first use did it already): ``auth commit-pending``.
    ``abort`` (Restore): ``auth clear-pending``.
    """

    def __init__(self, keys: PendingKeys, entity: str) -> None:
        self.keys = keys
        self.entity = entity

    def stage(self, key: Sensitive) -> None:
        pending = self.keys.get_or_create_pending(self.entity)
        if pending != key:
            self.keys.clear_pending(self.entity)
            raise PreconditionError(
                "PendingKeyMismatch",
                f"{self.entity}: the pending key Ceph holds is not the version being rotated to; "
                "cleared it",
                transient=True,
            )

    def commit(self) -> None:
        self.keys.commit_pending(self.entity)

    def abort(self) -> None:
        self.keys.clear_pending(self.entity)
