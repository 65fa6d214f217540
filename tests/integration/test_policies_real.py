"""The rendered policies are sufficient and minimal, against the real servers.

vaultbridge runs with nothing but what the chart and `vaultbridge policy render` give it:

- Kubernetes: a kubeconfig holding a TokenRequest token of the chart's ServiceAccount, so the
  chart's Roles are all it may use;
- Vault: a real `bao agent` started from the chart's own agent.hcl (paths moved to a temp
  folder), logging in with the Kubernetes auth method against the real apiserver and writing the
  token sink vaultbridge reads (VAULTBRIDGE_VAULT__AUTH=agent); the role and policy are the
  rendered ones;
- Ceph: a dedicated entity created with the rendered caps.

A config credential is synced and a cephx credential rotated through the CLI; then a Secret in
another namespace (403), a Vault path outside the policy (permission denied) and a Ceph option
outside the caps (EACCES) are each refused.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import pytest
from kubernetes import client as k8s
from rotation_helpers import (
    api_client,
    ceph_config,
    create_config_cr,
    create_cr,
    get_cr,
    read_secret,
    unique,
    vault,
    vault_labels,
    vault_put,
    vaultbridge_cmd,
    wait_for,
)
from test_helm_chart import CHART, helm

from vaultbridge.testenv.env import Environment

pytestmark = pytest.mark.integration

OPTION = "rgw_keystone_admin_password"


@dataclass
class Setup:
    ns: str  # watched: the CRs and their Secrets
    other: str  # not watched
    system: str  # the release namespace
    sa: str
    rendered: dict[str, Any]
    ceph_user: str
    keyring: Path
    kubeconfig: Path
    sink: Path
    agent: subprocess.Popen[bytes]
    agent_log: Path
    rgw_who: str
    rgw_path: str
    cephx_entity: str
    cephx_path: str


def _namespace(api: k8s.ApiClient, prefix: str) -> str:
    name = unique(prefix)
    k8s.CoreV1Api(api).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    return name


def _token(api: k8s.ApiClient, ns: str, sa: str, seconds: int = 3600) -> str:
    body = k8s.AuthenticationV1TokenRequest(
        spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
    )
    return str(
        k8s.CoreV1Api(api).create_namespaced_service_account_token(sa, ns, body).status.token
    )


def _admin_env(env: Environment) -> dict[str, str]:
    variables = env.variables()
    path = variables.pop("PATH").removesuffix(":$PATH")
    return {**os.environ, **variables, "PATH": f"{path}:{os.environ['PATH']}"}


def _workload_env(env: Environment, s: Setup) -> dict[str, str]:
    """Only what the chart gives the pod: no root token, no admin kubeconfig, no admin keyring."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VAULTBRIDGE_", "KUBECONFIG", "CEPH_", "VAULT_", "BAO_"))
    }
    return {
        **base,
        "VAULTBRIDGE_VAULT__ADDR": env.vault.addr,
        "VAULTBRIDGE_VAULT__AUTH": "agent",
        "VAULTBRIDGE_VAULT__TOKEN_FILE": str(s.sink),
        "VAULTBRIDGE_KUBE__KUBECONFIG": str(s.kubeconfig),
        "VAULTBRIDGE_KUBE__NAMESPACES": s.ns,  # as the chart sets it (comma-separated)
        "VAULTBRIDGE_CEPH__CONF": str(env.ceph.conf),
        "VAULTBRIDGE_CEPH__USER": s.ceph_user,
        "VAULTBRIDGE_CEPH__KEYRING": str(s.keyring),
    }


def _cli(env: Environment, s: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*vaultbridge_cmd(), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=_workload_env(env, s),
        check=False,
    )


def _ceph_as(env: Environment, s: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CEPH_")}
    return subprocess.run(
        [
            "ceph",
            "-c",
            str(env.ceph.conf),
            "-n",
            s.ceph_user,
            "-k",
            str(s.keyring),
            "--connect-timeout",
            "10",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )


@pytest.fixture(scope="module")
def setup(testenv: Environment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    api = api_client(testenv)
    core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
    work = tmp_path_factory.mktemp("policies")
    ns, other, system = _namespace(api, "apps"), _namespace(api, "other"), _namespace(api, "vbsys")
    sa = "vaultbridge"
    auth_mount, policy_name, role = unique("k8s"), unique("vbpolicy"), unique("vbrole")
    ceph_user = f"client.{unique('vbpol')}"

    # 1. the chart: ServiceAccount, Roles in the watched namespace and the release namespace
    helm(
        testenv,
        "install",
        "vb",
        str(CHART),
        "--namespace",
        system,
        "--set",
        "fullnameOverride=vaultbridge",
        "--set",
        f"watchNamespaces={{{ns}}}",
        "--set",
        f"vault.addr={testenv.vault.addr}",
        "--set",
        f"vault.role={role}",
        "--set",
        f"vault.authMount={auth_mount}",
        "--set",
        f"ceph.user={ceph_user}",
    )

    # 2. the CRs: a config credential synced from Vault, a cephx credential generated by us
    rgw_who, rgw_path = f"client.rgw.{unique('store')}", unique("ceph/rgw")
    cephx_entity, cephx_path = f"client.{unique('app')}", unique("ceph/app")
    vault_put(testenv, rgw_path, {"value": "first-" + unique("pw")})
    create_config_cr(api, ns, "rgw", rgw_path, rgw_who, OPTION)
    create_cr(
        api,
        ns,
        "app",
        {
            "source": {"mount": "secret", "path": cephx_path, "field": "key"},
            "secret": {"name": "app"},
            "target": {
                "cephx": {"entity": cephx_entity, "caps": {"mon": "allow r"}, "retireAfter": "0s"}
            },
            "generate": True,
        },
    )

    # 3. render the policies from the CRs present (as an operator would, with admin access)
    done = subprocess.run(
        [
            *vaultbridge_cmd(),
            "policy",
            "render",
            "--output",
            "json",
            "--namespace",
            ns,
            "--policy-name",
            policy_name,
            "--role",
            role,
            "--service-account",
            sa,
            "--service-account-namespace",
            system,
            "--ceph-user",
            ceph_user,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=_admin_env(testenv),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rendered = json.loads(done.stdout)

    # 4. Vault: Kubernetes auth against the real apiserver, the rendered policy and role
    reviewer = "vault-reviewer"
    core.create_namespaced_service_account(
        system, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=reviewer))
    )
    rbac.create_cluster_role_binding(
        k8s.V1ClusterRoleBinding(
            metadata=k8s.V1ObjectMeta(name=unique("reviewer")),
            role_ref=k8s.V1RoleRef(
                api_group="rbac.authorization.k8s.io",
                kind="ClusterRole",
                name="system:auth-delegator",
            ),
            subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name=reviewer, namespace=system)],
        )
    )
    root = vault(testenv)
    root.sys.enable_auth_method("kubernetes", path=auth_mount)
    root.write(
        f"auth/{auth_mount}/config",
        kubernetes_host=testenv.kube.server,
        kubernetes_ca_cert=Path(testenv.kube.ca_cert).read_text(),
        token_reviewer_jwt=_token(api, system, reviewer),
        disable_local_ca_jwt=True,
    )
    root.sys.create_or_update_policy(policy_name, rendered["vault"]["policy"])
    root.write(f"auth/{auth_mount}/role/{role}", **rendered["kubernetes"]["config"])

    # 5. the agent, from the chart's own config, with the pod paths moved into a temp folder
    cm = core.read_namespaced_config_map("vaultbridge-agent", system)
    jwt, sink = work / "jwt", work / "sink" / "token"
    sink.parent.mkdir()
    jwt.write_text(_token(api, system, sa))
    hcl = (
        cm.data["agent.hcl"]
        .replace("/var/run/secrets/vaultbridge/vault-jwt/token", str(jwt))
        .replace("/vault/sink/token", str(sink))
    )
    (work / "agent.hcl").write_text(hcl)
    agent_log = work / "agent.log"
    bao = str(Path(sys.executable).parent / "bao")
    with agent_log.open("wb") as log:
        agent = subprocess.Popen(
            [bao, "agent", f"-config={work / 'agent.hcl'}"], stdout=log, stderr=subprocess.STDOUT
        )

    # 6. Ceph: the dedicated entity with the rendered caps
    keyring = work / "vaultbridge.keyring"
    testenv.ceph.ceph(
        "auth",
        "get-or-create",
        ceph_user,
        "mon",
        rendered["ceph"]["caps"]["mon"],
        "-o",
        str(keyring),
    )

    # 7. Kubernetes: a kubeconfig with the chart ServiceAccount's token
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "t",
                        "cluster": {
                            "server": testenv.kube.server,
                            "certificate-authority": str(testenv.kube.ca_cert),
                        },
                    }
                ],
                "users": [{"name": "sa", "user": {"token": _token(api, system, sa)}}],
                "contexts": [
                    {"name": "t", "context": {"cluster": "t", "user": "sa", "namespace": ns}}
                ],
                "current-context": "t",
            }
        )
    )
    kubeconfig.chmod(0o600)

    s = Setup(
        ns,
        other,
        system,
        sa,
        rendered,
        ceph_user,
        keyring,
        kubeconfig,
        sink,
        agent,
        agent_log,
        rgw_who,
        rgw_path,
        cephx_entity,
        cephx_path,
    )
    try:
        wait_for(
            lambda: (sink.exists() and sink.stat().st_size > 0) or agent.poll() is not None,
            "the agent wrote its token sink",
            timeout=30,
        )
        assert agent.poll() is None, agent_log.read_text()[-2000:]
        yield s
    finally:
        agent.terminate()
        try:
            agent.wait(timeout=10)
        except subprocess.TimeoutExpired:
            agent.kill()
        helm(testenv, "uninstall", "vb", "--namespace", system, check=False)
        for name in (ns, other, system):
            core.delete_namespace(name)


def test_the_agent_sink_is_private(setup: Setup) -> None:
    mode = stat.S_IMODE(setup.sink.stat().st_mode)
    assert mode & 0o037 == 0, oct(mode)  # 0640 or stricter: no group write, nothing for others
    assert setup.sink.read_text().strip()


def test_rendered_policies_are_the_expected_minimum(setup: Setup) -> None:
    policy = setup.rendered["vault"]["policy"]
    assert f'path "secret/data/{setup.rgw_path}"' in policy
    assert f'path "secret/metadata/{setup.cephx_path}"' in policy
    assert policy.count("path ") == 8  # 2 credentials x (data, metadata), random, 3 self
    caps = setup.rendered["ceph"]["caps"]["mon"]
    assert f'with who="{setup.rgw_who}" name="{OPTION}"' in caps
    assert f'allow command "auth add" with entity prefix "{setup.cephx_entity}."' in caps
    assert "auth import" not in caps
    assert setup.rendered["rbac"]["watchNamespaces"] == [setup.ns]


def test_config_sync_end_to_end_with_only_the_rendered_rights(
    testenv: Environment, setup: Setup
) -> None:
    value = "synced-" + unique("pw")
    version = vault_put(testenv, setup.rgw_path, {"value": value})
    done = _cli(testenv, setup, "sync", f"{setup.ns}/rgw")
    assert done.returncode == 0, done.stdout + done.stderr
    assert value not in done.stdout + done.stderr
    assert ceph_config(testenv, setup.rgw_who, OPTION) == value
    api = api_client(testenv)
    secret = read_secret(api, setup.ns, "rgw")
    assert secret is not None
    assert base64.b64decode(secret.data["value"]).decode() == value
    assert get_cr(api, setup.ns, "rgw")["status"]["currentVersion"] == version
    assert vault_labels(testenv, setup.rgw_path)["vaultbridge-current"] == str(version)


def test_cephx_rotation_end_to_end_with_only_the_rendered_rights(
    testenv: Environment, setup: Setup
) -> None:
    done = _cli(testenv, setup, "rotate", f"{setup.ns}/app")
    assert done.returncode == 0, done.stdout + done.stderr
    api = api_client(testenv)
    status = get_cr(api, setup.ns, "app")["status"]
    assert status["currentEntity"] == f"{setup.cephx_entity}.1"
    secret = read_secret(api, setup.ns, "app")
    assert secret is not None
    key = base64.b64decode(secret.data["userKey"]).decode()
    assert key not in done.stdout + done.stderr
    rows = json.loads(testenv.ceph.ceph("auth", "get", f"{setup.cephx_entity}.1", "-f", "json"))
    assert rows[0]["key"] == key


def test_kubernetes_refuses_secrets_outside_the_watched_namespaces(
    testenv: Environment, setup: Setup
) -> None:
    from kubernetes import config as k8s_config

    admin = api_client(testenv)
    k8s.CoreV1Api(admin).create_namespaced_secret(
        setup.other, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="private"), string_data={"k": "v"})
    )
    as_sa = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(setup.kubeconfig)))
    as_sa.list_namespaced_secret(setup.ns)  # allowed where it works
    sa_api = k8s_config.new_client_from_config(config_file=str(setup.kubeconfig))
    leases, rbac = k8s.CoordinationV1Api(sa_api), k8s.RbacAuthorizationV1Api(sa_api)
    k8s.CoordinationV1Api(admin).create_namespaced_lease(
        setup.system,
        {"metadata": {"name": "another-release-leader"}, "spec": {"holderIdentity": "them"}},
    )
    for call in (
        lambda: as_sa.read_namespaced_secret("private", setup.other),
        lambda: as_sa.list_namespaced_secret(setup.other),
        lambda: as_sa.list_secret_for_all_namespaces(),
        lambda: as_sa.create_namespaced_pod(
            setup.ns,
            {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "x", "image": "x"}]}},
        ),
        # the Lease of another release, in the same namespace
        lambda: leases.patch_namespaced_lease(
            "another-release-leader", setup.system, {"spec": {"holderIdentity": "vaultbridge"}}
        ),
        lambda: leases.delete_namespaced_lease("another-release-leader", setup.system),
        # no way to widen its own rights
        lambda: rbac.create_namespaced_role_binding(
            setup.ns,
            {
                "metadata": {"name": "escalate"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": setup.sa, "namespace": setup.system}
                ],
            },
        ),
        lambda: as_sa.read_namespace(setup.other),
    ):
        with pytest.raises(k8s.ApiException) as err:
            call()
        assert err.value.status == 403, err.value.reason


def test_vault_refuses_paths_outside_the_policy(testenv: Environment, setup: Setup) -> None:
    unrelated = "ceph/" + unique("unrelated")
    vault_put(testenv, unrelated, {"value": "x"})
    token = setup.sink.read_text().strip()
    client = hvac.Client(url=testenv.vault.addr, token=token)
    assert client.secrets.kv.v2.read_secret_version(
        path=setup.rgw_path, mount_point="secret", raise_on_deleted_version=True
    )
    for call in (
        lambda: client.secrets.kv.v2.read_secret_version(
            path=unrelated, mount_point="secret", raise_on_deleted_version=True
        ),
        # read-only source (no generate): writing a version is refused
        lambda: client.secrets.kv.v2.create_or_update_secret(
            path=setup.rgw_path, secret={"value": "x"}, mount_point="secret"
        ),
        lambda: client.secrets.kv.v2.list_secrets(path="ceph", mount_point="secret"),
        lambda: client.sys.list_policies(),
        # other sys/ endpoints: mounts, audit devices, a token of its own making
        lambda: client.sys.list_mounted_secrets_engines(),
        lambda: client.sys.list_enabled_audit_devices(),
        lambda: client.auth.token.create(policies=["default"]),
        # the history it keeps is not its to destroy
        lambda: client.secrets.kv.v2.delete_metadata_and_all_versions(
            path=setup.rgw_path, mount_point="secret"
        ),
    ):
        with pytest.raises(hvac.exceptions.Forbidden):
            call()
    # and `vaultbridge check` finds everything it needs with exactly these rights
    checked = _cli(testenv, setup, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_ceph_refuses_options_and_entities_outside_the_caps(
    testenv: Environment, setup: Setup
) -> None:
    allowed = _ceph_as(testenv, setup, "config", "set", setup.rgw_who, OPTION, "ok-" + unique("v"))
    assert allowed.returncode == 0, allowed.stderr
    for args in (
        ("config", "set", setup.rgw_who, "rgw_keystone_admin_user", "x"),  # other option
        ("config", "set", "client.rgw.elsewhere", OPTION, "x"),  # other section
        ("config-key", "get", "mgr/dashboard/crt"),
        ("auth", "get", "client.admin"),
        ("auth", "ls"),
        ("auth", "add", "client.intruder", "mon", "allow *"),
        ("auth", "caps", setup.ceph_user, "mon", "allow *"),  # cannot widen its own caps
        ("auth", "del", "client.admin"),
        ("auth", "get-or-create", "client.intruder", "mon", "allow r"),
        ("config-key", "set", "mgr/dashboard/crt", "x"),
        ("config", "rm", setup.rgw_who, "rgw_keystone_admin_user"),
        ("osd", "pool", "create", "intruder"),
    ):
        refused = _ceph_as(testenv, setup, *args)
        assert refused.returncode == 13, (args, refused.stdout, refused.stderr)
        assert "EACCES" in refused.stderr or "access denied" in refused.stderr
    with open(os.devnull, "rb"):
        imported = subprocess.run(
            [
                "ceph",
                "-c",
                str(testenv.ceph.conf),
                "-n",
                setup.ceph_user,
                "-k",
                str(setup.keyring),
                "auth",
                "import",
                "-i",
                str(setup.keyring),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("CEPH_")},
        )
    assert imported.returncode == 13, imported.stderr


def test_policy_render_names_a_cr_with_an_invalid_target(testenv: Environment) -> None:
    api = api_client(testenv)
    ns = _namespace(api, "badpol")
    try:
        create_cr(
            api,
            ns,
            "globbed",
            {
                "source": {"mount": "secret", "path": "ceph/*"},
                "secret": {"name": "g"},
                "target": {"config": {"who": "client.rgw.x", "option": OPTION}},
            },
        )
        create_cr(
            api,
            ns,
            "self",
            {
                "source": {"mount": "secret", "path": "ceph/self"},
                "secret": {"name": "s"},
                "target": {
                    "cephx": {
                        "entity": "client.vaultbridge",
                        "caps": {"mon": "allow r"},
                        "strategy": "in-place",
                    }
                },
            },
        )
        started = time.monotonic()
        done = subprocess.run(
            [*vaultbridge_cmd(), "policy", "render", "--namespace", ns],
            capture_output=True,
            text=True,
            timeout=60,
            env=_admin_env(testenv),
            check=False,
        )
        assert done.returncode == 1
        assert done.stdout == ""
        assert f"CredentialRotation {ns}/globbed: spec.source.path: 'ceph/*'" in done.stderr
        assert f"CredentialRotation {ns}/self: spec.target.cephx.entity" in done.stderr
        assert "no policy rendered" in done.stderr
        assert time.monotonic() - started < 30
    finally:
        k8s.CoreV1Api(api).delete_namespace(ns)
