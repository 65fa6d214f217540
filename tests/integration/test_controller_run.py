"""`vaultbridge run` against real OpenBao, Kubernetes and Ceph mons: watches, triggers, drift."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from controller_helpers import (
    WEBHOOK_TOKEN,
    ControllerProcess,
    at_version,
    ceph_config,
    config_spec,
    create_cr,
    events_for,
    get_cr,
    http,
    patch_cr,
    unique,
    vault_put,
    wait_for,
)
from kubernetes import client as k8s

from vaultbridge.testenv.env import Environment

pytestmark = pytest.mark.integration

CANARY = "canary-5b8e2f91-never-print-me"


def new_credential(
    testenv: Environment, api: k8s.ApiClient, ns: str, value: str, **extra: object
) -> tuple[str, str, str, int]:
    name, path, who = unique("cred"), unique("ctl"), f"client.rgw.{unique('c')}"
    version = vault_put(testenv, path, {"value": value})
    create_cr(api, ns, name, config_spec(path, who, **extra))
    return name, path, who, version


def assert_no_canary(controller: ControllerProcess, *texts: str) -> None:
    probes = [http("GET", controller.url + path)[1] for path in ("/readyz", "/healthz")]
    for text in (controller.output(), controller.metrics(), *probes, *texts):
        assert CANARY not in text


def test_picks_up_new_cr_and_webhook_versions(
    testenv: Environment, api: k8s.ApiClient, ns: str, start: object
) -> None:
    controller = start()  # type: ignore[operator]
    name, path, who, v1 = new_credential(testenv, api, ns, f"{CANARY}-1")
    wait_for(lambda: at_version(api, ns, name, v1), "new CR synced")
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") == f"{CANARY}-1"

    v2 = vault_put(testenv, path, {"value": f"{CANARY}-2"})
    status, body = controller.trigger({"mount": "secret", "path": path})
    assert status == 202, body
    assert json.loads(body) == {"queued": [f"{ns}/{name}"]}
    wait_for(lambda: at_version(api, ns, name, v2), "webhook (path) version promoted")
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") == f"{CANARY}-2"

    v3 = vault_put(testenv, path, {"value": f"{CANARY}-3"})
    status, body = controller.trigger({"credential": f"{ns}/{name}"})
    assert status == 202, body
    wait_for(lambda: at_version(api, ns, name, v3), "webhook (credential) version promoted")
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") == f"{CANARY}-3"

    metrics = controller.metrics()
    assert 'vaultbridge_rotations_total{result="promoted",trigger="webhook"}' in metrics
    assert f'vaultbridge_credential_age_seconds{{name="{name}",namespace="{ns}"}}' in metrics
    assert "vaultbridge_leader 1.0" in metrics
    assert controller.metric("vaultbridge_max_in_flight_per_credential") == 1
    assert_no_canary(controller, body)


def test_bad_webhook_requests_are_rejected(
    testenv: Environment, api: k8s.ApiClient, ns: str, start: object
) -> None:
    controller = start()  # type: ignore[operator]
    # the term's catch-up with Vault (after its first sweep) would rotate the new version
    wait_for(lambda: controller.metric("vaultbridge_drift_sweeps_total") >= 1, "first sweep")
    time.sleep(1.0)
    name, path, _who, v1 = new_credential(testenv, api, ns, f"{CANARY}-a")
    wait_for(lambda: at_version(api, ns, name, v1), "new CR synced")
    vault_put(testenv, path, {"value": f"{CANARY}-b"})  # a new version nobody may trigger
    url = controller.url + "/v1/trigger"
    good = {"mount": "secret", "path": path}
    cases = [
        (http("POST", url, good, token=None), 401),
        (http("POST", url, good, token="wrong-token"), 401),
        (http("POST", url, {"mount": "secret", "path": "no/such/path"}), 404),
        (http("POST", url, {"credential": f"{ns}/no-such-cr"}), 404),
        (http("POST", url, {"credential": "not-a-ref"}), 400),
        (http("POST", url, raw=b"{not json"), 400),
        (http("POST", url, {"mount": "secret"}), 400),
        (http("GET", url), 405),
        (http("POST", controller.url + "/v1/nothing", good), 404),
    ]
    for (status, body), expected in cases:
        assert status == expected, body
        assert json.loads(body)["error"]
        assert "wrong-token" not in body and WEBHOOK_TOKEN not in body
    time.sleep(1.0)
    assert at_version(api, ns, name, v1)  # nothing rotated
    assert "wrong-token" not in controller.output()
    assert WEBHOOK_TOKEN not in controller.output()
    assert controller.metric("vaultbridge_webhook_rejected_total") >= len(cases) - 2
    assert_no_canary(controller)


def test_service_account_token_via_tokenreview(
    testenv: Environment, api: k8s.ApiClient, ns: str, start: object
) -> None:
    controller = start()  # type: ignore[operator]
    name, path, _who, v1 = new_credential(testenv, api, ns, "sa-value-1")
    wait_for(lambda: at_version(api, ns, name, v1), "new CR synced")
    core = k8s.CoreV1Api(api)
    core.create_namespaced_service_account(ns, {"metadata": {"name": "pipeline"}})
    token = core.create_namespaced_service_account_token(
        "pipeline", ns, {"spec": {"expirationSeconds": 600}}
    ).status.token
    v2 = vault_put(testenv, path, {"value": "sa-value-2"})
    status, body = http(
        "POST", controller.url + "/v1/trigger", {"credential": f"{ns}/{name}"}, token=token
    )
    assert status == 202, body
    wait_for(lambda: at_version(api, ns, name, v2), "SA-triggered version promoted")
    assert token not in controller.output()


def test_agent_file_and_polling(
    testenv: Environment, api: k8s.ApiClient, ns: str, start: object, tmp_path: Path
) -> None:
    agent_file = tmp_path / "rendered.txt"
    agent_file.write_text("# rendered by vault agent\n")
    controller = start(  # type: ignore[operator]
        VAULTBRIDGE_TRIGGERS__AGENT_FILE=str(agent_file),
        VAULTBRIDGE_TRIGGERS__POLL_INTERVAL="1",
        VAULTBRIDGE_TRIGGERS__POLL_BUDGET="1",
    )
    a, path_a, who_a, va = new_credential(testenv, api, ns, f"{CANARY}-agent-1")
    b, path_b, who_b, vb = new_credential(testenv, api, ns, f"{CANARY}-poll-1")
    wait_for(lambda: at_version(api, ns, a, va) and at_version(api, ns, b, vb), "both synced")

    # the agent file names the path: that credential is queued at once
    va2 = vault_put(testenv, path_a, {"value": f"{CANARY}-agent-2"})
    agent_file.write_text(f"# rendered\nsecret/{path_a}@{va2}\n")
    wait_for(lambda: at_version(api, ns, a, va2), "agent-file version promoted")
    assert ceph_config(testenv, who_a, "rgw_keystone_admin_password") == f"{CANARY}-agent-2"

    # polling (budget 1 per cycle, 2 sources): found within a few cycles
    vb2 = vault_put(testenv, path_b, {"value": f"{CANARY}-poll-2"})
    wait_for(lambda: at_version(api, ns, b, vb2), "polled version promoted")
    assert ceph_config(testenv, who_b, "rgw_keystone_admin_password") == f"{CANARY}-poll-2"

    # rendered content that names no path: every source's metadata is checked
    va3 = vault_put(testenv, path_a, {"value": f"{CANARY}-agent-3"})
    agent_file.write_text("password=whatever-the-template-rendered\n")
    wait_for(lambda: at_version(api, ns, a, va3), "agent change without names promoted")

    metrics = controller.metrics()
    assert 'vaultbridge_propagation_latency_seconds_count{trigger="agent"}' in metrics
    assert 'vaultbridge_propagation_latency_seconds_count{trigger="poll"}' in metrics
    assert_no_canary(controller)


def test_schedule_runs_and_invalid_schedule_is_reported(
    testenv: Environment, api: k8s.ApiClient, ns: str, start: object
) -> None:
    controller = start()  # type: ignore[operator]
    name, _path, who, v1 = new_credential(
        testenv, api, ns, "sched-1", schedule="0 3 * * 0", generate=True
    )
    wait_for(lambda: at_version(api, ns, name, v1), "new CR synced")
    status, body = http(
        "POST", controller.url + "/v1/schedules/run", {"credential": f"{ns}/{name}"}
    )
    assert status == 202, body
    # generate: the scheduled rotation writes a new Vault version and propagates it
    wait_for(
        lambda: (
            (get_cr(api, ns, name).get("status") or {}).get("currentVersion") == v1 + 1
            and at_version(api, ns, name, v1 + 1)
        ),
        "scheduled rotation promoted",
    )
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") not in (None, "sched-1")
    assert (
        'vaultbridge_rotations_total{result="promoted",trigger="schedule"}' in controller.metrics()
    )

    # an invalid cron: a Warning event, no job, nothing rotated
    patch_cr(api, ns, name, {"schedule": "61 * * * *"})
    wait_for(
        lambda: any(e["reason"] == "InvalidSchedule" for e in events_for(api, ns, name)),
        "InvalidSchedule event",
    )
    status, body = http(
        "POST", controller.url + "/v1/schedules/run", {"credential": f"{ns}/{name}"}
    )
    assert status == 404, body


def test_drift_is_restored_and_secret_source_is_applied(
    testenv: Environment, api: k8s.ApiClient, ns: str, start: object
) -> None:
    controller = start()  # type: ignore[operator]
    core = k8s.CoreV1Api(api)
    name, _path, who, v1 = new_credential(testenv, api, ns, "drift-1")
    wait_for(lambda: at_version(api, ns, name, v1), "new CR synced")
    secret_name = get_cr(api, ns, name)["spec"]["secret"]["name"]
    edited = base64.b64encode(b"edited-by-hand").decode()
    core.patch_namespaced_secret(secret_name, ns, {"data": {"value": edited}})

    def restored() -> bool:
        data = core.read_namespaced_secret(secret_name, ns).data or {}
        return base64.b64decode(data.get("value", "")).decode() == "drift-1"

    wait_for(restored, "drifted Secret restored from Vault")
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") == "drift-1"

    # the audit report lists it with versions, times and compliance (json, csv, table)
    cli = [str(Path(sys.executable).parent / "vaultbridge"), "report"]
    env = controller.environ
    rows = json.loads(
        subprocess.run(
            [*cli, "-o", "json"], env=env, capture_output=True, text=True, check=True
        ).stdout
    )
    row = next(r for r in rows if r["credential"] == f"{ns}/{name}")
    assert row["currentVersion"] == v1 and row["lastVerifiedTime"] and row["compliant"] == "True"
    csv_out = subprocess.run(
        [*cli, "-o", "csv"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert csv_out.splitlines()[0].startswith("credential,target,source,currentVersion")
    assert (
        f"{ns}/{name}"
        in subprocess.run(cli, env=env, capture_output=True, text=True, check=True).stdout
    )

    # the Secret is the source: an edit goes to Ceph
    src_name, src_who = unique("src"), f"client.rgw.{unique('s')}"
    src_secret = unique("srcsecret")
    core.create_namespaced_secret(
        ns,
        {
            "metadata": {"name": src_secret},
            "data": {"value": base64.b64encode(b"from-secret-1").decode()},
        },
    )
    create_cr(
        api,
        ns,
        src_name,
        {
            "secret": {"name": src_secret, "key": "value", "adopt": True},
            "target": {"config": {"who": src_who, "option": "rgw_ldap_secret"}},
        },
    )
    wait_for(
        lambda: ceph_config(testenv, src_who, "rgw_ldap_secret") == "from-secret-1",
        "Secret-sourced value applied",
        interval=0.5,
    )
    core.patch_namespaced_secret(
        src_secret, ns, {"data": {"value": base64.b64encode(b"from-secret-2").decode()}}
    )
    wait_for(
        lambda: ceph_config(testenv, src_who, "rgw_ldap_secret") == "from-secret-2",
        "Secret edit applied to Ceph",
        interval=0.5,
    )
    assert controller.proc.poll() is None


def test_storm_of_triggers(
    testenv: Environment, api: k8s.ApiClient, ns: str, start: object
) -> None:
    controller = start(VAULTBRIDGE_CONTROLLER__MIN_INTERVAL="0.5")  # type: ignore[operator]
    creds = [new_credential(testenv, api, ns, f"storm-{n}-0") for n in range(4)]
    for name, _path, _who, version in creds:
        wait_for(lambda n=name, v=version: at_version(api, ns, n, v), "storm CR synced")
    latest: dict[str, int] = {}
    began = time.monotonic()
    sent = 0
    while sent < 500:
        name, path, _who, _v = creds[sent % len(creds)]
        if sent % 25 == 0:  # new Vault versions keep arriving during the storm
            latest[name] = vault_put(testenv, path, {"value": f"storm-{name}-{sent}"})
        body = {"mount": "secret", "path": path} if sent % 2 else {"credential": f"{ns}/{name}"}
        status, reply = controller.trigger(body)
        assert status == 202, reply
        sent += 1
        pause = began + sent * 0.018 - time.monotonic()  # ~500 in 10 s
        if pause > 0:
            time.sleep(pause)
    for name, _path, who, _v in creds:
        wait_for(lambda n=name: at_version(api, ns, n, latest[n]), f"{name} at its latest version")
        assert ceph_config(testenv, who, "rgw_keystone_admin_password") == f"storm-{name}-" + str(
            max(n for n in range(500) if n % 25 == 0 and creds[n % len(creds)][0] == name)
        )
    assert controller.metric("vaultbridge_max_in_flight_per_credential") == 1
    # no duplicate or overlapping rotations: every promoted history entry is a distinct version
    for name, *_ in creds:
        history = (get_cr(api, ns, name).get("status") or {}).get("history") or []
        promoted = [h["version"] for h in history if h.get("result") == "Promoted"]
        assert len(promoted) == len(set(promoted))
    assert controller.metric("vaultbridge_triggers_total") >= 500


def test_a_cephx_retirement_runs_when_due_with_no_other_trigger(
    testenv: Environment, api: k8s.ApiClient, ns: str, start: object
) -> None:
    """The previous entity of an alternate rotation is removed once ``retireAfter`` passed,
    by the controller waking the credential then, not by a later resync or trigger."""
    controller = start()  # type: ignore[operator]
    name, path, entity = unique("cx"), unique("ctl/cx"), f"client.{unique('cx')}"
    create_cr(
        api,
        ns,
        name,
        {
            "source": {"mount": "secret", "path": path, "field": "key"},
            "secret": {"name": name},
            "target": {
                "cephx": {"entity": entity, "caps": {"mon": "allow r"}, "retireAfter": "3s"}
            },
            "generate": True,
            "schedule": "0 3 * * 0",  # weekly: the test runs it now
        },
    )

    def entities() -> set[str]:
        listed = json.loads(testenv.ceph.ceph("auth", "ls", "-f", "json"))["auth_dump"]
        return {e["entity"] for e in listed if e["entity"].startswith(entity)}

    def run_schedule() -> bool:
        status, body = http(
            "POST", controller.url + "/v1/schedules/run", {"credential": f"{ns}/{name}"}
        )
        assert status in (202, 404), body  # 404: the watch has not delivered the new CR yet
        return status == 202

    for version in (1, 2):
        wait_for(run_schedule, "the schedule run", interval=0.2)
        wait_for(lambda v=version: at_version(api, ns, name, v), f"version {version} promoted")
    promoted = time.monotonic()
    assert f"{entity}.2" in entities()
    wait_for(lambda: entities() == {f"{entity}.2"}, f"{entity}.1 retired", timeout=60)
    assert time.monotonic() - promoted >= 2.5  # not before its grace
    assert not (get_cr(api, ns, name).get("status") or {}).get("retiring")


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,  # the API object is what is tested here; the node suite runs Pods
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "vaultbridge.test/none:0"}]},
            },
        },
    }


def test_a_promotion_rolls_the_named_workloads(
    testenv: Environment, api: k8s.ApiClient, ns: str, start: object
) -> None:
    apps = k8s.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, _deployment("web"))
    controller = start()  # type: ignore[operator]
    name, path, who = unique("roll"), unique("ctl/roll"), f"client.rgw.{unique('r')}"
    v1 = vault_put(testenv, path, {"value": f"{CANARY}-r1"})
    targets = [{"kind": "Deployment", "name": "web"}, {"kind": "Deployment", "name": "gone"}]
    create_cr(api, ns, name, config_spec(path, who, rolloutRestartTargets=targets))
    wait_for(lambda: at_version(api, ns, name, v1), "v1 promoted")
    key = f"rotation.vaultbridge.io/{name}"

    def annotation() -> str | None:
        template = apps.read_namespaced_deployment("web", ns).spec.template
        return (template.metadata.annotations or {}).get(key)

    wait_for(lambda: annotation() == str(v1), "web annotated with v1")
    generation = apps.read_namespaced_deployment("web", ns).metadata.generation
    v2 = vault_put(testenv, path, {"value": f"{CANARY}-r2"})
    status, body = controller.trigger({"credential": f"{ns}/{name}"})
    assert status == 202, body
    wait_for(lambda: at_version(api, ns, name, v2), "v2 promoted")
    wait_for(lambda: annotation() == str(v2), "web annotated with v2")
    assert apps.read_namespaced_deployment("web", ns).metadata.generation == generation + 1

    def reasons() -> list[str]:
        return [f"{e['reason']}: {e.get('note', '')}" for e in events_for(api, ns, name)]

    wait_for(lambda: any("RolloutRestartFailed" in r and "gone" in r for r in reasons()), "warned")
    assert any(r.startswith("RolloutRestarted: restarted Deployment/web") for r in reasons())
    assert_no_canary(controller, *reasons())
