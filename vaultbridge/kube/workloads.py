"""Deployments, StatefulSets and DaemonSets (apps/v1): read and set one annotation of a
workload's Pod template, which makes its controller roll it out (as ``kubectl rollout restart``
does with its own annotation)."""

from __future__ import annotations

from urllib.parse import quote

from vaultbridge.kube.client import KubeClient
from vaultbridge.kube.errors import KubeError, Operation
from vaultbridge.model.spec import ROLLOUT_PLURALS as PLURALS


def workload_path(namespace: str, kind: str, name: str) -> str:
    plural = PLURALS.get(kind)
    if plural is None:
        raise KubeError(f"{kind!r} is not a workload kind vaultbridge rolls ({', '.join(PLURALS)})")
    return f"/apis/apps/v1/namespaces/{quote(namespace)}/{plural}/{quote(name)}"


class WorkloadClient:
    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    def template_annotation(self, namespace: str, kind: str, name: str, key: str) -> str | None:
        op = Operation("get", PLURALS.get(kind, kind), namespace, name)
        found = self.kube.request(op, "GET", workload_path(namespace, kind, name))
        template = (found.get("spec") or {}).get("template") or {}
        value = ((template.get("metadata") or {}).get("annotations") or {}).get(key)
        return None if value is None else str(value)

    def set_template_annotation(
        self, namespace: str, kind: str, name: str, key: str, value: str
    ) -> None:
        op = Operation("patch", PLURALS.get(kind, kind), namespace, name)
        patch = {"spec": {"template": {"metadata": {"annotations": {key: value}}}}}
        self.kube.request(
            op,
            "PATCH",
            workload_path(namespace, kind, name),
            patch,
            content_type="application/strategic-merge-patch+json",
        )
