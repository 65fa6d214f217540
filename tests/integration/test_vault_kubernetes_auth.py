"""Kubernetes auth against a real OpenBao and a real kube-apiserver (TokenRequest/TokenReview).

Needs the session fixture ``kube_cluster`` (``.kubeconfig``, ``.server``, ``.ca_cert``) from
tests/conftest.py; OpenBao is started here so the test does not depend on Ceph.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest

from vaultbridge.testenv.bao import OpenBaoServer, start_openbao
from vaultbridge.vault import (
    KubernetesAuthenticator,
    KvV2Source,
    VaultAuthError,
    VaultClient,
    VaultPermissionDenied,
    make_authenticator,
)

pytestmark = pytest.mark.integration

NAMESPACE = "default"
WORKLOAD_SA = "vaultbridge"
REVIEWER_SA = "vault-token-reviewer"


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    server = start_openbao(tmp_path_factory.mktemp("bao"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def kube_api(kube_cluster: Any) -> Any:
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(kube_cluster.kubeconfig))
    core = client.CoreV1Api(api_client)
    rbac = client.RbacAuthorizationV1Api(api_client)
    for name in (WORKLOAD_SA, REVIEWER_SA):
        try:
            core.create_namespaced_service_account(
                NAMESPACE, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
            )
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    binding = client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name="vault-token-reviewer-auth-delegator"),
        role_ref=client.V1RoleRef(
            api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="system:auth-delegator"
        ),
        subjects=[
            client.RbacV1Subject(kind="ServiceAccount", name=REVIEWER_SA, namespace=NAMESPACE)
        ],
    )
    try:
        rbac.create_cluster_role_binding(binding)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    return core


def request_token(core: Any, service_account: str, seconds: int = 600) -> str:
    from kubernetes import client

    body = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
    )
    result = core.create_namespaced_service_account_token(service_account, NAMESPACE, body)
    return str(result.status.token)


@pytest.fixture(scope="module")
def vault_k8s(bao: OpenBaoServer, kube_cluster: Any, kube_api: Any) -> hvac.Client:
    root = hvac.Client(url=bao.addr, token=bao.token)
    root.sys.enable_auth_method("kubernetes")
    root.write(
        "auth/kubernetes/config",
        kubernetes_host=kube_cluster.server,
        kubernetes_ca_cert=Path(kube_cluster.ca_cert).read_text(),
        token_reviewer_jwt=request_token(kube_api, REVIEWER_SA, 3600),
        disable_local_ca_jwt=True,
    )
    root.sys.create_or_update_policy(
        "ceph-read", 'path "secret/data/ceph/*" { capabilities = ["read"] }'
    )
    root.write(
        "auth/kubernetes/role/vaultbridge",
        bound_service_account_names=WORKLOAD_SA,
        bound_service_account_namespaces=NAMESPACE,
        token_policies="ceph-read",
        token_ttl="10m",
    )
    root.secrets.kv.v2.create_or_update_secret("ceph/rgw", {"value": "pw"}, mount_point="secret")
    root.secrets.kv.v2.create_or_update_secret("other/x", {"value": "no"}, mount_point="secret")
    return root


def test_kubernetes_login_read_and_deny(
    bao: OpenBaoServer, vault_k8s: hvac.Client, kube_api: Any, tmp_path: Path
) -> None:
    jwt_file = tmp_path / "token"
    jwt_file.write_text(request_token(kube_api, WORKLOAD_SA))
    auth = make_authenticator("kubernetes", role="vaultbridge", kubernetes_jwt_path=jwt_file)
    assert isinstance(auth, KubernetesAuthenticator)
    with VaultClient(bao.addr, auth) as client:
        kv = KvV2Source(client)
        assert kv.read_field("secret", "ceph/rgw", "value").reveal() == "pw"
        with pytest.raises(VaultPermissionDenied, match="secret/data/other/x"):
            kv.read("secret", "other/x")


def test_kubernetes_jwt_file_is_reread_at_each_login(
    bao: OpenBaoServer, vault_k8s: hvac.Client, kube_api: Any, tmp_path: Path
) -> None:
    jwt_file = tmp_path / "token"
    jwt_file.write_text(request_token(kube_api, WORKLOAD_SA))
    auth = KubernetesAuthenticator("vaultbridge", jwt_path=jwt_file)
    with VaultClient(bao.addr, auth) as client:
        kv = KvV2Source(client)
        kv.read("secret", "ceph/rgw")
        first = auth.token()

        garbage = "not-a-jwt-" + uuid.uuid4().hex
        jwt_file.write_text(garbage)  # the kubelet rotated the file (badly)
        auth.invalidate()
        with pytest.raises(VaultAuthError) as err:
            kv.read("secret", "ceph/rgw")
        assert "kubernetes" in str(err.value) and "vaultbridge" in str(err.value)
        assert garbage not in str(err.value)

        jwt_file.write_text(request_token(kube_api, WORKLOAD_SA))  # rotated properly
        assert kv.read_field("secret", "ceph/rgw", "value").reveal() == "pw"
        assert auth.token() != first


def test_kubernetes_wrong_role(
    bao: OpenBaoServer, vault_k8s: hvac.Client, kube_api: Any, tmp_path: Path
) -> None:
    jwt_file = tmp_path / "token"
    jwt_file.write_text(request_token(kube_api, REVIEWER_SA))  # not bound to the role
    auth = KubernetesAuthenticator("vaultbridge", jwt_path=jwt_file)
    with VaultClient(bao.addr, auth) as client, pytest.raises(VaultAuthError) as err:
        KvV2Source(client).read("secret", "ceph/rgw")
    assert "role vaultbridge" in str(err.value)
