"""The environment is real and usable from Python: one test per server capability we rely on.

These talk to the servers with the plain client libraries (hvac, kubernetes, rados), not through
vaultbridge, so a failure here points at the environment rather than at our adapters.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest
import rados
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from vaultbridge.testenv.bao import OpenBaoServer
from vaultbridge.testenv.ceph import CephCluster
from vaultbridge.testenv.env import Environment
from vaultbridge.testenv.kube import KubeCluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(kube_cluster: KubeCluster) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(config_file=str(kube_cluster.kubeconfig))


@pytest.fixture
def namespace(api: k8s.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    k8s.CoreV1Api(api).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    k8s.CoreV1Api(api).delete_namespace(name)


def poll(check: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout:.0f} s")
        time.sleep(0.1)


def test_openbao_kv_v2_round_trip(vault_server: OpenBaoServer) -> None:
    vault = hvac.Client(url=vault_server.addr, token=vault_server.token)
    assert vault.sys.read_health_status(method="GET")["sealed"] is False
    kv = vault.secrets.kv.v2
    kv.create_or_update_secret(
        path="testenv/roundtrip", secret={"value": "one"}, mount_point="secret"
    )
    written = kv.create_or_update_secret(
        path="testenv/roundtrip", secret={"value": "two"}, mount_point="secret"
    )
    version = written["data"]["version"]
    latest = kv.read_secret_version(
        path="testenv/roundtrip", mount_point="secret", raise_on_deleted_version=True
    )
    assert latest["data"]["data"] == {"value": "two"}
    assert latest["data"]["metadata"]["version"] == version
    first = kv.read_secret_version(
        path="testenv/roundtrip",
        version=version - 1,
        mount_point="secret",
        raise_on_deleted_version=True,
    )
    assert first["data"]["data"] == {"value": "one"}
    metadata = kv.read_secret_metadata(path="testenv/roundtrip", mount_point="secret")
    assert metadata["data"]["current_version"] == version


def test_openbao_kubernetes_auth_with_token_request(
    vault_server: OpenBaoServer, kube_cluster: KubeCluster, api: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api)
    rbac = k8s.RbacAuthorizationV1Api(api)
    for sa in ("vault-reviewer", "workload"):
        core.create_namespaced_service_account(
            namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=sa))
        )
    binding = f"{namespace}-reviewer"
    rbac.create_cluster_role_binding(
        k8s.V1ClusterRoleBinding(
            metadata=k8s.V1ObjectMeta(name=binding),
            role_ref=k8s.V1RoleRef(
                api_group="rbac.authorization.k8s.io",
                kind="ClusterRole",
                name="system:auth-delegator",
            ),
            subjects=[
                k8s.RbacV1Subject(kind="ServiceAccount", name="vault-reviewer", namespace=namespace)
            ],
        )
    )

    def token_for(sa: str) -> str:
        request = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(
                audiences=["https://kubernetes.default.svc.cluster.local"], expiration_seconds=600
            )
        )
        return str(
            core.create_namespaced_service_account_token(sa, namespace, request).status.token
        )

    vault = hvac.Client(url=vault_server.addr, token=vault_server.token)
    mount = f"k8s-{namespace}"
    try:
        vault.sys.enable_auth_method("kubernetes", path=mount)
        vault.auth.kubernetes.configure(
            kubernetes_host=kube_cluster.server,
            kubernetes_ca_cert=kube_cluster.ca_cert.read_text(),
            token_reviewer_jwt=token_for("vault-reviewer"),
            disable_local_ca_jwt=True,
            mount_point=mount,
        )
        vault.sys.create_or_update_policy(
            "testenv-read", 'path "secret/data/testenv/*" { capabilities = ["read"] }'
        )
        vault.auth.kubernetes.create_role(
            "workload",
            bound_service_account_names=["workload"],
            bound_service_account_namespaces=[namespace],
            policies=["testenv-read"],
            ttl="10m",
            mount_point=mount,
        )
        login = hvac.Client(url=vault_server.addr).auth.kubernetes.login(
            "workload", token_for("workload"), mount_point=mount
        )
        assert login["auth"]["client_token"]
        assert login["auth"]["metadata"]["service_account_name"] == "workload"
        assert "testenv-read" in login["auth"]["policies"]
        with pytest.raises(hvac.exceptions.Forbidden, match="service account name not authorized"):
            hvac.Client(url=vault_server.addr).auth.kubernetes.login(
                "workload", token_for("vault-reviewer"), mount_point=mount
            )
    finally:
        vault.sys.disable_auth_method(mount)
        rbac.delete_cluster_role_binding(binding)


def test_secret_owned_by_custom_resource_is_garbage_collected(
    api: k8s.ApiClient, namespace: str
) -> None:
    # CephObjectStore (ceph.rook.io/v1) is the environment's stand-in test CRD, installed before
    # the controller-manager starts so its garbage collector watches it from the outset
    custom = k8s.CustomObjectsApi(api)
    owner = custom.create_namespaced_custom_object(
        "ceph.rook.io",
        "v1",
        namespace,
        "cephobjectstores",
        {"apiVersion": "ceph.rook.io/v1", "kind": "CephObjectStore", "metadata": {"name": "owner"}},
    )
    core = k8s.CoreV1Api(api)
    core.create_namespaced_secret(
        namespace,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(
                name="owned",
                owner_references=[
                    k8s.V1OwnerReference(
                        api_version="ceph.rook.io/v1",
                        kind="CephObjectStore",
                        name="owner",
                        uid=owner["metadata"]["uid"],
                        controller=True,
                        block_owner_deletion=True,
                    )
                ],
            ),
            string_data={"value": "x"},
        ),
    )
    custom.delete_namespaced_custom_object(
        "ceph.rook.io", "v1", namespace, "cephobjectstores", "owner"
    )

    def secret_gone() -> bool:
        try:
            core.read_namespaced_secret("owned", namespace)
        except k8s.ApiException as exc:
            return exc.status == 404
        return False

    poll(secret_gone, "owned Secret garbage-collected after its owner was deleted", 60)


def _keyring(entity: str, key: str) -> bytes:
    return f"[{entity}]\n\tkey = {key}\n".encode()


def _new_cephx_key() -> str:
    header = (
        (1).to_bytes(2, "little")
        + int(time.time()).to_bytes(4, "little")
        + (0).to_bytes(4, "little")
    )
    return base64.b64encode(header + (16).to_bytes(2, "little") + secrets.token_bytes(16)).decode()


def _admin(ceph: CephCluster) -> rados.Rados:
    conn = rados.Rados(
        conffile=str(ceph.conf),
        name=ceph.user,
        conf={
            "keyring": str(ceph.admin_keyring),
            "client_mount_timeout": "10",
            "rados_mon_op_timeout": "10",
        },
    )
    conn.connect(timeout=10)
    return conn


def _mon(conn: rados.Rados, cmd: dict[str, Any], inbuf: bytes = b"") -> bytes:
    ret, out, errs = conn.mon_command(json.dumps({**cmd, "format": "json"}), inbuf, timeout=10)
    assert ret == 0, f"{cmd['prefix']}: {errs}"
    return bytes(out)


def _exercise_config_and_auth(
    ceph: CephCluster, label: str, *, check_wrong_key: bool = True
) -> None:
    admin = _admin(ceph)
    try:
        value = f"pw-{label}-{uuid.uuid4().hex}"
        _mon(
            admin,
            {
                "prefix": "config set",
                "who": "client.rgw.testenv",
                "name": "rgw_keystone_admin_password",
                "value": value,
            },
        )
        dump = json.loads(_mon(admin, {"prefix": "config dump"}))
        found = [
            e["value"]
            for e in dump
            if e["section"] == "client.rgw.testenv" and e["name"] == "rgw_keystone_admin_password"
        ]
        assert found == [value]

        entity = f"client.testenv.{label}"
        key = _new_cephx_key()
        _mon(
            admin,
            {"prefix": "auth add", "entity": entity, "caps": ["mon", "allow r"]},
            _keyring(entity, key),
        )
        fresh = rados.Rados(
            conffile=str(ceph.conf), name=entity, conf={"key": key, "client_mount_timeout": "10"}
        )
        fresh.connect(timeout=10)
        try:
            assert json.loads(_mon(fresh, {"prefix": "mon stat"}))
        finally:
            fresh.shutdown()
        if check_wrong_key:
            # with a mon down, a refused client keeps hunting the dead mon until it times out
            wrong = rados.Rados(
                conffile=str(ceph.conf),
                name=entity,
                conf={"key": _new_cephx_key(), "client_mount_timeout": "5"},
            )
            with pytest.raises(rados.PermissionDeniedError):
                wrong.connect(timeout=5)
        _mon(admin, {"prefix": "auth rm", "entity": entity})
    finally:
        admin.shutdown()


def test_ceph_config_and_auth_on_three_mons(ceph_cluster: CephCluster) -> None:
    assert len(ceph_cluster.mon_ids) == 3
    _exercise_config_and_auth(ceph_cluster, "all")


def test_ceph_still_serves_with_one_mon_killed(ceph_cluster: CephCluster) -> None:
    victim = ceph_cluster.mon_ids[-1]
    ceph_cluster.stop_mon(victim)
    try:
        _exercise_config_and_auth(ceph_cluster, "quorum2", check_wrong_key=False)
    finally:
        ceph_cluster.start_mon(victim)


REQUIRED_VARIABLES = (
    "KUBECONFIG",
    "VAULTBRIDGE_VAULT__ADDR",
    "VAULTBRIDGE_VAULT__AUTH",
    "VAULTBRIDGE_VAULT__TOKEN",
    "VAULTBRIDGE_KUBE__KUBECONFIG",
    "VAULTBRIDGE_CEPH__CONF",
    "VAULTBRIDGE_CEPH__USER",
    "VAULTBRIDGE_CEPH__KEYRING",
)


def test_env_sh_reaches_every_server_with_the_clis(testenv: Environment, tmp_path: Path) -> None:
    env_sh = tmp_path / "env.sh"
    env_sh.write_text(testenv.env_sh())
    script = f"""
set -euo pipefail
. {env_sh}
for v in {" ".join(REQUIRED_VARIABLES)}; do test -n "${{!v}}" || {{ echo "missing $v"; exit 1; }}; done
test "$VAULTBRIDGE_VAULT__AUTH" = token
for tool in bao helm kubectl ceph; do command -v $tool >/dev/null || {{ echo "no $tool on PATH"; exit 1; }}; done
kubectl get --raw /readyz
echo
bao_status=$(bao status -format=json)  # no pipe: grep -q would SIGPIPE bao
grep -q '"sealed": false' <<<"$bao_status"
# the bao on PATH is let in as it is (BAO_ADDR and BAO_TOKEN are exported), not answered 403
bao kv put secret/testenv-env-sh value=x >/dev/null
bao kv get -format=json secret/testenv-env-sh >/dev/null
ceph quorum_status -f json >/dev/null
helm version --short
"""
    done = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok")
