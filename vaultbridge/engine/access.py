"""How the engine reads and writes the CR and its Secrets.

Two things make a rotation cheaper here, each measured (docs/benchmarks.md):

- **a per-rotation read cache**: one rotation reads each Secret and each Vault version once;
- **copies**: each CR as this engine last read or wrote it, and each Secret as it last wrote
  it, for the credentials rotated lately (``reads.COPIES_LIMIT``). A sync whose copy shows a
  rotation is due claims from it without reading the CR first (the claim's resourceVersion
  precondition validates the copy). Without a copy of its own the engine may claim from the
  controller's watch (``watched``): a stale one costs the claim a conflict and a read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from vaultbridge.engine.ports import (
    CredentialObject,
    CredentialRepository,
    SecretStore,
    StoredSecret,
)
from vaultbridge.engine.reads import Reads, keep
from vaultbridge.model.spec import CredentialRef
from vaultbridge.model.status import Status

SecretKey = tuple[str, str]


class Access:
    """The CR and Secret reads and writes of one engine, with its copies and read cache."""

    def __init__(self, credentials: CredentialRepository, secrets: SecretStore) -> None:
        self.credentials = credentials
        self.secrets = secrets
        self._local = threading.local()
        self.copies: dict[CredentialRef, CredentialObject] = {}
        # a stale Secret copy costs the Secret write a conflict and a re-read, nothing more
        self.secret_copies: dict[SecretKey, StoredSecret] = {}
        self.watched: Callable[[CredentialRef], CredentialObject | None] | None = None

    def claim_copy(self, ref: CredentialRef) -> CredentialObject | None:
        """The CR to claim from without reading it first: this engine's copy, else the watch's."""
        copy = self.copies.get(ref)
        if copy is None and self.watched is not None:
            copy = self.watched(ref)
        return copy

    # -- the per-rotation read cache -------------------------------------------------------------

    @contextmanager
    def rotation_scope(self) -> Iterator[None]:
        """One rotation reads each thing once (a nested scope shares the outer one)."""
        if self.reads() is not None:
            yield
            return
        self._local.reads = Reads()
        try:
            yield
        finally:
            self._local.reads = None

    def reads(self) -> Reads | None:
        reads: Reads | None = getattr(self._local, "reads", None)
        return reads

    def secret(self, namespace: str, name: str) -> StoredSecret | None:
        reads = self.reads()
        if reads is None:
            return self.secrets.read(namespace, name)
        if (namespace, name) not in reads.secrets:
            reads.secrets[(namespace, name)] = self.secrets.read(namespace, name)
        return reads.secrets[(namespace, name)]

    def wrote_secret(self, namespace: str, name: str) -> None:
        reads = self.reads()
        if reads is not None:
            reads.secrets.pop((namespace, name), None)

    # -- the CR ----------------------------------------------------------------------------------

    def read_cr(self, ref: CredentialRef) -> CredentialObject:
        credential = self.credentials.load(ref)
        self.remember(credential)
        return credential

    def remember(self, credential: CredentialObject) -> None:
        keep(self.copies, credential.ref, credential)

    def save(
        self, credential: CredentialObject, status: Status, *, expect_version: str | None = None
    ) -> None:
        """Write the status over the object as this engine last saw it (a claim: as read); keep
        the object the API server returns as this engine's copy."""
        if expect_version is None:
            credential = self.copies.get(credential.ref, credential)
        try:
            saved = self.credentials.save_status(credential, status, expect_version=expect_version)
        except BaseException:
            self.copies.pop(credential.ref, None)
            raise
        if saved is not None:
            self.remember(saved)
        else:
            self.copies.pop(credential.ref, None)

    def forget(self, ref: CredentialRef) -> None:
        """Drop the copies of ``ref``'s CR and Secret: its next sync reads both first."""
        copy = self.copies.pop(ref, None)
        if copy is not None:
            self.secret_copies.pop((ref.namespace, copy.spec.secret.name), None)
