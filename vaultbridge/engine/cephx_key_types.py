"""Which cephx key type a rotation uses, and the refusals when the cluster cannot take it.

The type is ``spec.target.cephx.keyType`` when set, else the cluster's preferred type (its
monmap's ``auth_preferred_cipher``). A type the cluster does not allow is refused before
anything is generated or written, naming the release and what it lacks."""

from __future__ import annotations

from vaultbridge.model.ceph_release import MonRelease
from vaultbridge.model.errors import PreconditionError
from vaultbridge.model.spec import CephxTarget

AES256K_SINCE = "Tentacle 20.2.4"


def _not_allowed(entity: str, key_type: str, release: MonRelease, why: str) -> PreconditionError:
    allowed = ", ".join(release.allowed_key_types)
    lacks = f"; {key_type} keys need {AES256K_SINCE} or later" if key_type == "aes256k" else ""
    return PreconditionError(
        "KeyTypeNotAllowed",
        f"{entity}: {why}: {release.describe()} allows only {allowed} keys "
        f"(auth_allowed_ciphers in its monmap){lacks}",
        transient=False,
    )


def key_type_for(target: CephxTarget, release: MonRelease) -> str:
    """The type of the key to generate for ``target`` on this cluster, or a refusal."""
    chosen = target.key_type or release.preferred_key_type
    if chosen not in release.allowed_key_types:
        raise _not_allowed(target.entity, chosen, release, f"keyType {chosen}")
    return chosen


def check_key_type(
    target: CephxTarget, entity: str, found: str | None, release: MonRelease
) -> None:
    """A key about to be applied: of the type the spec asks for, and allowed by the cluster."""
    if found is None:
        return  # not a cephx key at all: the key validation says so
    if target.key_type is not None and found != target.key_type:
        raise PreconditionError(
            "KeyTypeMismatch",
            f"{entity}: the new key is of type {found}, but spec.target.cephx.keyType is "
            f"{target.key_type}; write a {target.key_type} key to Vault, or let vaultbridge "
            "generate it (spec.generate: true)",
            transient=False,
        )
    if found not in release.allowed_key_types:
        raise _not_allowed(
            entity,
            found,
            release,
            f"the new key is of type {found}; write a {release.preferred_key_type} key to "
            "Vault or let vaultbridge generate it (spec.generate: true), and",
        )
