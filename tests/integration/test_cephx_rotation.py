"""cephx key rotation end to end against real OpenBao, Kubernetes and 3 Pacific mons."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import hvac
import pytest
from ceph_helpers import new_key
from cephx_helpers import can_auth, cephx_spec, entities, new_entity, secret_cephx
from kubernetes import client as k8s
from rotation_helpers import (
    cli_env,
    create_cr,
    get_cr,
    read_secret,
    run_cli,
    settled_events,
    unique,
    vault,
    vault_labels,
    vault_put,
    vaultbridge_cmd,
    wait_for,
)

import vaultbridge.app as application
from vaultbridge.ceph import CephConnection, cephx_key_type, read_mon_release
from vaultbridge.engine.outcome import Outcome
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import CredentialRef
from vaultbridge.rotation.timing import PERMANENT_BACKOFF_BASE
from vaultbridge.settings import load_settings
from vaultbridge.testenv.env import Environment

pytestmark = pytest.mark.integration


def consumer_probe(testenv: Environment, ns: str, stop: Path) -> subprocess.Popen[str]:
    """``cephx_probe.py``: a consumer that re-reads Secret ``cred`` and authenticates with it
    every 200 ms until ``stop`` exists."""
    env = cli_env(testenv)
    env["PYTHONPATH"] = str(Path(__file__).parent)
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "cephx_probe.py"), ns, "cred", str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_alternate_rotation_creates_generation_and_retires_previous(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    base, path = new_entity(), unique("ceph/cephx")
    # a rotate retires what is due itself: 1 s of grace keeps .1 alive past the second one
    create_cr(api, ns, "cred", cephx_spec(path, base, retireAfter="1s"))
    ref = CredentialRef(ns, "cred")

    first = app.engine.rotate(ref)
    assert first.result == "promoted", first.message
    data = secret_cephx(api, ns)
    assert data["userID"] == f"{base.removeprefix('client.')}.1"
    assert data["keyring"].startswith(f"[{base}.1]")
    assert can_auth(testenv, f"{base}.1", data["userKey"])
    status = get_cr(api, ns, "cred")["status"]
    assert status["currentEntity"] == f"{base}.1" and status["currentVersion"] == 1

    second = app.engine.rotate(ref)
    assert second.result == "promoted", second.message
    new = secret_cephx(api, ns)
    assert new["userID"] == f"{base.removeprefix('client.')}.2"
    assert can_auth(testenv, f"{base}.2", new["userKey"])
    assert can_auth(testenv, f"{base}.1", data["userKey"])  # still there until retired
    assert vault_labels(testenv, path) == {"vaultbridge-current": "2", "vaultbridge-previous": "1"}

    time.sleep(1.1)
    reconciled = app.engine.reconcile(ref)
    assert reconciled.ok, reconciled.message
    assert entities(testenv, base) == [f"{base}.2"]
    assert not can_auth(testenv, f"{base}.1", data["userKey"])  # the old key no longer works
    status = get_cr(api, ns, "cred")["status"]
    assert status["retiring"] == [] and status["phase"] == "Promoted"
    reasons = [e["reason"] for e in settled_events(app, api, ns, "cred")]
    assert "Retired" in reasons


def slow_retry(outcome: Outcome) -> bool:
    """No retry storm: a permanent problem is retried slowly, if at all."""
    return outcome.retry_after is None or outcome.retry_after >= PERMANENT_BACKOFF_BASE / 2


def patch_spec(api: k8s.ApiClient, ns: str, name: str, spec: dict[str, object]) -> None:
    k8s.CustomObjectsApi(api).patch_namespaced_custom_object(
        "vaultbridge.io", "v1alpha1", ns, "credentialrotations", name, {"spec": spec}
    )


def condition(status: dict[str, object], kind: str) -> dict[str, str]:
    for c in status.get("conditions") or []:  # type: ignore[attr-defined]
        if c["type"] == kind:
            return dict(c)
    raise AssertionError(f"no condition {kind}: {status.get('conditions')}")


def test_twenty_rotations_while_a_consumer_probe_never_fails(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App, tmp_path: Path
) -> None:
    base, path = new_entity(), unique("ceph/probe")
    create_cr(api, ns, "cred", cephx_spec(path, base, retireAfter="2s", keepPrior=1))
    ref = CredentialRef(ns, "cred")
    assert app.engine.rotate(ref).result == "promoted"
    stop = tmp_path / "stop"
    probe = consumer_probe(testenv, ns, stop)
    try:
        time.sleep(1.0)  # the probe is running before the first rotation
        for _ in range(20):
            outcome = app.engine.rotate(ref)
            assert outcome.result == "promoted", outcome.message
            assert app.engine.reconcile(ref).ok
            time.sleep(0.3)
        time.sleep(2.5)  # let the last grace pass, then retire what is due
        app.engine.reconcile(ref)
    finally:
        stop.touch()
        out, _err = probe.communicate(timeout=60)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["failures"] == 0, report
    assert report["attempts"] >= 20 and len(report["entities"]) >= 10, report
    status = get_cr(api, ns, "cred")["status"]
    assert status["currentVersion"] == 21 and status["currentEntity"] == f"{base}.21"
    assert set(entities(testenv, base)) <= {f"{base}.20", f"{base}.21"}
    assert f"{base}.21" in entities(testenv, base)


def test_ten_in_place_rotations_with_pending_keys_while_a_consumer_never_fails(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App, tmp_path: Path
) -> None:
    """Reef and later: in-place rotation stages a pending key and leaves it pending at the
    promotion, so a consumer that re-reads the Secret every 200 ms and authenticates with what
    it holds never fails: the old key works until the consumer's first use of the new one
    commits it (the window of docs/ceph-releases.md is between consumers, and there is one)."""
    if testenv.ceph.release < 18:
        pytest.skip("Pacific has no pending keys; its in-place window is tested above")
    base, path = new_entity(), unique("ceph/pending")
    create_cr(api, ns, "cred", cephx_spec(path, base, strategy="in-place", retireAfter="1h"))
    ref = CredentialRef(ns, "cred")
    assert app.engine.rotate(ref).result == "promoted"
    stop = tmp_path / "stop"
    probe = consumer_probe(testenv, ns, stop)
    keys: list[str] = []
    try:
        time.sleep(1.0)
        for _ in range(10):
            outcome = app.engine.rotate(ref)
            assert outcome.result == "promoted", outcome.message
            keys.append(secret_cephx(api, ns)["userKey"])
            time.sleep(1.2)  # the consumer reads the new Secret and commits the key by use
    finally:
        stop.touch()
        out, _err = probe.communicate(timeout=60)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["failures"] == 0, report
    assert report["attempts"] >= 40, report
    assert entities(testenv, base) == [base]
    assert can_auth(testenv, base, keys[-1])
    wait_for(lambda: not can_auth(testenv, base, keys[-2]), "the previous key refused")


def test_a_pending_key_nobody_used_is_committed_after_retire_after(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    """No consumer picked the new key up: vaultbridge commits it itself once retireAfter has
    passed since the promotion, so the old key does not outlive a compliance rotation."""
    if testenv.ceph.release < 18:
        pytest.skip("Pacific has no pending keys")
    base, path = new_entity(), unique("ceph/commit")
    create_cr(api, ns, "cred", cephx_spec(path, base, strategy="in-place", retireAfter="2s"))
    ref = CredentialRef(ns, "cred")
    assert app.engine.rotate(ref).result == "promoted"
    old = secret_cephx(api, ns)["userKey"]
    outcome = app.engine.rotate(ref)
    assert outcome.result == "promoted", outcome.message
    assert outcome.retry_after is not None and outcome.retry_after.total_seconds() <= 2
    new = secret_cephx(api, ns)["userKey"]
    store = app.engine.cephx
    assert store is not None
    live = store.get_entity(base)
    assert live is not None and live.pending_key is not None  # nobody has used it yet
    assert (live.key.reveal(), live.pending_key.reveal()) == (old, new)
    time.sleep(2.5)
    assert app.engine.reconcile(ref).ok
    live = store.get_entity(base)
    assert live is not None and live.key.reveal() == new and live.pending_key is None
    wait_for(lambda: not can_auth(testenv, base, old), "the old key refused")
    assert "KeyCommitted" in [e["reason"] for e in settled_events(app, api, ns, "cred")]


def test_a_rotation_within_retire_after_commits_the_previous_key_and_stages_a_new_one(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    """Ceph holds one pending key per entity and hands the same one out again: a second
    rotation before the first one's key was used or committed must still change the key. It
    commits the promoted one first; a pending key vaultbridge did not write is refused."""
    if testenv.ceph.release < 18:
        pytest.skip("Pacific has no pending keys")
    base, path = new_entity(), unique("ceph/twice")
    create_cr(api, ns, "cred", cephx_spec(path, base, strategy="in-place", retireAfter="1h"))
    ref = CredentialRef(ns, "cred")
    assert app.engine.rotate(ref).result == "promoted"
    keys = []
    for _ in range(2):
        outcome = app.engine.rotate(ref)
        assert outcome.result == "promoted", outcome.message
        keys.append(secret_cephx(api, ns)["userKey"])
    assert keys[0] != keys[1]
    store = app.engine.cephx
    assert store is not None
    live = store.get_entity(base)
    assert live is not None and live.pending_key is not None
    assert (live.key.reveal(), live.pending_key.reveal()) == (keys[0], keys[1])

    store.commit_pending(base)
    foreign = store.get_or_create_pending(base)  # staged by someone else
    before = vault(testenv).secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")
    refused = app.engine.rotate(ref)
    assert refused.reason == "PendingKeyExists" and slow_retry(refused), refused
    after = vault(testenv).secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")
    assert after["data"]["current_version"] == before["data"]["current_version"]
    live = store.get_entity(base)
    assert live is not None and live.pending_key == foreign and live.key.reveal() == keys[1]
    assert foreign.reveal() not in refused.message


def test_verification_failure_rolls_back_and_keeps_the_old_generation(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    base, path = new_entity(), unique("ceph/verify")
    spec = cephx_spec(path, base)
    create_cr(api, ns, "cred", spec)
    ref = CredentialRef(ns, "cred")
    assert app.engine.rotate(ref).result == "promoted"
    before = secret_cephx(api, ns)
    # caps Ceph accepts, but that refuse the probe (`mon stat`)
    patch_spec(
        api,
        ns,
        "cred",
        {"target": {"cephx": {"entity": base, "caps": {"mon": 'allow command "config get"'}}}},
    )
    outcome = app.engine.rotate(ref)
    assert outcome.result == "rolled-back", outcome.message
    assert outcome.reason == "CephPermissionDenied" and slow_retry(outcome)  # no retry storm
    assert entities(testenv, base) == [f"{base}.1"]
    assert secret_cephx(api, ns) == before
    assert can_auth(testenv, f"{base}.1", before["userKey"])
    status = get_cr(api, ns, "cred")["status"]
    assert (
        status["currentVersion"] == 1
        and status["phase"] == "RolledBack"
        and status["rotation"] is None
    )
    assert before["userKey"] not in json.dumps(status)
    assert "RolledBack" in [e["reason"] for e in settled_events(app, api, ns, "cred")]


def test_one_mon_stopped_rotation_still_succeeds(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    base, path = new_entity(), unique("ceph/onemon")
    create_cr(api, ns, "cred", cephx_spec(path, base, retireAfter="0s"))
    ref = CredentialRef(ns, "cred")
    assert app.engine.rotate(ref).result == "promoted"
    mon = testenv.ceph.mon_ids[-1]
    testenv.ceph.stop_mon(mon)
    try:
        outcome = app.engine.rotate(ref)
        assert outcome.result == "promoted", outcome.message
        data = secret_cephx(api, ns)
        assert can_auth(testenv, f"{base}.2", data["userKey"])
        assert app.engine.reconcile(ref).ok  # retirement asks the mons in quorum
    finally:
        testenv.ceph.start_mon(mon)
    assert entities(testenv, base) == [f"{base}.2"]


def test_two_mons_stopped_fails_cleanly_then_completes(
    testenv: Environment, api: k8s.ApiClient, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in testenv.variables().items():
        if key.startswith("VAULTBRIDGE_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("VAULTBRIDGE_CEPH__TIMEOUT", "2")
    app = application.build(load_settings())
    try:
        base, path = new_entity(), unique("ceph/twomons")
        create_cr(api, ns, "cred", cephx_spec(path, base, retireAfter="1s"))
        ref = CredentialRef(ns, "cred")
        assert app.engine.rotate(ref).result == "promoted"
        assert app.engine.rotate(ref).result == "promoted"
        time.sleep(1.1)  # .1 retiring, due now
        before = secret_cephx(api, ns)
        stopped = testenv.ceph.mon_ids[1:]
        for mon in stopped:
            testenv.ceph.stop_mon(mon, wait_quorum=False)
        try:
            outcome = app.engine.rotate(ref)
            assert not outcome.ok
            assert app.engine.reconcile(ref).result != "promoted"
            status = get_cr(api, ns, "cred")["status"]
            assert status["currentVersion"] == 2 and status["currentEntity"] == f"{base}.2"
            assert [r["entity"] for r in status["retiring"]] == [f"{base}.1"]  # nothing retired
            ready = condition(status, "Ready")
            assert ready["status"] == "False" and ready["reason"] in (
                "CephUnavailable",
                "RollbackFailed",
            )
            assert secret_cephx(api, ns) == before
        finally:
            for mon in stopped:
                testenv.ceph.start_mon(mon)
        assert set(entities(testenv, base)) <= {f"{base}.1", f"{base}.2", f"{base}.3", f"{base}.4"}
        # as the controller would: reconcile again until it completes (the first call may
        # finish an interrupted rollback; the mons may still be settling their quorum)
        for _ in range(10):
            done = app.engine.reconcile(ref)
            if done.ok:
                break
            time.sleep(1)
        assert done.ok, done.message
        status = get_cr(api, ns, "cred")["status"]
        assert status["rotation"] is None and status["currentVersion"] >= 3
        assert set(entities(testenv, base)) <= {f"{base}.2", status["currentEntity"]}
    finally:
        app.close()


def test_kill_9_between_apply_and_promote_then_restart_completes(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    base, path = new_entity(), unique("ceph/crash")
    create_cr(api, ns, "cred", cephx_spec(path, base))
    ref = CredentialRef(ns, "cred")
    assert app.engine.rotate(ref).result == "promoted"
    before = secret_cephx(api, ns)
    proc = subprocess.Popen(
        [*vaultbridge_cmd(), "rotate", f"{ns}/cred"],
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(testenv, VAULTBRIDGE_FAULT="hang-after:Apply"),
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while "fault point" not in proc.stderr.readline():
        assert time.monotonic() < deadline and proc.poll() is None, "fault point never reached"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    status = get_cr(api, ns, "cred")["status"]
    assert status["rotation"]["version"] == 2 and status["rotation"]["entity"] == f"{base}.2"
    assert secret_cephx(api, ns) == before  # nothing promoted yet
    assert f"{base}.2" in entities(testenv, base)
    resumed = run_cli(testenv, "sync", f"{ns}/cred", VAULTBRIDGE_ROTATION__TAKEOVER_AFTER="2")
    assert resumed.returncode == 0, resumed.stderr
    status = get_cr(api, ns, "cred")["status"]
    assert status["rotation"] is None and status["currentEntity"] == f"{base}.2"
    data = secret_cephx(api, ns)
    assert data["userID"].endswith(".2") and can_auth(testenv, f"{base}.2", data["userKey"])
    assert before["userKey"] not in resumed.stderr + resumed.stdout


def test_retirement_waits_while_a_mon_lists_a_session(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    base, path = new_entity(), unique("ceph/session")
    create_cr(api, ns, "cred", cephx_spec(path, base, retireAfter="0s"))
    ref = CredentialRef(ns, "cred")
    assert app.engine.rotate(ref).result == "promoted"
    old = secret_cephx(api, ns)
    holder = CephConnection(
        str(testenv.ceph.conf), f"{base}.1", keyring="", key=Sensitive(old["userKey"]), quiet=True
    )
    holder.mon_command({"prefix": "mon stat"})
    try:
        assert app.engine.rotate(ref).result == "promoted"
        outcome = app.engine.reconcile(ref)
        assert outcome.retry_after is not None
        status = get_cr(api, ns, "cred")["status"]
        assert status["retiring"][0]["entity"] == f"{base}.1"
        assert "session" in status["retiring"][0]["blockedReason"]
        assert "RetireBlocked" in [e["reason"] for e in settled_events(app, api, ns, "cred")]
        assert f"{base}.1" in entities(testenv, base)
    finally:
        holder.close()

    def retired() -> bool:
        app.engine.reconcile(ref)
        return entities(testenv, base) == [f"{base}.2"]

    wait_for(retired, "retirement after the session closed", timeout=60)
    assert not can_auth(testenv, f"{base}.1", old["userKey"])


def test_caps_drift_is_reported_then_corrected_by_the_next_rotation(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    base, path = new_entity(), unique("ceph/drift")
    create_cr(api, ns, "cred", cephx_spec(path, base))
    ref = CredentialRef(ns, "cred")
    assert app.engine.rotate(ref).result == "promoted"
    testenv.ceph.ceph("auth", "caps", f"{base}.1", "mon", "allow rw")
    assert app.engine.reconcile(ref).result == "unchanged"
    status = get_cr(api, ns, "cred")["status"]
    caps = condition(status, "CapsInSync")
    assert caps["status"] == "False" and caps["reason"] == "CapsDrift"
    assert "CapsDrift" in [e["reason"] for e in settled_events(app, api, ns, "cred")]
    app.engine.reconcile(ref)  # reported once, not on every reconcile
    assert [e["reason"] for e in settled_events(app, api, ns, "cred")].count("CapsDrift") == 1
    assert app.engine.rotate(ref).result == "promoted"
    status = get_cr(api, ns, "cred")["status"]
    assert condition(status, "CapsInSync")["status"] == "True"
    live = json.loads(testenv.ceph.ceph("auth", "get", f"{base}.2", "--format", "json"))
    assert live[0]["caps"] == {"mon": "allow r"}


def test_existing_entity_is_adopted_without_changing_ceph(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    base, path = new_entity(), unique("ceph/adopt")
    testenv.ceph.ceph("auth", "get-or-create", base, "mon", "allow r")
    existing = json.loads(testenv.ceph.ceph("auth", "get", base, "--format", "json"))[0]
    create_cr(api, ns, "cred", cephx_spec(path, base))
    ref = CredentialRef(ns, "cred")
    outcome = app.engine.reconcile(ref)
    assert outcome.result == "promoted" and outcome.version == 1, outcome.message
    assert (
        vault(testenv).secrets.kv.v2.read_secret_version(
            path=path, mount_point="secret", version=1, raise_on_deleted_version=True
        )["data"]["data"]["key"]
        == existing["key"]
    )
    after = json.loads(testenv.ceph.ceph("auth", "get", base, "--format", "json"))[0]
    assert after == existing  # Ceph unchanged
    data = secret_cephx(api, ns)
    assert data["userID"] == base.removeprefix("client.") and data["userKey"] == existing["key"]
    status = get_cr(api, ns, "cred")["status"]
    assert status["currentVersion"] == 1 and status["currentEntity"] == base
    assert "Adopted" in [e["reason"] for e in settled_events(app, api, ns, "cred")]
    # the next rotation moves to a generation; the adopted entity retires later
    assert app.engine.rotate(ref).result == "promoted"
    status = get_cr(api, ns, "cred")["status"]
    assert status["currentEntity"] == f"{base}.2" and status["retiring"][0]["entity"] == base


def test_in_place_rotation_swaps_the_key_and_rolls_back_on_failure(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    base, path = new_entity(), unique("ceph/inplace")
    create_cr(api, ns, "cred", cephx_spec(path, base, strategy="in-place"))
    ref = CredentialRef(ns, "cred")
    outcome = app.engine.rotate(ref)
    assert outcome.result == "promoted", outcome.message
    first = secret_cephx(api, ns)
    assert first["userID"] == base.removeprefix("client.")
    outcome = app.engine.rotate(ref)
    assert outcome.result == "promoted", outcome.message
    second = secret_cephx(api, ns)
    assert entities(testenv, base) == [base]
    if testenv.ceph.release >= 18:
        # a pending key: the old key keeps working after the promotion, until the first
        # authentication with the new one commits it (docs/cephx.md, "Pending keys")
        assert can_auth(testenv, base, first["userKey"])
        assert can_auth(testenv, base, second["userKey"])
        wait_for(lambda: not can_auth(testenv, base, first["userKey"]), "old key refused")
    else:
        assert can_auth(testenv, base, second["userKey"]) and not can_auth(
            testenv, base, first["userKey"]
        )
    assert read_secret(api, ns, "cred-vaultbridge-preimage") is None
    # a failing verification re-imports the snapshot: old key and old caps back. With a pending
    # key (Reef and later) Verify reads back instead of authenticating, so the failure here is
    # caps Ceph refuses at Apply: the rollback must leave the old key working all the same
    failing_caps = (
        {"mon": "allow wibble"}
        if testenv.ceph.release >= 18
        else {"mon": 'allow command "config get"'}
    )
    patch_spec(
        api,
        ns,
        "cred",
        {
            "target": {
                "cephx": {
                    "entity": base,
                    "strategy": "in-place",
                    "caps": failing_caps,
                }
            }
        },
    )
    outcome = app.engine.rotate(ref)
    assert outcome.result == "rolled-back", outcome.message
    assert can_auth(testenv, base, second["userKey"])
    live = json.loads(testenv.ceph.ceph("auth", "get", base, "--format", "json"))[0]
    assert live["key"] == second["userKey"] and live["caps"] == {"mon": "allow r"}
    assert secret_cephx(api, ns) == second
    assert second["userKey"] not in json.dumps(get_cr(api, ns, "cred")["status"])


# -- bad input: a clear reason, nothing changed in Ceph, no retry ------------------------------


def test_malformed_key_in_vault(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    base, path = new_entity(), unique("ceph/badkey")
    vault_put(testenv, path, {"key": "not-a-cephx-key-CANARY"})
    create_cr(api, ns, "cred", cephx_spec(path, base, generate=False))
    outcome = app.engine.sync(CredentialRef(ns, "cred"))
    assert outcome.reason == "MalformedCephxKey" and slow_retry(outcome)
    assert "CANARY" not in outcome.message
    assert entities(testenv, base) == []
    status = get_cr(api, ns, "cred")["status"]
    assert condition(status, "Ready")["reason"] == "MalformedCephxKey"
    assert "CANARY" not in json.dumps(status)
    assert "MalformedCephxKey" in [e["reason"] for e in settled_events(app, api, ns, "cred")]


def test_caps_ceph_rejects(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    base, path = new_entity(), unique("ceph/badcaps")
    create_cr(api, ns, "cred", cephx_spec(path, base, caps={"mon": "allow frobnicate"}))
    outcome = app.engine.rotate(CredentialRef(ns, "cred"))
    assert not outcome.ok and slow_retry(outcome), outcome
    assert outcome.reason == "CephRejected"
    assert entities(testenv, base) == []
    assert read_secret(api, ns, "cred") is None
    assert any(e["type"] == "Warning" for e in settled_events(app, api, ns, "cred"))


def test_malformed_keyring_in_source_secret(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App
) -> None:
    base = new_entity()
    key = new_key().reveal()
    k8s.CoreV1Api(api).create_namespaced_secret(
        ns,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name="cred"),
            string_data={
                "userID": base.removeprefix("client."),
                "userKey": key,
                "keyring": "[client.other]\n\tkey = garbage\n",
            },
        ),
    )
    spec = {
        "secret": {"name": "cred", "adopt": True},
        "generate": False,
        "target": {"cephx": {"entity": base, "caps": {"mon": "allow r"}}},
    }
    create_cr(api, ns, "cred", spec)
    outcome = app.engine.sync(CredentialRef(ns, "cred"))
    assert outcome.reason == "MalformedKeyring" and slow_retry(outcome), outcome
    assert key not in outcome.message
    assert entities(testenv, base) == []
    assert "MalformedKeyring" in [e["reason"] for e in settled_events(app, api, ns, "cred")]


def test_entity_outside_client_is_refused(api: k8s.ApiClient, ns: str) -> None:
    with pytest.raises(k8s.ApiException) as caught:
        create_cr(api, ns, "cred", cephx_spec("ceph/x", "osd.0"))
    assert caught.value.status == 422 and "entity" in str(caught.value.body)


@pytest.mark.parametrize("key_type", ["aes", "aes256k"])
def test_key_type_is_generated_or_refused_before_anything_changes(
    testenv: Environment, api: k8s.ApiClient, ns: str, app: application.App, key_type: str
) -> None:
    """``keyType`` the cluster allows: generated and verified. One it does not (aes256k before
    Tentacle, aes on a new Tentacle cluster): refused in one line naming the release, with
    Vault, Ceph and the Secret untouched."""
    base, path = new_entity(), unique("ceph/keytype")
    create_cr(api, ns, "cred", cephx_spec(path, base, keyType=key_type))
    conn = CephConnection(str(testenv.ceph.conf), "client.admin", str(testenv.ceph.admin_keyring))
    with conn:
        release = read_mon_release(conn)
    outcome = app.engine.rotate(CredentialRef(ns, "cred"))
    if key_type in release.allowed_key_types:
        assert outcome.result == "promoted", outcome.message
        key = secret_cephx(api, ns)["userKey"]
        assert cephx_key_type(key) == key_type
        assert can_auth(testenv, f"{base}.1", key)
        return
    assert outcome.reason == "KeyTypeNotAllowed" and slow_retry(outcome), outcome
    assert release.describe() in outcome.message and "\n" not in outcome.message
    assert entities(testenv, base) == [] and read_secret(api, ns, "cred") is None
    with pytest.raises(hvac.exceptions.InvalidPath):  # nothing was written to Vault
        vault(testenv).secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")
