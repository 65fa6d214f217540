"""Helpers for the several-clusters tests: extra one-mon clusters, and the Kubernetes objects
a ``spec.cluster`` names (Rook's mon endpoints and Secret, an external ceph.conf and keyring)."""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from rotation_helpers import unique

from vaultbridge.testenv.ceph import CephCluster, start_ceph
from vaultbridge.testenv.common import TestenvError

KEY_RE = re.compile(r"key\s*=\s*(\S+)")


@contextlib.contextmanager
def extra_clusters(root: Path, *names: str) -> Iterator[dict[str, CephCluster]]:
    """One-mon clusters of their own, by name, stopped at the end."""
    started: dict[str, CephCluster] = {}
    try:
        for name in names:
            started[name] = start_ceph(root / name, mons=1)
        yield started
    finally:
        for cluster in started.values():
            cluster.stop()


def admin_key(cluster: CephCluster) -> str:
    found = KEY_RE.search(cluster.admin_keyring.read_text())
    assert found is not None
    return found.group(1)


def rook_endpoints(cluster: CephCluster) -> str:
    """Rook's format: NAME=IP:PORT, the msgr1 port (what a bare address means to librados)."""
    return ",".join(f"{m}=127.0.0.1:{cluster.mon_ports[m][1]}" for m in cluster.mon_ids)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def put_config_map(api: k8s.ApiClient, ns: str, name: str, data: dict[str, str]) -> None:
    core = k8s.CoreV1Api(api)
    body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name), data=data)
    try:
        core.replace_namespaced_config_map(name, ns, body)
    except k8s.ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_config_map(ns, body)


def put_secret(api: k8s.ApiClient, ns: str, name: str, data: dict[str, str]) -> None:
    core = k8s.CoreV1Api(api)
    body = k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name=name), data={k: b64(v) for k, v in data.items()}
    )
    try:
        core.replace_namespaced_secret(name, ns, body)
    except k8s.ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_secret(ns, body)


def rook_cluster(
    api: k8s.ApiClient, ns: str, cluster: CephCluster, secret: str = "rook-ceph-mon"
) -> dict[str, Any]:
    """Rook's objects for ``cluster`` in ``ns`` (its own Secret layout: fsid, admin-secret);
    returns the ``spec.cluster`` that names them."""
    put_config_map(api, ns, "rook-ceph-mon-endpoints", {"data": rook_endpoints(cluster)})
    put_secret(api, ns, secret, {"fsid": cluster.fsid, "admin-secret": admin_key(cluster)})
    return {"rook": {"namespace": ns, "secret": secret}}


def external_cluster(
    api: k8s.ApiClient, ns: str, cluster: CephCluster, name: str = "ceph-ext"
) -> dict[str, Any]:
    """An external cluster's objects: ceph.conf (mon_host, fsid) and a keyring Secret."""
    conf = f"[global]\nfsid = {cluster.fsid}\nmon host = {cluster.mon_host}\n"
    put_config_map(api, ns, name, {"ceph.conf": conf})
    put_secret(api, ns, name, {"keyring": f"[client.admin]\n\tkey = {admin_key(cluster)}\n"})
    return {"external": {"namespace": ns, "configMap": name, "secret": name}}


def config_key_spec(path: str, key: str, cluster: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": {"mount": "secret", "path": path, "field": "value"},
        "secret": {"name": unique("cred"), "key": "value"},
        "target": {"configKey": {"key": key}},
    }
    if cluster is not None:
        spec["cluster"] = cluster
    return spec


def config_key(cluster: CephCluster, key: str) -> str | None:
    try:
        return cluster.ceph("config-key", "get", key).strip()
    except TestenvError:  # absent: the CLI exits non-zero
        return None
