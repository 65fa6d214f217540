"""The engine on in-memory ports (``vaultbridge.engine.memory``): what the real servers cannot
easily provoke, in seconds. The integration tests run the same engine against the real ones."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from vaultbridge.engine.deletion import CEPHX_FINALIZER
from vaultbridge.engine.engine import Engine
from vaultbridge.engine.memory import MemoryNotFound, MemoryRejected, MemoryWorld
from vaultbridge.model.errors import BackendError
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import CredentialRef

REF = CredentialRef("ns", "cred")
WHO, OPTION = "client.rgw.x", "rgw_keystone_admin_password"


class Crash(BaseException):
    """The process dies here."""


class VaultDown(BackendError):
    backend = "vault"


def config_spec(**extra: Any) -> dict[str, Any]:
    return {
        "source": {"mount": "secret", "path": "p"},
        "secret": {"name": "cred"},
        "target": {"config": {"who": WHO, "option": OPTION}},
        **extra,
    }


def cephx_spec(**cephx: Any) -> dict[str, Any]:
    return {
        "source": {"mount": "secret", "path": "k", "field": "key"},
        "secret": {"name": "cred"},
        "target": {"cephx": {"entity": "client.app", "caps": {"mon": "allow r"}, **cephx}},
    }


def engine(world: MemoryWorld, holder: str = "engine-a", **kwargs: Any) -> Engine:
    return Engine(
        **world.engine_ports(), holder=holder, takeover_after=timedelta(seconds=30), **kwargs
    )


def ceph_value(world: MemoryWorld) -> str | None:
    value = world.ceph.config.get((WHO, OPTION))
    return None if value is None else value.reveal()


def secret_value(world: MemoryWorld) -> str | None:
    secret = world.secrets.read("ns", "cred")
    return None if secret is None else secret.data["value"].reveal()


@pytest.fixture
def world() -> MemoryWorld:
    return MemoryWorld()


def synced(world: MemoryWorld, vb: Engine, value: str = "v1") -> None:
    world.vault.put("secret", "p", {"value": value})
    outcome = vb.sync(REF)
    assert outcome.result == "promoted", outcome.message


def at_v1(world: MemoryWorld, **engine_args: Any) -> Engine:
    """A config credential promoted at v1 by a new engine (returned)."""
    world.crs.create(REF, config_spec())
    vb = engine(world, **engine_args)
    synced(world, vb)
    return vb


def v2_waiting(world: MemoryWorld) -> Engine:
    """At v1, with v2 written to Vault and not yet synced."""
    vb = at_v1(world)
    world.vault.put("secret", "p", {"value": "v2"})
    return vb


def test_a_sync_applies_verifies_and_promotes(world: MemoryWorld) -> None:
    vb = at_v1(world)
    assert ceph_value(world) == secret_value(world) == "v1"
    assert world.vault.labels_of[("secret", "p")] == {
        "current": 1,
        "previous": None,
        "pending": None,
    }
    assert world.secrets.policy("ns", "cred") == "Delete"  # created by vaultbridge: owned
    assert world.crs.objects[REF].status.current_version == 1
    assert vb.sync(REF).result == "unchanged"


def test_a_stale_copy_is_refused_at_its_claim_and_the_fresh_read_rotates(
    world: MemoryWorld,
) -> None:
    observed: list[str] = []
    vb = at_v1(world, observer=lambda _ref, what, _detail: observed.append(what))
    observed.clear()
    world.crs.edit_spec(REF, config_spec(maxAge="720h"))  # the engine's copy is stale now
    world.vault.put("secret", "p", {"value": "v2"})
    outcome = vb.sync(REF)
    assert outcome.result == "promoted" and outcome.version == 2
    assert ceph_value(world) == secret_value(world) == "v2"
    history = world.crs.objects[REF].status.history
    assert [(h.version, h.result) for h in history[:1]] == [(2, "Promoted")]
    assert observed.count("RotationStarted") == 1  # the try refused at its claim never started


def test_a_stale_read_before_the_claim_changes_nothing(world: MemoryWorld) -> None:
    vb = at_v1(world)
    world.crs.edit_spec(REF, config_spec(maxAge="720h"))
    world.vault.put("secret", "p", {"value": "v2"})
    vb.forget(REF)  # no copy: the engine reads, and the read is stale
    world.faults.stale("crs.load")
    outcome = vb.sync(REF)
    assert outcome.result == "in-flight", outcome
    assert ceph_value(world) == secret_value(world) == "v1"  # the claim failed first
    assert vb.sync(REF).result == "promoted"  # the next try reads the CR as it is


def test_a_lost_journal_write_stops_the_rotation_and_the_next_run_finishes_it(
    world: MemoryWorld,
) -> None:
    vb = v2_waiting(world)
    # the claim lands, the final status write does not: the API server went away
    world.faults.fail("crs.save_status", VaultDown("apiserver went away"), after=1)
    with pytest.raises(VaultDown):  # the controller retries it with backoff
        vb.sync(REF)
    journal = world.crs.objects[REF].status.rotation
    assert journal is not None and journal.version == 2  # the claim names the rotation
    vb.forget(REF)
    world.clock.advance(31)
    outcome = engine(world, holder="engine-b").reconcile(REF)
    assert outcome.result == "promoted", outcome.message
    assert ceph_value(world) == secret_value(world) == "v2"
    status = world.crs.objects[REF].status
    assert status.rotation is None and status.current_version == 2
    assert [h.version for h in status.history if h.result == "Promoted"] == [2, 1]


def test_a_failed_label_move_is_reported_and_the_rotation_still_promotes(
    world: MemoryWorld,
) -> None:
    vb = v2_waiting(world)
    world.faults.fail("vault.set_labels", VaultDown("sealed"), times=3)
    outcome = vb.sync(REF)
    assert outcome.result == "promoted"
    assert ceph_value(world) == secret_value(world) == "v2"
    assert "VaultLabelsStale" in world.events.reasons()


def crash_at_promotion(world: MemoryWorld, vb: Engine) -> None:
    world.faults.fail("secrets.write", Crash(), times=1)
    with pytest.raises(Crash):
        vb.sync(REF)
    assert world.crs.objects[REF].status.rotation is not None  # journaled, in flight


def test_resume_without_its_data_rolls_back_to_the_preimage(world: MemoryWorld) -> None:
    vb = v2_waiting(world)
    crash_at_promotion(world, vb)
    assert ceph_value(world) == "v2" and secret_value(world) == "v1"
    gone = MemoryNotFound("version 2 destroyed", "VaultNotFound")
    world.faults.fail("vault.read", gone, times=9)
    world.faults.fail("vault.read_latest", gone, times=9)
    world.clock.advance(31)  # the crashed engine's journal may be taken over
    outcome = engine(world, holder="engine-b").reconcile(REF)
    assert outcome.result in ("rolled-back", "failed"), outcome
    assert ceph_value(world) == secret_value(world) == "v1"  # back to what the Secret holds


def test_a_journal_held_by_a_live_engine_is_waited_for_then_taken_over(
    world: MemoryWorld,
) -> None:
    vb = v2_waiting(world)
    crash_at_promotion(world, vb)
    other = engine(world, holder="engine-b")
    held = other.reconcile(REF)
    assert held.result == "in-flight" and held.retry_after is not None
    assert held.retry_after <= timedelta(seconds=30)
    assert secret_value(world) == "v1"  # nothing done while another engine may be at it
    world.clock.advance(31)
    done = other.reconcile(REF)
    assert done.result == "promoted", done.message
    assert ceph_value(world) == secret_value(world) == "v2"
    promoted = [h for h in world.crs.objects[REF].status.history if h.result == "Promoted"]
    assert [h.version for h in promoted] == [2, 1]


def rotated_cephx(world: MemoryWorld, vb: Engine, times: int) -> None:
    for _ in range(times):
        outcome = vb.rotate(REF)
        assert outcome.result == "promoted", outcome.message


def test_retirement_waits_for_its_grace_and_for_every_session(world: MemoryWorld) -> None:
    world.crs.create(REF, cephx_spec(retireAfter="60s"))
    vb = engine(world)
    rotated_cephx(world, vb, 2)
    assert set(world.cephx.entities) == {"client.app.1", "client.app.2"}
    waiting = vb.sync(REF)
    assert waiting.ok and waiting.retry_after is not None
    assert timedelta(seconds=55) <= waiting.retry_after <= timedelta(seconds=60)
    world.cephx.sessions_of["client.app.1"] = ["a"]  # a consumer still connected
    world.clock.advance(61)
    vb.sync(REF)
    assert "client.app.1" in world.cephx.entities
    assert "RetireBlocked" in world.events.reasons()
    world.cephx.sessions_of.clear()
    world.clock.advance(600)
    vb.sync(REF)  # the CLI retires too: no controller needed
    assert set(world.cephx.entities) == {"client.app.2"}


def test_keep_prior_bounds_the_generations_across_cli_rotations(world: MemoryWorld) -> None:
    world.crs.create(REF, cephx_spec(retireAfter="1s", keepPrior=1))
    vb = engine(world)
    for _ in range(4):
        rotated_cephx(world, vb, 1)
        world.clock.advance(2)
    assert len(world.cephx.entities) <= 2 and "client.app.4" in world.cephx.entities


def test_cephx_delete_policy_keeps_a_finalizer_and_removes_every_generation(
    world: MemoryWorld,
) -> None:
    world.crs.create(REF, cephx_spec(deletionPolicy="Delete", retireAfter="1h"))
    vb = engine(world)
    rotated_cephx(world, vb, 2)
    assert CEPHX_FINALIZER in world.crs.objects[REF].finalizers
    world.crs.delete(REF)
    world.cephx.sessions_of["client.app.2"] = ["a"]
    blocked = vb.reconcile(REF)
    assert blocked.reason == "RemovalBlocked" and blocked.retry_after is not None
    assert set(world.cephx.entities) == {"client.app.1", "client.app.2"}
    world.cephx.sessions_of.clear()
    done = vb.reconcile(REF)
    assert done.result == "finalized" and world.cephx.entities == {}
    assert CEPHX_FINALIZER not in world.crs.objects[REF].finalizers


def test_a_source_secret_is_adopted_and_retained(world: MemoryWorld) -> None:
    spec = {
        "secret": {"name": "cred", "adopt": True},
        "target": {"config": {"who": WHO, "option": OPTION}},
    }
    world.crs.create(REF, spec)
    world.secrets.put("ns", "cred", {"value": "users-own"})
    outcome = engine(world).sync(REF)
    assert outcome.result == "promoted", outcome.message
    assert ceph_value(world) == "users-own"
    assert world.secrets.policy("ns", "cred") == "Retain"


def test_an_unknown_option_rolls_back_and_retries_slowly(world: MemoryWorld) -> None:
    world.ceph.known_options = {OPTION}
    spec = config_spec()
    spec["target"]["config"] = [
        {"who": WHO, "option": OPTION, "field": "value"},
        {"who": WHO, "option": "no_such_option", "field": "value"},
    ]
    world.crs.create(REF, spec)
    world.vault.put("secret", "p", {"value": "v1"})
    outcome = engine(world).sync(REF)
    assert outcome.result in ("rolled-back", "failed"), outcome
    assert ceph_value(world) is None and secret_value(world) is None
    assert outcome.retry_after is not None and outcome.retry_after >= timedelta(seconds=30)


def test_memory_ports_refuse_what_the_real_ones_refuse(world: MemoryWorld) -> None:
    world.crs.create(REF, config_spec())
    world.secrets.put("ns", "cred", {"value": "x"})
    credential = world.crs.load(REF)
    with pytest.raises(MemoryRejected):
        world.secrets.write(
            credential, "cred", {"value": Sensitive("y")}, annotations={}, adopt=False
        )
    with pytest.raises(MemoryRejected):
        world.vault.write("secret", "p", {"value": Sensitive("y")}, cas=3)


def test_a_process_that_may_no_longer_act_stops_before_the_next_action(
    world: MemoryWorld,
) -> None:
    """The controller's Lease is lost mid-rotation: the engine stops before its next action,
    leaves the journal as it is (nothing rolled back), and the next holder finishes it."""
    from vaultbridge.engine.runtime import Interrupted

    at_v1(world)
    world.vault.put("secret", "p", {"value": "v2"})
    actions: list[str] = []

    def may_act() -> bool:
        actions.append("asked")
        return len(actions) < 3  # SNAPSHOT and APPLY run; VERIFY is refused

    leader = engine(world, may_act=may_act)
    with pytest.raises(Interrupted):
        leader.sync(REF)
    assert ceph_value(world) == "v2"  # applied
    assert secret_value(world) == "v1"  # not promoted
    journal = world.crs.load(REF).status.rotation
    assert journal is not None  # still journaled for whoever acts next
    world.clock.advance(31)  # the interrupted holder has gone silent
    outcome = engine(world, holder="engine-b").reconcile(REF)
    assert outcome.result == "promoted", outcome.message
    assert secret_value(world) == "v2"


def test_labels_vault_missed_at_the_promotion_are_set_by_the_next_sync(world: MemoryWorld) -> None:
    vb = v2_waiting(world)
    world.faults.fail("vault.set_labels", BackendError("Vault unreachable"))
    assert vb.sync(REF).result == "promoted"  # the labels are informational: the promotion holds
    assert world.vault.labels_of[("secret", "p")]["current"] == 1
    assert vb.sync(REF).result == "unchanged"
    assert world.vault.labels_of[("secret", "p")] == {"current": 2, "previous": 1, "pending": None}
    assert "VaultLabelsRepaired" in world.events.reasons()
    calls = len(world.faults.calls)
    assert vb.sync(REF).result == "unchanged"
    assert "vault.set_labels" not in world.faults.calls[calls:]  # in step: read, never written


def test_a_failed_label_check_does_not_fail_the_sync(world: MemoryWorld) -> None:
    vb = at_v1(world)
    world.faults.fail("vault.labels", BackendError("Vault unreachable"))
    assert vb.sync(REF).result == "unchanged"


def test_a_reconcile_asks_vault_once_when_vault_does_not_answer(world: MemoryWorld) -> None:
    vb = at_v1(world)  # the engine holds a copy of the CR: the reconcile tries it first
    world.vault.put("secret", "p", {"value": "v2"})
    world.faults.fail("vault.read_latest", VaultDown("no answer"), times=5)
    before = world.faults.calls.count("vault.read_latest")
    outcome = vb.reconcile(REF)
    assert not outcome.ok and outcome.reason == "VaultDown"
    assert world.faults.calls.count("vault.read_latest") - before == 1


@pytest.fixture
def quick_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vaultbridge.engine.actions.PROMOTION_READ_PAUSE", 0.0)


def test_a_promotion_whose_answer_was_lost_but_which_landed_stands(
    world: MemoryWorld, quick_reads: None
) -> None:
    vb = v2_waiting(world)
    world.faults.fail("secrets.written", VaultDown("connection cut"))  # landed, answer lost
    outcome = vb.sync(REF)
    assert outcome.result == "promoted", outcome.message
    assert ceph_value(world) == secret_value(world) == "v2"  # no rollback under the Secret


def test_a_promotion_that_did_not_land_rolls_back(world: MemoryWorld, quick_reads: None) -> None:
    vb = v2_waiting(world)
    world.faults.fail("secrets.write", VaultDown("connection reset"))
    assert vb.sync(REF).result == "rolled-back"
    assert ceph_value(world) == secret_value(world) == "v1"


def test_a_promotion_that_cannot_be_read_back_stays_verified_and_is_promoted_later(
    world: MemoryWorld, quick_reads: None
) -> None:
    vb = v2_waiting(world)
    world.faults.fail("secrets.written", VaultDown("connection cut"))
    world.faults.fail("secrets.read", VaultDown("no answer"), times=3)
    with pytest.raises(BackendError) as raised:
        vb.sync(REF)
    assert raised.value.reason == "PromotionUnknown"
    journal = world.crs.objects[REF].status.rotation
    assert journal is not None and journal.step == "Verified"
    assert ceph_value(world) == secret_value(world) == "v2"  # Ceph was not rolled back
    assert vb.reconcile(REF).result == "promoted"
    status = world.crs.objects[REF].status
    assert status.rotation is None and status.current_version == 2
