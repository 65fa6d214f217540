"""The rotation engine end to end against real OpenBao, Kubernetes and Ceph mons."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from kubernetes import client as k8s
from rotation_helpers import (
    ceph_config,
    cli_env,
    config_spec,
    create_cr,
    events_for,
    get_cr,
    read_secret,
    run_cli,
    unique,
    vault,
    vault_labels,
    vault_put,
    vaultbridge_cmd,
    wait_for,
)

import vaultbridge.app as application
from vaultbridge.model.spec import CredentialRef
from vaultbridge.testenv.env import Environment

pytestmark = pytest.mark.integration


def secret_value(api: k8s.ApiClient, ns: str, name: str = "cred", key: str = "value") -> str | None:
    secret = read_secret(api, ns, name)
    if secret is None or not secret.data or key not in secret.data:
        return None
    return base64.b64decode(secret.data[key]).decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def new_credential(
    testenv: Environment, api: k8s.ApiClient, ns: str, label: str, value: str
) -> tuple[str, str]:
    """A Vault path holding ``value`` and a config CredentialRotation ``cred`` that sends it to
    a fresh section: returns the path and the section."""
    path, who = unique(f"ceph/{label}"), f"client.rgw.{unique(label)}"
    vault_put(testenv, path, {"value": value})
    create_cr(api, ns, "cred", config_spec(path, who))
    return path, who


def synced_credential(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App, label: str
) -> tuple[str, CredentialRef]:
    """A credential (see :func:`new_credential`) whose first version is synced: path and ref."""
    path, _ = new_credential(testenv, api, ns, label, "one")
    ref = CredentialRef(ns, "cred")
    assert app.engine.sync(ref).result == "promoted"
    return path, ref


def wait_during(rotation: Future[Any], check: Callable[[], bool], what: Any = "") -> None:
    """Wait (5 s at most) until ``check()`` holds while ``rotation`` is still under way."""
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline and not rotation.done(), what
        time.sleep(0.02)


def test_rotation_end_to_end(
    testenv: Environment,
    api: k8s.ApiClient,
    ns: str,
    app: application.App,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, who = unique("ceph/rgw"), f"client.rgw.{unique('e2e')}"
    v1 = vault_put(testenv, path, {"value": "first-secret"})
    create_cr(api, ns, "cred", config_spec(path, who))
    ref = CredentialRef(ns, "cred")

    first = app.engine.sync(ref)
    assert first.result == "promoted" and first.version == v1
    v2 = vault_put(testenv, path, {"value": "second-secret"})
    second = app.engine.sync(ref)
    assert second.result == "promoted" and second.version == v2

    assert ceph_config(testenv, who, "rgw_keystone_admin_password") == "second-secret"
    secret = read_secret(api, ns, "cred")
    assert secret is not None
    assert base64.b64decode(secret.data["value"]).decode() == "second-secret"
    assert secret.metadata.annotations["vaultbridge.io/vault-version"] == str(v2)
    assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "vaultbridge"
    owner = secret.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller, owner.block_owner_deletion) == (
        "CredentialRotation",
        "cred",
        True,
        True,
    )
    status = get_cr(api, ns, "cred")["status"]
    assert (status["phase"], status["currentVersion"], status["previousVersion"]) == (
        "Promoted",
        v2,
        v1,
    )
    assert status["rotation"] is None and status["pendingVersion"] is None
    assert [h["version"] for h in status["history"]] == [v2, v1]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert vault_labels(testenv, path) == {
        "vaultbridge-current": str(v2),
        "vaultbridge-previous": str(v1),
    }
    # a quick rotation moves Vault's labels once, at Promote (no pending label in between)
    label_moves: list[int | None] = []
    vault_store = app.engine.vault
    assert vault_store is not None
    set_labels = vault_store.set_labels

    def counted(*args: Any, **kwargs: Any) -> None:
        label_moves.append(kwargs["pending"])
        set_labels(*args, **kwargs)

    monkeypatch.setattr(vault_store, "set_labels", counted)
    v3 = vault_put(testenv, path, {"value": "third-secret"})
    began = time.monotonic()
    assert app.engine.sync(ref).result == "promoted"
    if time.monotonic() - began < 0.25:  # quicker than the deferral (a loaded machine may not be)
        assert label_moves == [None]
    assert label_moves[-1] is None
    assert vault_labels(testenv, path) == {
        "vaultbridge-current": str(v3),
        "vaultbridge-previous": str(v2),
    }
    app.engine.events.flush()  # Events are recorded in the background
    events = events_for(api, ns, "cred")
    # a quick rotation reports its steps in one Event (a slow one sends each as it happens)
    promoted = [e for e in events if e["reason"] == "Promoted" and f"version {v2}" in e["note"]]
    assert len(promoted) == 1, events
    assert "(steps: RotationStarted → Applied → Verified → Promoted)" in promoted[0]["note"]
    # a second sync finds everything in step and changes nothing
    again = app.engine.sync(ref)
    assert again.result == "unchanged"
    assert get_cr(api, ns, "cred")["status"]["history"][0]["version"] == v3
    # no pre-image Secret is left behind
    assert read_secret(api, ns, "cred-vaultbridge-preimage") is None


def test_list_target_and_config_key(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    path, who = unique("ceph/keystone"), f"client.rgw.{unique('list')}"
    vault_put(testenv, path, {"user": "admin", "password": "pw-1"})
    create_cr(
        api,
        ns,
        "keystone",
        {
            "source": {"mount": "secret", "path": path},
            "secret": {"name": "keystone"},
            "target": {
                "config": [
                    {"who": who, "option": "rgw_keystone_admin_user", "field": "user"},
                    {"who": who, "option": "rgw_keystone_admin_password", "field": "password"},
                ]
            },
        },
    )
    assert app.engine.sync(CredentialRef(ns, "keystone")).result == "promoted"
    assert ceph_config(testenv, who, "rgw_keystone_admin_user") == "admin"
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") == "pw-1"
    assert secret_value(api, ns, "keystone", "user") == "admin"
    assert secret_value(api, ns, "keystone", "password") == "pw-1"

    key_path, key = unique("ceph/dash"), f"mgr/dashboard/{unique('k')}"
    vault_put(testenv, key_path, {"value": "dash-secret"})
    create_cr(
        api,
        ns,
        "dash",
        {
            "source": {"mount": "secret", "path": key_path},
            "secret": {"name": "dash"},
            "target": {"configKey": {"key": key}},
        },
    )
    assert app.engine.sync(CredentialRef(ns, "dash")).result == "promoted"
    assert testenv.ceph.ceph("config-key", "get", key) == "dash-secret"


def test_generate_rotate_and_rollback(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    path, who = unique("ceph/gen"), f"client.rgw.{unique('gen')}"
    create_cr(api, ns, "cred", config_spec(path, who, generate=True))
    ref = CredentialRef(ns, "cred")
    first = app.engine.rotate(ref)
    assert first.result == "promoted" and first.version == 1
    generated = ceph_config(testenv, who, "rgw_keystone_admin_password")
    assert generated and len(generated) >= 32
    second = app.engine.rotate(ref)
    assert second.result == "promoted" and second.version == 2
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") != generated
    back = app.engine.rollback(ref)
    assert back.result == "promoted" and back.version == 1
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") == generated
    assert secret_value(api, ns) == generated
    assert vault_labels(testenv, path)["vaultbridge-current"] == "1"
    refused = app.engine.rollback(ref, to_version=7)
    assert refused.result == "failed" and "never verified" in refused.message


def test_unknown_option_rolls_back_all_or_nothing(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    path, who = unique("ceph/bad"), f"client.rgw.{unique('bad')}"
    vault_put(testenv, path, {"user": "u1", "password": "p1"})
    spec = {
        "source": {"mount": "secret", "path": path},
        "secret": {"name": "cred"},
        "target": {
            "config": [
                {"who": who, "option": "rgw_keystone_admin_user", "field": "user"},
                {"who": who, "option": "rgw_keystone_admin_password", "field": "password"},
            ]
        },
    }
    create_cr(api, ns, "cred", spec)
    ref = CredentialRef(ns, "cred")
    assert app.engine.sync(ref).result == "promoted"
    # version 2 adds a third option that Ceph does not know: nothing of version 2 may stick
    v2 = vault_put(testenv, path, {"user": "u2", "password": "p2"})
    cr = get_cr(api, ns, "cred")
    cr["spec"]["target"]["config"].append(
        {"who": who, "option": "no_such_option_vb", "field": "password"}
    )
    k8s.CustomObjectsApi(api).replace_namespaced_custom_object(
        "vaultbridge.io", "v1alpha1", ns, "credentialrotations", "cred", cr
    )
    outcome = app.engine.sync(ref)
    assert outcome.result == "rolled-back", outcome
    assert "no_such_option_vb" in outcome.message
    assert ceph_config(testenv, who, "rgw_keystone_admin_user") == "u1"
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") == "p1"
    assert ceph_config(testenv, who, "no_such_option_vb") is None
    assert secret_value(api, ns, "cred", "password") == "p1"
    assert vault_labels(testenv, path) == {"vaultbridge-current": "1"}
    status = get_cr(api, ns, "cred")["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "RolledBack" and status["currentVersion"] == 1
    assert conditions["Ready"]["status"] == "False" and conditions["Degraded"]["status"] == "True"
    assert status["history"][0]["result"] == "RolledBack" and status["history"][0]["version"] == v2
    assert status["nextRetryTime"] is not None  # backoff, not a hot loop
    app.engine.events.flush()
    warnings = [e for e in events_for(api, ns, "cred") if e["type"] == "Warning"]
    assert any("no_such_option_vb" in e["note"] for e in warnings)


def test_missing_vault_path_and_field_change_nothing(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    who = f"client.rgw.{unique('missing')}"
    create_cr(api, ns, "nopath", config_spec(unique("ceph/none"), who))
    outcome = app.engine.sync(CredentialRef(ns, "nopath"))
    assert outcome.result == "failed" and outcome.reason == "VaultNotFound"
    status = get_cr(api, ns, "nopath")["status"]
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "VaultNotFound"
    assert status.get("currentVersion") is None and status.get("rotation") is None
    app.engine.events.flush()
    assert any(e["reason"] == "VaultNotFound" for e in events_for(api, ns, "nopath"))

    path = unique("ceph/nofield")
    vault_put(testenv, path, {"other": "x"})
    create_cr(api, ns, "nofield", config_spec(path, who))
    outcome = app.engine.sync(CredentialRef(ns, "nofield"))
    assert outcome.result == "failed" and outcome.reason == "VaultFieldMissing"
    assert "'value' missing" in outcome.message and "other" in outcome.message
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") is None
    assert read_secret(api, ns, "cred") is None


def test_secret_is_the_source(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    """rook/rook#15460: an edit of the Secret reaches the mon database."""
    who = f"client.rgw.{unique('src')}"
    create_cr(
        api,
        ns,
        "cred",
        {
            "secret": {"name": "cred"},
            "target": {"config": {"who": who, "option": "rgw_keystone_admin_password"}},
        },
    )
    cr = get_cr(api, ns, "cred")
    owner = k8s.V1OwnerReference(
        api_version="vaultbridge.io/v1alpha1",
        kind="CredentialRotation",
        name="cred",
        uid=cr["metadata"]["uid"],
        controller=True,
        block_owner_deletion=True,
    )
    core = k8s.CoreV1Api(api)
    core.create_namespaced_secret(
        ns,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name="cred", owner_references=[owner]),
            string_data={"value": "edited-1"},
        ),
    )
    ref = CredentialRef(ns, "cred")
    assert app.engine.sync(ref).result == "promoted"
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") == "edited-1"
    core.patch_namespaced_secret("cred", ns, {"stringData": {"value": "edited-2"}})
    outcome = app.engine.sync(ref)
    assert outcome.result == "promoted" and outcome.version == 2
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") == "edited-2"
    assert app.engine.sync(ref).result == "unchanged"


def test_refuses_unowned_secret_unless_adopt(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    path, who = unique("ceph/own"), f"client.rgw.{unique('own')}"
    vault_put(testenv, path, {"value": "v"})
    k8s.CoreV1Api(api).create_namespaced_secret(
        ns,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name="cred"), string_data={"value": "theirs", "other": "keep"}
        ),
    )
    create_cr(api, ns, "cred", config_spec(path, who))
    ref = CredentialRef(ns, "cred")
    outcome = app.engine.sync(ref)
    assert outcome.result == "failed" and outcome.reason == "SecretNotOwned"
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") is None
    cr = get_cr(api, ns, "cred")
    cr["spec"]["secret"]["adopt"] = True
    k8s.CustomObjectsApi(api).replace_namespaced_custom_object(
        "vaultbridge.io", "v1alpha1", ns, "credentialrotations", "cred", cr
    )
    assert app.engine.sync(ref).result == "promoted"
    assert secret_value(api, ns) == "v" and secret_value(api, ns, "cred", "other") == "keep"


def test_dry_run_changes_nothing(testenv: Environment, api: k8s.ApiClient, ns: str) -> None:
    path, who = new_credential(testenv, api, ns, "dry", "dry")
    done = run_cli(testenv, "sync", f"{ns}/cred", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "plan is valid" in done.stdout and "apply version 1" in done.stdout
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") is None
    assert read_secret(api, ns, "cred") is None
    assert not get_cr(api, ns, "cred").get("status")
    bad = run_cli(testenv, "sync", f"{ns}/cred", "--dry-run", "-o", "json")
    assert json.loads(bad.stdout)["result"] == "planned"
    create_cr(
        api,
        ns,
        "bad",
        config_spec(
            path,
            who,
        ),
    )
    cr = get_cr(api, ns, "bad")
    cr["spec"]["target"]["config"]["option"] = "no_such_option_dry"
    k8s.CustomObjectsApi(api).replace_namespaced_custom_object(
        "vaultbridge.io", "v1alpha1", ns, "credentialrotations", "bad", cr
    )
    refused = run_cli(testenv, "sync", f"{ns}/bad", "--dry-run")
    assert refused.returncode == 1 and "no_such_option_dry" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_deleting_the_cr_garbage_collects_the_secret(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    new_credential(testenv, api, ns, "gc", "gc")
    assert app.engine.sync(CredentialRef(ns, "cred")).result == "promoted"
    assert read_secret(api, ns, "cred") is not None
    k8s.CustomObjectsApi(api).delete_namespaced_custom_object(
        "vaultbridge.io", "v1alpha1", ns, "credentialrotations", "cred"
    )
    wait_for(
        lambda: read_secret(api, ns, "cred") is None,
        "Secret garbage-collected after the CR was deleted",
    )


def test_a_slow_step_gets_its_own_event(
    testenv: Environment,
    api: k8s.ApiClient,
    ns: str,
    app: application.App,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, ref = synced_credential(testenv, api, ns, app, "slow")
    v2 = vault_put(testenv, path, {"value": "two"})
    monkeypatch.setenv("VAULTBRIDGE_FAULT", "pause-after:Apply")
    with ThreadPoolExecutor(1) as pool:
        rotation = pool.submit(app.engine.sync, ref)
        # a rotation still under way after the status deferral shows its pending version
        wait_during(
            rotation,
            lambda: vault_labels(testenv, path).get("vaultbridge-pending") == str(v2),
            "pending label",
        )
        assert rotation.result().result == "promoted"
    assert vault_labels(testenv, path) == {
        "vaultbridge-current": str(v2),
        "vaultbridge-previous": "1",
    }
    app.engine.events.flush()
    notes = {e["note"] for e in events_for(api, ns, "cred")}
    # held back while the mon was slow: the start went out alone, the rest together at the end
    assert any(
        n.startswith("started rotation") and f"version {v2}" in n and "steps" not in n
        for n in notes
    ), notes
    assert any(
        n.startswith(f"version {v2} promoted")
        and n.endswith("(steps: Applied → Verified → Promoted)")
        for n in notes
    ), notes


def test_mons_down_rolls_back_cleanly(testenv: Environment, api: k8s.ApiClient, ns: str) -> None:
    path, who = new_credential(testenv, api, ns, "down", "before")
    assert run_cli(testenv, "sync", f"{ns}/cred").returncode == 0
    v2 = vault_put(testenv, path, {"value": "after"})
    stopped = testenv.ceph.mon_ids[1:]
    for mon in stopped:
        testenv.ceph.stop_mon(mon, wait_quorum=False)
    try:
        done = run_cli(testenv, "sync", f"{ns}/cred", timeout=180, VAULTBRIDGE_CEPH__TIMEOUT="3")
        assert done.returncode == 1
        assert "CephUnavailable" in done.stderr or "unavailable" in done.stderr.lower(), done.stderr
    finally:
        for mon in stopped:
            testenv.ceph.start_mon(mon)
    status = get_cr(api, ns, "cred")["status"]
    assert status["currentVersion"] == 1 and status["pendingVersion"] in (None, v2)
    assert secret_value(api, ns) == "before"
    journal = status["rotation"]
    if journal is None:  # the mons refused before anything was written
        assert ceph_config(testenv, who, "rgw_keystone_admin_password") == "before"
    else:
        # the survivor still held its lease and took the `config set`, which it could not
        # commit; Paxos may commit it once the quorum is back. The journal says a restore is
        # owed and the next run performs it before anything else
        assert journal["step"] == "RollingBack" and journal["reason"] == "CephUnavailable"
    # once the mons are back, the next sync completes (finishing any owed rollback first)
    done = run_cli(testenv, "sync", f"{ns}/cred")
    assert done.returncode == 0, done.stderr
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") == "after"
    assert secret_value(api, ns) == "after"


@pytest.mark.parametrize("fault", ["hang-after:Apply", "hang-after:Verify", "hang-after:Snapshot"])
def test_kill_9_mid_rotation_then_restart_completes(
    testenv: Environment, api: k8s.ApiClient, ns: str, fault: str
) -> None:
    path, who = new_credential(testenv, api, ns, "crash", "old-credential")
    assert run_cli(testenv, "sync", f"{ns}/cred").returncode == 0
    v2 = vault_put(testenv, path, {"value": "new-credential"})
    proc = subprocess.Popen(
        [*vaultbridge_cmd(), "sync", f"{ns}/cred"],
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(testenv, VAULTBRIDGE_FAULT=fault),
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while "fault point" not in proc.stderr.readline():
        assert time.monotonic() < deadline and proc.poll() is None, "fault point never reached"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    journal = get_cr(api, ns, "cred")["status"]["rotation"]
    assert journal is not None and journal["version"] == v2
    # the old credential is still what the Secret holds: nothing is lost
    assert secret_value(api, ns) == "old-credential"
    # the killed process held the journal: it is taken over once silent for takeover_after
    resumed = run_cli(testenv, "sync", f"{ns}/cred", VAULTBRIDGE_ROTATION__TAKEOVER_AFTER="2")
    assert resumed.returncode == 0, resumed.stderr
    assert "is in flight in" in resumed.stderr  # it waited for the holder to fall silent
    status = get_cr(api, ns, "cred")["status"]
    assert status["rotation"] is None and status["currentVersion"] == v2
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") == "new-credential"
    assert secret_value(api, ns) == "new-credential"
    assert read_secret(api, ns, "cred-vaultbridge-preimage") is None
    assert vault_labels(testenv, path) == {
        "vaultbridge-current": str(v2),
        "vaultbridge-previous": "1",
    }


def test_canary_never_leaks(testenv: Environment, api: k8s.ApiClient, ns: str) -> None:
    canary = "CANARY-" + unique("s3cr3t")
    path, who = new_credential(testenv, api, ns, "canary", canary)
    outputs = []
    for args in (
        ["sync", f"{ns}/cred", "--dry-run"],
        ["sync", f"{ns}/cred"],
        ["status", "-o", "json"],
        ["history", f"{ns}/cred"],
    ):
        done = run_cli(testenv, *args, VAULTBRIDGE_LOG_LEVEL="DEBUG")
        outputs += [done.stdout, done.stderr]
    # a failure path too: an unknown option with the canary as the value
    cr = get_cr(api, ns, "cred")
    cr["spec"]["target"]["config"]["option"] = "no_such_option_canary"
    k8s.CustomObjectsApi(api).replace_namespaced_custom_object(
        "vaultbridge.io", "v1alpha1", ns, "credentialrotations", "cred", cr
    )
    vault_put(testenv, path, {"value": canary + "-2"})
    failed = run_cli(testenv, "sync", f"{ns}/cred", VAULTBRIDGE_LOG_LEVEL="DEBUG")
    assert failed.returncode == 1
    outputs += [failed.stdout, failed.stderr]
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") == canary  # it did reach Ceph
    status_text = json.dumps(get_cr(api, ns, "cred")["status"])
    events_text = json.dumps(events_for(api, ns, "cred"))
    for text in [*outputs, status_text, events_text]:
        assert canary not in text
    assert vault(testenv).secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )


def test_concurrent_syncs_run_one_rotation(
    testenv: Environment, api: k8s.ApiClient, ns: str
) -> None:
    path, who = new_credential(testenv, api, ns, "race", "race-1")
    assert run_cli(testenv, "sync", f"{ns}/cred").returncode == 0
    v2 = vault_put(testenv, path, {"value": "race-2"})
    procs = [
        subprocess.Popen(
            [*vaultbridge_cmd(), "sync", f"{ns}/cred", "-o", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(testenv),
        )
        for _ in range(4)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        results.append(json.loads(out)["result"])
    assert "promoted" in results
    assert set(results) <= {"promoted", "in-flight", "unchanged"}, results
    status = get_cr(api, ns, "cred")["status"]
    promoted_v2 = [h for h in status["history"] if h["version"] == v2 and h["result"] == "Promoted"]
    assert len(promoted_v2) == results.count("promoted") == 1, (results, status["history"])
    assert status["rotation"] is None and status["currentVersion"] == v2
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") == "race-2"


def test_unreachable_vault_is_one_clear_line_and_changes_nothing(
    testenv: Environment, api: k8s.ApiClient, ns: str
) -> None:
    from vaultbridge.testenv.common import free_port

    _, who = new_credential(testenv, api, ns, "novault", "v1")
    done = run_cli(
        testenv, "sync", f"{ns}/cred", VAULTBRIDGE_VAULT__ADDR=f"http://127.0.0.1:{free_port()}"
    )
    assert done.returncode == 1
    lines = [line for line in done.stderr.strip().splitlines() if " INFO " not in line]
    assert len(lines) == 1 and "VaultUnavailable" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    status = get_cr(api, ns, "cred")["status"]
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "VaultUnavailable"
    assert status["nextRetryTime"] is not None
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") is None
    assert read_secret(api, ns, "cred") is None
    bad_settings = run_cli(
        testenv,
        "sync",
        f"{ns}/cred",
        VAULTBRIDGE_VAULT__AUTH="magic",
        VAULTBRIDGE_VAULT__TOKEN="CANARY-TOKEN-123",
    )
    assert bad_settings.returncode == 2
    assert (
        "VAULTBRIDGE_VAULT__AUTH" in bad_settings.stderr
        and "CANARY-TOKEN-123" not in bad_settings.stderr
    )


def test_a_sync_claims_from_the_engines_copy_and_a_stale_copy_is_read_again(
    testenv: Environment,
    api: k8s.ApiClient,
    ns: str,
    app: application.App,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, ref = synced_credential(testenv, api, ns, app, "copy")
    who = get_cr(api, ns, "cred")["spec"]["target"]["config"]["who"]
    loads: list[CredentialRef] = []
    load = app.engine.credentials.load

    def counted(ref: CredentialRef) -> Any:
        loads.append(ref)
        return load(ref)

    monkeypatch.setattr(app.engine.credentials, "load", counted)
    # the engine wrote the CR last: the next rotation claims from its copy, without a read;
    # its copy of the Secret is stale (edited meanwhile): the write re-reads and keeps the edit
    k8s.CoreV1Api(api).patch_namespaced_secret(
        "cred", ns, {"data": {"value": b64("edited"), "foreign": b64("kept")}}
    )
    v2 = vault_put(testenv, path, {"value": "two"})
    assert app.engine.sync(ref).result == "promoted"
    assert loads == []
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") == "two"
    assert secret_value(api, ns) == "two"
    assert secret_value(api, ns, key="foreign") == "kept"
    # with no rotation due, the copy of the Secret is not used: a drift check sees the edit
    k8s.CoreV1Api(api).patch_namespaced_secret("cred", ns, {"data": {"value": b64("drift")}})
    assert app.engine.sync(ref).result == "promoted"
    assert secret_value(api, ns) == "two"
    loads.clear()
    # another process rotates: the copy is stale, its claim is refused, a fresh read decides
    v3 = vault_put(testenv, path, {"value": "three"})
    assert run_cli(testenv, "sync", f"{ns}/cred").returncode == 0
    again = app.engine.sync(ref)
    assert (again.result, again.version) == ("unchanged", v3), again
    assert loads == [ref]
    # an edited spec: the claim from the stale copy is refused, the new target gets the value
    other = f"client.rgw.{unique('copy')}"
    cr = get_cr(api, ns, "cred")
    cr["spec"]["target"]["config"]["who"] = other
    k8s.CustomObjectsApi(api).replace_namespaced_custom_object(
        "vaultbridge.io", "v1alpha1", ns, "credentialrotations", "cred", cr
    )
    vault_put(testenv, path, {"value": "four"})
    assert app.engine.sync(ref).result == "promoted"
    assert ceph_config(testenv, other, "rgw_keystone_admin_password") == "four"
    assert ceph_config(testenv, who, "rgw_keystone_admin_password") == "three"
    status = get_cr(api, ns, "cred")["status"]
    assert [h["version"] for h in status["history"]][:3] == [v3 + 1, v3, v2]
    assert all(h["result"] == "Promoted" for h in status["history"])


def test_a_journal_taken_over_by_another_writer_is_not_overwritten(
    testenv: Environment,
    api: k8s.ApiClient,
    ns: str,
    app: application.App,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, ref = synced_credential(testenv, api, ns, app, "takeover")
    vault_put(testenv, path, {"value": "two"})
    monkeypatch.setenv("VAULTBRIDGE_FAULT", "pause-after:Apply")
    with ThreadPoolExecutor(1) as pool:
        rotation = pool.submit(app.engine.sync, ref)
        # while the mon is slow (the claim is written), another writer takes the journal over
        wait_during(rotation, lambda: get_cr(api, ns, "cred")["status"].get("rotation") is not None)
        cr = get_cr(api, ns, "cred")
        cr["status"]["rotation"]["id"] = "other-writer"
        k8s.CustomObjectsApi(api).replace_namespaced_custom_object_status(
            "vaultbridge.io", "v1alpha1", ns, "credentialrotations", "cred", cr
        )
        outcome = rotation.result()
    # our next status write found the status changed by another writer: it stopped there
    assert (outcome.result, outcome.reason) == ("in-flight", "RotationInFlight"), outcome
    assert get_cr(api, ns, "cred")["status"]["rotation"]["id"] == "other-writer"


def test_a_rotation_a_live_engine_drives_is_not_taken_over(
    testenv: Environment,
    api: k8s.ApiClient,
    ns: str,
    app: application.App,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A CLI sync while the controller's engine rotates the same credential slowly waits for
    it, however long it lasts: the engine's heartbeat keeps the journal its own."""
    path, ref = synced_credential(testenv, api, ns, app, "live-holder")
    version = vault_put(testenv, path, {"value": "two"})
    app.engine.takeover_after = timedelta(seconds=1.5)  # a heartbeat every 0.5 s
    monkeypatch.setenv("VAULTBRIDGE_FAULT", "pause-after:Apply:5")  # a mon slow for 5 s
    heartbeats: set[str] = set()
    done = threading.Event()

    def watch_journal() -> None:
        while not done.is_set():
            journal = get_cr(api, ns, "cred")["status"].get("rotation")
            if journal is not None:
                heartbeats.add(journal["heartbeatAt"])
            time.sleep(0.1)

    with ThreadPoolExecutor(2) as pool:
        rotation = pool.submit(app.engine.sync, ref)
        wait_during(rotation, lambda: get_cr(api, ns, "cred")["status"].get("rotation") is not None)
        watcher = pool.submit(watch_journal)
        # another process takes over a journal silent for 3 s: the engine's never is, although
        # it does nothing else for 5 s
        other = run_cli(testenv, "sync", f"{ns}/cred", VAULTBRIDGE_ROTATION__TAKEOVER_AFTER="3")
        outcome = rotation.result()
        done.set()
        watcher.result()
    assert (outcome.result, outcome.version) == ("promoted", version), outcome
    assert other.returncode == 0, other.stderr
    assert "is in flight in" in other.stderr  # it waited for the holder
    assert len(heartbeats) >= 2, heartbeats  # the journal was rewritten while Apply was paused
    status = get_cr(api, ns, "cred")["status"]
    promoted = [h for h in status["history"] if h["version"] == version]
    assert status["rotation"] is None and status["currentVersion"] == version
    assert [h["result"] for h in promoted] == ["Promoted"]  # one rotation, never resumed
    assert not [
        e for e in events_for(api, ns, "cred") if "RotationResumed" in e["note"] + e["reason"]
    ]
