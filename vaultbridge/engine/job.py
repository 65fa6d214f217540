"""One rotation as the engine drives it: the credential, its target driver, the new version's
data, and what the rotation has learnt on the way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vaultbridge.engine.journal import Journal
from vaultbridge.engine.ports import CredentialObject
from vaultbridge.engine.targets import TargetDriver
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import CredentialSpec


@dataclass
class Job:
    credential: CredentialObject
    spec: CredentialSpec
    driver: TargetDriver
    version: int
    data: dict[str, Sensitive]
    rotation_id: str = ""
    current_before: int | None = None
    previous_before: int | None = None
    # whether a pre-image Secret may exist for this rotation: a fresh rotation knows it has not
    # written one yet; a resumed one must look
    stash: Literal["absent", "written", "unknown"] = "absent"
    journal: Journal | None = None
    # started from the engine's copy of the CR, not a fresh read (see _rotate_from_copy)
    from_copy: bool = False
    claimed: bool = False
    # the promotion's label move failed: the outcome asks for a sync soon, which sets them
    labels_stale: bool = False
    # what the observer is told, held back until a rotation from a copy has claimed: a stale
    # copy's attempt changes nothing and is retried from a fresh read, which reports its own
    unconfirmed: list[tuple[str, str]] = field(default_factory=list)
    # the cluster the rotation is pinned to (its key; None: the default) and its fsid then
    cluster: str | None = None
    fsid: str | None = None


class StaleCopyError(Exception):
    """The engine's copy of a CR was not current: read it and decide again."""
