"""List and watch the Secrets vaultbridge manages (label ``app.kubernetes.io/managed-by``).

What crosses this boundary is metadata only: name, namespace, uid, resourceVersion, labels,
ownerReferences and vaultbridge's own annotations, plus ``digests``: a keyed fingerprint of each
data value (``model.sensitive.fingerprint``), which the drift sweep compares with Ceph's. Data,
stringData and every other annotation (``kubectl.kubernetes.io/last-applied-configuration``
may hold the values) are dropped before an object leaves this module, so a watch never carries
a credential around the controller.
"""

from __future__ import annotations

import builtins
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from vaultbridge.kube.client import KubeClient
from vaultbridge.kube.crd import ListSnapshot, _merge, _scopes, list_pages, stream_events
from vaultbridge.kube.errors import (
    Operation,
)
from vaultbridge.kube.secret_bodies import MANAGED_BY_LABEL, MANAGED_BY_VALUE, decode_data
from vaultbridge.kube.secrets import secret_path
from vaultbridge.model.sensitive import fingerprint

SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
_KEPT_METADATA = ("name", "namespace", "resourceVersion")
_KEPT_OWNER = ("kind", "name", "uid", "controller")


def _kept_owner_value(key: str, value: Any) -> Any:
    # an owner's kind is the same for every Secret: one copy of it
    return sys.intern(value) if key == "kind" and isinstance(value, str) else value


def _metadata_only(obj: dict[str, Any]) -> dict[str, Any]:
    """What the controller keeps of a managed Secret: its name, version, vaultbridge's
    annotations, its controller reference and a fingerprint of each value (at 10,000 Secrets,
    each byte kept here is 10 kB)."""
    metadata = obj.get("metadata") or {}
    kept: dict[str, Any] = {key: metadata[key] for key in _KEPT_METADATA if key in metadata}
    if isinstance(kept.get("namespace"), str):
        kept["namespace"] = sys.intern(kept["namespace"])
    kept["annotations"] = {
        sys.intern(key): value
        for key, value in (metadata.get("annotations") or {}).items()
        if key.startswith("vaultbridge.io/")
    }
    owners = [
        {key: _kept_owner_value(key, owner[key]) for key in _KEPT_OWNER if key in owner}
        for owner in metadata.get("ownerReferences") or []
        if owner.get("controller")
    ]
    if owners:
        kept["ownerReferences"] = owners
    digests = {key: fingerprint(value.reveal()) for key, value in decode_data(obj).items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": kept, "digests": digests}


class ManagedSecretWatch:
    """Secrets labelled as managed by vaultbridge, as metadata-only dicts."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    def list_snapshot(self, namespaces: builtins.list[str] | None = None) -> ListSnapshot:
        items: builtins.list[dict[str, Any]] = []
        versions: dict[str | None, str] = {}
        for namespace in _scopes(namespaces):
            op = Operation("list", "secrets", namespace)
            versions[namespace] = list_pages(
                self.kube,
                op,
                secret_path(namespace),
                {"labelSelector": SELECTOR},
                shape=_metadata_only,
                collect=items.append,
            )
        return ListSnapshot(items=items, resource_versions=versions)

    def watch(
        self,
        namespaces: builtins.list[str] | None = None,
        resource_versions: dict[str | None, str] | None = None,
        *,
        timeout_seconds: float | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Like :meth:`CredentialRotationClient.watch`: ADDED/MODIFIED/DELETED/BOOKMARK pairs,
        reconnecting from the last version; ``KubeWatchExpired`` on 410 Gone (list again)."""
        scopes = _scopes(namespaces)
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        versions = resource_versions or {}
        if len(scopes) == 1:
            yield from self._stream(scopes[0], versions.get(scopes[0]), deadline, None)
            return
        stop = threading.Event()
        yield from _merge([self._stream(s, versions.get(s), deadline, stop) for s in scopes], stop)

    def _stream(
        self,
        namespace: str | None,
        resource_version: str | None,
        deadline: float | None,
        stop: threading.Event | None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from stream_events(
            self.kube,
            secret_path(namespace),
            {"labelSelector": SELECTOR},
            "secrets",
            namespace,
            resource_version,
            deadline,
            stop,
            lambda _kind, obj: _metadata_only(obj),
        )
