"""Kubernetes Events (events.k8s.io/v1) about CredentialRotations. Recording never raises."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from vaultbridge.kube.client import KubeClient
from vaultbridge.kube.errors import Operation

log = logging.getLogger(__name__)

MAX_NOTE = 1024
"""events.k8s.io/v1 rejects notes longer than 1 kB."""


@dataclass(frozen=True)
class ObjectRef:
    """The object an Event is about."""

    namespace: str
    name: str
    uid: str
    kind: str
    api_version: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        """The reference to a raw object (a dict as the API server sends it)."""
        metadata = obj["metadata"]
        return cls(
            namespace=str(metadata.get("namespace", "")),
            name=str(metadata["name"]),
            uid=str(metadata.get("uid", "")),
            kind=str(obj["kind"]),
            api_version=str(obj["apiVersion"]),
        )


def micro_time(moment: datetime | None = None) -> str:
    """RFC 3339 with microseconds, UTC (the API's MicroTime)."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EventRecorder:
    """Writes one Event per call. Failures are logged, never raised: an Event is a courtesy."""

    def __init__(
        self,
        client: KubeClient,
        component: str = "vaultbridge",
        *,
        instance: str | None = None,
    ) -> None:
        self.kube = client
        self.component = component
        # reportingController must look like a domain-qualified name
        self.controller = component if "/" in component else f"vaultbridge.io/{component}"
        self.instance = (instance or os.environ.get("POD_NAME") or socket.gethostname())[:128]

    def emit(
        self,
        obj_ref: ObjectRef,
        type: Literal["Normal", "Warning"],
        reason: str,
        message: str,
        *,
        action: str | None = None,
    ) -> dict[str, Any] | None:
        """Record an Event about ``obj_ref``; returns the created Event, or ``None`` on failure.

        ``reason`` is a short UpperCamelCase word (``Applied``, ``RolledBack``...); ``action``
        (default: ``reason``) what vaultbridge did. Never put a secret in ``message``.
        """
        note = message if len(message.encode()) <= MAX_NOTE else _truncate(message)
        name = f"{obj_ref.name}.{uuid.uuid4().hex[:16]}"
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": obj_ref.namespace},
            "eventTime": micro_time(),
            "reportingController": self.controller,
            "reportingInstance": self.instance,
            "action": (action or reason)[:128],
            "reason": reason[:128],
            "note": note,
            "type": type,
            "regarding": {
                "apiVersion": obj_ref.api_version,
                "kind": obj_ref.kind,
                "name": obj_ref.name,
                "namespace": obj_ref.namespace,
                "uid": obj_ref.uid,
            },
        }
        op = Operation("create", "events", obj_ref.namespace, name)
        try:
            path = f"/apis/events.k8s.io/v1/namespaces/{quote(obj_ref.namespace)}/events"
            return self.kube.request(op, "POST", path, body)
        except Exception as exc:  # never let bookkeeping break a rotation
            log.warning(
                "could not record Event %s on %s %s/%s: %s",
                reason,
                obj_ref.kind,
                obj_ref.namespace,
                obj_ref.name,
                exc,
            )
            return None


def _truncate(message: str) -> str:
    encoded = message.encode()[: MAX_NOTE - 3]
    return encoded.decode("utf-8", "ignore") + "..."
