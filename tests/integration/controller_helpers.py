"""Helpers for the controller tests: `vaultbridge run` as a subprocess against the real servers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hvac
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from vaultbridge.testenv.env import Environment

GROUP, VERSION, PLURAL = "vaultbridge.io", "v1alpha1", "credentialrotations"
WEBHOOK_TOKEN = "webhook-token-7c1d0e5a"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def api_client(env: Environment) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(config_file=str(env.kube.kubeconfig))


@contextmanager
def namespace(api: k8s.ApiClient) -> Iterator[str]:
    name = unique("vbc")
    k8s.CoreV1Api(api).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        k8s.CoreV1Api(api).delete_namespace(name)


def create_cr(api: k8s.ApiClient, ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CredentialRotation",
        "metadata": {"name": name},
        "spec": spec,
    }
    return dict(
        k8s.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    )


def patch_cr(api: k8s.ApiClient, ns: str, name: str, spec: dict[str, Any]) -> None:
    k8s.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name, {"spec": spec}
    )


def get_cr(api: k8s.ApiClient, ns: str, name: str) -> dict[str, Any]:
    return dict(
        k8s.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    )


def events_for(api: k8s.ApiClient, ns: str, name: str) -> list[dict[str, Any]]:
    events = k8s.EventsV1Api(api).list_namespaced_event(ns).items
    return [
        {"type": e.type, "reason": e.reason, "note": e.note or ""}
        for e in events
        if e.regarding is not None and e.regarding.name == name
    ]


def vault(env: Environment) -> hvac.Client:
    return hvac.Client(url=env.vault.addr, token=env.vault.token)


def vault_put(env: Environment, path: str, data: dict[str, str], mount: str = "secret") -> int:
    written = vault(env).secrets.kv.v2.create_or_update_secret(
        path=path, secret=data, mount_point=mount
    )
    return int(written["data"]["version"])


def ceph_config(env: Environment, who: str, option: str) -> str | None:
    out = env.ceph.ceph("config", "dump", "-f", "json")
    for row in json.loads(out):
        if row["section"] == who and row["name"] == option:
            return str(row["value"])
    return None


def wait_for(check: Any, what: str, timeout: float = 90.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout:.0f} s")
        time.sleep(interval)


def config_spec(
    path: str, who: str, option: str = "rgw_keystone_admin_password", **extra: Any
) -> dict[str, Any]:
    return {
        "source": {"mount": "secret", "path": path, "field": "value"},
        "secret": {"name": f"cred-{uuid.uuid4().hex[:6]}", "key": "value"},
        "target": {"config": {"who": who, "option": option}},
        **extra,
    }


def at_version(api: k8s.ApiClient, ns: str, name: str, version: int) -> bool:
    status = get_cr(api, ns, name).get("status") or {}
    return status.get("currentVersion") == version and not status.get("rotation")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = WEBHOOK_TOKEN,
    raw: bytes | None = None,
) -> tuple[int, str]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class ControllerProcess:
    """`vaultbridge run` in a subprocess; stderr goes to a file the test can read."""

    def __init__(self, env: Environment, ns: str, workdir: Path, **settings: str) -> None:
        self.port = free_port()
        self.log_path = workdir / f"controller-{uuid.uuid4().hex[:6]}.log"
        variables = env.variables()
        path = variables.pop("PATH").removesuffix(":$PATH")
        self.environ = {
            **os.environ,
            **variables,
            "PATH": f"{path}:{os.environ['PATH']}",
            "VAULTBRIDGE_HTTP__PORT": str(self.port),
            "VAULTBRIDGE_HTTP__BIND": "127.0.0.1",
            "VAULTBRIDGE_KUBE__NAMESPACES": ns,
            "VAULTBRIDGE_KUBE__LEASE_NAMESPACE": ns,
            "VAULTBRIDGE_TRIGGERS__WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "VAULTBRIDGE_TRIGGERS__POLL_INTERVAL": "0",
            "VAULTBRIDGE_CONTROLLER__MIN_INTERVAL": "0.2",
            "VAULTBRIDGE_LOG_LEVEL": "INFO",
        }
        self.environ.pop("VAULTBRIDGE_FAULT", None)
        self.environ.update(settings)
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "vaultbridge"), "run"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self.environ,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def readyz(self) -> dict[str, Any] | None:
        try:
            _status, body = http("GET", self.url + "/readyz", token=None)
            return dict(json.loads(body))
        except (OSError, ValueError):
            return None

    def wait_leader(self, timeout: float = 60.0) -> None:
        def leading() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"controller exited: {self.output()[-3000:]}")
            ready = self.readyz()
            return ready is not None and ready.get("role") == "leader"

        wait_for(leading, "controller became the leader", timeout)

    def metrics(self) -> str:
        return http("GET", self.url + "/metrics", token=None)[1]

    def metric(self, name: str) -> float:
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def trigger(self, body: Any) -> tuple[int, str]:
        return http("POST", self.url + "/v1/trigger", body)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()
