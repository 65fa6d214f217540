"""What the mons run decides the in-place protocol and the key type (``model.ceph_release``,
``engine.cephx_key_types``); a refusal comes before anything is generated or written."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from vaultbridge.engine.cephx import make_driver
from vaultbridge.engine.cephx_key_types import check_key_type, key_type_for
from vaultbridge.engine.engine import Engine
from vaultbridge.engine.memory import MemoryWorld
from vaultbridge.model.ceph_release import MonRelease
from vaultbridge.model.errors import PreconditionError
from vaultbridge.model.spec import CephxTarget, CredentialRef, SpecError, parse_spec

PACIFIC, QUINCY_EARLY, QUINCY, REEF, TENTACLE = (
    (16, 2, 15),
    (17, 2, 5),
    (17, 2, 6),
    (18, 2, 7),
    (20, 2, 4),
)
REF = CredentialRef("ns", "cred")


@pytest.mark.parametrize(
    ("versions", "floor", "pending"),
    [
        ((PACIFIC,), 16, False),
        ((QUINCY_EARLY,), 17, False),
        ((QUINCY,), 17, True),
        ((REEF,), 18, True),
        ((TENTACLE,), 20, True),
        ((REEF,), None, True),  # a monmap that does not say: the versions decide
        ((PACIFIC, REEF), 16, False),  # being upgraded
        ((REEF,), 16, False),  # every running mon upgraded, one of the monmap still down
        ((REEF, TENTACLE), 18, True),  # both have pending keys
    ],
)
def test_pending_keys_need_every_mon_and_the_monmap(
    versions: tuple[tuple[int, int, int], ...], floor: int | None, pending: bool
) -> None:
    release = MonRelease(versions, floor)
    assert release.pending_keys() is pending
    if not pending:
        assert release.describe() in release.lacks_pending_keys()


def test_describe_names_the_release_or_the_mixed_versions() -> None:
    assert MonRelease((REEF,), 18).describe() == "Ceph 18.2.7 (reef)"
    mixed = MonRelease((REEF, PACIFIC), 16).describe()
    assert mixed == "mons of mixed versions (16.2.15, 18.2.7; min_mon_release pacific)"
    assert "16.2.15" in MonRelease((PACIFIC, REEF), 16).lacks_pending_keys()
    assert "min_mon_release is still pacific" in MonRelease((REEF,), 16).lacks_pending_keys()


def cephx(**extra: Any) -> dict[str, Any]:
    return {
        "source": {"mount": "secret", "path": "k", "field": "key"},
        "secret": {"name": "cred"},
        "generate": True,
        "target": {"cephx": {"entity": "client.app", "caps": {"mon": "allow r"}, **extra}},
    }


def target_of(spec: dict[str, Any]) -> CephxTarget:
    target = parse_spec(spec).target
    assert isinstance(target, CephxTarget)
    return target


def test_key_type_is_the_spec_s_or_the_cluster_s_preferred() -> None:
    new_tentacle = MonRelease((TENTACLE,), 20, "aes256k", ("aes256k",))
    upgraded = MonRelease((TENTACLE,), 20, "aes256k", ("aes", "aes256k"))
    assert key_type_for(target_of(cephx()), new_tentacle) == "aes256k"
    assert key_type_for(target_of(cephx(keyType="aes")), upgraded) == "aes"
    assert key_type_for(target_of(cephx()), MonRelease((REEF,), 18)) == "aes"
    with pytest.raises(PreconditionError) as refused:
        key_type_for(target_of(cephx(keyType="aes256k")), MonRelease((REEF,), 18))
    assert refused.value.reason == "KeyTypeNotAllowed" and not refused.value.transient
    assert str(refused.value) == (
        "client.app: keyType aes256k: Ceph 18.2.7 (reef) allows only aes keys "
        "(auth_allowed_ciphers in its monmap); aes256k keys need Tentacle 20.2.4 or later"
    )
    with pytest.raises(PreconditionError, match=r"Ceph 20\.2\.4 \(tentacle\) allows only aes256k"):
        key_type_for(target_of(cephx(keyType="aes")), new_tentacle)


def test_a_key_from_vault_of_another_type_is_refused() -> None:
    upgraded = MonRelease((TENTACLE,), 20, "aes256k", ("aes", "aes256k"))
    wants_aes256k = target_of(cephx(keyType="aes256k"))
    with pytest.raises(PreconditionError) as refused:
        check_key_type(wants_aes256k, "client.app", "aes", upgraded)
    assert refused.value.reason == "KeyTypeMismatch"
    check_key_type(wants_aes256k, "client.app", "aes256k", upgraded)
    with pytest.raises(PreconditionError, match=r"Ceph 20\.2\.4 \(tentacle\) allows only aes256k"):
        check_key_type(
            target_of(cephx()),
            "client.app",
            "aes",
            MonRelease((TENTACLE,), 20, "aes256k", ("aes256k",)),
        )


def test_spec_key_type_is_checked() -> None:
    with pytest.raises(SpecError, match=r"spec.target.cephx.keyType: must be aes or aes256k"):
        parse_spec(cephx(keyType="des"))
    assert target_of(cephx(keyType="aes256k")).key_type == "aes256k"
    assert target_of(cephx()).key_type is None


class Store:
    def __init__(self, release: MonRelease) -> None:
        self.release = release

    def mon_release(self) -> MonRelease:
        return self.release


@pytest.mark.parametrize(
    ("release", "extra", "mode"),
    [
        (MonRelease((REEF,), 18), {}, "pending"),
        (MonRelease((PACIFIC, REEF), 16), {}, "in-place"),  # an upgrade under way: import
        (MonRelease((REEF,), 16), {}, "in-place"),
        (
            MonRelease((TENTACLE,), 20, "aes256k", ("aes", "aes256k")),
            {"keyType": "aes"},
            "in-place",
        ),
        (MonRelease((TENTACLE,), 20, "aes256k", ("aes", "aes256k")), {}, "pending"),
    ],
)
def test_in_place_takes_pending_keys_only_when_every_mon_can(
    release: MonRelease, extra: dict[str, Any], mode: str
) -> None:
    spec = parse_spec(cephx(strategy="in-place", **extra))
    driver = make_driver(
        spec, target_of(cephx(strategy="in-place", **extra)), Store(release), None, 2
    )  # type: ignore[arg-type]
    assert driver.mode == mode


def test_a_refused_key_type_changes_nothing() -> None:
    """keyType aes256k on Reef: refused before Vault's RNG, Vault, Ceph or the Secret."""
    world = MemoryWorld()
    world.cephx.version = REEF
    world.crs.create(REF, cephx(keyType="aes256k"))
    vb = Engine(**world.engine_ports(), holder="a", takeover_after=timedelta(seconds=30))
    outcome = vb.rotate(REF)
    assert outcome.result != "promoted"
    assert "KeyTypeNotAllowed" in (outcome.reason or "")
    assert "Ceph 18.2.7 (reef)" in (outcome.message or "")
    assert not world.vault.versions and not world.cephx.entities
    assert world.secrets.read("ns", "cred") is None
