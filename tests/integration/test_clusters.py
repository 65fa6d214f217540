"""Several Ceph clusters from one install (``spec.cluster``), against real mons: a Rook
cluster read from Rook's own objects, an external one from a ceph.conf ConfigMap, bad objects,
and a CR moved to another cluster while its rotation is in flight."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_helpers import (
    admin_key,
    config_key,
    config_key_spec,
    external_cluster,
    extra_clusters,
    put_config_map,
    put_secret,
    rook_cluster,
)
from kubernetes import client as k8s
from rotation_helpers import (
    create_cr,
    get_cr,
    read_secret,
    run_cli,
    settled_events,
    unique,
    vault_put,
)
from test_helm_chart import render

import vaultbridge.app as application
from vaultbridge.adapters.clusters import ClusterRegistry
from vaultbridge.engine import faults
from vaultbridge.kube import KubeClient, KubeForbidden, NamedObjects
from vaultbridge.model.cluster import ClusterRef
from vaultbridge.model.spec import CredentialRef
from vaultbridge.settings import load_settings
from vaultbridge.testenv.ceph import CephCluster
from vaultbridge.testenv.env import Environment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, CephCluster]]:
    with extra_clusters(Path(tmp_path_factory.mktemp("clusters")), "east", "west") as started:
        yield started


@pytest.fixture
def patient_app(testenv: Environment, monkeypatch: pytest.MonkeyPatch) -> Iterator[application.App]:
    """The app with a 15 s Ceph timeout: through msgr1 (a Rook endpoint on a port other than
    3300) librados gives up on a refused AES256K key only after a mon hunt interval (3 s by
    default), which a loaded machine may stretch past the 5 s default."""
    for key, value in testenv.variables().items():
        if key.startswith("VAULTBRIDGE_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("VAULTBRIDGE_CEPH__TIMEOUT", "15")
    built = application.build(load_settings())
    yield built
    built.close()


def ready(api: k8s.ApiClient, ns: str, name: str) -> dict[str, str]:
    status = get_cr(api, ns, name).get("status") or {}
    for condition in status.get("conditions") or []:
        if condition["type"] == "Ready":
            return dict(condition)
    return {}


def test_credentials_rotate_in_the_cluster_their_spec_names(
    testenv: Environment,
    api: k8s.ApiClient,
    ns: str,
    app: application.App,
    clusters: dict[str, CephCluster],
) -> None:
    east, west = clusters["east"], clusters["west"]
    named = {
        "rook": rook_cluster(api, ns, east),
        "external": external_cluster(api, ns, west),
        "default": None,
    }
    keys: dict[str, str] = {}
    for label, cluster in named.items():
        path, key = unique(f"ceph/{label}"), f"vaultbridge/test/{unique(label)}"
        keys[label] = key
        vault_put(testenv, path, {"value": f"{label}-v1"})
        create_cr(api, ns, label, config_key_spec(path, key, cluster))
        outcome = app.engine.sync(CredentialRef(ns, label))
        assert outcome.result == "promoted", outcome.message
    assert config_key(east, keys["rook"]) == "rook-v1"
    assert config_key(west, keys["external"]) == "external-v1"
    assert config_key(testenv.ceph, keys["default"]) == "default-v1"
    # and nowhere else
    assert config_key(testenv.ceph, keys["rook"]) is None
    assert config_key(west, keys["rook"]) is None
    assert config_key(east, keys["external"]) is None
    assert config_key(east, keys["default"]) is None
    status = get_cr(api, ns, "rook")["status"]
    assert status["cluster"] == f"rook:{ns}/rook-ceph-mon-endpoints/rook-ceph-mon"
    assert get_cr(api, ns, "default")["status"]["cluster"] == "default"
    # one connection per cluster, shared by its credentials
    assert app.clusters is not None
    assert len(app.clusters.known()) == 2


def test_a_cephx_credential_in_a_rook_cluster_is_verified_there(
    testenv: Environment,
    api: k8s.ApiClient,
    ns: str,
    app: application.App,
    clusters: dict[str, CephCluster],
) -> None:
    east = clusters["east"]
    entity = f"client.{unique('rgw')}"
    spec = {
        "source": {"mount": "secret", "path": unique("ceph/cephx"), "field": "key"},
        "secret": {"name": "cephx"},
        "target": {"cephx": {"entity": entity, "caps": {"mon": "allow r"}}},
        "cluster": rook_cluster(api, ns, east),
    }
    create_cr(api, ns, "cephx", spec)
    outcome = app.engine.rotate(CredentialRef(ns, "cephx"))
    assert outcome.result == "promoted", outcome.message
    live = get_cr(api, ns, "cephx")["status"]["currentEntity"]
    assert live in east.ceph("auth", "ls")
    assert live not in testenv.ceph.ceph("auth", "ls")
    secret = read_secret(api, ns, "cephx")
    assert secret is not None and secret.data is not None
    key = base64.b64decode(secret.data["userKey"]).decode()
    assert key in east.ceph("auth", "get", live)


@pytest.mark.parametrize(
    ("problem", "reason", "names"),
    [
        ("no-config-map", "ClusterObjectMissing", "ConfigMap {ns}/rook-ceph-mon-endpoints"),
        ("no-secret", "ClusterObjectMissing", "Secret {ns}/rook-ceph-mon"),
        ("bad-endpoints", "MonEndpointsMalformed", "ConfigMap {ns}/rook-ceph-mon-endpoints"),
        ("bad-fsid", "ClusterSecretMalformed", "Secret {ns}/rook-ceph-mon"),
        ("wrong-key", "CephPermissionDenied", "Secret {ns}/rook-ceph-mon"),
        ("other-cluster", "CephIdentityMismatch", "{ns}/rook-ceph-mon-endpoints"),
    ],
)
def test_bad_cluster_objects_change_nothing_and_say_which_object(
    testenv: Environment,
    api: k8s.ApiClient,
    ns: str,
    patient_app: application.App,
    clusters: dict[str, CephCluster],
    problem: str,
    reason: str,
    names: str,
) -> None:
    app = patient_app
    east, west = clusters["east"], clusters["west"]
    cluster = rook_cluster(api, ns, east)
    if problem == "no-config-map":
        k8s.CoreV1Api(api).delete_namespaced_config_map("rook-ceph-mon-endpoints", ns)
    elif problem == "no-secret":
        k8s.CoreV1Api(api).delete_namespaced_secret("rook-ceph-mon", ns)
    elif problem == "bad-endpoints":
        put_config_map(api, ns, "rook-ceph-mon-endpoints", {"data": "a=mon-a.local:6789"})
    elif problem == "bad-fsid":
        put_secret(api, ns, "rook-ceph-mon", {"fsid": "nope", "admin-secret": admin_key(east)})
    elif problem == "wrong-key":
        put_secret(api, ns, "rook-ceph-mon", {"fsid": east.fsid, "admin-secret": admin_key(west)})
    elif problem == "other-cluster":  # the endpoints of west, the fsid of east
        put_secret(api, ns, "rook-ceph-mon", {"fsid": east.fsid, "admin-secret": admin_key(west)})
        put_config_map(
            api, ns, "rook-ceph-mon-endpoints", {"data": f"a=127.0.0.1:{west.mon_ports['a'][1]}"}
        )
    path, key = unique("ceph/bad"), f"vaultbridge/test/{unique('bad')}"
    vault_put(testenv, path, {"value": "never-applied"})
    spec = config_key_spec(path, key, cluster)
    create_cr(api, ns, "bad", spec)
    outcome = app.engine.sync(CredentialRef(ns, "bad"))
    assert outcome.result == "failed"
    assert outcome.reason == reason, outcome.message
    assert names.format(ns=ns) in outcome.message
    condition = ready(api, ns, "bad")
    assert condition["status"] == "False"
    assert condition["reason"] == reason
    assert names.format(ns=ns) in condition["message"]
    status = get_cr(api, ns, "bad")["status"]
    assert status.get("rotation") is None
    assert status.get("nextRetryTime")  # retried, slowly
    for where in (east, west, testenv.ceph):
        assert config_key(where, key) is None
    assert read_secret(api, ns, spec["secret"]["name"]) is None
    texts = [e["note"] for e in settled_events(app, api, ns, "bad")]
    assert not any(admin_key(east) in t or admin_key(west) in t for t in texts)


def test_a_cluster_change_mid_rotation_waits_for_the_journal(
    testenv: Environment,
    api: k8s.ApiClient,
    ns: str,
    app: application.App,
    clusters: dict[str, CephCluster],
) -> None:
    east, west = clusters["east"], clusters["west"]
    to_east = rook_cluster(api, ns, east)
    to_west = external_cluster(api, ns, west)
    path, key = unique("ceph/move"), f"vaultbridge/test/{unique('move')}"
    vault_put(testenv, path, {"value": "moving-v1"})
    create_cr(api, ns, "move", config_key_spec(path, key, to_east))

    class Interrupt(Exception):
        pass

    def hook(when: str, action: str) -> None:
        if (when, action) == ("after", "Apply"):
            k8s.CustomObjectsApi(api).patch_namespaced_custom_object(
                "vaultbridge.io",
                "v1alpha1",
                ns,
                "credentialrotations",
                "move",
                {"spec": {"cluster": {"rook": None, **to_west}}},
            )
            raise Interrupt

    faults.add_hook(hook)
    try:
        with pytest.raises(Interrupt):
            app.engine.sync(CredentialRef(ns, "move"))
    finally:
        faults.remove_hook(hook)
    journal = get_cr(api, ns, "move")["status"]["rotation"]
    assert journal["cluster"].startswith("rook:")
    assert journal["fsid"] == east.fsid
    assert config_key(east, key) == "moving-v1"  # applied there, not yet promoted
    # the move is refused until the journal is done: the rotation finishes in east
    outcome = app.engine.reconcile(CredentialRef(ns, "move"))
    assert outcome.result == "promoted", outcome.message
    assert config_key(west, key) is None
    reasons = [e["reason"] for e in settled_events(app, api, ns, "move")]
    assert "ClusterMoveDeferred" in reasons
    # then the credential follows its spec to west
    outcome = app.engine.reconcile(CredentialRef(ns, "move"))
    assert outcome.result == "promoted", outcome.message
    assert config_key(west, key) == "moving-v1"
    assert get_cr(api, ns, "move")["status"]["cluster"].startswith("external:")


def test_policy_render_grants_exactly_the_named_objects_and_per_cluster_caps(
    testenv: Environment,
    api: k8s.ApiClient,
    ns: str,
    clusters: dict[str, CephCluster],
    tmp_path: Path,
) -> None:
    """`policy render` names each cluster's objects; the chart's Role made from them lets a
    ServiceAccount read, list and watch exactly those (and connect), nothing else."""
    east = clusters["east"]
    cluster = rook_cluster(api, ns, east, secret="vb-ceph")
    put_config_map(api, ns, "unrelated", {"data": "x"})
    put_secret(api, ns, "unrelated", {"token": "x"})
    path, key = unique("ceph/pol"), f"vaultbridge/pol/{unique('k')}"
    create_cr(api, ns, "pol", config_key_spec(path, key, cluster))
    create_cr(api, ns, "pol-default", config_key_spec(unique("ceph/pd"), "vaultbridge/pd", None))
    done = run_cli(testenv, "policy", "render", "--output", "json", "--namespace", ns)
    assert done.returncode == 0, done.stderr
    rendered = json.loads(done.stdout)
    objects = rendered["rbac"]["rbac"]["cephClusterObjects"]
    assert objects == [
        {"namespace": ns, "configMaps": ["rook-ceph-mon-endpoints"], "secrets": ["vb-ceph"]}
    ]
    per_cluster = rendered["ceph"]["clusters"]
    rook_key = f"rook:{ns}/rook-ceph-mon-endpoints/vb-ceph"
    assert set(per_cluster) == {"default", rook_key}
    assert key in per_cluster[rook_key]["caps"]["mon"]
    assert key not in per_cluster["default"]["caps"]["mon"]
    script = run_cli(testenv, "policy", "render", "--kind", "ceph", "--namespace", ns)
    assert f"# ==== cluster {rook_key}" in script.stdout
    assert f"Secret {ns}/vb-ceph" in script.stdout

    # the chart's Role from those values, bound to a ServiceAccount
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"rbac": {"cephClusterObjects": objects}}))
    docs = render(testenv, "-f", str(values), "--set", f"watchNamespaces={{{ns}}}", namespace=ns)
    role = next(
        d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-ceph-cluster")
    )
    binding = next(
        d
        for d in docs
        if d["kind"] == "RoleBinding" and d["metadata"]["name"].endswith("-ceph-cluster")
    )
    rbac = k8s.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(ns, role)
    rbac.create_namespaced_role_binding(ns, binding)
    sa = binding["subjects"][0]["name"]
    k8s.CoreV1Api(api).create_namespaced_service_account(
        ns, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=sa))
    )
    token = (
        k8s.CoreV1Api(api)
        .create_namespaced_service_account_token(
            sa, ns, k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(audiences=[]))
        )
        .status.token
    )
    kube = KubeClient.from_token(testenv.kube.server, token, ca_cert=str(testenv.kube.ca_cert))
    named = NamedObjects(kube)
    try:
        assert named.config_map(ns, "rook-ceph-mon-endpoints") is not None
        assert named.secret(ns, "vb-ceph") is not None
        named.version("ConfigMap", ns, "rook-ceph-mon-endpoints")
        next(iter(named.watch("Secret", ns, "vb-ceph", None, timeout_seconds=2)), None)
        for read in (
            lambda: named.config_map(ns, "unrelated"),
            lambda: named.secret(ns, "unrelated"),
            lambda: named.version("Secret", ns, "unrelated"),
        ):
            with pytest.raises(KubeForbidden):
                read()
        registry = ClusterRegistry(None, named)
        ref = ClusterRef.from_key(rook_key)
        assert ref is not None
        assert registry.cluster(ref).fsid() == east.fsid
        registry.close()
    finally:
        kube.close()


def test_status_and_check_show_each_cluster(
    testenv: Environment,
    api: k8s.ApiClient,
    ns: str,
    app: application.App,
    clusters: dict[str, CephCluster],
) -> None:
    east, west = clusters["east"], clusters["west"]
    path = unique("ceph/cli")
    vault_put(testenv, path, {"value": "cli-v1"})
    create_cr(api, ns, "in-east", config_key_spec(path, unique("k"), rook_cluster(api, ns, east)))
    create_cr(
        api, ns, "in-west", config_key_spec(path, unique("k"), external_cluster(api, ns, west))
    )
    for name in ("in-east", "in-west"):
        assert app.engine.sync(CredentialRef(ns, name)).result == "promoted"
    shown = run_cli(testenv, "status", "--output", "json", VAULTBRIDGE_KUBE__NAMESPACES=ns)
    assert shown.returncode == 0, shown.stderr
    rows = {row["credential"]: row["cluster"] for row in json.loads(shown.stdout)}
    assert rows == {
        f"{ns}/in-east": f"rook:{ns}/rook-ceph-mon-endpoints/rook-ceph-mon",
        f"{ns}/in-west": f"external:{ns}/ceph-ext/ceph-ext",
    }
    table = run_cli(testenv, "status", VAULTBRIDGE_KUBE__NAMESPACES=ns).stdout
    assert "CLUSTER" in table.splitlines()[0]
    checked = run_cli(testenv, "check", "--output", "json", VAULTBRIDGE_KUBE__NAMESPACES=ns)
    results = {row["backend"]: row for row in json.loads(checked.stdout)}
    rook_row = results[f"ceph rook:{ns}/rook-ceph-mon-endpoints/rook-ceph-mon"]
    assert rook_row["ok"] and east.fsid in rook_row["detail"]
    external_row = results[f"ceph external:{ns}/ceph-ext/ceph-ext"]
    assert external_row["ok"] and west.fsid in external_row["detail"]
    # a cluster that cannot be reached is its own failing row, naming the object
    put_config_map(api, ns, "rook-ceph-mon-endpoints", {"data": "a=127.0.0.1:1"})
    checked = run_cli(testenv, "check", "--output", "json", VAULTBRIDGE_KUBE__NAMESPACES=ns)
    assert checked.returncode == 1
    results = {row["backend"]: row for row in json.loads(checked.stdout)}
    assert not results[f"ceph rook:{ns}/rook-ceph-mon-endpoints/rook-ceph-mon"]["ok"]
    assert results[f"ceph external:{ns}/ceph-ext/ceph-ext"]["ok"]
    assert results["ceph"]["ok"]
