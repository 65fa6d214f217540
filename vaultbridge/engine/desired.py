"""The desired state of a credential: which version to rotate to, its data (from Vault or
from the Secret that is the source), and whether Ceph and the Secret already hold it."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from vaultbridge.engine.access import Access
from vaultbridge.engine.job import Job
from vaultbridge.engine.lifecycle import Kinds
from vaultbridge.engine.ports import CredentialObject, VaultStore
from vaultbridge.engine.report import Reporter
from vaultbridge.engine.targets import TargetDriver, holds
from vaultbridge.model.errors import BackendError, PreconditionError
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import source_fields


class Desired:
    def __init__(
        self,
        access: Access,
        vault: Callable[[], VaultStore],
        kinds: Kinds,
        reporter: Reporter,
    ) -> None:
        self.access = access
        self.vault = vault  # raises VaultNotConfigured without a Vault connection
        self.kinds = kinds
        self.reporter = reporter

    def target_version(
        self, credential: CredentialObject, *, generate: bool, to_version: int | None
    ) -> int:
        spec = credential.spec
        if spec.source is None:
            current = credential.status.current_version or 0
            return current if self.secret_matches_ceph(credential) else current + 1
        vault = self.vault()
        if to_version is not None:
            return to_version
        if generate:
            return self.generate(credential)
        # one request for the number and the data; the job reads the data from the cache
        key = (spec.source.mount, spec.source.path)
        reads = self.access.reads()
        if reads is not None and key in reads.failed:
            raise reads.failed.pop(key)
        latest = reads.latest.pop(key, None) if reads else None
        try:
            version, data = latest if latest is not None else vault.read_latest(*key)
        except BackendError as exc:
            if reads is not None and exc.transient:
                reads.failed[key] = exc
            raise
        if reads is not None:
            reads.vault[(*key, version)] = data
        return version

    def reuse_latest(self, credential: CredentialObject, version: int) -> None:
        """Let the fresh read that follows use the latest Vault version just read."""
        source, reads = credential.spec.source, self.access.reads()
        if source is not None and reads is not None:
            data = reads.vault.get((source.mount, source.path, version))
            if data is not None:
                reads.latest[(source.mount, source.path)] = (version, data)

    def generate(self, credential: CredentialObject) -> int:
        spec = credential.spec
        assert spec.source is not None
        vault = self.vault()
        try:
            current = vault.current_version(spec.source.mount, spec.source.path)
            existing = dict(vault.read(spec.source.mount, spec.source.path, current))
        except BackendError as exc:
            if exc.reason != "VaultNotFound":
                raise
            current, existing = 0, {}
        data = self.kinds.of(spec).generate(spec, existing, vault)
        version = vault.write(spec.source.mount, spec.source.path, data, cas=current)
        self.reporter.observe(credential.ref, "generated", f"new Vault version {version}")
        return version

    def job(self, credential: CredentialObject, version: int, *, entity: str | None = None) -> Job:
        """The rotation of ``credential`` to ``version``, its data read and checked."""
        spec = credential.spec
        driver = self.kinds.of(spec).driver(spec, credential.status, version, entity=entity)
        if spec.source is None:
            secret = self.access.secret(credential.ref.namespace, spec.secret.name)
            where = f"Secret {credential.ref.namespace}/{spec.secret.name}"
            if secret is None:
                raise PreconditionError(
                    "SecretMissing", f"{where} does not exist (it is the source of this credential)"
                )
            data = pick(secret.data, driver, where)
            driver.check_secret_data(data, where)
            return Job(credential, spec, driver, version, data)
        reads = self.access.reads()
        source = reads.vault.get((spec.source.mount, spec.source.path, version)) if reads else None
        if source is None:
            source = self.vault().read(spec.source.mount, spec.source.path, version)
        where = f"Vault {spec.source.mount}/{spec.source.path} version {version}"
        missing = [name for name in source_fields(spec) if name not in source]
        if missing:
            raise PreconditionError(
                "VaultFieldMissing",
                f"{where}: field {', '.join(map(repr, missing))} "
                f"missing (fields present: {', '.join(sorted(source)) or 'none'})",
            )
        return Job(credential, spec, driver, version, driver.data_from_source(source))

    def secret_matches_ceph(self, credential: CredentialObject) -> bool:
        job = self.job(credential, credential.status.current_version or 0)
        return holds(job.driver.read(), job.driver.slots(), job.data)

    def in_sync(self, job: Job) -> bool:
        """Ceph and the Secret hold the job's version already (nothing to rotate)."""
        status = job.credential.status
        if status.current_version != job.version:
            return False
        if not job.driver.holds_version(job.data):
            return False
        if job.spec.source is None:
            return True
        secret = self.access.secret(job.credential.ref.namespace, job.spec.secret.name)
        return secret is not None and all(secret.data.get(k) == v for k, v in job.data.items())

    def check_secret_ownership(self, credential: CredentialObject) -> None:
        spec = credential.spec
        secret = self.access.secret(credential.ref.namespace, spec.secret.name)
        if secret is None or spec.secret.adopt or secret.controller_uid == credential.uid:
            return
        owner = secret.controller_uid or "no controller"
        raise PreconditionError(
            "SecretNotOwned",
            f"Secret {credential.ref.namespace}/{spec.secret.name} exists and is not owned by "
            f"this CredentialRotation (controller: {owner}); set spec.secret.adopt: true to "
            "take it over",
            transient=False,
        )


def pick(data: Mapping[str, Sensitive], driver: TargetDriver, where: str) -> dict[str, Sensitive]:
    """The data keys the driver needs from the Secret's data (all of them, or an error)."""
    keys = driver.data_keys()
    missing = [key for key in keys if key not in data]
    if missing:
        raise PreconditionError(
            "SecretKeyMissing",
            f"{where}: data key {', '.join(map(repr, missing))} missing "
            f"(keys present: {', '.join(sorted(data)) or 'none'})",
        )
    return {key: data[key] for key in keys}
