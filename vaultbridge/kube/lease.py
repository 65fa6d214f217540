"""Leader election on a coordination.k8s.io/v1 Lease, driven by the caller (no threads here).

Call :meth:`LeaderElector.try_acquire_or_renew` every ``retry_period`` seconds; act as leader
only while :attr:`LeaderElector.is_leader` is true. Between rounds a standby may call
:meth:`LeaderElector.wait_as_standby` instead of sleeping: it watches the Lease, so that it
costs the API server one request every few minutes rather than a read every round, and takes
over the moment the leader releases it. Like client-go, expiry is judged by the
local clock from the moment this process last saw the Lease record change, never by comparing
the holder's ``renewTime`` with our clock, so clock skew between hosts does not matter.
Every write carries the resourceVersion it was based on: of two contenders only one wins.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from vaultbridge.kube.client import KubeClient
from vaultbridge.kube.crd import stream_events
from vaultbridge.kube.errors import KubeConflict, KubeError, KubeNotFound, Operation

log = logging.getLogger(__name__)


def _micro_time(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One candidate for the Lease ``namespace/name``."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")
        self.kube = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._api = client.coordination()
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._observed_version: str | None = None  # the Lease's resourceVersion, last read
        self._renewed_at: float | None = None
        # the Lease as our last write left it: while we lead, a renewal is one update over it
        # (its resourceVersion is the precondition: a conflict means someone else wrote it)
        self._held: dict[str, Any] | None = None
        self.failures = 0  # rounds in a row that ended in an API error (the caller backs off)

    @property
    def is_leader(self) -> bool:
        """True while our last successful acquire/renew is younger than ``renew_deadline``."""
        return (
            self._renewed_at is not None
            and self._monotonic() - self._renewed_at < self.renew_deadline
        )

    @property
    def holder(self) -> str | None:
        """The holder seen in the last Lease record read (``None``: free or not read yet)."""
        return None if self._observed is None else self._observed[0]

    def try_acquire_or_renew(self) -> bool:
        """One round: create, renew or take over the Lease. True when we hold it now.

        API errors other than a lost race are logged and count as "not leader this round".
        """
        try:
            held = self._round()
        except KubeError as exc:
            self.failures += 1
            log.warning("leader election on lease %s/%s: %s", self.namespace, self.name, exc)
            if self._renewed_at is not None and not self.is_leader:
                self._lost("renew deadline passed")
            return False
        self.failures = 0
        return held

    def _round(self) -> bool:
        held, self._held = self._held, None
        if held is not None and self.is_leader:
            renewed = self._renew_over(held)
            if renewed is not None:
                return renewed
        now_wall = self._wall_clock()
        now = self._monotonic()
        op = Operation("get", "leases", self.namespace, self.name)
        try:
            lease = self.kube.call(op, self._api.read_namespaced_lease, self.name, self.namespace)
        except KubeNotFound:
            return self._create(now, now_wall)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or None
        self._observe(lease, now)
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        ours = holder == self.identity
        if holder and not ours and now < self._observed_at + duration:
            if self._renewed_at is not None:
                self._lost(f"held by {holder}")
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        new_spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "renewTime": _micro_time(now_wall),
            "acquireTime": spec.get("acquireTime") if ours else _micro_time(now_wall),
            "leaseTransitions": transitions if ours else transitions + 1,
        }
        if not new_spec["acquireTime"]:
            new_spec["acquireTime"] = _micro_time(now_wall)
        body = {**lease, "spec": {**spec, **new_spec}}
        op = Operation("update", "leases", self.namespace, self.name)
        try:
            updated = self.kube.call(
                op, self._api.replace_namespaced_lease, self.name, self.namespace, body
            )
        except KubeConflict:
            if self._renewed_at is not None and not self.is_leader:
                self._lost("lost a race for the lease")
            return False
        if not ours:
            log.info(
                "became leader (lease %s/%s, took over from %s)",
                self.namespace,
                self.name,
                holder or "nobody",
            )
        self._seen(updated, now)
        return True

    def _renew_over(self, held: dict[str, Any]) -> bool | None:
        """Renew with one update over our last write: True, or None when the Lease changed
        since (the caller reads it and decides as any round does)."""
        now_wall, now = self._wall_clock(), self._monotonic()
        spec = {**(held.get("spec") or {}), "renewTime": _micro_time(now_wall)}
        op = Operation("update", "leases", self.namespace, self.name)
        try:
            updated = self.kube.call(
                op,
                self._api.replace_namespaced_lease,
                self.name,
                self.namespace,
                {**held, "spec": spec},
            )
        except (KubeConflict, KubeNotFound):
            return None
        self._seen(updated, now)
        return True

    def _create(self, now: float, now_wall: float) -> bool:
        stamp = _micro_time(now_wall)
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, round(self.lease_duration)),
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        }
        op = Operation("create", "leases", self.namespace, self.name)
        try:
            created = self.kube.call(op, self._api.create_namespaced_lease, self.namespace, body)
        except KubeConflict:  # someone else created it first
            return False
        log.info("became leader (created lease %s/%s)", self.namespace, self.name)
        self._seen(created, now)
        return True

    def wait_as_standby(self, stop: threading.Event, beat: Callable[[], None]) -> bool:
        """While another candidate holds the Lease, wait on a watch of it for the moment this
        one may take it: returns when the Lease is released or deleted, when its holder has
        not renewed it for its duration (it may have expired: the next round decides), when
        ``stop`` is set, or at once on any error. ``beat`` is called on every change seen (the
        holder's renewals keep the watch, and this process's liveness, going). True: the Lease
        is free now (released, deleted or ours), so the next round should come at once."""
        holder = self.holder
        if holder is None or holder == self.identity:
            return True
        if self._observed_version is None:
            return False
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"
        events = stream_events(
            self.kube,
            path,
            {"fieldSelector": f"metadata.name={self.name}"},
            "leases",
            self.namespace,
            self._observed_version,
            None,
            stop,
            lambda _kind, obj: obj,
            # no bookmarks: silence for a lease duration means the holder stopped renewing
            idle_timeout=self.lease_duration + 1,
            bookmarks=False,
        )
        try:
            for kind, lease in events:
                beat()
                if kind == "DELETED":
                    return True
                self._observe(lease, self._monotonic())
                if self.holder in (None, self.identity):
                    return True
        except KubeError as exc:
            log.debug("watch of lease %s/%s ended: %s", self.namespace, self.name, exc)
        finally:
            events.close()
        return False

    def _observe(self, lease: dict[str, Any], now: float) -> None:
        """Note the Lease record; when it changed, restart the expiry clock."""
        spec = lease.get("spec") or {}
        record = (
            spec.get("holderIdentity") or None,
            spec.get("renewTime"),
            spec.get("leaseTransitions"),
            spec.get("acquireTime"),
        )
        if record != self._observed:
            self._observed = record
            self._observed_at = now
        self._observed_version = (lease.get("metadata") or {}).get("resourceVersion")

    def _seen(self, lease: dict[str, Any], now: float) -> None:
        self._observe(lease, now)
        self._observed_at = now
        self._renewed_at = now
        self._held = lease

    def _lost(self, why: str) -> None:
        log.warning("lost leadership of lease %s/%s: %s", self.namespace, self.name, why)
        self._renewed_at = None
        self._held = None

    def release(self) -> None:
        """Give the Lease up at once (when we hold it) so another candidate need not wait."""
        if self._renewed_at is None:
            return
        self._renewed_at = None
        try:
            op = Operation("get", "leases", self.namespace, self.name)
            lease = self.kube.call(op, self._api.read_namespaced_lease, self.name, self.namespace)
            spec = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return
            spec.pop("holderIdentity", None)
            spec["leaseDurationSeconds"] = 1
            spec["renewTime"] = _micro_time(self._wall_clock())
            op = Operation("update", "leases", self.namespace, self.name)
            self.kube.call(
                op,
                self._api.replace_namespaced_lease,
                self.name,
                self.namespace,
                {**lease, "spec": spec},
            )
            log.info("released lease %s/%s", self.namespace, self.name)
        except KubeError as exc:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)
