"""The Helm chart against the real kube-apiserver: lint, template, install, Pod Security, schema.

No kubelet runs, so Pods stay Pending and the Deployment makes none (no ReplicaSet controller):
the rendered pod template is also created as a bare Pod in a namespace that enforces Pod Security
"restricted", which is exactly the admission check a real ReplicaSet would meet.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_helpers import CHART, helm
from kubernetes import client as k8s
from rotation_helpers import api_client, unique

from vaultbridge.testenv.env import Environment

pytestmark = pytest.mark.integration

BASE_VALUES = ["--set", "vault.addr=https://vault.vault.svc:8200"]

# stand-ins for the Prometheus Operator CRDs, so ServiceMonitor/PrometheusRule can be installed
MONITORING_CRDS = [
    {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    for plural, kind in (
        ("servicemonitors", "ServiceMonitor"),
        ("prometheusrules", "PrometheusRule"),
    )
]


def render(env: Environment, *values: str, namespace: str = "vb") -> list[dict[str, Any]]:
    out = helm(env, "template", "t", str(CHART), "--namespace", namespace, *BASE_VALUES, *values)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def pod_template(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    return dict(deployment["spec"]["template"])


@pytest.fixture(scope="module")
def api(testenv: Environment) -> k8s.ApiClient:
    created = api_client(testenv)
    ext = k8s.ApiextensionsV1Api(created)
    for crd in MONITORING_CRDS:
        try:
            ext.create_custom_resource_definition(crd)
        except k8s.ApiException as exc:
            if exc.status != 409:
                raise
    return created


def make_namespace(api: k8s.ApiClient, restricted: bool) -> str:
    name = unique("helm")
    labels = {"pod-security.kubernetes.io/enforce": "restricted"} if restricted else {}
    k8s.CoreV1Api(api).create_namespace(
        k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels=labels))
    )
    return name


@pytest.fixture
def restricted_ns(api: k8s.ApiClient) -> Iterator[str]:
    name = make_namespace(api, restricted=True)
    yield name
    k8s.CoreV1Api(api).delete_namespace(name)


@pytest.fixture
def watched_ns(api: k8s.ApiClient) -> Iterator[str]:
    name = make_namespace(api, restricted=False)
    yield name
    k8s.CoreV1Api(api).delete_namespace(name)


def test_lint_and_template_are_clean(testenv: Environment) -> None:
    linted = helm(testenv, "lint", str(CHART), "--strict", *BASE_VALUES)
    assert "0 chart(s) failed" in linted.stdout
    assert "[WARNING]" not in linted.stdout and "[ERROR]" not in linted.stdout
    for extra in (
        [],
        ["--set", "clusterWide=true", "--set", "rbac.tokenReview=true"],
        [
            "--set",
            "ceph.keyring.source=agent",
            "--set",
            "vault.caCert.secretName=vault-ca",
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "metrics.prometheusRule.enabled=true",
        ],
    ):
        docs = render(testenv, *extra)
        kinds = sorted(d["kind"] for d in docs)
        assert "Deployment" in kinds and "ServiceAccount" in kinds
    # the CRD shipped with the chart is the one vaultbridge installs itself
    packaged = (
        Path(__file__).resolve().parents[2] / "vaultbridge" / "crds" / "credentialrotations.yaml"
    )
    assert (CHART / "crds" / "credentialrotations.yaml").read_text() == packaged.read_text()


def test_rendered_pod_is_least_privilege_and_memory_backed(testenv: Environment) -> None:
    docs = render(testenv, "--set", "watchNamespaces={rook-ceph,apps}")
    spec = pod_template(docs)["spec"]
    assert spec["automountServiceAccountToken"] is False
    containers = {c["name"]: c for c in spec["containers"]}
    assert set(containers) == {"vaultbridge", "vault-agent"}
    for container in containers.values():
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["vault-sink"]["emptyDir"]["medium"] == "Memory"
    env = {e["name"]: e.get("value") for e in containers["vaultbridge"]["env"]}
    assert env["VAULTBRIDGE_VAULT__AUTH"] == "agent"
    assert env["VAULTBRIDGE_VAULT__TOKEN_FILE"] == "/vault/sink/token"
    assert env["VAULTBRIDGE_KUBE__NAMESPACES"] == "rook-ceph,apps"
    # only vaultbridge gets the Kubernetes API token; only the agent the Vault login token
    mounts = {n: {m["name"] for m in c["volumeMounts"]} for n, c in containers.items()}
    assert (
        "kube-api-access" in mounts["vaultbridge"]
        and "kube-api-access" not in mounts["vault-agent"]
    )
    assert "vault-jwt" in mounts["vault-agent"] and "vault-jwt" not in mounts["vaultbridge"]
    sink_ro = [m for m in containers["vaultbridge"]["volumeMounts"] if m["name"] == "vault-sink"]
    assert sink_ro[0]["readOnly"] is True
    agent_hcl = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["agent.hcl"]
    assert 'method "kubernetes"' in agent_hcl and "mode = 0640" in agent_hcl
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["apps", "rook-ceph", "vb"]
    assert not [d for d in docs if d["kind"].startswith("Cluster")]


def test_rollout_restart_rules_grant_get_and_patch_of_the_named_workloads_only(
    testenv: Environment,
) -> None:
    rules = '[{"resources": ["deployments"], "resourceNames": ["web", "api"]}]'
    docs = render(
        testenv,
        "--set",
        "watchNamespaces={apps}",
        "--set-json",
        f"rbac.rolloutRestartRules={rules}",
    )
    workload_roles = [
        d for d in docs if d["kind"] == "Role" and d["metadata"]["namespace"] == "apps"
    ]
    assert len(workload_roles) == 1
    for role in workload_roles:
        apps = [r for r in role["rules"] if r["apiGroups"] == ["apps"]]
        assert apps == [
            {
                "apiGroups": ["apps"],
                "resources": ["deployments"],
                "resourceNames": ["web", "api"],
                "verbs": ["get", "patch"],
            }
        ]
    plain = [d for d in render(testenv) if d["kind"] == "Role"]
    assert not [r for role in plain for r in role["rules"] if r["apiGroups"] == ["apps"]]


def test_the_audit_token_comes_from_a_secret_and_is_absent_by_default(
    testenv: Environment,
) -> None:
    def env_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
        containers = pod_template(docs)["spec"]["containers"]
        main = next(c for c in containers if c["name"] == "vaultbridge")
        return {e["name"]: e for e in main["env"]}

    assert "VAULTBRIDGE_TRIGGERS__AUDIT_TOKEN" not in env_of(render(testenv))
    docs = render(testenv, "--set", "triggers.auditTokenSecret.name=vb-audit")
    token = env_of(docs)["VAULTBRIDGE_TRIGGERS__AUDIT_TOKEN"]
    assert token["valueFrom"] == {"secretKeyRef": {"name": "vb-audit", "key": "token"}}


def test_install_creates_every_object_and_the_pod_passes_restricted(
    testenv: Environment, api: k8s.ApiClient, restricted_ns: str, watched_ns: str
) -> None:
    release = unique("vb")
    values = [
        "--set",
        f"watchNamespaces={{{watched_ns}}}",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "rbac.tokenReview=true",
        "--set",
        "ceph.keyring.source=agent",
    ]
    helm(
        testenv, "install", release, str(CHART), "--namespace", restricted_ns, *BASE_VALUES, *values
    )
    try:
        fullname = f"{release}-vaultbridge"
        core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
        rbac, policy = k8s.RbacAuthorizationV1Api(api), k8s.PolicyV1Api(api)
        custom = k8s.CustomObjectsApi(api)
        assert core.read_namespaced_service_account(fullname, restricted_ns)
        assert core.read_namespaced_config_map(f"{fullname}-agent", restricted_ns)
        assert core.read_namespaced_service(fullname, restricted_ns).spec.ports[0].port == 8080
        deployment = apps.read_namespaced_deployment(fullname, restricted_ns)
        assert deployment.spec.replicas == 2
        assert policy.read_namespaced_pod_disruption_budget(fullname, restricted_ns)
        role = rbac.read_namespaced_role(fullname, watched_ns)
        assert {r.resources[0] for r in role.rules} >= {"secrets", "credentialrotations", "events"}
        assert rbac.read_namespaced_role_binding(fullname, watched_ns)
        assert rbac.read_namespaced_role(f"{fullname}-leader-election", restricted_ns)
        assert rbac.read_namespaced_role_binding(f"{fullname}-leader-election", restricted_ns)
        assert rbac.read_cluster_role(f"{fullname}-tokenreview")
        assert rbac.read_cluster_role_binding(f"{fullname}-tokenreview")
        for plural in ("servicemonitors", "prometheusrules"):
            assert custom.get_namespaced_custom_object(
                "monitoring.coreos.com", "v1", restricted_ns, plural, fullname
            )

        # Pod Security "restricted": the rendered pod template as a Pod is admitted ...
        template = api.sanitize_for_serialization(deployment.spec.template)
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "vb-pod",
                **{k: v for k, v in template["metadata"].items() if k in ("labels", "annotations")},
            },
            "spec": template["spec"],
        }
        created = core.create_namespaced_pod(restricted_ns, pod)
        assert created.metadata.name == "vb-pod"
        # ... and a tampered one is refused, naming the rule it breaks
        for tamper, expected in (
            (
                lambda s: s["containers"][1]["securityContext"].update(
                    privileged=True, allowPrivilegeEscalation=True
                ),
                "privileged",
            ),
            (
                lambda s: s["containers"][0]["securityContext"].update(
                    allowPrivilegeEscalation=True
                ),
                "allowPrivilegeEscalation",
            ),
            (lambda s: s["containers"][0]["securityContext"].pop("capabilities"), "capabilities"),
            (
                lambda s: (
                    s["securityContext"].pop("seccompProfile")
                    and [c["securityContext"].pop("seccompProfile") for c in s["containers"]]
                ),
                "seccompProfile",
            ),
        ):
            bad = copy.deepcopy(pod)
            bad["metadata"]["name"] = unique("bad")
            tamper(bad["spec"])
            with pytest.raises(k8s.ApiException) as err:
                core.create_namespaced_pod(restricted_ns, bad)
            assert err.value.status == 403
            assert "restricted" in err.value.body and expected in err.value.body
    finally:
        helm(testenv, "uninstall", release, "--namespace", restricted_ns, check=False)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "agent.sinkMode=0666"], "at '/agent/sinkMode': value must be one of"),
        (["--set", "vault.addr=vault:8200"], "at '/vault/addr'"),
        (["--set", "replicas=3"], "additional properties 'replicas' not allowed"),
        (["--set", "ceph.user=client.admin"], "at '/ceph/user'"),
        (["--set", "ceph.keyring.source=file"], "at '/ceph/keyring/source'"),
        (
            ["--set", "podSecurityContext.runAsNonRoot=false"],
            "at '/podSecurityContext/runAsNonRoot'",
        ),
        (["--set", "watchNamespaces={Bad_NS}"], "at '/watchNamespaces/0'"),
        (
            [
                "--set",
                "rbac.extraOwnerRules[0].apiGroups={}",
                "--set",
                "rbac.extraOwnerRules[0].resources={secrets}",
            ],
            "at '/rbac/extraOwnerRules/0",
        ),
    ],
)
def test_schema_violations_fail_install_with_a_clear_message(
    testenv: Environment, api: k8s.ApiClient, watched_ns: str, values: list[str], message: str
) -> None:
    done = helm(
        testenv,
        "install",
        unique("bad"),
        str(CHART),
        "--namespace",
        watched_ns,
        *BASE_VALUES,
        *values,
        check=False,
    )
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr
    assert message in done.stderr, done.stderr
    assert not k8s.AppsV1Api(api).list_namespaced_deployment(watched_ns).items


def test_missing_vault_address_is_named(testenv: Environment) -> None:
    done = helm(testenv, "template", "t", str(CHART), check=False)
    assert done.returncode != 0
    assert "vault.addr is required" in done.stderr
