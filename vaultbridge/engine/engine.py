"""The engine's facade: the entry points the CLI and the controller call, and the wiring of the
parts behind them.

A request goes through ``engine/starter.py`` (read the CR, decide the version), then
``engine/runner.py`` (the effects loop under the rotation's journal, ``engine/journal.py``),
whose actions are ``engine/actions.py``. What differs between target kinds is behind
``engine/lifecycle.py`` (cephx: ``engine/cephx_lifecycle.py``, ``engine/cephx_retirement.py``).
docs/design.md describes the protocol and why each boundary is where it is.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from vaultbridge.engine.access import Access
from vaultbridge.engine.actions import RotationActions
from vaultbridge.engine.annotations import ROTATION_ANNOTATION, VERSION_ANNOTATION
from vaultbridge.engine.cephx_lifecycle import CephxLifecycle
from vaultbridge.engine.clusters import FixedCluster, OneCluster
from vaultbridge.engine.deletion import CephxCleanup
from vaultbridge.engine.desired import Desired
from vaultbridge.engine.drift import Observed, Sweep, sweep_clusters
from vaultbridge.engine.lifecycle import Kinds, config_key_lifecycle, config_lifecycle
from vaultbridge.engine.outcome import Outcome
from vaultbridge.engine.ports import (
    CephClusters,
    CephListing,
    CephStore,
    CephxStore,
    CredentialObject,
    CredentialRepository,
    EventRecorder,
    SecretStore,
    VaultStore,
    WorkloadStore,
)
from vaultbridge.engine.preimage import PreimageStore
from vaultbridge.engine.report import Reporter
from vaultbridge.engine.rollouts import Rollouts
from vaultbridge.engine.runner import Runner
from vaultbridge.engine.runtime import Interrupted, Observer, Runtime, always
from vaultbridge.engine.starter import Starter
from vaultbridge.model.errors import BackendError, PreconditionError
from vaultbridge.model.spec import CredentialRef, CredentialSpec

__all__ = [
    "ROTATION_ANNOTATION",
    "VERSION_ANNOTATION",
    "Engine",
    "Interrupted",
    "Observer",
    "default_holder",
]

log = logging.getLogger(__name__)


def default_holder() -> str:
    """This process, as a journal holder and a Lease holder: host, pid and a random suffix
    (a restarted process with the same pid is another holder)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Engine:
    """Rotates credentials: Vault (or the Secret) -> Ceph -> verify -> Secret + Vault labels."""

    def __init__(
        self,
        credentials: CredentialRepository,
        secrets: SecretStore,
        events: EventRecorder,
        vault: VaultStore | None,
        ceph: CephStore,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        jitter: Callable[[], float] = random.random,
        observer: Observer | None = None,
        cephx: CephxStore | None = None,
        holder: str | None = None,
        takeover_after: timedelta = timedelta(seconds=30),
        may_act: Callable[[], bool] = always,
        workloads: WorkloadStore | None = None,
        listing: CephListing | None = None,
        clusters: CephClusters | None = None,
    ) -> None:
        self.credentials, self.secrets, self.events = credentials, secrets, events
        self.vault = vault
        self.ceph, self.cephx, self.listing = ceph, cephx, listing  # the default cluster's
        self.clusters = clusters or OneCluster(FixedCluster(ceph, cephx, listing))
        self.runtime = Runtime(
            holder or default_holder(), takeover_after, clock, jitter, observer, may_act
        )
        self.access = Access(credentials, secrets)
        self.reporter = Reporter(events, self.runtime)
        cephx_lifecycle = CephxLifecycle(
            self._cephx, self._vault, self.access, self.reporter, self.runtime
        )
        self.kinds = Kinds(
            {
                "config": config_lifecycle(self.clusters),
                "configKey": config_key_lifecycle(self.clusters),
                "cephx": cephx_lifecycle,
            }
        )
        self.desired = Desired(self.access, self._vault, self.kinds, self.reporter)
        self.preimages = PreimageStore(secrets, self.access.secret, self.access.wrote_secret)
        actions = RotationActions(
            self.access, vault, self.preimages, self.reporter, self.runtime, clusters=self.clusters
        )
        self.runner = Runner(self.access, actions, self.kinds, self.reporter, self.runtime)
        self.cleanup = CephxCleanup(credentials, events, self._cephx, jitter)
        self.starter = Starter(
            self.access, self.desired, self.runner, self.kinds, self.cleanup, clusters=self.clusters
        )
        self.rollouts = Rollouts(workloads, self.reporter)

    @property
    def holder(self) -> str:
        return self.runtime.holder

    @property
    def takeover_after(self) -> timedelta:
        return self.runtime.takeover_after

    @takeover_after.setter
    def takeover_after(self, value: timedelta) -> None:
        self.runtime.takeover_after = value

    def _vault(self) -> VaultStore:
        if self.vault is None:
            raise PreconditionError(
                "VaultNotConfigured",
                "this credential reads Vault, but no "
                "Vault connection is configured (VAULTBRIDGE_VAULT__ADDR)",
            )
        return self.vault

    def _cephx(self, spec: CredentialSpec) -> CephxStore:
        cephx = self.clusters.cluster(spec.cluster).cephx
        if cephx is None:
            raise PreconditionError(
                "CephNotConfigured", "cephx targets need a Ceph connection (VAULTBRIDGE_CEPH__*)"
            )
        return cephx

    # -- entry points -------------------------------------------------------------------------

    def sync(self, ref: CredentialRef, *, dry_run: bool = False) -> Outcome:
        """Propagate the latest Vault version (or the Secret's data) to Ceph now, then retire
        the earlier cephx generations whose grace has passed."""
        with self.access.rotation_scope():
            outcome = self.starter.rotate(ref, generate=False, to_version=None, dry_run=dry_run)
        return outcome if dry_run else self._settle(outcome)

    def rotate(self, ref: CredentialRef, *, dry_run: bool = False) -> Outcome:
        """A new credential now: generated into Vault when ``spec.generate``, else a sync;
        then the retirements that are due, as with :meth:`sync`."""
        with self.access.rotation_scope():
            outcome = self.starter.rotate(ref, generate=None, to_version=None, dry_run=dry_run)
        return outcome if dry_run else self._settle(outcome)

    def rollback(self, ref: CredentialRef, *, to_version: int | None = None) -> Outcome:
        """Roll Ceph, the Secret and the labels back to an earlier verified version."""
        credential = self.access.read_cr(ref)
        refused = _refuse_rollback(credential, to_version)
        if isinstance(refused, Outcome):
            return refused
        with self.access.rotation_scope():
            outcome = self.starter.rotate(ref, generate=False, to_version=refused, dry_run=False)
        self._roll(outcome)
        return outcome

    def reconcile(self, ref: CredentialRef) -> Outcome:
        """What the controller calls: finish an interrupted rotation, else sync if needed."""
        with self.access.rotation_scope():
            copy = self.access.claim_copy(ref)
            if copy is not None and not copy.spec.suspend:
                outcome = self.starter.from_copy(copy)
                if outcome is not None:
                    return self._settle(outcome, copy.spec)
            credential = self.access.read_cr(ref)
            if credential.deleting:
                return self._finalize(credential)
            if self.cleanup.keep_finalizer(credential):
                credential = self.access.read_cr(ref)
            if credential.status.rotation is not None:
                return self._settle(self.starter.resume(credential), credential.spec)
            if credential.spec.suspend:
                return Outcome(ref, "unchanged", credential.status.current_version, "suspended")
            outcome = self.starter.rotate(
                ref, generate=False, to_version=None, dry_run=False, credential=credential
            )
        return self._settle(outcome, credential.spec)

    def resume(self, credential: CredentialObject) -> Outcome:
        """Continue the journaled rotation of ``credential`` after a restart."""
        with self.access.rotation_scope():
            return self.starter.resume(credential)

    def finalize(self, ref: CredentialRef, *, remove: bool = True) -> Outcome:
        """Finish the deletion of a CR that waits for vaultbridge (cephx ``deletionPolicy:
        Delete``): remove its entities from Ceph (unless not ``remove``), release the CR."""
        return self._finalize(self.access.read_cr(ref), remove=remove)

    def retire_due(self, ref: CredentialRef) -> Outcome:
        """Retire the earlier cephx generations whose grace has passed."""
        credential = self.access.read_cr(ref)
        return self.kinds.of(credential.spec).retire_due(credential)

    def drift(self, items: Sequence[Observed]) -> Sweep:
        """Which of ``items`` (the CRs as the watches hold them) need a reconcile: one listing
        of Ceph per target kind for all of them, no other request (``engine/drift.py``)."""
        return sweep_clusters(self.kinds, self.clusters, items)

    def claim_from(self, watched: Callable[[CredentialRef], CredentialObject | None]) -> None:
        """Let a sync claim from ``watched`` (the controller's watch of the CRs) when the engine
        has no copy of its own: no read of the CR first (the claim validates what it saw)."""
        self.access.watched = watched

    def forget(self, ref: CredentialRef) -> None:
        """Drop the copies of ``ref``'s CR and Secret: its next sync reads both first (the
        controller calls this when the CR is deleted)."""
        self.access.forget(ref)

    # -- helpers ---------------------------------------------------------------------------------

    def _finalize(self, credential: CredentialObject, *, remove: bool = True) -> Outcome:
        done = self.cleanup.finalize(credential, remove=remove)
        return Outcome(
            credential.ref,
            "finalized" if done.done else "failed",
            credential.status.current_version,
            done.message,
            reason=done.reason,
            retry_after=done.retry_after,
        )

    def _settle(self, outcome: Outcome, spec: CredentialSpec | None = None) -> Outcome:
        """What is due after the request besides it (cephx retirements), decided by the kind."""
        if spec is None:
            copy = self.access.copies.get(outcome.ref)
            spec = copy.spec if copy is not None else None
        if spec is None:
            try:
                spec = self.access.read_cr(outcome.ref).spec
            except (BackendError, PreconditionError):
                return outcome
        settled = self.kinds.of(spec).settle(outcome)
        if spec.rollout_restart_targets:
            self._roll(settled)
        return settled

    def _roll(self, outcome: Outcome) -> None:
        """Roll the workloads that read the Secret, when the CR names any (engine/rollouts.py)."""
        if self.rollouts.workloads is None or not outcome.ok:
            return
        try:
            credential = self.access.copies.get(outcome.ref) or self.access.read_cr(outcome.ref)
        except (BackendError, PreconditionError):
            return
        self.rollouts.after(credential, outcome)


def _refuse_rollback(credential: CredentialObject, to_version: int | None) -> Outcome | int:
    """Why a rollback cannot be done (an Outcome), else the version to roll back to."""
    ref, status = credential.ref, credential.status
    target = to_version if to_version is not None else status.previous_version
    if credential.spec.source is None:
        message = f"{ref}: the Secret is the source; there are no versions to roll back to"
        return Outcome(ref, "failed", reason="NoVersionHistory", message=message)
    if target is None:
        message = f"{ref}: no previous verified version recorded"
        return Outcome(ref, "failed", reason="NoPreviousVersion", message=message)
    verified = {entry.version for entry in status.history if entry.result == "Promoted"}
    verified |= {v for v in (status.current_version, status.previous_version) if v}
    if target not in verified:
        return Outcome(
            ref,
            "failed",
            reason="VersionNotVerified",
            message=f"{ref}: version {target} was never verified here "
            f"(verified: {', '.join(map(str, sorted(verified))) or 'none'})",
        )
    return target
