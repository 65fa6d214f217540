"""The Helm chart as users install it, in real Pods on the real node, next to a real Vault Agent.

``helm install`` with ``testenv/helm-node-values.yaml``. The Agent sidecar logs in to OpenBao
through Kubernetes auth (OpenBao calls TokenReview on the testenv API server), vaultbridge reads
its token sink, one replica leads and the other stands by. The controller in the Pod rotates a
config and a cephx credential, on a schedule and through the trigger port; consumers in Pods
read the rotated Secret from a volume and from an environment variable. Then the leader is
deleted mid-rotation, the chart is upgraded under a stream of triggers and uninstalled.
Everything is checked in Ceph, the Secrets and Vault directly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import statistics
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helm_helpers import CHART, helm
from kubernetes import client as k8s
from node_helpers import (
    NODE_VALUES,
    TRIGGER_PORT,
    container_pid,
    lease_holder,
    node_api,
    node_of,
    pod_events,
    pods,
    post,
    post_to_leader,
    proc_status,
    ready,
    sa_token,
)
from rotation_helpers import (
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

from vaultbridge.testenv.env import Environment

pytestmark = pytest.mark.integration

RELEASE, FULLNAME, SA = "vb", "vaultbridge", "vaultbridge"
SELECTOR = "app.kubernetes.io/instance=vb"
LEASE = "vaultbridge-leader"
OPTION = "rgw_keystone_admin_password"
WEBHOOK_TOKEN = "node-webhook-" + uuid.uuid4().hex[:8]
CONSUMER = Path(__file__).with_name("consumer.py")


@dataclass
class Deployed:
    env: Environment
    api: k8s.ApiClient
    apps: str  # where the CRs, their Secrets and the consumers live
    system: str  # the release's namespace
    rendered: dict[str, Any]
    ceph_user: str
    auth_mount: str
    role: str
    rgw_who: str
    rgw_path: str
    app_entity: str
    app_path: str
    sched_who: str
    sched_path: str
    installed_at: float
    images: dict[str, str] = field(default_factory=dict)
    upgrade_crs: list[tuple[str, str]] = field(default_factory=list)  # (name, Vault path)
    rolled_path: str = ""  # the CR whose promotion rolls a Deployment

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api)

    def install_args(self, release: str, namespace: str, **overrides: str) -> list[str]:
        values = {
            "fullnameOverride": FULLNAME if release == RELEASE else release,
            "image.repository": self.images["vaultbridge"].rsplit(":", 1)[0],
            "image.tag": self.images["vaultbridge"].rsplit(":", 1)[1],
            "agent.image.repository": self.images["openbao"].rsplit(":", 1)[0],
            "agent.image.tag": self.images["openbao"].rsplit(":", 1)[1],
            "apiServer.port": str(urllib.parse.urlsplit(self.env.kube.server).port),
            "vault.addr": self.env.vault.addr,
            "vault.role": self.role,
            "vault.authMount": self.auth_mount,
            "ceph.user": self.ceph_user,
            "watchNamespaces": f"{{{self.apps}}}",
            "triggers.webhookTokenSecret.name": "webhook-token",
            **overrides,
        }
        sets = [item for k, v in values.items() for item in ("--set", f"{k}={v}")]
        rules = json.dumps(self.rendered["rbac"]["rbac"]["rolloutRestartRules"])
        sets += ["--set-json", f"rbac.rolloutRestartRules={rules}"]  # from policy render
        return [release, str(CHART), "--namespace", namespace, "-f", str(NODE_VALUES), *sets]


def _namespace(core: k8s.CoreV1Api, prefix: str) -> str:
    name = unique(prefix)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    return name


def _ceph_conf(env: Environment) -> str:
    return f"[global]\nfsid = {env.ceph.fsid}\nmon host = {env.ceph.mon_host}\n"


def _release_inputs(d: Deployed, namespace: str, keyring: bool = True) -> None:
    """What a release's Pods mount: the ceph.conf ConfigMap, the keyring and webhook Secrets."""
    core = d.core
    core.create_namespaced_config_map(
        namespace,
        k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(name="vaultbridge-ceph-conf"),
            data={"ceph.conf": _ceph_conf(d.env)},
        ),
    )
    if keyring:
        core.create_namespaced_secret(
            namespace,
            k8s.V1Secret(
                metadata=k8s.V1ObjectMeta(name="vaultbridge-ceph-keyring"),
                string_data={"keyring": d.env.ceph.ceph("auth", "get", d.ceph_user)},
            ),
        )
    core.create_namespaced_secret(
        namespace,
        k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name="webhook-token"), string_data={"token": WEBHOOK_TOKEN}
        ),
    )


@pytest.fixture(scope="module")
def deployed(node_env: Environment) -> Iterator[Deployed]:
    env = node_env
    api = node_api(env)
    core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
    apps, system = _namespace(core, "apps"), _namespace(core, "vbsys")
    auth_mount, role, policy = unique("k8s"), unique("vbrole"), unique("vbpolicy")

    # the CRs, before the policies are rendered from them
    rgw_who, rgw_path = f"client.rgw.{unique('store')}", unique("node/rgw")
    vault_put(env, rgw_path, {"value": "first-" + unique("pw")})
    create_config_cr(api, apps, "rgw", rgw_path, rgw_who)
    app_entity, app_path = f"client.{unique('app')}", unique("node/app")
    create_cr(
        api,
        apps,
        "app",
        {
            "source": {"mount": "secret", "path": app_path, "field": "key"},
            "secret": {"name": "app"},
            "target": {
                "cephx": {"entity": app_entity, "caps": {"mon": "allow r"}, "retireAfter": "0s"}
            },
            "generate": True,
            "schedule": "0 3 * * 0",  # weekly; the test runs it now through the trigger port
        },
    )
    sched_who, sched_path = f"client.rgw.{unique('sched')}", unique("node/sched")
    create_config_cr(api, apps, "sched", sched_path, sched_who, generate=True, schedule="* * * * *")
    upgrade_crs = []  # for the upgrade test: in the policies from the start
    for i in range(6):
        name, path = f"up-{i}", unique("node/up")
        vault_put(env, path, {"value": f"up-init-{i}"})
        create_config_cr(api, apps, name, path, f"client.rgw.{unique('up')}")
        upgrade_crs.append((name, path))
    rolled_path = unique("node/rolled")
    vault_put(env, rolled_path, {"value": "rolled-" + unique("pw")})
    rolled = [{"kind": "Deployment", "name": "auto-consumer"}]
    who = f"client.rgw.{unique('rolled')}"
    create_config_cr(api, apps, "rolled", rolled_path, who, rolloutRestartTargets=rolled)
    ceph_user = f"client.{unique('vbnode')}"
    done = _cli_render(env, apps, system, policy, role, ceph_user)
    rendered = json.loads(done)

    # OpenBao: Kubernetes auth against the testenv API server, the rendered policy and role
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
    root = vault(env)
    root.sys.enable_auth_method("kubernetes", path=auth_mount)
    root.write(
        f"auth/{auth_mount}/config",
        kubernetes_host=env.kube.server,
        kubernetes_ca_cert=Path(env.kube.ca_cert).read_text(),
        token_reviewer_jwt=sa_token(api, system, reviewer),
        disable_local_ca_jwt=True,
    )
    root.sys.create_or_update_policy(policy, rendered["vault"]["policy"])
    root.write(f"auth/{auth_mount}/role/{role}", **rendered["kubernetes"]["config"])

    # Ceph: vaultbridge's own entity with the rendered caps
    env.ceph.ceph("auth", "get-or-create", ceph_user, "mon", rendered["ceph"]["caps"]["mon"])

    d = Deployed(
        env,
        api,
        apps,
        system,
        rendered,
        ceph_user,
        auth_mount,
        role,
        rgw_who,
        rgw_path,
        app_entity,
        app_path,
        sched_who,
        sched_path,
        installed_at=0.0,
        images=dict(node_of(env).images),
        upgrade_crs=upgrade_crs,
        rolled_path=rolled_path,
    )
    _release_inputs(d, system)
    d.installed_at = time.monotonic()
    helm(env, "install", *d.install_args(RELEASE, system))
    try:
        yield d
    finally:
        helm(env, "uninstall", RELEASE, "--namespace", system, check=False)
        for name in (apps, system):
            core.delete_namespace(name)


def _cli_render(
    env: Environment, apps: str, system: str, policy: str, role: str, ceph_user: str
) -> str:
    import subprocess

    from rotation_helpers import cli_env

    done = subprocess.run(
        [
            *vaultbridge_cmd(),
            "policy",
            "render",
            "--output",
            "json",
            "--namespace",
            apps,
            "--policy-name",
            policy,
            "--role",
            role,
            "--service-account",
            SA,
            "--service-account-namespace",
            system,
            "--ceph-user",
            ceph_user,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(env),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _both_ready(d: Deployed, timeout: float = 180.0) -> list[k8s.V1Pod]:
    def check() -> list[k8s.V1Pod] | None:
        found = pods(d.api, d.system, SELECTOR)
        return found if len(found) == 2 and all(ready(p) for p in found) else None

    return wait_for(check, "both vaultbridge replicas Ready", timeout=timeout, interval=0.5)


def _status(d: Deployed, name: str) -> dict[str, Any]:
    return get_cr(d.api, d.apps, name).get("status") or {}


def _promoted_at(d: Deployed, name: str, version: int, timeout: float = 90.0) -> None:
    def check() -> bool:
        status = _status(d, name)
        return status.get("currentVersion") == version and not status.get("rotation")

    wait_for(check, f"{name} promoted at version {version}", timeout=timeout, interval=0.2)


def _secret(d: Deployed, name: str) -> dict[str, str]:
    secret = read_secret(d.api, d.apps, name)
    assert secret is not None and secret.data
    return {k: base64.b64decode(v).decode() for k, v in secret.data.items()}


def _logs(d: Deployed, ns: str, pod: str, container: str) -> str:
    return str(d.core.read_namespaced_pod_log(pod, ns, container=container))


# ---------------------------------------------------------------------------------- tests


def test_both_replicas_start_the_agent_logs_in_and_one_leads(deployed: Deployed) -> None:
    d = deployed
    found = _both_ready(d)
    print(f"helm install -> both replicas Ready: {time.monotonic() - d.installed_at:.1f} s")
    names = {p.metadata.name for p in found}
    holder = wait_for(lambda: lease_holder(d.api, d.system, LEASE), "a leader", timeout=60)
    assert holder in names  # the Lease names the Pod
    for pod in found:
        agent = _logs(d, d.system, pod.metadata.name, "vault-agent")
        assert "authentication successful" in agent, agent[-2000:]
        assert all(s.restart_count == 0 for s in pod.status.container_statuses)
    roles = set()
    for _ in range(40):  # the port is shared: either process may answer
        with urllib.request.urlopen("http://127.0.0.1:8080/readyz", timeout=5) as reply:
            answer = json.loads(reply.read())
        roles.add((answer["identity"], answer["role"]))
        if len(roles) == 2:
            break
    assert roles == {(holder, "leader"), (next(iter(names - {holder})), "standby")}


def test_the_controller_in_the_pod_promotes_config_and_cephx(deployed: Deployed) -> None:
    d = deployed
    _promoted_at(d, "rgw", 1)
    value = _secret(d, "rgw")["value"]
    assert ceph_config(d.env, d.rgw_who, OPTION) == value
    assert vault_labels(d.env, d.rgw_path)["vaultbridge-current"] == "1"
    # a generated credential is made by its schedule: run it now, through the trigger port
    answer = post_to_leader("/v1/schedules/run", {"credential": f"{d.apps}/app"}, WEBHOOK_TOKEN)
    assert answer == {"scheduled": [f"{d.apps}/app"]}
    _promoted_at(d, "app", 1)
    data = _secret(d, "app")
    assert data["userID"] == f"{d.app_entity.removeprefix('client.')}.1"
    assert d.env.ceph.ceph("auth", "get-key", f"{d.app_entity}.1").strip() == data["userKey"]


def test_a_trigger_through_the_service_port_rotates_the_config_credential(
    deployed: Deployed,
) -> None:
    d = deployed
    service = d.core.read_namespaced_service(FULLNAME, d.system)
    assert service.spec.ports[0].target_port == 8080  # where the test sends it: 127.0.0.1:8080
    _promoted_at(d, "rgw", 1)
    new_value = "second-" + unique("pw")
    version = vault_put(d.env, d.rgw_path, {"value": new_value})
    began = time.monotonic()
    answer = post_to_leader("/v1/trigger", {"mount": "secret", "path": d.rgw_path}, WEBHOOK_TOKEN)
    assert answer == {"queued": [f"{d.apps}/rgw"]}
    _promoted_at(d, "rgw", version)
    print(f"trigger -> promoted in the Pod: {time.monotonic() - began:.2f} s")
    assert ceph_config(d.env, d.rgw_who, OPTION) == new_value
    assert _secret(d, "rgw")["value"] == new_value
    assert vault_labels(d.env, d.rgw_path) == {
        "vaultbridge-current": str(version),
        "vaultbridge-previous": str(version - 1),
    }
    for _ in range(10):  # whichever replica answers
        assert post("/v1/trigger", {"credential": f"{d.apps}/rgw"}, "wrong-token")[0] == 401


def test_a_schedule_rotates_a_generated_credential(deployed: Deployed) -> None:
    d = deployed
    # "* * * * *": version 1 at the first sync, then one rotation a minute
    wait_for(
        lambda: (
            (_status(d, "sched").get("currentVersion") or 0) >= 2
            and not _status(d, "sched").get("rotation")
        ),
        "sched rotated by its schedule",
        timeout=150,
        interval=1.0,
    )
    status = _status(d, "sched")
    value = _secret(d, "sched")["value"]
    assert ceph_config(d.env, d.sched_who, OPTION) == value
    assert vault_labels(d.env, d.sched_path)["vaultbridge-current"] == str(status["currentVersion"])
    # stop it: a rotation a minute would only add noise to the tests that follow
    k8s.CustomObjectsApi(d.api).patch_namespaced_custom_object(
        "vaultbridge.io",
        "v1alpha1",
        d.apps,
        "credentialrotations",
        "sched",
        {"spec": {"schedule": "0 3 * * 0"}},
    )


def _consumer_pod(d: Deployed, name: str) -> dict[str, Any]:
    node = node_of(d.env)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "hostNetwork": True,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10002,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "consumer",
                    "image": node.images["consumer"],
                    "imagePullPolicy": "Never",
                    "command": ["/usr/bin/python3", "-u", "/consumer/consumer.py"],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "key", "mountPath": "/etc/ceph-csi", "readOnly": True},
                        {"name": "conf", "mountPath": "/etc/ceph", "readOnly": True},
                        {"name": "code", "mountPath": "/consumer", "readOnly": True},
                    ],
                }
            ],
            "volumes": [
                {"name": "key", "secret": {"secretName": "app"}},
                {"name": "conf", "configMap": {"name": "ceph-conf"}},
                {"name": "code", "configMap": {"name": "consumer-code"}},
            ],
        },
    }


def _events(d: Deployed, pod: str) -> list[dict[str, Any]]:
    try:
        lines = _logs(d, d.apps, pod, "consumer").splitlines()
    except k8s.ApiException as exc:
        if exc.status in (400, 404):  # not started yet (404: the kubelet has no log yet)
            return []
        raise
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_a_mounted_consumer_authenticates_through_five_rotations(deployed: Deployed) -> None:
    """ceph-csi layout in a volume; the kubelet propagates each rotation; 0 failures; the
    previous entity is retired only after the consumer's session moved to the new one."""
    d = deployed
    if not _status(d, "app").get("currentVersion"):  # when run alone: make the first version
        post_to_leader("/v1/schedules/run", {"credential": f"{d.apps}/app"}, WEBHOOK_TOKEN)
        _promoted_at(d, "app", 1)
    first = int(_status(d, "app")["currentVersion"])
    d.core.create_namespaced_config_map(
        d.apps,
        k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(name="ceph-conf"), data={"ceph.conf": _ceph_conf(d.env)}
        ),
    )
    d.core.create_namespaced_config_map(
        d.apps,
        k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(name="consumer-code"),
            data={"consumer.py": CONSUMER.read_text()},
        ),
    )
    d.core.create_namespaced_pod(d.apps, _consumer_pod(d, "csi-consumer"))
    wait_for(
        lambda: any(e["event"] == "tick" for e in _events(d, "csi-consumer")),
        "the consumer authenticates",
        timeout=120,
        interval=1.0,
    )
    base = d.app_entity.removeprefix("client.")
    propagation, retired_after_switch = [], []
    for n in range(first + 1, first + 6):
        post_to_leader("/v1/schedules/run", {"credential": f"{d.apps}/app"}, WEBHOOK_TOKEN)
        _promoted_at(d, "app", n)
        promoted = time.time()
        previous = f"{d.app_entity}.{n - 1}"

        def switched(n: int = n) -> float | None:
            hits = [
                e["t"]
                for e in _events(d, "csi-consumer")
                if e["event"] == "switch" and e["user"] == f"{base}.{n}"
            ]
            return hits[0] if hits else None

        switch = wait_for(switched, f"the consumer uses {base}.{n}", timeout=120, interval=0.2)
        propagation.append(switch - promoted)

        def gone(entity: str = previous) -> float | None:
            listed = json.loads(d.env.ceph.ceph("auth", "ls", "-f", "json"))["auth_dump"]
            return None if any(e["entity"] == entity for e in listed) else time.time()

        try:
            retired = wait_for(gone, f"{previous} retired", timeout=120, interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; retiring: {_status(d, 'app').get('retiring')}") from None
        retired_after_switch.append(retired - switch)
    events = _events(d, "csi-consumer")
    failures = [e for e in events if e["event"] == "failure"]
    ticks = [e for e in events if e["event"] == "tick"]
    print(
        f"consumer: {ticks[-1]['checks']} checks, {len(failures)} failures; Secret -> volume "
        f"{', '.join(f'{p:.1f}' for p in propagation)} s (median "
        f"{statistics.median(propagation):.1f} s); retired {min(retired_after_switch):.1f}-"
        f"{max(retired_after_switch):.1f} s after the consumer moved"
    )
    assert failures == []
    assert all(r >= 0 for r in retired_after_switch)  # never before the session moved
    d.core.delete_namespaced_pod("csi-consumer", d.apps, grace_period_seconds=0)


def _env_consumer(d: Deployed, name: str, secret: str) -> Callable[[], str | None]:
    """A Deployment whose container prints a fingerprint of ``secret``'s value, read from an
    environment variable at start; returns what reads the fingerprint of its one Ready Pod."""
    script = (
        "import hashlib, os, time\n"
        "print('fp', hashlib.sha256(os.environ['PW'].encode()).hexdigest()[:12], flush=True)\n"
        "time.sleep(3600)\n"
    )
    container = {
        "name": "c",
        "image": node_of(d.env).images["consumer"],
        "imagePullPolicy": "Never",
        "command": ["/usr/bin/python3", "-c", script],
        "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": secret, "key": "value"}}}],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "hostNetwork": True,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [container],
                },
            },
        },
    }
    k8s.AppsV1Api(d.api).create_namespaced_deployment(d.apps, deployment)

    def fingerprint() -> str | None:
        found = [p for p in pods(d.api, d.apps, f"app={name}") if ready(p)]
        if len(found) != 1:
            return None
        out = _logs(d, d.apps, found[0].metadata.name, "c")
        return out.split()[1] if out.startswith("fp ") else None

    return fingerprint


def _fp(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def test_an_env_consumer_sees_a_rotation_after_a_rollout_restart(deployed: Deployed) -> None:
    d = deployed
    fingerprint = _env_consumer(d, "env-consumer", "rgw")
    before = wait_for(fingerprint, "the env consumer runs", timeout=120, interval=0.5)
    assert before == _fp(_secret(d, "rgw")["value"])
    version = vault_put(d.env, d.rgw_path, {"value": "third-" + unique("pw")})
    post_to_leader("/v1/trigger", {"mount": "secret", "path": d.rgw_path}, WEBHOOK_TOKEN)
    _promoted_at(d, "rgw", version)
    time.sleep(2)
    assert fingerprint() == before  # an environment variable never follows a Secret
    # what the README tells users to do (kubectl rollout restart does exactly this patch)
    apps_api = k8s.AppsV1Api(d.api)
    apps_api.patch_namespaced_deployment(
        "env-consumer",
        d.apps,
        {
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {"kubectl.kubernetes.io/restartedAt": str(time.time())}
                    }
                }
            }
        },
    )
    new = _fp(_secret(d, "rgw")["value"])
    wait_for(lambda: fingerprint() == new, "the restarted consumer sees the new value", 120, 0.5)
    apps_api.delete_namespaced_deployment("env-consumer", d.apps)


def test_a_rollout_restart_target_is_rolled_by_each_promotion(deployed: Deployed) -> None:
    """spec.rolloutRestartTargets through the chart's RBAC (rendered by policy render): the
    controller in the Pod annotates the Deployment and its new Pod reads the new value."""
    d = deployed
    _promoted_at(d, "rolled", 1)
    fingerprint = _env_consumer(d, "auto-consumer", "rolled")
    wait_for(lambda: fingerprint() == _fp(_secret(d, "rolled")["value"]), "it runs", 120, 0.5)
    apps_api = k8s.AppsV1Api(d.api)
    for n in range(2):
        version = vault_put(d.env, d.rolled_path, {"value": f"rolled-{n}-" + unique("pw")})
        triggered = time.monotonic()
        post_to_leader("/v1/trigger", {"mount": "secret", "path": d.rolled_path}, WEBHOOK_TOKEN)
        _promoted_at(d, "rolled", version)
        new = _fp(_secret(d, "rolled")["value"])
        wait_for(lambda new=new: fingerprint() == new, "the rolled Pod sees it", 120, 0.5)
        print(
            f"rollout restart: trigger -> new Pod reads v{version} in "
            f"{time.monotonic() - triggered:.1f} s"
        )
        template = apps_api.read_namespaced_deployment("auto-consumer", d.apps).spec.template
        assert template.metadata.annotations["rotation.vaultbridge.io/rolled"] == str(version)
    # raw: the typed client cannot read the deployment controller's Events (no eventTime)
    _status_code, body = d.env.kube.get(f"/apis/events.k8s.io/v1/namespaces/{d.apps}/events")
    items = json.loads(body)["items"]
    mine = [e for e in items if (e.get("regarding") or {}).get("name") == "rolled"]
    restarted = [e["note"] for e in mine if e["reason"] == "RolloutRestarted"]
    failed = [e["note"] for e in mine if e["reason"] == "RolloutRestartFailed"]
    assert len(restarted) >= 2, restarted
    # the one failure allowed: version 1, promoted before the test made the Deployment
    assert all("for version 1:" in n and "KubeNotFound" in n for n in failed), failed
    apps_api.delete_namespaced_deployment("auto-consumer", d.apps)


def test_the_pods_run_as_pod_security_restricted_and_the_sink_is_group_only(
    deployed: Deployed,
) -> None:
    """What "restricted" asks, seen in the kernel for every running container: not root, no
    capabilities, no_new_privs, seccomp filtering, a read-only root filesystem."""
    d = deployed
    node = node_of(d.env)
    for pod in _both_ready(d):
        for container in ("vaultbridge", "vault-agent"):
            pid = container_pid(node, pod, container)
            status = proc_status(pid)
            where = f"{pod.metadata.name}/{container}"
            assert status["Uid"].split() == ["10001"] * 4, where
            assert status["Gid"].split() == ["10001"] * 4, where
            assert status["CapEff"] == status["CapPrm"] == "0000000000000000", where
            assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", where
            root = next(
                line.split()
                for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
                if line.split()[4] == "/"
            )
            assert "ro" in root[5].split(","), where
        sink = (
            node.workdir
            / "kubelet"
            / "root"
            / "pods"
            / pod.metadata.uid
            / "volumes"
            / "kubernetes.io~empty-dir"
            / "vault-sink"
            / "token"
        )
        st = sink.stat()
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o640, 10001, 10001), oct(st.st_mode)


def _stream_triggers(
    d: Deployed, paths: list[str], until: Any = None, count: int = 0
) -> list[tuple[str, int]]:
    """Vault writes, each followed by its trigger, every 100 ms: the (path, version) of those
    answered 202. Until ``until()`` is true, or until ``count`` were accepted (at most five
    times as many tries)."""
    accepted: list[tuple[str, int]] = []
    n = 0
    while (until is not None and not until()) or (
        until is None and len(accepted) < count and n < 5 * count
    ):
        path = paths[n % len(paths)]
        version = vault_put(d.env, path, {"value": f"up-{n}-" + uuid.uuid4().hex[:6]})
        status, _ = post("/v1/trigger", {"mount": "secret", "path": path}, WEBHOOK_TOKEN, 2.0)
        if status == 202:
            accepted.append((path, version))
        n += 1
        time.sleep(0.1)
    return accepted


def test_helm_upgrade_under_triggers_loses_no_accepted_trigger(deployed: Deployed) -> None:
    d = deployed
    node = node_of(d.env)
    old = {p.metadata.name for p in _both_ready(d)}
    names, paths = [name for name, _ in d.upgrade_crs], [path for _, path in d.upgrade_crs]
    for name in names:
        _promoted_at(d, name, 1)
    # a new tag of the same image, as a release would bring; the fault makes each rotation
    # pause 5 s after Apply, so that the next test can delete a leader mid-rotation
    repo = d.images["vaultbridge"].rsplit(":", 1)[0]
    node.ctr("images", "tag", "--force", d.images["vaultbridge"], f"{repo}:upgraded")
    began = time.monotonic()
    upgrade = helm(
        d.env,
        "upgrade",
        *d.install_args(
            RELEASE,
            d.system,
            **{
                "image.tag": "upgraded",
                "extraEnv[0].name": "VAULTBRIDGE_FAULT",
                "extraEnv[0].value": "pause-after:Apply:5",
            },
        ),
        "--wait=false",
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr

    def rolled() -> bool:
        found = pods(d.api, d.system, SELECTOR)
        current = [
            p for p in found if p.spec.containers[0].image.endswith(":upgraded") and ready(p)
        ]
        return (
            len(found) == 2 and len(current) == 2 and not (old & {p.metadata.name for p in found})
        )

    accepted = _stream_triggers(d, paths, rolled)
    rolled_in = time.monotonic() - began
    # a few to the new Pods alone; a quick roll leaves few accepted during it, so top up to 10
    accepted += _stream_triggers(d, paths, count=max(6, 10 - len(accepted)))
    last: dict[str, int] = {}
    for path, version in accepted:
        last[path] = max(last.get(path, 0), version)
    for name, path in zip(names, paths, strict=True):
        if path in last:
            wait_for(
                lambda n=name, v=last[path]: (_status(d, n).get("currentVersion") or 0) >= v,
                f"{name}: every accepted trigger promoted",
                timeout=180,
                interval=0.5,
            )
    print(f"helm upgrade: rolled in {rolled_in:.1f} s; {len(accepted)} triggers accepted, 0 lost")
    assert len(accepted) >= 10


def _leader_idle() -> bool:
    """The leader answered /metrics on the shared port with nothing waiting or in flight."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{TRIGGER_PORT}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return False
    values = {
        line.split(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(
            ("vaultbridge_leader ", "vaultbridge_queue_depth ", "vaultbridge_rotations_in_flight ")
        )
    }
    return (
        values.get("vaultbridge_leader") == 1
        and values.get("vaultbridge_queue_depth") == 0
        and values.get("vaultbridge_rotations_in_flight") == 0
    )


def test_the_leader_deleted_mid_rotation_the_standby_completes_it_once(
    deployed: Deployed,
) -> None:
    d = deployed
    _both_ready(d)
    holder = wait_for(lambda: lease_holder(d.api, d.system, LEASE), "a leader", timeout=60)
    # the upgrade's rotations (each paused 5 s by the fault) must not queue ahead of rgw's
    wait_for(_leader_idle, "the leader's queue drained", timeout=300, interval=1.0)
    before = _status(d, "rgw").get("currentVersion")
    value = "failover-" + unique("pw")
    version = vault_put(d.env, d.rgw_path, {"value": value})
    post_to_leader("/v1/trigger", {"mount": "secret", "path": d.rgw_path}, WEBHOOK_TOKEN)
    # applied to Ceph, journaled, paused by the fault: the leader is mid-rotation
    wait_for(
        lambda: (
            bool(_status(d, "rgw").get("rotation"))
            and ceph_config(d.env, d.rgw_who, OPTION) == value
        ),
        "rgw mid-rotation",
        timeout=60,
        interval=0.1,
    )
    deleted = time.monotonic()
    d.core.delete_namespaced_pod(holder, d.system, grace_period_seconds=1)
    new_holder = wait_for(
        lambda: (h := lease_holder(d.api, d.system, LEASE)) not in (None, holder) and h,
        "the standby took the Lease",
        timeout=120,
        interval=0.1,
    )
    led = time.monotonic() - deleted
    _promoted_at(d, "rgw", version, timeout=180)
    done = time.monotonic() - deleted
    print(f"failover: leader deleted -> standby leads {led:.1f} s, rotation completed {done:.1f} s")
    assert new_holder != holder
    history = [h for h in _status(d, "rgw").get("history", []) if h.get("version") == version]
    assert [h["result"] for h in history] == ["Promoted"], history  # exactly once
    assert before != version
    assert ceph_config(d.env, d.rgw_who, OPTION) == value == _secret(d, "rgw")["value"]
    assert vault_labels(d.env, d.rgw_path)["vaultbridge-current"] == str(version)


def _world(d: Deployed) -> dict[str, Any]:
    """Everything of the user's that vaultbridge touched: Ceph, the Secrets, Vault."""
    config = json.loads(d.env.ceph.ceph("config", "dump", "-f", "json"))
    auth = json.loads(d.env.ceph.ceph("auth", "ls", "-f", "json"))["auth_dump"]
    secrets = {
        s.metadata.name: (s.data, [o.uid for o in s.metadata.owner_references or []])
        for s in d.core.list_namespaced_secret(d.apps).items
    }
    root = vault(d.env)
    paths = [d.rgw_path, d.app_path, d.sched_path]
    metadata = {p: root.secrets.kv.v2.read_secret_metadata(p, mount_point="secret") for p in paths}
    return {
        "config": sorted(json.dumps(row, sort_keys=True) for row in config),
        "auth": sorted(json.dumps(e, sort_keys=True) for e in auth),
        "secrets": secrets,
        "vault": {
            p: (m["data"]["current_version"], m["data"]["custom_metadata"])
            for p, m in metadata.items()
        },
        "crs": {
            i["metadata"]["name"]: (i["spec"], i.get("status"))
            for i in k8s.CustomObjectsApi(d.api).list_namespaced_custom_object(
                "vaultbridge.io", "v1alpha1", d.apps, "credentialrotations"
            )["items"]
        },
    }


def test_helm_uninstall_changes_nothing(deployed: Deployed) -> None:
    d = deployed
    wait_for(
        lambda: all(not (i.get("status") or {}).get("rotation") for i in _crs(d)),
        "no rotation in flight",
        timeout=120,
        interval=0.5,
    )
    before = _world(d)
    helm(d.env, "uninstall", RELEASE, "--namespace", d.system)
    wait_for(lambda: not pods(d.api, d.system, SELECTOR), "the Pods are gone", 120, 0.5)
    wait_for(
        lambda: not d.core.list_namespaced_pod(d.system, label_selector=SELECTOR).items,
        "the Pods are deleted",
        120,
        0.5,
    )
    assert _world(d) == before


def _crs(d: Deployed) -> list[dict[str, Any]]:
    return list(
        k8s.CustomObjectsApi(d.api).list_namespaced_custom_object(
            "vaultbridge.io", "v1alpha1", d.apps, "credentialrotations"
        )["items"]
    )


def test_a_wrong_vault_role_is_not_ready_naming_the_agent(deployed: Deployed) -> None:
    d = deployed
    ns = _namespace(d.core, "badrole")
    _release_inputs(d, ns)
    create_config_cr(d.api, ns, "quiet", d.rgw_path, f"client.rgw.{unique('q')}")
    helm(
        d.env,
        "install",
        *d.install_args(
            "badrole",
            ns,
            **{"vault.role": "no-such-role", "replicaCount": "1", "watchNamespaces": f"{{{ns}}}"},
        ),
    )

    try:
        seen: list[str] = []

        def unready_reason() -> str | None:
            found = pods(d.api, ns, "app.kubernetes.io/instance=badrole")
            if not found:
                return None
            seen[:] = [e for e in pod_events(d.api, ns, found[0].metadata.name) if "Readiness" in e]
            # the first failures may come before the server listens ("no HTTP answer")
            named = [e for e in seen if "Vault Agent" in e]
            return named[0] if named else None

        try:
            wait_for(
                unready_reason, "a readiness failure names the Agent", timeout=180, interval=1.0
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; readiness events: {seen}") from None
        # the kubelet marks it NotReady after failureThreshold failures in a row (it may have
        # passed once before the first Vault request failed)
        wait_for(
            lambda: not ready(pods(d.api, ns, "app.kubernetes.io/instance=badrole")[0]),
            "the Pod is not Ready",
            timeout=120,
            interval=1.0,
        )
        assert not (get_cr(d.api, ns, "quiet").get("status") or {}).get("currentVersion")
        assert read_secret(d.api, ns, "quiet") is None
    finally:  # a failure must not leave a release on the shared port
        helm(d.env, "uninstall", "badrole", "--namespace", ns, check=False)
        d.core.delete_namespace(ns)


def test_a_missing_keyring_secret_keeps_the_pod_from_starting(deployed: Deployed) -> None:
    d = deployed
    ns = _namespace(d.core, "nokeyring")
    _release_inputs(d, ns, keyring=False)
    helm(
        d.env,
        "install",
        *d.install_args("nokeyring", ns, **{"replicaCount": "1", "watchNamespaces": f"{{{ns}}}"}),
    )

    def mount_failure() -> str | None:
        found = pods(d.api, ns, "app.kubernetes.io/instance=nokeyring")
        if not found:
            return None
        events = [e for e in pod_events(d.api, ns, found[0].metadata.name) if "FailedMount" in e]
        return events[0] if events else None

    reason = wait_for(mount_failure, "the kubelet reports the missing Secret", 120, 1.0)
    assert 'secret "vaultbridge-ceph-keyring" not found' in reason, reason
    pod = pods(d.api, ns, "app.kubernetes.io/instance=nokeyring")[0]
    assert pod.status.phase == "Pending"
    assert all(not s.started for s in pod.status.container_statuses or [])
    helm(d.env, "uninstall", "nokeyring", "--namespace", ns)
    d.core.delete_namespace(ns)
