"""Nothing a user owns is lost: deletion policies against the real API server, garbage
collector, namespace controller, Ceph mons and OpenBao (docs/deletion.md).

No vaultbridge controller runs in these tests unless one says so: a CR deletion and a
namespace deletion must complete, and retained Secrets survive, with nobody to act on them.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cephx_helpers import can_auth, cephx_spec, entities, new_entity, secret_cephx
from controller_helpers import ControllerProcess
from kubernetes import client as k8s
from rotation_helpers import (
    GROUP,
    PLURAL,
    VERSION,
    config_spec,
    create_cr,
    get_cr,
    read_secret,
    run_cli,
    unique,
    vault_labels,
    vault_put,
    wait_for,
)
from test_helm_chart import BASE_VALUES, CHART, helm

import vaultbridge.app as application
from vaultbridge.ceph import CephConnection
from vaultbridge.engine.deletion import CEPHX_FINALIZER
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import CredentialRef
from vaultbridge.testenv.env import Environment

pytestmark = pytest.mark.integration

WHO = "client.rgw.deletion"
OWNER_UID = "vaultbridge.io/owner-uid"


def make_secret(api: k8s.ApiClient, ns: str, name: str, data: dict[str, str]) -> None:
    k8s.CoreV1Api(api).create_namespaced_secret(
        ns,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name=name, labels={"team": "storage"}),
            string_data=data,
        ),
    )


def decoded(secret: k8s.V1Secret) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def secret_data(api: k8s.ApiClient, ns: str, name: str) -> dict[str, str]:
    secret = read_secret(api, ns, name)
    assert secret is not None, f"Secret {ns}/{name} is gone"
    return decoded(secret)


def delete_cr(api: k8s.ApiClient, ns: str, name: str) -> None:
    k8s.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name, propagation_policy="Background"
    )


def cr_gone(api: k8s.ApiClient, ns: str, name: str) -> bool:
    try:
        get_cr(api, ns, name)
    except k8s.ApiException as exc:
        return exc.status == 404
    return False


def owner_uids(secret: k8s.V1Secret) -> list[str]:
    return [ref.uid for ref in secret.metadata.owner_references or []]


def four_secrets(
    env: Environment, api: k8s.ApiClient, app: application.App, ns: str
) -> dict[str, dict[str, Any]]:
    """One CR per case, each synced: created (Delete, the control), created with Retain,
    adopted (Retain by default), and the Secret as the source (always retained)."""
    cases: dict[str, dict[str, Any]] = {}
    for case in ("created", "created-retain", "adopted", "source"):
        path = unique("deletion")
        value = f"{case}-value-{unique('v')}"
        spec = config_spec(path, f"{WHO}.{case}")
        spec["secret"] = {"name": f"{case}-secret", "key": "value"}
        if case == "created-retain":
            spec["secret"]["deletionPolicy"] = "Retain"
        if case == "adopted":
            spec["secret"]["adopt"] = True
            make_secret(api, ns, "adopted-secret", {"value": "old", "mine": "keep me"})
        if case == "source":
            del spec["source"]
            spec["secret"]["adopt"] = True
            make_secret(api, ns, "source-secret", {"value": value, "mine": "keep me"})
        else:
            vault_put(env, path, {"value": value})
        uid = create_cr(api, ns, case, spec)["metadata"]["uid"]
        outcome = app.engine.sync(CredentialRef(ns, case))
        assert outcome.ok, outcome.message
        cases[case] = {"uid": uid, "value": value, "secret": spec["secret"]["name"]}
    return cases


def test_cr_deletion_deletes_only_the_secret_vaultbridge_created(
    testenv: Environment, api: k8s.ApiClient, app: application.App, ns: str
) -> None:
    cases = four_secrets(testenv, api, app, ns)
    for case, facts in cases.items():
        secret = read_secret(api, ns, facts["secret"])
        assert secret is not None
        linked = (secret.metadata.annotations or {}).get(OWNER_UID)
        if case == "created":
            assert owner_uids(secret) == [facts["uid"]] and linked is None
        else:  # retained: no ownerReference to the CR at all, an annotation link instead
            assert facts["uid"] not in owner_uids(secret) and linked == facts["uid"]
    for case in cases:
        delete_cr(api, ns, case)
    for case in cases:  # nothing waits for a controller: each deletion completes at once
        wait_for(lambda c=case: cr_gone(api, ns, c), f"CR {case} deleted", timeout=60)
    # the control: the garbage collector removes the Secret vaultbridge created ...
    wait_for(lambda: read_secret(api, ns, "created-secret") is None, "created Secret GC'd", 60)
    time.sleep(2)  # ... and has had its turn at every other Secret of these CRs
    for case in ("created-retain", "adopted", "source"):
        secret = read_secret(api, ns, cases[case]["secret"])
        assert secret is not None, f"{case}: the retained Secret was deleted"
        data = decoded(secret)
        assert data["value"] == cases[case]["value"], case  # the bytes as last promoted
        if case in ("adopted", "source"):
            assert data["mine"] == "keep me" and secret.metadata.labels["team"] == "storage"
        assert owner_uids(secret) == [], case
        # inert: the link names a uid no CR has any more
        assert secret.metadata.annotations[OWNER_UID] == cases[case]["uid"]


def test_a_new_cr_of_the_same_name_must_adopt_a_retained_secret_again(
    testenv: Environment, api: k8s.ApiClient, app: application.App, ns: str
) -> None:
    path = unique("deletion")
    vault_put(testenv, path, {"value": "v1"})
    spec = config_spec(path, f"{WHO}.again")
    spec["secret"]["deletionPolicy"] = "Retain"
    create_cr(api, ns, "again", spec)
    assert app.engine.sync(CredentialRef(ns, "again")).ok
    delete_cr(api, ns, "again")
    wait_for(lambda: cr_gone(api, ns, "again"), "CR deleted", timeout=60)
    create_cr(api, ns, "again", spec)
    app.engine.forget(CredentialRef(ns, "again"))
    outcome = app.engine.sync(CredentialRef(ns, "again"))
    assert outcome.reason == "SecretNotOwned", outcome
    assert "spec.secret.adopt" in outcome.message


def test_namespace_deletion_completes_without_a_controller_and_ceph_keeps_working(
    testenv: Environment, api: k8s.ApiClient, app: application.App
) -> None:
    ns = unique("vb-nsdel")
    core = k8s.CoreV1Api(api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
    cases = four_secrets(testenv, api, app, ns)
    entity = new_entity()
    create_cr(api, ns, "app", cephx_spec(unique("deletion"), entity))
    assert app.engine.rotate(CredentialRef(ns, "app")).ok
    key = secret_cephx(api, ns)["userKey"]
    started = time.monotonic()
    core.delete_namespace(ns)

    def gone() -> bool:
        try:
            core.read_namespace(ns)
        except k8s.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, "namespace deleted", timeout=60)
    assert time.monotonic() - started < 60
    # Ceph is never touched by a deletion: the config values and the Retain entity stay live
    for case, facts in cases.items():
        option = "rgw_keystone_admin_password"
        dump = testenv.ceph.ceph("config", "get", f"{WHO}.{case}", option).strip()
        assert dump == facts["value"], case
    assert can_auth(testenv, f"{entity}.1", key)


def test_cephx_retain_leaves_the_entity_and_the_cr_goes_at_once(
    testenv: Environment, api: k8s.ApiClient, app: application.App, ns: str
) -> None:
    entity = new_entity()
    create_cr(api, ns, "app", cephx_spec(unique("deletion"), entity))
    assert app.engine.rotate(CredentialRef(ns, "app")).ok
    assert CEPHX_FINALIZER not in (get_cr(api, ns, "app")["metadata"].get("finalizers") or [])
    key = secret_cephx(api, ns)["userKey"]
    delete_cr(api, ns, "app")
    wait_for(lambda: cr_gone(api, ns, "app"), "CR deleted", timeout=60)
    assert entities(testenv, entity) == [f"{entity}.1"]
    assert can_auth(testenv, f"{entity}.1", key)


def consumer(env: Environment, entity: str, key: str) -> CephConnection:
    conn = CephConnection(str(env.ceph.conf), entity, keyring="", timeout=5, key=Sensitive(key))
    conn.mon_command({"prefix": "mon stat"})
    return conn


def test_cephx_delete_waits_for_the_live_session_then_removes_every_generation(
    testenv: Environment, api: k8s.ApiClient, app: application.App, ns: str
) -> None:
    entity = new_entity()
    spec = cephx_spec(unique("deletion"), entity, deletionPolicy="Delete", retireAfter="1h")
    create_cr(api, ns, "app", spec)
    ref = CredentialRef(ns, "app")
    assert app.engine.rotate(ref).ok
    assert app.engine.rotate(ref).ok  # client.x.1 now waits to retire, client.x.2 is live
    assert CEPHX_FINALIZER in get_cr(api, ns, "app")["metadata"]["finalizers"]
    assert entities(testenv, entity) == [f"{entity}.1", f"{entity}.2"]
    live = consumer(testenv, f"{entity}.2", secret_cephx(api, ns)["userKey"])
    try:
        delete_cr(api, ns, "app")
        time.sleep(1)
        assert not cr_gone(api, ns, "app")  # it waits for vaultbridge
        blocked = run_cli(testenv, "finalize", f"{ns}/app")
        assert blocked.returncode == 1, blocked.stdout + blocked.stderr
        assert "still list a session" in blocked.stderr and "RemovalBlocked" in blocked.stderr
        assert entities(testenv, entity) == [f"{entity}.1", f"{entity}.2"]  # nothing removed
        refused = run_cli(testenv, "rotate", f"{ns}/app")
        assert refused.returncode == 1 and "being deleted" in refused.stderr
    finally:
        live.close()

    def finalized() -> bool:
        return run_cli(testenv, "finalize", f"{ns}/app").returncode == 0

    wait_for(finalized, "finalize once the consumer has gone", timeout=60, interval=1)
    wait_for(lambda: cr_gone(api, ns, "app"), "CR deleted", timeout=30)
    assert entities(testenv, entity) == []


def test_the_controller_finalizes_and_releases_what_a_deleted_cr_retained(
    testenv: Environment, api: k8s.ApiClient, app: application.App, ns: str, tmp_path: Path
) -> None:
    entity = new_entity()
    create_cr(api, ns, "app", cephx_spec(unique("deletion"), entity, deletionPolicy="Delete"))
    make_secret(api, ns, "src", {"value": "adopted-source-value"})
    source = {
        "secret": {"name": "src", "adopt": True},
        "target": {"config": {"who": f"{WHO}.ctl", "option": "rgw_keystone_admin_password"}},
    }
    create_cr(api, ns, "src", source)
    assert app.engine.rotate(CredentialRef(ns, "app")).ok  # the first generation
    controller = ControllerProcess(testenv, ns, tmp_path)
    try:
        controller.wait_leader()
        wait_for(
            lambda: (get_cr(api, ns, "src").get("status") or {}).get("currentVersion") == 1,
            "source synced",
            60,
        )
        assert CEPHX_FINALIZER in get_cr(api, ns, "app")["metadata"]["finalizers"]
        delete_cr(api, ns, "app")
        delete_cr(api, ns, "src")
        wait_for(lambda: cr_gone(api, ns, "app"), "cephx CR finalized by the controller", 60)
        assert entities(testenv, entity) == []

        def released() -> bool:
            secret = read_secret(api, ns, "src")
            assert secret is not None, "the retained Secret was deleted"
            labels = secret.metadata.labels or {}
            return "app.kubernetes.io/managed-by" not in labels and OWNER_UID not in (
                secret.metadata.annotations or {}
            )

        wait_for(released, "retained Secret released (label and link removed)", 30)
        secret = read_secret(api, ns, "src")
        assert secret is not None and decoded(secret) == {"value": "adopted-source-value"}
    finally:
        controller.stop()


def test_three_cli_rotations_retire_the_oldest_generation(
    testenv: Environment, api: k8s.ApiClient, ns: str
) -> None:
    entity = new_entity()
    spec = cephx_spec(unique("deletion"), entity, retireAfter="1s", keepPrior=1)
    create_cr(api, ns, "app", spec)
    keys = []
    for _ in range(3):
        done = run_cli(testenv, "rotate", f"{ns}/app")
        assert done.returncode == 0, done.stderr
        keys.append(secret_cephx(api, ns)["userKey"])
        time.sleep(1.2)  # the previous generation's grace passes
    done = run_cli(testenv, "sync", f"{ns}/app")
    assert done.returncode == 0, done.stderr
    left = entities(testenv, entity)
    assert len(left) <= 2 and f"{entity}.3" in left, left
    assert f"{entity}.1" not in left
    assert not can_auth(testenv, f"{entity}.1", keys[0])
    assert can_auth(testenv, f"{entity}.3", keys[2])


def test_the_cli_prints_only_its_result_by_default(
    testenv: Environment, api: k8s.ApiClient, ns: str
) -> None:
    path = unique("deletion")
    vault_put(testenv, path, {"value": "quiet"})
    create_cr(api, ns, "quiet", config_spec(path, f"{WHO}.quiet"))
    done = run_cli(testenv, "sync", f"{ns}/quiet")
    assert done.returncode == 0 and " INFO " not in done.stderr, done.stderr
    vault_put(testenv, path, {"value": "louder"})
    verbose = run_cli(testenv, "-v", "sync", f"{ns}/quiet")
    assert verbose.returncode == 0 and " INFO " in verbose.stderr, verbose.stderr
    status = run_cli(testenv, "status", f"{ns}/quiet", "-o", "json")
    assert status.returncode == 0
    row = json.loads(status.stdout)[0]
    stamp = row["lastRotationTime"]
    assert "T" in stamp and stamp.endswith("Z"), stamp


@pytest.mark.parametrize(
    ("secret", "source", "message"),
    [
        ({"name": "s", "deletionPolicy": "Orphan"}, True, 'Unsupported value: "Orphan"'),
        (
            {"name": "s", "deletionPolicy": "Delete"},
            False,
            "Delete is not allowed without spec.source",
        ),
    ],
)
def test_the_api_server_refuses_bad_deletion_policies(
    api: k8s.ApiClient, ns: str, secret: dict[str, Any], source: bool, message: str
) -> None:
    spec: dict[str, Any] = config_spec("p", WHO)
    spec["secret"] = secret
    if not source:
        del spec["source"]
    with pytest.raises(k8s.ApiException) as info:
        create_cr(api, ns, "bad", spec)
    assert info.value.status == 422
    assert message in json.loads(info.value.body)["message"], info.value.body
    cephx = cephx_spec("p", new_entity(), deletionPolicy="Sometimes")
    with pytest.raises(k8s.ApiException) as info:
        create_cr(api, ns, "bad", cephx)
    assert info.value.status == 422


def test_helm_uninstall_changes_nothing_in_ceph_the_secrets_or_vault(
    testenv: Environment, api: k8s.ApiClient, app: application.App, ns: str
) -> None:
    entity = new_entity()
    path = unique("deletion")
    create_cr(api, ns, "app", cephx_spec(path, entity))
    assert app.engine.rotate(CredentialRef(ns, "app")).ok
    cfg_path = unique("deletion")
    vault_put(testenv, cfg_path, {"value": "helm-value"})
    create_cr(api, ns, "cfg", config_spec(cfg_path, f"{WHO}.helm") | {"secret": {"name": "cfg"}})
    assert app.engine.sync(CredentialRef(ns, "cfg")).ok
    before = {name: secret_data(api, ns, name) for name in ("cred", "cfg")}
    release = unique("rel")
    values = ["--set", f"watchNamespaces={{{ns}}}", "--set", "fullnameOverride=" + release]
    helm(testenv, "install", release, str(CHART), "--namespace", ns, *BASE_VALUES, *values)
    assert k8s.AppsV1Api(api).read_namespaced_deployment(release, ns)
    helm(testenv, "uninstall", release, "--namespace", ns)
    wait_for(
        lambda: not k8s.AppsV1Api(api).list_namespaced_deployment(ns).items,
        "chart objects removed",
        30,
    )
    time.sleep(2)  # the garbage collector's turn
    ext = k8s.ApiextensionsV1Api(api)
    assert ext.read_custom_resource_definition("credentialrotations.vaultbridge.io")
    assert get_cr(api, ns, "app") and get_cr(api, ns, "cfg")
    after = {name: secret_data(api, ns, name) for name in ("cred", "cfg")}
    assert after == before
    assert can_auth(testenv, f"{entity}.1", after["cred"]["userKey"])
    option = testenv.ceph.ceph("config", "get", f"{WHO}.helm", "rgw_keystone_admin_password")
    assert option.strip() == "helm-value"
    assert vault_labels(testenv, cfg_path)["vaultbridge-current"] == "1"
