"""Vault's staging labels put right after the fact.

A promotion moves the ``vaultbridge-current``/``-previous`` labels beside its final status
write. When Vault does not answer then, the promotion stands (Ceph and the Secret hold the new
version) and a ``VaultLabelsStale`` Event says so. The next sync that finds the credential in
sync compares the labels with the status and sets them again: one metadata read, and a write
only when they differ.
"""

from __future__ import annotations

import logging

from vaultbridge.engine.ports import CredentialObject, VaultStore
from vaultbridge.engine.report import Reporter
from vaultbridge.model.errors import BackendError

log = logging.getLogger(__name__)


def repair_labels(vault: VaultStore, reporter: Reporter, credential: CredentialObject) -> bool:
    """Set the labels to what the status says if they differ; True when they were repaired.
    The labels are informational: a failure is logged, never the sync's failure."""
    source, status = credential.spec.source, credential.status
    if source is None or status.current_version is None or status.rotation is not None:
        return False
    want = (status.current_version, status.previous_version, None)
    try:
        if vault.labels(source.mount, source.path) == want:
            return False
        vault.set_labels(source.mount, source.path, current=want[0], previous=want[1], pending=None)
    except BackendError as exc:
        log.warning("%s: the Vault staging labels could not be checked: %s", credential.ref, exc)
        return False
    reporter.events.emit(
        credential,
        "Normal",
        "VaultLabelsRepaired",
        f"the Vault staging labels were set again: current {want[0]}, previous {want[1]}",
    )
    return True
