"""Helpers for the controller tests: `vaultbridge run` as a subprocess against the real servers."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from rotation_helpers import (  # noqa: F401 - re-exported for the controller tests
    GROUP,
    PLURAL,
    VERSION,
    api_client,
    ceph_config,
    create_cr,
    events_for,
    get_cr,
    namespace,
    unique,
    vault,
    vault_put,
)
from rotation_helpers import wait_for as _wait_for

from vaultbridge.testenv import controller as testenv_controller
from vaultbridge.testenv.env import Environment

WEBHOOK_TOKEN = "webhook-token-7c1d0e5a"


def patch_cr(api: k8s.ApiClient, ns: str, name: str, spec: dict[str, Any]) -> None:
    k8s.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name, {"spec": spec}
    )


def labelled(text: str, name: str, **labels: str) -> float:
    """The sum of metric ``name``'s samples in ``text`` whose labels include ``labels``."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if re.match(rf"{re.escape(name)}[ {{]", line) and all(w in line for w in wanted)
    )


def config_key_spec(path: str, name: str, key: str) -> dict[str, Any]:
    return {
        "source": {"mount": "secret", "path": path},
        "secret": {"name": name},
        "target": {"configKey": {"key": key}},
    }


def wait_for(check: Any, what: str, timeout: float = 90.0, interval: float = 0.1) -> Any:
    return _wait_for(check, what, timeout, interval)


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


class ControllerProcess(testenv_controller.ControllerProcess):
    """`vaultbridge run` in a subprocess; stderr goes to a file the test can read."""

    def __init__(self, env: Environment, ns: str, workdir: Path, **settings: str) -> None:
        super().__init__(
            env,
            ns,
            workdir / f"controller-{uuid.uuid4().hex[:6]}.log",
            WEBHOOK_TOKEN,
            **{"VAULTBRIDGE_CONTROLLER__MIN_INTERVAL": "0.2", **settings},
        )

    def wait_leader(self, timeout: float = 60.0) -> None:
        try:
            self.wait_leading(timeout)
        except RuntimeError as exc:
            raise AssertionError(str(exc)) from None

    def metrics(self) -> str:
        return http("GET", self.url + "/metrics", token=None)[1]

    def metric(self, name: str) -> float:
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total
