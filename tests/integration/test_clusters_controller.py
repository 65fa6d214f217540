"""`vaultbridge run` with credentials in several real mon clusters: a Rook mon moved to a new
address while the controller runs (and while a rotation is in flight), and one cluster down
while another keeps rotating."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from cluster_helpers import (
    admin_key,
    config_key,
    config_key_spec,
    external_cluster,
    extra_clusters,
    put_config_map,
    rook_cluster,
    rook_endpoints,
)
from controller_helpers import at_version, get_cr, labelled, wait_for
from kubernetes import client as k8s
from rotation_helpers import create_cr, events_for, read_secret, unique, vault_put

from vaultbridge.testenv.env import Environment

pytestmark = pytest.mark.integration


def secret_value(api: k8s.ApiClient, ns: str, name: str) -> str | None:
    secret = read_secret(api, ns, name)
    if secret is None or not secret.data or "value" not in secret.data:
        return None
    return base64.b64decode(secret.data["value"]).decode()


def new_credential(
    testenv: Environment, api: k8s.ApiClient, ns: str, label: str, cluster: dict[str, Any]
) -> tuple[str, str, str, dict[str, Any]]:
    name, path, key = unique(label), unique(f"ceph/{label}"), f"vaultbridge/test/{unique(label)}"
    vault_put(testenv, path, {"value": f"{name}-v1"})
    spec = config_key_spec(path, key, cluster)
    create_cr(api, ns, name, spec)
    return name, path, key, spec


def test_a_rook_mon_moved_while_the_controller_runs(
    testenv: Environment, api: k8s.ApiClient, ns: str, start: Any, tmp_path: Path
) -> None:
    with extra_clusters(tmp_path / "mons", "mover") as clusters:
        mover = clusters["mover"]
        cluster = rook_cluster(api, ns, mover)
        name, path, key, spec = new_credential(testenv, api, ns, "moved", cluster)
        # every rotation waits 4 s between Apply and Verify: the move lands in between
        controller = start(VAULTBRIDGE_FAULT="pause-before:Verify:4")
        wait_for(lambda: at_version(api, ns, name, 1), "the first sync", timeout=60)
        assert config_key(mover, key) == f"{name}-v1"

        version = vault_put(testenv, path, {"value": f"{name}-v2"})
        controller.trigger({"mount": "secret", "path": path})
        wait_for(
            lambda: (
                (get_cr(api, ns, name)["status"].get("rotation") or {}).get("step") == "Applied"
            ),
            "the rotation to version 2 applied",
        )
        old_ports = mover.mon_ports["a"]
        new_ports = mover.move_mon("a")  # stop, a new address in the monmap, start
        assert new_ports != old_ports
        put_config_map(api, ns, "rook-ceph-mon-endpoints", {"data": rook_endpoints(mover)})

        def settled() -> bool:
            status = get_cr(api, ns, name)["status"]
            return not status.get("rotation") and bool(status.get("history"))

        wait_for(settled, "the rotation in flight finished or rolled back", timeout=120)
        status = get_cr(api, ns, name)["status"]
        last = status["history"][0]
        assert last["result"] in ("Promoted", "RolledBack"), last
        # either way Ceph and the Secret agree: no straddling
        assert config_key(mover, key) == secret_value(api, ns, spec["secret"]["name"])

        moved = f"rook:{ns}/rook-ceph-mon-endpoints/rook-ceph-mon"
        wait_for(
            lambda: (
                labelled(controller.metrics(), "vaultbridge_ceph_mon_moves_total", cluster=moved)
                == 1
            ),
            "the move counted",
        )
        reasons = [e["reason"] for e in events_for(api, ns, name)]
        assert "CephMonsMoved" in reasons
        notes = [e["note"] for e in events_for(api, ns, name) if e["reason"] == "CephMonsMoved"]
        assert str(new_ports[1]) in notes[0]

        version = vault_put(testenv, path, {"value": f"{name}-v3"})
        controller.trigger({"mount": "secret", "path": path})
        wait_for(lambda: at_version(api, ns, name, version), "a rotation after the move")
        assert config_key(mover, key) == f"{name}-v3"
        assert secret_value(api, ns, spec["secret"]["name"]) == f"{name}-v3"
        # the cluster's key never shows: not in the log, the metrics, the Events or the status
        secret = admin_key(mover)
        shown = [controller.output(), controller.metrics(), str(get_cr(api, ns, name)["status"])]
        shown += [e["note"] for e in events_for(api, ns, name)]
        assert not [text for text in shown if secret in text]


def test_one_cluster_down_does_not_hold_another(
    testenv: Environment, api: k8s.ApiClient, ns: str, start: Any, tmp_path: Path
) -> None:
    with extra_clusters(tmp_path / "mons", "north", "south") as clusters:
        north, south = clusters["north"], clusters["south"]
        in_north = [new_credential(testenv, api, ns, "n", rook_cluster(api, ns, north))]
        in_north += [
            new_credential(testenv, api, ns, "n", rook_cluster(api, ns, north)) for _ in range(3)
        ]
        in_south = [
            new_credential(testenv, api, ns, "s", external_cluster(api, ns, south))
            for _ in range(4)
        ]
        controller = start(VAULTBRIDGE_CEPH__TIMEOUT="2")
        for name, *_ in in_north + in_south:
            wait_for(lambda name=name: at_version(api, ns, name, 1), f"{name}'s first sync")

        north.stop_mon("a", wait_quorum=False)
        for name, path, _key, _spec in in_north + in_south:
            vault_put(testenv, path, {"value": f"{name}-v2"})
            controller.trigger({"mount": "secret", "path": path})
        for name, _path, key, _spec in in_south:
            wait_for(lambda name=name: at_version(api, ns, name, 2), f"{name} rotated in south")
            assert config_key(south, key) == f"{name}-v2"
        # south rotated while north was still down, and north's credentials were held
        for name, *_ in in_north:
            assert get_cr(api, ns, name)["status"]["currentVersion"] == 1
        north_key = f"rook:{ns}/rook-ceph-mon-endpoints/rook-ceph-mon"
        south_key = f"external:{ns}/ceph-ext/ceph-ext"
        wait_for(
            lambda: labelled(
                controller.metrics(),
                "vaultbridge_ceph_cluster_rotations_total",
                cluster=north_key,
                result="failed",
            ),
            "a failure in north counted",
        )
        for name, *_ in in_north:  # still down: nothing of north was promoted
            assert get_cr(api, ns, name)["status"]["currentVersion"] == 1
        metrics = controller.metrics()
        assert (
            labelled(
                metrics,
                "vaultbridge_ceph_cluster_rotations_total",
                cluster=south_key,
                result="promoted",
            )
            >= 4
        )
        assert labelled(metrics, "vaultbridge_ceph_cluster_errors_total", cluster=north_key) >= 1
        failed = labelled(
            metrics, "vaultbridge_ceph_cluster_rotations_total", cluster=north_key, result="failed"
        )
        assert failed >= 1
        assert labelled(metrics, "vaultbridge_ceph_cluster_down", cluster=south_key) == 0

        north.start_mon("a")
        for name, _path, key, _spec in in_north:
            wait_for(
                lambda name=name: at_version(api, ns, name, 2),
                f"{name} rotated once north is back",
                timeout=180,
            )
            assert config_key(north, key) == f"{name}-v2"

        # no CR names north any more: its connection is closed (the default stays open)
        assert controller.metric("vaultbridge_ceph_clusters") == 3
        for name, *_ in in_north:
            k8s.CustomObjectsApi(api).delete_namespaced_custom_object(
                "vaultbridge.io", "v1alpha1", ns, "credentialrotations", name
            )
        wait_for(lambda: controller.metric("vaultbridge_ceph_clusters") == 2, "north closed")
        assert "closed the connections of " + north_key in controller.output()
