"""Single named ConfigMaps and Secrets: read one, or watch one for changes.

These are the objects a Ceph cluster's connection is read from (``spec.cluster``). Each list
and watch carries ``fieldSelector=metadata.name=NAME``, so a Role whose rule names exactly
these objects (``resourceNames``) allows it: vaultbridge needs no right to the other
ConfigMaps or Secrets of the namespace. A watch yields change notices only (the event type and
resourceVersion); Secret data never leaves this module except from :meth:`NamedObjects.secret`,
wrapped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Literal

from vaultbridge.kube.client import KubeClient
from vaultbridge.kube.crd import stream_events
from vaultbridge.kube.errors import KubeNotFound, Operation
from vaultbridge.kube.secret_bodies import decode_data
from vaultbridge.model.sensitive import Sensitive

NamedKind = Literal["ConfigMap", "Secret"]
_PLURAL = {"ConfigMap": "configmaps", "Secret": "secrets"}


def _path(kind: NamedKind, namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{namespace}/{_PLURAL[kind]}"
    return base if name is None else f"{base}/{name}"


def _notice(_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata") or {}
    return {"metadata": {"resourceVersion": metadata.get("resourceVersion")}}


class NamedObjects:
    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    def config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        """The ConfigMap's ``data`` (None: it does not exist)."""
        raw = self._get("ConfigMap", namespace, name)
        if raw is None:
            return None
        return {str(k): str(v) for k, v in (raw.get("data") or {}).items()}

    def secret(self, namespace: str, name: str) -> dict[str, Sensitive] | None:
        """The Secret's data, wrapped (None: it does not exist)."""
        raw = self._get("Secret", namespace, name)
        if raw is None:
            return None
        try:
            return decode_data(raw)
        except ValueError:
            return {}  # undecodable data reads as empty: the caller names the key it lacks

    def _get(self, kind: NamedKind, namespace: str, name: str) -> dict[str, Any] | None:
        op = Operation("get", _PLURAL[kind], namespace, name)
        try:
            found = self.kube.request(op, "GET", _path(kind, namespace, name))
        except KubeNotFound:
            return None
        return found if isinstance(found, dict) else None

    def version(self, kind: NamedKind, namespace: str, name: str) -> str:
        """The collection's resourceVersion, listed with the name's field selector (a watch
        starts from it)."""
        op = Operation("list", _PLURAL[kind], namespace)
        query = {"fieldSelector": f"metadata.name={name}"}
        found = self.kube.request(op, "GET", _path(kind, namespace), query=query)
        return str(((found or {}).get("metadata") or {}).get("resourceVersion") or "")

    def watch(
        self,
        kind: NamedKind,
        namespace: str,
        name: str,
        resource_version: str | None,
        *,
        timeout_seconds: float | None = None,
    ) -> Iterator[str]:
        """ADDED, MODIFIED or DELETED each time the object changes (bookmarks are skipped);
        ``KubeWatchExpired`` when the version is too old (read ``version`` again)."""
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        for event, _ in stream_events(
            self.kube,
            _path(kind, namespace),
            {"fieldSelector": f"metadata.name={name}"},
            _PLURAL[kind],
            namespace,
            resource_version,
            deadline,
            None,
            _notice,
        ):
            if event != "BOOKMARK":
                yield event
