"""Rollout restarts after a promotion: each workload in ``spec.rolloutRestartTargets`` gets the
annotation ``rotation.vaultbridge.io/<CR name>`` on its Pod template, set to the promoted
version, and its controller rolls it.

Keyed by the version, not by a time: it is idempotent and convergent. A restart lost to a crash
between the promotion and the patch is made by the next reconcile that finds the annotation
behind, and a resync never rolls a workload that already runs the current version. A workload
never rolled by vaultbridge (no annotation yet) is rolled only by a promotion, so adding the
field to a CR does not restart anything until the next rotation.
"""

from __future__ import annotations

import hashlib
import logging

from vaultbridge.engine.outcome import Outcome
from vaultbridge.engine.ports import CredentialObject, WorkloadStore
from vaultbridge.engine.report import Reporter
from vaultbridge.model.errors import BackendError

log = logging.getLogger(__name__)

ANNOTATION_PREFIX = "rotation.vaultbridge.io/"
_NAME_MAX = 63  # the name part of an annotation key


def annotation_key(cr_name: str) -> str:
    """``rotation.vaultbridge.io/<CR name>``; a name longer than an annotation key's name
    part allows is shortened with a hash of the whole name."""
    if len(cr_name) <= _NAME_MAX:
        return ANNOTATION_PREFIX + cr_name
    digest = hashlib.sha256(cr_name.encode()).hexdigest()[:10]
    return f"{ANNOTATION_PREFIX}{cr_name[: _NAME_MAX - 11].rstrip('-.')}-{digest}"


class Rollouts:
    def __init__(self, workloads: WorkloadStore | None, reporter: Reporter) -> None:
        self.workloads = workloads
        self.reporter = reporter

    def after(self, credential: CredentialObject, outcome: Outcome) -> None:
        """Roll the CR's workloads that do not run ``outcome``'s version yet (see the module
        docstring for when). Never raises: a failed restart at a promotion is a Warning Event
        naming the workload; the credential stays promoted, and the next reconcile tries again
        (its failures are only logged, so a missing workload is not warned about every resync)."""
        targets = credential.spec.rollout_restart_targets
        version = credential.status.current_version
        if not targets or not outcome.ok or version is None:
            return
        if self.workloads is None:
            return
        promoted = outcome.result == "promoted"
        key, value = annotation_key(credential.ref.name), str(version)
        namespace = credential.ref.namespace
        for target in targets:
            try:
                found = self.workloads.template_annotation(namespace, target.kind, target.name, key)
                if found == value or (found is None and not promoted):
                    continue
                self.workloads.set_template_annotation(
                    namespace, target.kind, target.name, key, value
                )
            except BackendError as exc:
                if not promoted:  # a catch-up on a resync: warned at the promotion already
                    log.info("%s: cannot restart %s yet: %s", credential.ref, target, exc)
                    continue
                self.reporter.event(
                    credential,
                    "Warning",
                    "RolloutRestartFailed",
                    f"cannot restart {target} for version {version}: {exc.reason}: {exc}",
                )
                continue
            self.reporter.event(
                credential,
                "Normal",
                "RolloutRestarted",
                f"restarted {target} for version {version} (annotation {key})",
            )
