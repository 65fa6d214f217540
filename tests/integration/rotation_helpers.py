"""Shared helpers for the rotation tests: namespaces, CRs, Vault writes, Ceph reads, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def api_client(env: Environment) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(config_file=str(env.kube.kubeconfig))


@contextmanager
def namespace(api: k8s.ApiClient) -> Iterator[str]:
    name = unique("vb")
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


def read_secret(api: k8s.ApiClient, ns: str, name: str) -> k8s.V1Secret | None:
    try:
        return k8s.CoreV1Api(api).read_namespaced_secret(name, ns)
    except k8s.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def vault(env: Environment) -> hvac.Client:
    return hvac.Client(url=env.vault.addr, token=env.vault.token)


def vault_put(env: Environment, path: str, data: dict[str, str], mount: str = "secret") -> int:
    written = vault(env).secrets.kv.v2.create_or_update_secret(
        path=path, secret=data, mount_point=mount
    )
    return int(written["data"]["version"])


def vault_labels(env: Environment, path: str, mount: str = "secret") -> dict[str, str]:
    meta = vault(env).secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)
    return {
        k: v
        for k, v in (meta["data"].get("custom_metadata") or {}).items()
        if k.startswith("vaultbridge-")
    }


def ceph_config(env: Environment, who: str, option: str) -> str | None:
    """Exact value from `config dump` (None when absent), read with the admin CLI."""
    out = env.ceph.ceph("config", "dump", "-f", "json")
    for row in json.loads(out):
        if row["section"] == who and row["name"] == option:
            return str(row["value"])
    return None


def cli_env(env: Environment, **extra: str) -> dict[str, str]:
    variables = env.variables()
    path = variables.pop("PATH").removesuffix(":$PATH")
    result = {**os.environ, **variables, "PATH": f"{path}:{os.environ['PATH']}"}
    result.pop("VAULTBRIDGE_FAULT", None)
    result.update(extra)
    return result


def vaultbridge_cmd() -> list[str]:
    return [str(Path(sys.executable).parent / "vaultbridge")]


def run_cli(
    env: Environment, *args: str, timeout: float = 120, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*vaultbridge_cmd(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(env, **extra),
        check=False,
    )


def wait_for(check: Any, what: str, timeout: float = 60.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout:.0f} s")
        time.sleep(interval)


def create_config_cr(
    api: k8s.ApiClient,
    ns: str,
    name: str,
    path: str,
    who: str,
    option: str = "rgw_keystone_admin_password",
    **extra: Any,
) -> None:
    """A config-target CR reading ``path``, whose Secret has the CR's name."""
    spec = {
        "source": {"mount": "secret", "path": path},
        "secret": {"name": name},
        "target": {"config": {"who": who, "option": option}},
        **extra,
    }
    create_cr(api, ns, name, spec)


def config_spec(
    path: str, who: str, option: str = "rgw_keystone_admin_password", **extra: Any
) -> dict[str, Any]:
    return {
        "source": {"mount": "secret", "path": path, "field": "value"},
        "secret": {"name": "cred", "key": "value"},
        "target": {"config": {"who": who, "option": option}},
        **extra,
    }


def settled_events(app: Any, api: k8s.ApiClient, ns: str, name: str) -> list[dict[str, Any]]:
    """Events of ``ns/name`` after the engine's background Event queue has drained."""
    app.engine.events.flush()
    return events_for(api, ns, name)
