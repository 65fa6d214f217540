"""The Ceph clusters the engine works in: one per ``spec.cluster`` (the registry that connects
to them is ``adapters/clusters.py``), and what keeps a rotation in the cluster it started in.

A rotation journals its cluster's key and fsid when it starts. Every action afterwards runs in
the journaled cluster, whatever ``spec.cluster`` says by then (a move waits until the journal
is done), and first checks that the cluster still answers with that fsid: a rotation never
applies in one cluster and verifies, promotes or rolls back in another.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vaultbridge.engine.ports import (
    CephCluster,
    CephListing,
    CephStore,
    CephxStore,
)
from vaultbridge.model.cluster import ClusterRef, cluster_key
from vaultbridge.model.errors import PreconditionError
from vaultbridge.model.spec import CredentialSpec
from vaultbridge.model.status import Journal


@dataclass(frozen=True)
class FixedCluster:
    """One cluster's stores as given (the engine without a registry: the in-memory tests, the
    CLI on the default cluster)."""

    ceph: CephStore
    cephx: CephxStore | None = None
    listing: CephListing | None = None
    name: str = "default"
    known_fsid: str | None = None

    def fsid(self) -> str | None:
        return self.known_fsid


class OneCluster:
    """:class:`CephClusters` with only the default cluster: a CR naming another is refused."""

    def __init__(self, cluster: CephCluster) -> None:
        self.default = cluster

    def cluster(self, ref: ClusterRef | None) -> CephCluster:
        if ref is not None:
            raise PreconditionError(
                "ClusterNotConfigured",
                f"spec.cluster names {ref}, but this vaultbridge only has its default cluster",
            )
        return self.default


def spec_in_journaled_cluster(spec: CredentialSpec, journal: Journal | None) -> CredentialSpec:
    """``spec`` with the cluster its rotation in flight runs in (a move waits for it)."""
    if journal is None or journal.cluster == _key_or_none(spec.cluster):
        return spec
    try:
        ref = ClusterRef.from_key(journal.cluster)
    except ValueError:
        return spec
    return replace(spec, cluster=ref)


def moved_mid_rotation(spec: CredentialSpec, journal: Journal | None) -> str | None:
    """Why ``spec.cluster`` is not used yet (its rotation in flight runs elsewhere), or None."""
    if journal is None or journal.cluster == _key_or_none(spec.cluster):
        return None
    return (
        f"spec.cluster changed to {cluster_key(spec.cluster)} while rotation {journal.id} runs "
        f"in {journal.cluster or 'default'}: it finishes or rolls back there first"
    )


def check_same_cluster(cluster: CephCluster, fsid: str, rotation_id: str) -> None:
    """Refuse to act when the cluster answers with another fsid than the rotation started in."""
    found = cluster.fsid()
    if found is not None and found != fsid:
        raise PreconditionError(
            "ClusterIdentityChanged",
            f"cluster {cluster.name} now answers as fsid {found}, but rotation {rotation_id} "
            f"started in fsid {fsid}: nothing is done until its objects name that cluster again",
            transient=True,
        )


def _key_or_none(ref: ClusterRef | None) -> str | None:
    return None if ref is None else ref.key
