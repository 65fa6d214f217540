"""Rollout restarts after a promotion (``spec.rolloutRestartTargets``), on in-memory ports; the
integration tests patch real Deployments on the real API server."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from vaultbridge.engine.engine import Engine
from vaultbridge.engine.memory import MemoryNotFound, MemoryWorld
from vaultbridge.engine.rollouts import annotation_key
from vaultbridge.model.spec import CredentialRef, SpecError, parse_spec

REF = CredentialRef("ns", "cred")
KEY = "rotation.vaultbridge.io/cred"


class Workloads:
    def __init__(self, *names: str) -> None:
        self.annotations: dict[tuple[str, str, str], dict[str, str]] = {
            ("ns", "Deployment", n): {} for n in names
        }
        self.patches: list[tuple[str, str, str]] = []

    def _get(self, namespace: str, kind: str, name: str) -> dict[str, str]:
        try:
            return self.annotations[(namespace, kind, name)]
        except KeyError:
            raise MemoryNotFound(f"get {kind} {name!r} in namespace {namespace!r}") from None

    def template_annotation(self, namespace: str, kind: str, name: str, key: str) -> str | None:
        return self._get(namespace, kind, name).get(key)

    def set_template_annotation(
        self, namespace: str, kind: str, name: str, key: str, value: str
    ) -> None:
        self._get(namespace, kind, name)[key] = value
        self.patches.append((kind, name, value))


def spec(*names: str) -> dict[str, Any]:
    return {
        "source": {"mount": "secret", "path": "p"},
        "secret": {"name": "cred"},
        "target": {"config": {"who": "client.rgw.x", "option": "rgw_keystone_admin_password"}},
        "rolloutRestartTargets": [{"kind": "Deployment", "name": n} for n in names],
    }


def setup(
    *deployments: str, targets: tuple[str, ...] = ("web",)
) -> tuple[MemoryWorld, Engine, Workloads]:
    world = MemoryWorld()
    workloads = Workloads(*deployments)
    world.crs.create(REF, spec(*targets))
    vb = Engine(
        **world.engine_ports(),
        holder="a",
        takeover_after=timedelta(seconds=30),
        workloads=workloads,
    )
    return world, vb, workloads


def test_each_promotion_rolls_the_workloads_once() -> None:
    world, vb, workloads = setup("web", "api", targets=("web", "api"))
    world.vault.put("secret", "p", {"value": "v1"})
    assert vb.sync(REF).result == "promoted"
    assert workloads.patches == [("Deployment", "web", "1"), ("Deployment", "api", "1")]
    assert vb.sync(REF).result == "unchanged"  # a resync rolls nothing
    assert len(workloads.patches) == 2
    world.vault.put("secret", "p", {"value": "v2"})
    assert vb.sync(REF).result == "promoted"
    assert workloads.annotations[("ns", "Deployment", "web")] == {KEY: "2"}
    assert world.events.reasons().count("RolloutRestarted") == 4


def test_a_restart_lost_after_the_promotion_is_made_by_the_next_reconcile() -> None:
    world, vb, workloads = setup("web")
    world.vault.put("secret", "p", {"value": "v1"})
    vb.sync(REF)
    world.vault.put("secret", "p", {"value": "v2"})
    vb.rollouts.workloads = None  # the process dies between the promotion and the patch
    vb.sync(REF)
    vb.rollouts.workloads = workloads
    assert workloads.annotations[("ns", "Deployment", "web")] == {KEY: "1"}
    assert vb.reconcile(REF).result == "unchanged"
    assert workloads.annotations[("ns", "Deployment", "web")] == {KEY: "2"}


def test_a_workload_never_rolled_is_not_rolled_by_a_resync() -> None:
    world, vb, workloads = setup("web")
    vb.rollouts.workloads = None
    world.vault.put("secret", "p", {"value": "v1"})
    vb.sync(REF)  # promoted before the field was honoured (or added later to the CR)
    vb.rollouts.workloads = workloads
    vb.reconcile(REF)
    assert workloads.patches == []


def test_a_missing_workload_is_a_warning_and_the_promotion_stands() -> None:
    world, vb, workloads = setup("web", targets=("gone", "web"))
    world.vault.put("secret", "p", {"value": "v1"})
    outcome = vb.sync(REF)
    assert outcome.result == "promoted"
    assert workloads.patches == [("Deployment", "web", "1")]
    warning = [e for e in world.events.events if e[2] == "RolloutRestartFailed"]
    assert warning and "Deployment/gone" in warning[0][3] and warning[0][1] == "Warning"
    vb.reconcile(REF)  # a resync does not warn again
    assert [e[2] for e in world.events.events].count("RolloutRestartFailed") == 1


def test_the_annotation_key_fits_a_long_cr_name() -> None:
    assert annotation_key("app") == "rotation.vaultbridge.io/app"
    long = "a" * 100 + ".b"
    key = annotation_key(long)
    name = key.removeprefix("rotation.vaultbridge.io/")
    assert len(name) <= 63 and name[-1].isalnum()
    assert annotation_key(long + "c") != key


@pytest.mark.parametrize(
    ("targets", "problem"),
    [
        ("web", "spec.rolloutRestartTargets: must be a list"),
        ([{"kind": "Pod", "name": "web"}], "rolloutRestartTargets[0].kind: must be one of"),
        ([{"kind": "Deployment", "name": "Web"}], "rolloutRestartTargets[0].name: 'Web'"),
        ([{"kind": "Deployment"}], "rolloutRestartTargets[0].name: required"),
        ([{"kind": "Deployment", "name": "w", "ns": "x"}], "unknown field(s) ns"),
        ([{"kind": "Deployment", "name": "w"}] * 2, "Deployment/w is listed twice"),
        ([{"kind": "Deployment", "name": f"w{i}"} for i in range(11)], "at most 10"),
    ],
)
def test_bad_rollout_targets_are_refused_with_their_path(targets: Any, problem: str) -> None:
    body = spec()
    body["rolloutRestartTargets"] = targets
    with pytest.raises(SpecError) as refused:
        parse_spec(body)
    assert problem in str(refused.value)
