"""Planning: what ``vaultbridge sync --dry-run`` prints, from the same reads and checks a
rotation makes, without changing anything."""

from __future__ import annotations

from vaultbridge.engine.annotations import VERSION_ANNOTATION
from vaultbridge.engine.desired import Desired
from vaultbridge.engine.outcome import Outcome
from vaultbridge.engine.ports import CredentialObject
from vaultbridge.model.spec import source_fields


def plan(
    desired: Desired, credential: CredentialObject, *, generate: bool, to_version: int | None
) -> Outcome:
    """The dry run (`--dry-run`): read and validate everything a rotation needs, check the
    permissions a precheck can, and list the steps; change nothing."""
    spec = credential.spec
    ref = credential.ref
    driver = desired.kinds.of(spec).driver(spec)
    steps: list[str] = []
    driver.precheck()
    desired.check_secret_ownership(credential)
    if spec.source is not None:
        where = f"{spec.source.mount}/{spec.source.path}"
        if generate:
            current = desired.vault().current_version(spec.source.mount, spec.source.path)
            steps.append(
                f"generate new values for {', '.join(source_fields(spec))} and write "
                f"them to Vault {where} as version {current + 1} (cas={current})"
            )
            version = current + 1
        else:
            version = desired.target_version(credential, generate=False, to_version=to_version)
            desired.job(credential, version)  # reads and validates the fields
            steps.append(
                f"read Vault {where} version {version} "
                f"(fields {', '.join(source_fields(spec))}: present)"
            )
    else:
        version = desired.target_version(credential, generate=False, to_version=None)
        desired.job(credential, version)
        steps.append(f"read Secret {ref.namespace}/{spec.secret.name} (the source)")
    if version == credential.status.current_version and not generate:
        steps.append(f"version {version} is already current: verify it, repair drift if any")
    steps += [
        f"journal rotation to version {version} in {ref} status (phase Pending)",
        f"snapshot {driver.describe()} for rollback",
        f"apply version {version} to {driver.describe()}",
        "verify by exact read-back (config dump / config-key get)",
        f"promote: write Secret {ref.namespace}/{spec.secret.name} "
        f"({VERSION_ANNOTATION}={version})"
        + (", move Vault labels vaultbridge-current/-previous" if spec.source else ""),
        "on any failure before promotion: restore the snapshot, leave the Secret as it is",
    ]
    return Outcome(ref, "planned", version, f"{ref}: plan is valid", plan=steps)
