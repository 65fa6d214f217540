"""The drift sweep: which credentials need a reconcile, decided for all of them at once from
what the controller's watches already hold (each CR, and a fingerprint of each managed
Secret's data) and one listing of Ceph per target kind (``engine/ceph_view.py``).

A credential in step costs no request to the API server, none to Vault and no mon command of
its own; only those that differ are reconciled. Vault's side (a new version) is not looked at
here: the poller, the audit-device receiver, the Agent watcher and the webhook find those.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from vaultbridge.engine.annotations import VERSION_ANNOTATION
from vaultbridge.engine.ceph_view import CephView
from vaultbridge.engine.lifecycle import Kinds
from vaultbridge.engine.ports import CephClusters
from vaultbridge.model.cluster import ClusterRef, cluster_key
from vaultbridge.model.errors import BackendError, PreconditionError
from vaultbridge.model.sensitive import fingerprint
from vaultbridge.model.spec import CredentialRef, CredentialSpec
from vaultbridge.model.status import READY, Status


@dataclass(frozen=True)
class SecretSeen:
    """A managed Secret as the watch keeps it: its vaultbridge annotations and a fingerprint
    of each data value (never the values)."""

    annotations: Mapping[str, str] = field(default_factory=dict)
    digests: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Observed:
    """One credential as the watches hold it."""

    ref: CredentialRef
    generation: int
    spec: CredentialSpec | None
    status: Status
    deleting: bool = False
    secret: SecretSeen | None = None  # None: no managed Secret of that name is seen


def key_prefix(items: Iterable[Observed]) -> str:
    """The longest prefix of every config-key the credentials name: one ``config-key dump``
    covers them all, and the policy can grant exactly that prefix."""
    keys = [key for o in items if o.spec is not None for key in o.spec.target.config_keys]
    return os.path.commonprefix(keys) if keys else ""  # noqa: RUF071 - a prefix, not a path


def why_reconcile(kinds: Kinds, view: CephView, item: Observed) -> str | None:
    """Why ``item`` needs a reconcile now (a short reason), or None when it is in step.

    A ``BackendError`` from a listing propagates: the sweep is abandoned, not guessed.
    """
    spec, status = item.spec, item.status
    if item.deleting:
        return "deleting"
    if spec is None or spec.suspend:
        return None  # an invalid spec is reported when its generation changes
    if status.rotation is not None:
        return "rotation-in-flight"
    ready = status.condition(READY)
    if status.observed_generation != item.generation or ready is None or ready.status != "True":
        return "not-ready"
    if status.current_version is None:
        return "never-promoted"
    lifecycle = kinds.of(spec)
    if lifecycle.wants_reconcile(status):
        return "retiring"
    secret = item.secret
    if secret is None:
        return "secret-missing"
    version = secret.annotations.get(VERSION_ANNOTATION)
    if spec.source is not None and version != str(status.current_version):
        return "secret-version"
    try:
        driver = lifecycle.driver_on(view, spec, status, status.current_version)
        current = driver.read()
        for slot, key in driver.slots().items():
            value = current.get(slot)
            if value is None or secret.digests.get(key) != fingerprint(value.reveal()):
                return "ceph-differs"
        if not driver.settled():
            return "ceph-differs"
    except PreconditionError:
        return "precondition"
    return None


@dataclass
class Sweep:
    """One sweep's result: the credentials to reconcile and why, and its mon commands."""

    due: list[tuple[CredentialRef, str]] = field(default_factory=list)
    checked: int = 0
    listings: int = 0
    refused: tuple[str, ...] = ()
    # clusters whose listing or connection failed: their credentials are looked at next time,
    # the other clusters' are swept as usual (cluster key -> what failed)
    failed: dict[str, str] = field(default_factory=dict)


def sweep(kinds: Kinds, view: CephView, items: Iterable[Observed]) -> Sweep:
    result = Sweep()
    for item in items:
        result.checked += 1
        why = why_reconcile(kinds, view, item)
        if why is not None:
            result.due.append((item.ref, why))
    result.listings, result.refused = view.listings, tuple(sorted(view.refused))
    return result


def sweep_clusters(kinds: Kinds, clusters: CephClusters, items: Sequence[Observed]) -> Sweep:
    """:func:`sweep` per cluster (the listings of one cluster never answer for another). A
    cluster that cannot be reached is recorded and skipped; when every cluster failed, the
    first failure is raised (the caller retries the whole sweep)."""
    groups: dict[str, list[Observed]] = {}
    refs: dict[str, ClusterRef | None] = {}
    for item in items:
        ref = item.spec.cluster if item.spec is not None else None
        if item.status.rotation is not None and item.status.rotation.cluster is not None:
            ref = ClusterRef.from_key(item.status.rotation.cluster)
        key = cluster_key(ref)
        groups.setdefault(key, []).append(item)
        refs[key] = ref
    total = Sweep()
    first: BackendError | PreconditionError | None = None
    refused: set[str] = set()
    for key, group in groups.items():
        try:
            cluster = clusters.cluster(refs[key])
            view = CephView(
                cluster.ceph, cluster.cephx, cluster.listing, key_prefix=key_prefix(group)
            )
            found = sweep(kinds, view, group)
        except (BackendError, PreconditionError) as exc:
            first = first or exc
            total.failed[key] = f"{exc.reason}: {exc}"
            continue
        total.due += found.due
        total.checked += found.checked
        total.listings += found.listings
        refused.update(found.refused)
    total.refused = tuple(sorted(refused))
    if first is not None and len(total.failed) == len(groups):
        raise first
    return total
