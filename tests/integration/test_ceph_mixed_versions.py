"""A cluster being upgraded from Pacific to Reef, on real mons: the Pacific one's store converted
by Reef's ``ceph-mon`` one mon at a time, as in a real upgrade. Until every mon of the monmap
runs Reef (and the mons raised ``min_mon_release``), an in-place rotation imports the key (the
Pacific protocol); afterwards it stages a pending key."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from cephx_helpers import authenticates, cephx_spec

from vaultbridge.adapters.ceph import CephxMon
from vaultbridge.ceph import CephConnection, read_mon_release
from vaultbridge.engine.cephx import CephxDriver, make_driver
from vaultbridge.model.ceph_release import MonRelease
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import CephxTarget, parse_spec
from vaultbridge.testenv.ceph import CephCluster, start_ceph
from vaultbridge.testenv.releases import INSIDE

pytestmark = pytest.mark.skipif(
    bool(os.environ.get(INSIDE)), reason="the host's Pacific mons are the start"
)

ENTITY = "client.upgrading"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephCluster]:
    started = start_ceph(tmp_path_factory.mktemp("mixed"), mons=3, release=16)
    try:
        yield started
    finally:
        started.stop()


def admin(cluster: CephCluster) -> CephConnection:
    return CephConnection(str(cluster.conf), cluster.user, str(cluster.admin_keyring), timeout=10)


def release_once(cluster: CephCluster, want: str) -> MonRelease:
    """What a new connection reads, once the mons report what ``want`` names."""
    deadline = time.monotonic() + 60
    while True:
        with admin(cluster) as conn:
            found = read_mon_release(conn)
        if want in found.describe() or time.monotonic() > deadline:
            return found
        time.sleep(1)


def in_place(cluster: CephCluster, conn: CephConnection) -> tuple[CephxMon, CephxDriver]:
    spec = parse_spec(cephx_spec("k", ENTITY, strategy="in-place"))
    assert isinstance(spec.target, CephxTarget)
    store = CephxMon(conn)
    return store, make_driver(spec, spec.target, store, None, 2)


def can_auth(cluster: CephCluster, key: Sensitive) -> bool:
    return authenticates(str(cluster.conf), ENTITY, key.reveal(), timeout=5)


def test_an_upgrade_takes_pending_keys_only_once_every_mon_can(cluster: CephCluster) -> None:
    cluster.stop_mon("c")
    cluster.start_mon("c", release=18)  # one mon upgraded: its Pacific store converted
    mixed = release_once(cluster, "mixed")
    assert mixed.mixed and mixed.lowest == (16, 2, 15) and mixed.min_mon_release == 16
    assert not mixed.pending_keys()
    assert "16.2.15, 18.2.7" in mixed.lacks_pending_keys()

    with admin(cluster) as conn:
        store, driver = in_place(cluster, conn)
        assert driver.mode == "in-place"
        old = store.make_key(b"\x01" * 16, int(time.time()))
        store.add_entity(ENTITY, old, {"mon": "allow r"})
        new = store.make_key(b"\x02" * 16, int(time.time()))
        data = driver.data_from_source({"key": new})
        driver.check_new()
        driver.apply(data)
        assert driver.verify(data) == []
        assert store.get_entity(ENTITY).pending_key is None  # type: ignore[union-attr]
    assert can_auth(cluster, new) and not can_auth(cluster, old)

    for mon in ("a", "b"):
        cluster.stop_mon(mon)
        cluster.start_mon(mon, release=18)
    # the mons raise min_mon_release themselves once every mon of the monmap is in quorum
    upgraded = release_once(cluster, "(reef)")
    assert upgraded.describe() == "Ceph 18.2.7 (reef)" and upgraded.min_mon_release == 18
    assert upgraded.pending_keys()

    with admin(cluster) as conn:
        store, driver = in_place(cluster, conn)
        assert driver.mode == "pending"
        pending = store.get_or_create_pending(ENTITY)
        data = driver.data_from_source({"key": pending})
        driver.apply(data)
        assert driver.verify(data) == []
        assert store.get_entity(ENTITY).pending_key == pending  # type: ignore[union-attr]
    assert can_auth(cluster, new)  # the old key works until the new one is first used
    assert can_auth(cluster, pending)
