"""The CredentialRotation custom resource: read, list, watch, status writes, CRD install."""

from __future__ import annotations

import builtins
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from kubernetes.watch.watch import iter_resp_lines

from vaultbridge.kube.client import KubeClient
from vaultbridge.kube.errors import (
    TRANSLATABLE,
    KubeConflict,
    KubeError,
    KubeInvalid,
    KubeNotFound,
    KubeUnavailable,
    KubeWatchExpired,
    Operation,
    raise_translated,
)

log = logging.getLogger(__name__)

GROUP = "vaultbridge.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "CredentialRotation"
PLURAL = "credentialrotations"
CRD_NAME = f"{PLURAL}.{GROUP}"

CONFLICT_ATTEMPTS = 5
"""Tries of a status write whose object keeps changing under it (its status staying the same)."""

WATCH_CHUNK_SECONDS = 290
"""Server-side timeout of one watch request; the iterator reconnects from the last version."""


def _path(namespace: str | None, name: str | None = None) -> str:
    """The URL path of a CredentialRotation, or of the collection (``namespace`` None: all)."""
    scope = "" if namespace is None else f"/namespaces/{quote(namespace)}"
    collection = f"/apis/{GROUP}/{VERSION}{scope}/{PLURAL}"
    return collection if name is None else f"{collection}/{quote(name)}"


def bundled_crd_path() -> Path:
    """The CRD manifest shipped inside the package (identical to the Helm chart's copy)."""
    return Path(__file__).resolve().parent.parent / "crds" / "credentialrotations.yaml"


@dataclass(frozen=True)
class ListSnapshot:
    """A list result and the resourceVersion(s) to start watches from.

    ``resource_versions`` maps each listed namespace (``None``: all namespaces) to the list's
    resourceVersion; pass it to :meth:`CredentialRotationClient.watch` unchanged.
    """

    items: list[dict[str, Any]]
    resource_versions: dict[str | None, str] = field(default_factory=dict)


class CredentialRotationClient:
    """CredentialRotation objects as plain JSON dicts (what the API server sends)."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self._api = kube.custom()

    # -- reads ------------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        op = Operation("get", PLURAL, namespace, name)
        return self.kube.request(op, "GET", _path(namespace, name))

    def list(self, namespaces: list[str] | None = None) -> list[dict[str, Any]]:
        """All objects in ``namespaces`` (``None``: every namespace)."""
        return self.list_snapshot(namespaces).items

    def list_snapshot(self, namespaces: builtins.list[str] | None = None) -> ListSnapshot:
        """Every CR, in pages, each without ``managedFields`` (the controller never reads
        them, and they are most of an object's size)."""
        items: builtins.list[dict[str, Any]] = []
        versions = self.list_each(namespaces, items.append)
        return ListSnapshot(items=items, resource_versions=versions)

    def list_each(
        self, namespaces: builtins.list[str] | None, each: Callable[[dict[str, Any]], None]
    ) -> dict[str | None, str]:
        """Every CR passed to ``each`` as its page arrives (the whole list is never held at
        once); returns the list's resourceVersions, for :meth:`watch`."""
        versions: dict[str | None, str] = {}
        for namespace in _scopes(namespaces):
            op = Operation("list", PLURAL, namespace)
            versions[namespace] = list_pages(
                self.kube, op, _path(namespace), {}, shape=_as_got, collect=each
            )
        return versions

    # -- writes -----------------------------------------------------------------------------

    def create(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        obj = {"apiVersion": API_VERSION, "kind": KIND, **body}
        name = str(obj.get("metadata", {}).get("name", ""))
        op = Operation("create", PLURAL, namespace, name)
        return self.kube.call(
            op, self._api.create_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, obj
        )

    def delete(self, namespace: str, name: str) -> None:
        op = Operation("delete", PLURAL, namespace, name)
        self.kube.call(
            op,
            self._api.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            propagation_policy="Background",
        )

    def set_finalizer(self, namespace: str, name: str, finalizer: str, present: bool) -> None:
        """Add or remove one finalizer, leaving every other one as it is (a JSON patch that
        tests the resourceVersion it read; re-read and retried when the object changed)."""
        op = Operation("patch", PLURAL, namespace, name)
        for _attempt in range(CONFLICT_ATTEMPTS):
            current = self.kube.request(op, "GET", _path(namespace, name))
            metadata = current.get("metadata") or {}
            finalizers = list(metadata.get("finalizers") or [])
            if (finalizer in finalizers) == present:
                return
            if present and metadata.get("deletionTimestamp"):
                return  # a finalizer cannot be added to an object being deleted
            finalizers = (
                [*finalizers, finalizer] if present else [f for f in finalizers if f != finalizer]
            )
            patch = [
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": metadata["resourceVersion"],
                },
                {"op": "add", "path": "/metadata/finalizers", "value": finalizers},
            ]
            try:
                self.kube.request(
                    op,
                    "PATCH",
                    _path(namespace, name),
                    patch,
                    content_type="application/json-patch+json",
                )
                return
            except (KubeInvalid, KubeConflict):  # the "test" failed: changed since read
                continue
        raise KubeConflict(f"{op.describe()}: the object kept changing; finalizers not changed")

    def write_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
        *,
        still_applies: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Replace ``.status`` wholly (keys not in ``status`` go away) via the status subresource.

        One PUT of the status alone: the API server keeps spec, metadata and
        ``metadata.generation`` as they are. A PUT costs the API server less than a patch, which
        it must first apply to a serialised copy of the object. The write is made at
        ``resource_version`` (``None``: the current one, read first). If the object changed
        since, it fails with :class:`~vaultbridge.kube.errors.KubeConflict`, unless
        ``still_applies`` says of the object as it is now that the write still applies (say,
        only its spec changed): then it is sent again at the new version. Returns the updated
        object.
        """
        op = Operation("update", f"{PLURAL}/status", namespace, name)
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": ""},
            "status": _plain(status),
        }
        version = resource_version
        for _attempt in range(CONFLICT_ATTEMPTS):
            if version is None:
                current = self.kube.request(op, "GET", _path(namespace, name))
                version = str(current["metadata"]["resourceVersion"])
            body["metadata"]["resourceVersion"] = version
            try:
                return self.kube.request(op, "PUT", _path(namespace, name) + "/status", body)
            except KubeConflict:
                if still_applies is None:
                    raise
            current = self.kube.request(op, "GET", _path(namespace, name))
            if not still_applies(current):
                raise KubeConflict(
                    f"{op.describe()}: its status was changed by another writer; not written",
                    status=409,
                    verb="update",
                    resource=f"{PLURAL}/status",
                    namespace=namespace,
                    name=name,
                )
            version = str(current["metadata"]["resourceVersion"])
        raise KubeConflict(f"{op.describe()}: the object kept changing; the status was not written")

    # -- watch ------------------------------------------------------------------------------

    def watch(
        self,
        namespaces: builtins.list[str] | None = None,
        resource_version: str | Mapping[str | None, str] | None = None,
        *,
        timeout_seconds: float | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(event_type, object)`` pairs: ADDED, MODIFIED, DELETED and BOOKMARK.

        Start from the ``resource_versions`` of a :meth:`list_snapshot` of the same namespaces
        (a plain string applies to every namespace). Bookmarks are requested; a BOOKMARK's
        object holds only ``metadata.resourceVersion`` (and, for a namespaced stream, the
        ``metadata.namespace`` it belongs to): remember it as the version to resume from.
        The iterator reconnects by itself from the last version seen and ends after
        ``timeout_seconds`` (``None``: never). ``KubeWatchExpired`` (410 Gone) means: list
        again, then watch from the new snapshot. Several namespaces are watched by one
        thread each, merged here; closing the iterator stops them.
        """
        scopes = _scopes(namespaces)
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds

        def start(scope: str | None) -> str | None:
            if resource_version is None or isinstance(resource_version, str):
                return resource_version
            return resource_version.get(scope)

        if len(scopes) == 1:
            yield from self._stream(scopes[0], start(scopes[0]), deadline, None)
            return
        stop = threading.Event()
        yield from _merge([self._stream(s, start(s), deadline, stop) for s in scopes], stop)

    def _stream(
        self,
        namespace: str | None,
        resource_version: str | None,
        deadline: float | None,
        stop: threading.Event | None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        def shape(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
            return obj if kind == "BOOKMARK" else _as_got(obj)

        yield from stream_events(
            self.kube,
            _path(namespace),
            {},
            PLURAL,
            namespace,
            resource_version,
            deadline,
            stop,
            shape,
        )

    # -- the CRD itself -------------------------------------------------------------------

    def install_crd(
        self, yaml_path: str | Path | None = None, *, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Create or update the CRD from ``yaml_path`` (default: the bundled manifest) and wait
        until the API server reports it Established (and its names accepted)."""
        path = Path(yaml_path) if yaml_path is not None else bundled_crd_path()
        manifest = yaml.safe_load(path.read_text())
        name = str(manifest["metadata"]["name"])
        api = self.kube.apiextensions()
        get_op = Operation("get", "customresourcedefinitions", None, name)
        try:
            current = self.kube.call(get_op, api.read_custom_resource_definition, name)
        except KubeNotFound:
            current = None
        if current is None:
            op = Operation("create", "customresourcedefinitions", None, name)
            self.kube.call(op, api.create_custom_resource_definition, manifest)
        else:
            body = dict(manifest)
            body["metadata"] = {
                **manifest["metadata"],
                "resourceVersion": current["metadata"]["resourceVersion"],
            }
            op = Operation("update", "customresourcedefinitions", None, name)
            self.kube.call(op, api.replace_custom_resource_definition, name, body)
        return self._wait_established(name, timeout)

    def _wait_established(self, name: str, timeout: float) -> dict[str, Any]:
        api = self.kube.apiextensions()
        op = Operation("get", "customresourcedefinitions", None, name)
        deadline = time.monotonic() + timeout
        while True:
            crd = self.kube.call(op, api.read_custom_resource_definition, name)
            conditions = {
                c.get("type"): c for c in crd.get("status", {}).get("conditions", []) or []
            }
            established = conditions.get("Established", {}).get("status") == "True"
            names = conditions.get("NamesAccepted", {})
            if names.get("status") == "False":
                raise KubeError(
                    f"CRD {name}: names not accepted: {names.get('message', '')}",
                    resource="customresourcedefinitions",
                    name=name,
                )
            if established:
                return crd
            if time.monotonic() > deadline:
                raise KubeUnavailable(
                    f"CRD {name} not Established after {timeout:.0f}s",
                    resource="customresourcedefinitions",
                    name=name,
                )
            time.sleep(0.2)


LIST_PAGE = 500  # objects per list request: a list of 10,000 never sits in memory at once


def _as_got(obj: dict[str, Any]) -> dict[str, Any]:
    """A listed or watched CR as a GET returns it, less its ``managedFields``."""
    obj.setdefault("apiVersion", API_VERSION)
    obj.setdefault("kind", KIND)
    (obj.get("metadata") or {}).pop("managedFields", None)
    return obj


def list_pages(
    kube: KubeClient,
    op: Operation,
    path: str,
    query: Mapping[str, Any],
    *,
    shape: Callable[[dict[str, Any]], dict[str, Any]],
    collect: Callable[[dict[str, Any]], None],
) -> str:
    """List ``path`` in pages of ``LIST_PAGE``, each object shaped as it arrives; returns the
    list's resourceVersion (a watch starts from it). An expired continue token (410) is
    ``KubeWatchExpired``: the caller lists again."""
    token: str | None = None
    while True:
        page_query = {**query, "limit": LIST_PAGE, **({"continue": token} if token else {})}
        result = kube.request(op, "GET", path, query=page_query)  # 410: KubeWatchExpired
        for item in result.pop("items", None) or []:
            collect(shape(item))
        metadata = result.get("metadata") or {}
        token = metadata.get("continue") or None
        if token is None:
            return str(metadata.get("resourceVersion", ""))


def stream_events(  # noqa: PLR0917 - one call site per watched resource
    kube: KubeClient,
    path: str,
    query: Mapping[str, str],
    resource: str,
    namespace: str | None,
    resource_version: str | None,
    deadline: float | None,
    stop: threading.Event | None,
    shape: Callable[[str, dict[str, Any]], dict[str, Any]],
    *,
    idle_timeout: float | None = None,
    bookmarks: bool = True,
) -> Generator[tuple[str, dict[str, Any]], None, None]:
    """One watch of the collection at ``path`` (``query``: e.g. a label selector): reconnects
    from the last version seen, requests bookmarks (unless ``bookmarks`` is False), raises
    ``KubeWatchExpired`` on 410 Gone. ``shape`` turns each object into what the caller yields.
    ``idle_timeout``: seconds without a byte from the server before the watch fails with a
    ``KubeError`` (default: the server's own timeout and 30 s more)."""
    version = resource_version
    op = Operation("watch", resource, namespace)
    while stop is None or not stop.is_set():
        chunk = WATCH_CHUNK_SECONDS
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            chunk = max(1, min(chunk, int(remaining + 0.999)))
        params: dict[str, Any] = {
            **query,
            "watch": True,
            "allowWatchBookmarks": bookmarks,
            "timeoutSeconds": chunk,
        }
        if version:
            params["resourceVersion"] = version
        read_timeout = chunk + 30 if idle_timeout is None else idle_timeout
        response = kube.open_stream(op, path, params, read_timeout=read_timeout)
        try:
            for line in _lines(response, op):
                event = json.loads(line)
                kind = str(event.get("type", ""))
                obj = event.get("object") or {}
                if kind == "ERROR":
                    code = int(obj.get("code", 0) or 0)
                    message = str(obj.get("message", ""))[:300]
                    error = KubeWatchExpired if code == 410 else KubeError
                    raise error(
                        f"watch of {resource} failed ({code}, resourceVersion {version}): "
                        f"{message}",
                        status=code,
                        verb="watch",
                        resource=resource,
                        namespace=namespace,
                    )
                obj = shape(kind, obj)
                metadata = obj.setdefault("metadata", {})
                version = str(metadata.get("resourceVersion") or version or "") or None
                if kind == "BOOKMARK" and namespace is not None:
                    metadata.setdefault("namespace", namespace)
                yield kind, obj
                if stop is not None and stop.is_set():
                    return
        finally:
            response.close()
            response.release_conn()


def _scopes(namespaces: list[str] | None) -> list[str | None]:
    if namespaces is None:
        return [None]
    if not namespaces:
        raise ValueError("namespaces: an empty list watches nothing; pass None for all")
    return list(dict.fromkeys(namespaces))


def _plain(value: Any) -> Any:
    """``value`` as JSON-compatible data (fails early, before a request, on odd types)."""
    return json.loads(json.dumps(value))


def _lines(response: Any, op: Operation) -> Iterator[str]:
    try:
        for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
            if line and not line.isspace():
                yield line
    except TRANSLATABLE as exc:
        raise_translated(exc, op)


def _merge(
    streams: list[Iterator[tuple[str, dict[str, Any]]]], stop: threading.Event
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Interleave several blocking iterators, one daemon thread each."""
    inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

    def pump(stream: Iterator[tuple[str, dict[str, Any]]]) -> None:
        try:
            for item in stream:
                if stop.is_set():
                    return
                inbox.put(("event", item))
            inbox.put(("done", None))
        except BaseException as exc:
            inbox.put(("error", exc))

    threads = [
        threading.Thread(target=pump, args=(s,), name="vaultbridge-watch", daemon=True)
        for s in streams
    ]
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            kind, payload = inbox.get()
            if kind == "event":
                yield payload
            elif kind == "done":
                running -= 1
            else:
                raise payload
    finally:
        stop.set()
