"""Two `vaultbridge run` processes on the real apiserver: only the leader acts; kill -9 mid-rotation."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from controller_helpers import (
    ControllerProcess,
    at_version,
    ceph_config,
    config_spec,
    create_cr,
    get_cr,
    unique,
    vault_put,
    wait_for,
)
from kubernetes import client as k8s

from vaultbridge.testenv.env import Environment

pytestmark = pytest.mark.integration


def test_leader_killed_mid_rotation_standby_takes_over(
    testenv: Environment, api: k8s.ApiClient, ns: str, tmp_path: Path
) -> None:
    # A hangs right after applying to Ceph (journal step Applied), as if it died there
    leader = ControllerProcess(testenv, ns, tmp_path, VAULTBRIDGE_FAULT="hang-after:Apply")
    standby: ControllerProcess | None = None
    try:
        leader.wait_leader()
        standby = ControllerProcess(testenv, ns, tmp_path)
        wait_for(
            lambda: (standby.readyz() or {}).get("role") == "standby",
            "second process up as standby",
        )
        creds = []
        for n in range(3):
            name, path, who = unique("ha"), unique("ha"), f"client.rgw.{unique('ha')}"
            version = vault_put(testenv, path, {"value": f"ha-{n}-value"})
            create_cr(api, ns, name, config_spec(path, who))
            creds.append((name, who, version, f"ha-{n}-value"))

        def journaled(name: str, who: str, value: str) -> bool:
            # journaled in the CR and already written to Ceph, not promoted
            rotation = (get_cr(api, ns, name).get("status") or {}).get("rotation") or {}
            return bool(rotation) and ceph_config(testenv, who, option) == value

        option = "rgw_keystone_admin_password"
        for name, who, _version, value in creds:
            wait_for(
                lambda n=name, w=who, v=value: journaled(n, w, v),
                f"{name}: leader stopped mid-rotation",
                interval=0.5,
            )
        assert leader.output().count("fault point") >= 3
        # only the leader acts: the standby has run nothing and refuses triggers
        assert standby.metric("vaultbridge_rotations_total") == 0
        assert standby.metric("vaultbridge_leader") == 0
        status, body = standby.trigger({"credential": f"{ns}/{creds[0][0]}"})
        assert status == 503, body

        leader.kill()
        killed_at = time.monotonic()
        wait_for(
            lambda: (standby.readyz() or {}).get("role") == "leader",
            "standby took over",
            timeout=60,
            interval=0.2,
        )
        takeover = time.monotonic() - killed_at
        print(f"takeover after kill -9: {takeover:.1f} s")
        for name, who, version, value in creds:
            wait_for(lambda n=name, v=version: at_version(api, ns, n, v), f"{name} finished")
            assert ceph_config(testenv, who, "rgw_keystone_admin_password") == value
            status_obj = get_cr(api, ns, name)["status"]
            history = status_obj.get("history") or []
            promoted = [h for h in history if h.get("result") == "Promoted"]
            assert [h["version"] for h in promoted] == [version]  # one rotation, not two
            assert status_obj["phase"] in ("Promoted", "Verified", "Idle")
        metrics = standby.metrics()
        assert "vaultbridge_leader 1.0" in metrics
        assert standby.metric("vaultbridge_max_in_flight_per_credential") == 1
        lease = k8s.CoordinationV1Api(api).read_namespaced_lease("vaultbridge-leader", ns)
        assert lease.spec.holder_identity == json.loads(
            json.dumps((standby.readyz() or {}).get("identity"))
        )
    finally:
        leader.stop()
        if standby is not None:
            standby.stop()
