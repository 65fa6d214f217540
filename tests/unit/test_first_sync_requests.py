"""What a first sync, and a sync claimed from the controller's watch, ask of the API server:
no pre-image Secret when there is nothing to keep, no read of the CR when a copy is at hand,
and the bounded copies. On the in-memory ports; the integration tests count the real ones."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from vaultbridge.engine.engine import Engine
from vaultbridge.engine.memory import MemoryNotFound, MemoryWorld
from vaultbridge.engine.ports import CredentialObject
from vaultbridge.engine.preimage import PREIMAGE_SUFFIX
from vaultbridge.engine.reads import keep
from vaultbridge.model.errors import BackendError
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import CredentialRef

REF = CredentialRef("ns", "cred")
WHO, OPTION = "client.rgw.x", "rgw_keystone_admin_password"


class Crash(BaseException):
    """The process dies here."""


class ApiDown(BackendError):
    backend = "kubernetes"


def spec(**extra: Any) -> dict[str, Any]:
    return {
        "source": {"mount": "secret", "path": "p"},
        "secret": {"name": "cred"},
        "target": {"config": {"who": WHO, "option": OPTION}},
        **extra,
    }


def engine(world: MemoryWorld, holder: str = "engine-a") -> Engine:
    return Engine(**world.engine_ports(), holder=holder, takeover_after=timedelta(seconds=30))


def written_names(world: MemoryWorld) -> list[str]:
    names: list[str] = []
    original = world.secrets.write

    def write(credential: CredentialObject, name: str, *args: Any, **kwargs: Any) -> Any:
        names.append(name)
        return original(credential, name, *args, **kwargs)

    world.secrets.write = write  # type: ignore[method-assign]
    return names


def ceph_value(world: MemoryWorld) -> str | None:
    value = world.ceph.config.get((WHO, OPTION))
    return None if value is None else value.reveal()


@pytest.fixture
def world() -> MemoryWorld:
    world = MemoryWorld()
    world.crs.create(REF, spec())
    world.vault.put("secret", "p", {"value": "v1"})
    return world


def test_a_first_sync_over_nothing_writes_no_preimage(world: MemoryWorld) -> None:
    names = written_names(world)
    assert engine(world).sync(REF).result == "promoted"
    assert names == ["cred"]  # the Secret, and no "-vaultbridge-preimage" before it
    assert ceph_value(world) == "v1"


def test_a_first_sync_over_a_value_ceph_has_keeps_it_first(world: MemoryWorld) -> None:
    world.ceph.config[(WHO, OPTION)] = Sensitive("set-by-hand")
    names = written_names(world)
    assert engine(world).sync(REF).result == "promoted"
    assert names[0] == "cred" + PREIMAGE_SUFFIX  # Ceph held something the Secret does not


def test_a_failed_first_promotion_rolls_back_to_nothing(world: MemoryWorld) -> None:
    world.faults.fail("secrets.write", ApiDown("apiserver went away"), times=9)
    outcome = engine(world).sync(REF)
    assert outcome.result in ("rolled-back", "failed"), outcome
    assert ceph_value(world) is None  # removed again: Ceph had nothing
    assert world.secrets.read("ns", "cred") is None
    assert world.crs.objects[REF].status.rotation is None


def test_a_first_sync_crashed_after_apply_resumes_to_nothing_without_its_data(
    world: MemoryWorld,
) -> None:
    world.faults.fail("secrets.write", Crash(), times=1)
    with pytest.raises(Crash):
        engine(world).sync(REF)
    assert ceph_value(world) == "v1" and world.secrets.read("ns", "cred") is None
    gone = MemoryNotFound("version 1 destroyed", "VaultNotFound")
    world.faults.fail("vault.read", gone, times=9)
    world.faults.fail("vault.read_latest", gone, times=9)
    world.clock.advance(31)
    outcome = engine(world, holder="engine-b").reconcile(REF)
    assert outcome.result in ("rolled-back", "failed"), outcome
    assert ceph_value(world) is None and world.secrets.read("ns", "cred") is None


def test_a_first_sync_crashed_after_apply_resumes_and_promotes(world: MemoryWorld) -> None:
    world.faults.fail("secrets.write", Crash(), times=1)
    with pytest.raises(Crash):
        engine(world).sync(REF)
    world.clock.advance(31)
    assert engine(world, holder="engine-b").reconcile(REF).result == "promoted"
    secret = world.secrets.read("ns", "cred")
    assert secret is not None and secret.data["value"].reveal() == ceph_value(world) == "v1"


def test_a_sync_claims_from_the_watch_without_reading_the_cr(world: MemoryWorld) -> None:
    vb = engine(world)
    vb.claim_from(lambda ref: world.crs.objects.get(ref))
    world.faults.fail("crs.load", Crash(), times=9)  # any read of the CR would end the test
    assert vb.reconcile(REF).result == "promoted"
    assert ceph_value(world) == "v1"


def test_a_stale_watched_copy_is_refused_at_its_claim_and_the_fresh_read_rotates(
    world: MemoryWorld,
) -> None:
    stale = world.crs.objects[REF]
    world.crs.edit_spec(REF, spec(maxAge="720h"))
    vb = engine(world)
    vb.claim_from(lambda _ref: stale)
    outcome = vb.reconcile(REF)
    assert outcome.result == "promoted", outcome.message
    assert world.crs.objects[REF].status.current_version == 1


def test_a_watched_copy_of_a_deleted_cr_is_never_claimed_from(world: MemoryWorld) -> None:
    vb = engine(world)
    vb.claim_from(lambda _ref: None)  # the watch dropped it
    assert vb.reconcile(REF).result == "promoted"  # read afresh


def test_the_copies_keep_the_latest_few() -> None:
    cache: dict[str, int] = {}
    for i in range(5):
        keep(cache, f"k{i}", i, limit=3)
    assert list(cache) == ["k2", "k3", "k4"]
    keep(cache, "k2", 22, limit=3)  # kept again: the most recent now
    keep(cache, "k5", 5, limit=3)
    assert cache == {"k4": 4, "k2": 22, "k5": 5}
