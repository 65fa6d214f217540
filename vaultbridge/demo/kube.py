"""The demo's set-up calls: Vault writes, and just enough of the Kubernetes API (admin)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import click

from vaultbridge.testenv.env import Environment

NAMESPACE = "rook-ceph"


def random_value() -> str:
    return os.urandom(18).hex()


def vault_writer(env: Environment) -> Callable[[str, dict[str, str]], int]:
    import urllib.request

    def put(path: str, data: dict[str, str]) -> int:
        request = urllib.request.Request(  # noqa: S310 - loopback OpenBao
            f"{env.vault.addr}/v1/secret/data/{path}",
            method="POST",
            data=json.dumps({"data": data}).encode(),
            headers={"X-Vault-Token": env.vault.token, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
            return int(json.loads(resp.read())["data"]["version"])

    return put


class DemoKube:
    """Just enough of the Kubernetes API for the demo's set-up (the admin kubeconfig)."""

    def __init__(self, env: Environment) -> None:
        self.cluster = env.kube

    def _check(self, status: int, body: bytes, what: str) -> dict[str, Any]:
        if status >= 300:
            raise click.ClickException(f"{what}: HTTP {status} {body[:200]!r}")
        return dict(json.loads(body))

    def namespace(self, name: str) -> None:
        status, body = self.cluster.request(
            "POST", "/api/v1/namespaces", {"metadata": {"name": name}}
        )
        if status != 409:
            self._check(status, body, f"namespace {name}")

    def _path(self, api_version: str, plural: str) -> str:
        return f"/apis/{api_version}/namespaces/{NAMESPACE}/{plural}"

    def create(
        self, api_version: str, plural: str, kind: str, name: str, spec: dict[str, Any]
    ) -> None:
        body = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": spec}
        self._check(
            *self.cluster.request("POST", self._path(api_version, plural), body), f"{kind} {name}"
        )

    def get(self, api_version: str, plural: str, name: str) -> dict[str, Any]:
        return self._check(
            *self.cluster.request("GET", f"{self._path(api_version, plural)}/{name}"), name
        )

    def replace(self, api_version: str, plural: str, name: str, obj: dict[str, Any]) -> None:
        self._check(
            *self.cluster.request("PUT", f"{self._path(api_version, plural)}/{name}", obj), name
        )

    def delete(self, api_version: str, plural: str, name: str) -> None:
        status, body = self.cluster.request("DELETE", f"{self._path(api_version, plural)}/{name}")
        if status != 404:
            self._check(status, body, f"delete {name}")

    def secret(self, name: str, data: dict[str, str]) -> None:
        """Create or edit a Secret the way a user does (their own: no owner, no labels)."""
        path = f"/api/v1/namespaces/{NAMESPACE}/secrets"
        status, found = self.cluster.request("GET", f"{path}/{name}")
        if status == 200:
            body = json.loads(found)
            body["stringData"] = data
            self._check(*self.cluster.request("PUT", f"{path}/{name}", body), f"Secret {name}")
        else:
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name},
                "stringData": data,
            }
            self._check(*self.cluster.request("POST", path, body), f"Secret {name}")

    def secret_metadata(self, name: str) -> dict[str, Any] | None:
        """A Secret's metadata (never its data), or None when it does not exist."""
        status, found = self.cluster.request(
            "GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/{name}"
        )
        if status == 404:
            return None
        return dict(self._check(status, found, f"Secret {name}")["metadata"])
