"""The drift sweep (``engine/drift.py``) on in-memory ports: which credentials it queues, that
it reads Ceph through one listing per kind whatever their number, and its fallback when the
caps refuse a listing. ``tests/integration/test_drift_sweep.py`` runs it on real mons."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from vaultbridge.engine.drift import Observed, SecretSeen
from vaultbridge.engine.engine import Engine
from vaultbridge.engine.memory import MemoryRejected, MemoryWorld
from vaultbridge.model.errors import BackendError
from vaultbridge.model.sensitive import Sensitive, fingerprint
from vaultbridge.model.spec import CredentialRef


class MonsDown(BackendError):
    backend = "ceph"


def config_spec(n: int) -> dict[str, Any]:
    return {
        "source": {"mount": "secret", "path": f"p{n}"},
        "secret": {"name": f"cred-{n}"},
        "target": {"config": {"who": f"client.rgw.{n}", "option": "rgw_keystone_admin_password"}},
    }


def key_spec(n: int) -> dict[str, Any]:
    return {
        "source": {"mount": "secret", "path": f"k{n}"},
        "secret": {"name": f"key-{n}"},
        "target": {"configKey": {"key": f"mgr/app/{n}/password"}},
    }


def cephx_spec(n: int) -> dict[str, Any]:
    return {
        "source": {"mount": "secret", "path": f"x{n}"},
        "secret": {"name": f"x-{n}"},
        "generate": True,
        "target": {"cephx": {"entity": f"client.app{n}", "caps": {"mon": "allow r"}}},
    }


def observed(world: MemoryWorld, ref: CredentialRef) -> Observed:
    obj = world.crs.objects[ref]
    found = world.secrets.secrets.get((ref.namespace, obj.spec.secret.name))
    seen = None
    if found is not None:
        stored = found.stored
        digests = {k: fingerprint(v.reveal()) for k, v in stored.data.items()}
        seen = SecretSeen(dict(stored.annotations), digests)
    return Observed(ref, obj.generation, obj.spec, obj.status, obj.deleting, seen)


@pytest.fixture
def world() -> MemoryWorld:
    return MemoryWorld()


def engine(world: MemoryWorld) -> Engine:
    return Engine(**world.engine_ports(), holder="a", takeover_after=timedelta(seconds=30))


def rotated(world: MemoryWorld, vb: Engine, count: int = 3) -> list[CredentialRef]:
    refs = []
    for n in range(count):
        for make in (config_spec, key_spec, cephx_spec):
            ref = CredentialRef("ns", f"{make.__name__}-{n}")
            spec = make(n)
            if "generate" not in spec:
                world.vault.put("secret", spec["source"]["path"], {"value": f"v-{n}"})
            world.crs.create(ref, spec)
            outcome = vb.rotate(ref)
            assert outcome.result == "promoted", outcome.message
            refs.append(ref)
    return refs


def sweep(world: MemoryWorld, vb: Engine, refs: list[CredentialRef]) -> dict[CredentialRef, str]:
    return dict(vb.drift([observed(world, ref) for ref in refs]).due)


def test_in_step_credentials_cost_one_listing_per_kind_and_nothing_else(
    world: MemoryWorld,
) -> None:
    vb = engine(world)
    refs = rotated(world, vb, count=20)
    before = list(world.faults.calls)
    result = vb.drift([observed(world, ref) for ref in refs])
    made = world.faults.calls[len(before) :]
    assert result.due == [] and result.checked == 60
    assert sorted(made) == ["ceph.config_dump", "ceph.config_key_dump", "cephx.auth_ls"]
    assert result.listings == 3


def test_only_what_differs_is_queued_with_its_reason(world: MemoryWorld) -> None:
    vb = engine(world)
    refs = rotated(world, vb)
    config, key, cephx = refs[0], refs[1], refs[2]
    world.ceph.config[("client.rgw.0", "rgw_keystone_admin_password")] = Sensitive("edited")
    world.ceph.config_keys.pop("mgr/app/0/password")
    entity = world.cephx.entities["client.app0.1"]
    world.cephx.entities["client.app0.1"] = replace(entity, caps={"mon": "allow *"})
    assert sweep(world, vb, refs) == {
        config: "ceph-differs",
        key: "ceph-differs",
        cephx: "ceph-differs",
    }


def test_what_the_watches_hold_decides_before_ceph_is_read(world: MemoryWorld) -> None:
    vb = engine(world)
    refs = rotated(world, vb, count=1)
    config, key, cephx = refs
    items = [observed(world, ref) for ref in refs]
    secret = items[0].secret
    assert secret is not None
    items[0] = replace(items[0], secret=replace(secret, annotations={}))
    items[1] = replace(items[1], secret=None)
    items[2] = replace(items[2], generation=2)
    before = len(world.faults.calls)
    due = dict(vb.drift(items).due)
    assert due == {config: "secret-version", key: "secret-missing", cephx: "not-ready"}
    assert world.faults.calls[before:] == []  # nothing needed Ceph


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"deleting": True}, "deleting"),
        ({"generation": 7}, "not-ready"),
    ],
)
def test_the_cr_alone_can_ask_for_a_reconcile(
    world: MemoryWorld, change: dict[str, Any], reason: str
) -> None:
    vb = engine(world)
    refs = rotated(world, vb, count=1)
    item = replace(observed(world, refs[0]), **change)
    assert dict(vb.drift([item]).due) == {refs[0]: reason}


def test_a_journaled_a_never_promoted_and_a_retiring_credential_are_queued(
    world: MemoryWorld,
) -> None:
    vb = engine(world)
    refs = rotated(world, vb, count=1)
    item = observed(world, refs[0])
    fresh = CredentialRef("ns", "fresh")
    world.crs.create(fresh, config_spec(9))
    assert dict(vb.drift([observed(world, fresh)]).due) == {fresh: "not-ready"}
    outcome = vb.rotate(refs[2])  # a second cephx generation: the first one retires
    assert outcome.result == "promoted"
    due = dict(vb.drift([item, observed(world, refs[2])]).due)
    assert due == {refs[2]: "retiring"}


def test_suspended_and_invalid_credentials_are_left_alone(world: MemoryWorld) -> None:
    vb = engine(world)
    refs = rotated(world, vb, count=1)
    world.ceph.config.clear()
    item = observed(world, refs[0])
    suspended = replace(item, spec=replace(item.spec, suspend=True)) if item.spec else item
    assert vb.drift([suspended, replace(item, spec=None)]).due == []


def test_a_listing_the_caps_refuse_falls_back_to_reads_of_that_kind_only(
    world: MemoryWorld,
) -> None:
    vb = engine(world)
    refs = rotated(world, vb, count=5)
    refused = MemoryRejected("config-key dump: access denied", "CephPermissionDenied")
    world.faults.fail("ceph.config_key_dump", refused)
    world.ceph.config_keys.pop("mgr/app/3/password")
    before = len(world.faults.calls)
    result = vb.drift([observed(world, ref) for ref in refs])
    made = world.faults.calls[before:]
    assert dict(result.due) == {refs[3 * 3 + 1]: "ceph-differs"}
    assert result.refused == ("config-key dump",)
    assert made.count("ceph.config_key_get") == 5 and made.count("ceph.config_dump") == 1


def test_mons_that_cannot_be_listed_abandon_the_sweep(world: MemoryWorld) -> None:
    vb = engine(world)
    refs = rotated(world, vb, count=1)
    world.faults.fail("ceph.config_dump", MonsDown("no quorum"))
    with pytest.raises(MonsDown):
        vb.drift([observed(world, ref) for ref in refs])


def test_the_view_refuses_every_write(world: MemoryWorld) -> None:
    from vaultbridge.engine.ceph_view import CephView
    from vaultbridge.model.errors import PreconditionError

    view = CephView(world.ceph, world.cephx, world.listing)
    with pytest.raises(PreconditionError, match="never writes"):
        view.config_key_set("k", Sensitive("v"))
    with pytest.raises(PreconditionError, match="never writes"):
        view.remove_entity("client.x")
