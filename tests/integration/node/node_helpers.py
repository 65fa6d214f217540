"""Helpers for the tests on the real node: API clients, Helm, the trigger port, Pod facts."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from vaultbridge.testenv.env import Environment
from vaultbridge.testenv.node import Node

NODE_VALUES = Path(__file__).resolve().parents[3] / "testenv" / "helm-node-values.yaml"
TRIGGER_PORT = 8080  # the chart's port: every host-network replica shares 127.0.0.1:8080


def node_api(env: Environment) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(config_file=str(env.kube.kubeconfig))


def node_of(env: Environment) -> Node:
    assert env.node is not None
    return env.node


def sa_token(api: k8s.ApiClient, ns: str, sa: str, seconds: int = 3600) -> str:
    body = k8s.AuthenticationV1TokenRequest(
        spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
    )
    reply = k8s.CoreV1Api(api).create_namespaced_service_account_token(sa, ns, body)
    return str(reply.status.token)


def post(path: str, body: dict[str, Any], token: str, timeout: float = 5.0) -> tuple[int, Any]:
    """POST to the controllers' shared port: (status, JSON answer); 0 when nobody answered."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{TRIGGER_PORT}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except OSError:
        return 0, None


def post_to_leader(path: str, body: dict[str, Any], token: str, timeout: float = 60.0) -> Any:
    """POST until the leader takes it (202): a standby answers 503, and the port is shared;
    a leader whose watch has not yet delivered a CR just created answers 404 for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        status, answer = post(path, body, token)
        if status == 202:
            return answer
        not_yet = status == 404 and "is watched here" in str(answer)
        assert (status in (0, 503) or not_yet) and time.monotonic() < deadline, (status, answer)
        time.sleep(0.1)


def pods(api: k8s.ApiClient, ns: str, selector: str) -> list[k8s.V1Pod]:
    found = k8s.CoreV1Api(api).list_namespaced_pod(ns, label_selector=selector).items
    return [p for p in found if p.metadata.deletion_timestamp is None]


def ready(pod: k8s.V1Pod) -> bool:
    conditions = {c.type: c.status for c in pod.status.conditions or []}
    return conditions.get("Ready") == "True"


def lease_holder(api: k8s.ApiClient, ns: str, name: str) -> str | None:
    try:
        lease = k8s.CoordinationV1Api(api).read_namespaced_lease(name, ns)
    except k8s.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return lease.spec.holder_identity or None


def container_pid(node: Node, pod: k8s.V1Pod, container: str) -> int:
    """The host PID of a running container's first process."""
    ids = {
        s.name: (s.container_id or "").removeprefix("containerd://")
        for s in pod.status.container_statuses or []
    }
    for line in node.ctr("tasks", "ls").splitlines()[1:]:
        task, pid, *_ = line.split()
        if task == ids[container]:
            return int(pid)
    raise AssertionError(f"{pod.metadata.name}/{container}: no running task")


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def pod_events(api: k8s.ApiClient, ns: str, pod: str) -> list[str]:
    found = k8s.CoreV1Api(api).list_namespaced_event(
        ns, field_selector=f"involvedObject.name={pod}"
    )
    return [f"{e.reason}: {e.message}" for e in found.items]
