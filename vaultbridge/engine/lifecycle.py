"""The target-driver interface's hooks around a rotation, one implementation per target kind.

The generic path (``engine/starter.py``, ``engine/runner.py``, ``engine/actions.py``) never
asks which kind a target is: it asks the kind's :class:`Lifecycle` (found by
``spec.target.kind``) for the driver that reads, applies, verifies and restores it, and calls
the hooks below at fixed points. Config and config-key targets need none of them; cephx
(``engine/cephx_lifecycle.py``) adopts existing entities, generates keys, checks caps and
retires earlier generations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from vaultbridge.engine.ceph_view import CephView
from vaultbridge.engine.job import Job
from vaultbridge.engine.outcome import Outcome
from vaultbridge.engine.ports import CephClusters, CephStore, CredentialObject, VaultStore
from vaultbridge.engine.runtime import Retention
from vaultbridge.engine.targets import ConfigDriver, ConfigKeyDriver, TargetDriver
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import CredentialSpec, TargetKind, source_fields
from vaultbridge.model.status import Status

CARRIED_OVER_FIELDS = frozenset({"user", "username", "userid", "id", "name", "entity"})
"""Fields of a Vault secret that name who the credential is for: kept by ``generate``."""


class Lifecycle(Protocol):
    """What differs between target kinds before, around and after a rotation."""

    # may a sync claim a rotation from the engine's copy of the CR, without reading it first?
    # (not cephx: its next entity and adoption depend on the status as it is now)
    claims_from_copy: bool

    def driver(
        self,
        spec: CredentialSpec,
        status: Status | None = None,
        version: int | None = None,
        *,
        entity: str | None = None,
    ) -> TargetDriver:
        """The driver that reads, applies, verifies and restores this target."""
        ...

    def driver_on(
        self, view: CephView, spec: CredentialSpec, status: Status, version: int | None
    ) -> TargetDriver:
        """The driver of the version ``status`` holds, reading through ``view`` (the sweep)."""
        ...

    def wants_reconcile(self, status: Status) -> bool:
        """Does ``status`` alone say a reconcile is due besides drift (a retirement pending)?"""
        ...

    def adopt(self, credential: CredentialObject) -> tuple[int, str] | None:
        """Before a first rotation: take over what Ceph already holds (version, entity)."""
        ...

    def generate(
        self, spec: CredentialSpec, existing: Mapping[str, Sensitive], vault: VaultStore
    ) -> dict[str, Sensitive]:
        """The next Vault version's fields for ``spec.generate``."""
        ...

    def retention(self, spec: CredentialSpec) -> Retention: ...

    def in_sync(self, job: Job) -> None:
        """Ceph and the Secret already hold the version: check what else may have drifted."""
        ...

    def promoted(self, job: Job, before: Status, outcome: Outcome) -> None:
        """After a promotion (``before``: the status the rotation started from)."""
        ...

    def settle(self, outcome: Outcome) -> Outcome:
        """After any sync, rotate or reconcile: what is due besides (retirements)."""
        ...

    def retire_due(self, credential: CredentialObject) -> Outcome: ...


class PlainLifecycle:
    """A target Ceph holds one value per slot of: config options, config-keys."""

    claims_from_copy = True

    def __init__(
        self, clusters: CephClusters, driver: Callable[[CredentialSpec, CephStore], TargetDriver]
    ) -> None:
        self.clusters = clusters
        self._driver = driver

    def driver(
        self,
        spec: CredentialSpec,
        status: Status | None = None,
        version: int | None = None,
        *,
        entity: str | None = None,
    ) -> TargetDriver:
        return self._driver(spec, self.clusters.cluster(spec.cluster).ceph)

    def driver_on(
        self, view: CephView, spec: CredentialSpec, status: Status, version: int | None
    ) -> TargetDriver:
        return self._driver(spec, view)

    def wants_reconcile(self, status: Status) -> bool:
        return False

    def adopt(self, credential: CredentialObject) -> tuple[int, str] | None:
        return None

    def generate(
        self, spec: CredentialSpec, existing: Mapping[str, Sensitive], vault: VaultStore
    ) -> dict[str, Sensitive]:
        data = dict(existing)
        for name in source_fields(spec):
            if name.lower() in CARRIED_OVER_FIELDS and name in existing:
                continue
            data[name] = vault.generate_password()
        return data

    def retention(self, spec: CredentialSpec) -> Retention:
        return Retention()

    def in_sync(self, job: Job) -> None:
        return None

    def promoted(self, job: Job, before: Status, outcome: Outcome) -> None:
        return None

    def settle(self, outcome: Outcome) -> Outcome:
        return outcome

    def retire_due(self, credential: CredentialObject) -> Outcome:
        status = credential.status
        return Outcome(credential.ref, "unchanged", status.current_version, "nothing to retire")


def config_lifecycle(clusters: CephClusters) -> PlainLifecycle:
    return PlainLifecycle(clusters, ConfigDriver)


def config_key_lifecycle(clusters: CephClusters) -> PlainLifecycle:
    return PlainLifecycle(clusters, ConfigKeyDriver)


class Kinds:
    """The lifecycle of each target kind."""

    def __init__(self, lifecycles: Mapping[TargetKind, Lifecycle]) -> None:
        self._lifecycles = dict(lifecycles)

    def of(self, spec: CredentialSpec) -> Lifecycle:
        return self._lifecycles[spec.target.kind]
