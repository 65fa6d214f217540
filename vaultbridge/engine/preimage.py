"""The pre-image store: what Ceph held before a rotation touched it, for the rollback.

In the normal case Ceph already holds what the Secret holds, so the Secret itself is the
pre-image and nothing is written; so too when there is no Secret yet and Ceph holds none of the
values (a first sync): the rollback then removes what the rotation set. Otherwise (first
adoption, drift, the Secret-as-source mode, a driver that always needs one) Ceph's values go
into an owned ``<secret>-vaultbridge-preimage`` Secret before anything touches Ceph, tagged with
the rotation's id; keys Ceph did not have are listed in an annotation so that a rollback
removes them again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from vaultbridge.engine.annotations import ABSENT_ANNOTATION, ROTATION_ANNOTATION
from vaultbridge.engine.job import Job
from vaultbridge.engine.ports import SecretStore, StoredSecret
from vaultbridge.engine.targets import holds
from vaultbridge.model.sensitive import Sensitive

PREIMAGE_SUFFIX = "-vaultbridge-preimage"


class PreimageStore:
    """Captures, reads back and drops one rotation's pre-image."""

    def __init__(
        self,
        secrets: SecretStore,
        read_secret: Callable[[str, str], StoredSecret | None],
        wrote_secret: Callable[[str, str], None],
    ) -> None:
        self.secrets = secrets
        self.read_secret = read_secret  # through the rotation's read cache
        self.wrote_secret = wrote_secret

    def capture(self, job: Job) -> None:
        """Keep Ceph's current values unless the Secret already holds them (or one is kept)."""
        spec = job.spec
        namespace = job.credential.ref.namespace
        stash_name = spec.secret.name + PREIMAGE_SUFFIX
        policy = job.driver.stash_policy
        if policy == "never":
            return
        stash = None if job.stash == "absent" else self.read_secret(namespace, stash_name)
        if stash is not None and stash.annotations.get(ROTATION_ANNOTATION) == job.rotation_id:
            return  # kept already (a resumed rotation)
        current = job.driver.read()
        secret = self.read_secret(namespace, spec.secret.name)
        slots = job.driver.slots()
        secret_holds_preimage = (
            policy == "auto"
            and spec.source is not None
            and (
                # no Secret and nothing in Ceph (a first sync): the rollback restores absence
                holds(current, slots, secret.data if secret is not None else {})
                # resumed after Apply: Ceph has the new version, the Secret (changed only at
                # promotion) still holds what Ceph had before (no Secret: Ceph had nothing)
                or (job.stash == "unknown" and holds(current, slots, job.data))
            )
        )
        if not secret_holds_preimage:
            if job.journal is not None:
                job.journal.barrier()  # our claim stands before we write a pre-image
            self._write(job, stash_name, current)

    def read(self, job: Job) -> dict[str, Sensitive | None]:
        """What to restore: the kept pre-image of this rotation, else the Secret's data."""
        spec = job.spec
        namespace = job.credential.ref.namespace
        stash = (
            None
            if job.stash == "absent"
            else self.read_secret(namespace, spec.secret.name + PREIMAGE_SUFFIX)
        )
        if stash is not None and stash.annotations.get(ROTATION_ANNOTATION) == job.rotation_id:
            absent = [k for k in stash.annotations.get(ABSENT_ANNOTATION, "").split(",") if k]
            return {**dict(stash.data), **dict.fromkeys(absent)}
        secret = self.read_secret(namespace, spec.secret.name)
        return {
            slot: (secret.data.get(key) if secret else None)
            for slot, key in job.driver.slots().items()
        }

    def drop(self, job: Job) -> None:
        """Delete the kept pre-image (after promotion, or once restored)."""
        namespace = job.credential.ref.namespace
        name = job.spec.secret.name + PREIMAGE_SUFFIX
        if job.stash == "absent":
            return
        if job.stash == "written" or self.read_secret(namespace, name) is not None:
            self.secrets.delete(namespace, name)
            self.wrote_secret(namespace, name)
        job.stash = "absent"

    def _write(self, job: Job, name: str, current: Mapping[str, Sensitive | None]) -> None:
        present = {key: value for key, value in current.items() if value is not None}
        absent = sorted(key for key, value in current.items() if value is None)
        self.secrets.write(
            job.credential,
            name,
            present,
            annotations={ROTATION_ANNOTATION: job.rotation_id, ABSENT_ANNOTATION: ",".join(absent)},
            adopt=False,
            policy="Delete",  # vaultbridge's own rollback data: it goes with the CR
        )
        self.wrote_secret(job.credential.ref.namespace, name)
        job.stash = "written"
