"""The per-cluster part of the policies: the cephx caps each Ceph cluster's entity needs (only
for the credentials that live there), and the Kubernetes objects vaultbridge reads to connect
to each cluster (a Role per namespace naming exactly those ConfigMaps and Secrets)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from vaultbridge.model.cluster import DEFAULT_CLUSTER, cluster_key
from vaultbridge.model.spec import CredentialSpec


class _Credential(Protocol):
    @property
    def spec(self) -> CredentialSpec: ...


Credential = TypeVar("Credential", bound=_Credential)


def by_cluster(credentials: Sequence[Credential]) -> dict[str, list[Credential]]:
    """The credentials of each cluster, by key; the default cluster first."""
    groups: dict[str, list[Credential]] = {}
    for credential in credentials:
        groups.setdefault(cluster_key(credential.spec.cluster), []).append(credential)
    return dict(sorted(groups.items(), key=lambda item: (item[0] != DEFAULT_CLUSTER, item[0])))


def cluster_object_rules(credentials: Sequence[Credential]) -> list[dict[str, Any]]:
    """Per namespace, the ConfigMaps and Secrets that clusters are read from (Helm values
    ``rbac.cephClusterObjects``: get, list and watch on exactly these names)."""
    namespaces: dict[str, dict[str, set[str]]] = {}
    for credential in credentials:
        ref = credential.spec.cluster
        if ref is None:
            continue
        names = namespaces.setdefault(ref.namespace, {"configMaps": set(), "secrets": set()})
        names["configMaps"].add(ref.config_map)
        names["secrets"].add(ref.secret)
    return [
        {
            "namespace": namespace,
            "configMaps": sorted(names["configMaps"]),
            "secrets": sorted(names["secrets"]),
        }
        for namespace, names in sorted(namespaces.items())
    ]


def per_cluster_script(
    credentials: Sequence[Credential], script: Callable[[Sequence[Credential]], str]
) -> str:
    """``script`` (the cephx caps) once per cluster, each headed by where to run it."""
    groups = by_cluster(credentials)
    if list(groups) in ([], [DEFAULT_CLUSTER]):
        return script(credentials)
    parts = []
    for key, group in groups.items():
        ref = group[0].spec.cluster
        if ref is None:
            where = "# ==== cluster default (VAULTBRIDGE_CEPH__*): run against its mons"
        else:
            where = (
                f"# ==== cluster {key}: run against its mons, then put the entity's key in "
                f"Secret {ref.namespace}/{ref.secret}"
                + (
                    " (ceph-username and ceph-secret)"
                    if ref.kind == "rook"
                    else " (key keyring: a [client.NAME] section)"
                )
            )
        parts.append(f"{where}\n{script(group)}")
    return "\n".join(parts)
