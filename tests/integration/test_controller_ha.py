"""Two `vaultbridge run` processes on the real apiserver: only the leader acts; kill -9 mid-rotation."""

from __future__ import annotations

import base64
import json
import signal
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
    labelled,
    unique,
    vault_put,
    wait_for,
)
from kubernetes import client as k8s
from rotation_helpers import read_secret

from vaultbridge.testenv.env import Environment

pytestmark = pytest.mark.integration

# a Lease and a takeover quick enough for a test to wait them out
QUICK_LEASE = {
    "VAULTBRIDGE_CONTROLLER__LEASE_DURATION": "6",
    "VAULTBRIDGE_CONTROLLER__RENEW_DEADLINE": "4",
    "VAULTBRIDGE_CONTROLLER__RETRY_PERIOD": "1",
    "VAULTBRIDGE_ROTATION__TAKEOVER_AFTER": "5",
}


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


def test_a_stalled_leader_woken_after_the_takeover_writes_nothing(
    testenv: Environment, api: k8s.ApiClient, ns: str, tmp_path: Path
) -> None:
    """Issue 17's lease trade-off, measured: SIGSTOP the leader inside a rotation (after Apply,
    before the Secret write) for longer than the Lease and ``takeover_after``; the standby takes
    the rotation over and promotes it; SIGCONT the stalled one. Its next step asks whether it
    still leads (by its own monotonic clock, which ran on while it was stopped) and stops: no
    late write, and Ceph, the Secret and the CR agree."""
    quick = QUICK_LEASE
    leader = ControllerProcess(
        testenv, ns, tmp_path, VAULTBRIDGE_FAULT="pause-after:Apply:4", **quick
    )
    standby: ControllerProcess | None = None
    stopped = False
    try:
        leader.wait_leader()
        standby = ControllerProcess(testenv, ns, tmp_path, **quick)
        wait_for(lambda: (standby.readyz() or {}).get("role") == "standby", "standby up")
        name, path, who = unique("stall"), unique("stall"), f"client.rgw.{unique('stall')}"
        version = vault_put(testenv, path, {"value": "stalled-value"})
        spec = config_spec(path, who)
        secret_name = spec["secret"]["name"]
        create_cr(api, ns, name, spec)
        option = "rgw_keystone_admin_password"
        wait_for(
            lambda: (
                ceph_config(testenv, who, option) == "stalled-value"
                and bool((get_cr(api, ns, name).get("status") or {}).get("rotation"))
            ),
            "leader applied and paused",
            interval=0.1,
        )
        leader.proc.send_signal(signal.SIGSTOP)
        stopped, stopped_at = True, time.monotonic()
        wait_for(lambda: at_version(api, ns, name, version), "standby finished it", timeout=90)
        took = time.monotonic() - stopped_at
        secret_before = read_secret(api, ns, secret_name)
        assert secret_before is not None
        leader.proc.send_signal(signal.SIGCONT)
        stopped = False
        time.sleep(6)  # the woken process's pause ends, and it would take its next step
        status = get_cr(api, ns, name)["status"]
        promoted = [h for h in status.get("history") or [] if h.get("result") == "Promoted"]
        assert [h["version"] for h in promoted] == [version]  # one promotion, by the standby
        secret = read_secret(api, ns, secret_name)
        assert secret is not None
        assert secret.metadata.resource_version == secret_before.metadata.resource_version
        value = base64.b64decode(secret.data["value"])
        assert value.decode() == ceph_config(testenv, who, option) == "stalled-value"
        assert leader.metric("vaultbridge_rotations_total") == 0  # it finished nothing
        print(f"stalled {took:.1f} s; standby promoted; the woken leader wrote nothing")
    finally:
        if stopped:
            leader.proc.send_signal(signal.SIGCONT)
        leader.stop()
        if standby is not None:
            standby.stop()


def test_a_late_write_through_the_one_command_window_is_repaired_by_the_drift_sweep(
    testenv: Environment, api: k8s.ApiClient, ns: str, tmp_path: Path
) -> None:
    """The window the test above does not reach, made to happen: the leader checks that it may
    act, then stalls (``pause-before:Apply``, SIGSTOP) before its one mon command. The standby
    takes over, promotes that version and then a newer one. Woken, the stalled process sends
    the command it had already cleared: Ceph holds the older value while the Secret holds the
    newer. No fence on a mon command can refuse it, so the new leader's drift sweep is what
    puts it right; this measures how long the two disagree."""
    quick = {**QUICK_LEASE, "VAULTBRIDGE_CONTROLLER__RESYNC_INTERVAL": "10"}
    leader = ControllerProcess(
        testenv, ns, tmp_path, VAULTBRIDGE_FAULT="pause-before:Apply:3", **quick
    )
    standby: ControllerProcess | None = None
    stopped = False
    option = "rgw_keystone_admin_password"
    try:
        leader.wait_leader()
        standby = ControllerProcess(testenv, ns, tmp_path, **quick)
        wait_for(lambda: (standby.readyz() or {}).get("role") == "standby", "standby up")
        name, path, who = unique("late"), unique("late"), f"client.rgw.{unique('late')}"
        first = vault_put(testenv, path, {"value": "older-value"})
        spec = config_spec(path, who)
        secret_name = spec["secret"]["name"]
        create_cr(api, ns, name, spec)
        wait_for(
            lambda: "fault point pause-before:Apply" in leader.output(),
            "the leader cleared its lease check and paused before Apply",
            interval=0.05,
        )
        leader.proc.send_signal(signal.SIGSTOP)
        stopped = True
        wait_for(lambda: at_version(api, ns, name, first), "standby finished it", timeout=90)
        second = vault_put(testenv, path, {"value": "newer-value"})
        status, body = standby.trigger({"mount": "secret", "path": path})
        assert status == 202, body
        wait_for(lambda: at_version(api, ns, name, second), "standby promoted the newer one")
        assert ceph_config(testenv, who, option) == "newer-value"
        promoted_before = labelled(
            standby.metrics(), "vaultbridge_rotations_total", result="promoted"
        )
        leader.proc.send_signal(signal.SIGCONT)
        stopped = False
        woke = time.monotonic()
        wait_for(
            lambda: (
                "fault point pause-before:Apply" in leader.output().split("stops acting")[-1]
                or leader.output().count("fault point pause-before:Apply") >= 2
                or "may no longer act" in leader.output()
            ),
            "the woken leader went on",
            timeout=30,
        )
        time.sleep(12)  # a drift sweep (every 10 s here) comes round at least once
        settled = time.monotonic() - woke
        secret = read_secret(api, ns, secret_name)
        assert secret is not None
        assert base64.b64decode(secret.data["value"]).decode() == "newer-value"
        assert ceph_config(testenv, who, option) == "newer-value"  # put right, whatever landed
        repairs = (
            labelled(standby.metrics(), "vaultbridge_rotations_total", result="promoted")
            - promoted_before
        )
        history = get_cr(api, ns, name)["status"].get("history") or []
        assert leader.metric("vaultbridge_rotations_total") == 0  # the stalled one finished none
        assert {h["version"] for h in history if h["result"] == "Promoted"} == {first, second}
        print(
            f"woken leader's late Apply: the new leader promoted {repairs:.0f} more time(s) to"
            f" put Ceph back; Ceph and the Secret agree {settled:.0f} s after SIGCONT"
        )
    finally:
        if stopped:
            leader.proc.send_signal(signal.SIGCONT)
        leader.stop()
        if standby is not None:
            standby.stop()
