"""vaultbridge.ceph against real Pacific mons on loopback (no mocks)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest
from ceph_helpers import admin, assert_no_secret, new_key

from vaultbridge.ceph import (
    CephConnection,
    CephPermissionDenied,
    CephRejected,
    CephUnavailable,
    CephxAuth,
    ConfigKeyStore,
    ConfigStore,
    cephx_key_is_valid,
    make_cephx_key,
)
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.testenv.ceph import CephCluster, start_ceph

pytestmark = pytest.mark.integration

RGW = "client.rgw.store"
PASSWORD = "rgw_keystone_admin_password"
CANARY = "CANARY-7f3a9c-s3cr3t"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephCluster]:
    started = start_ceph(tmp_path_factory.mktemp("ceph3"), mons=3)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def conn(cluster: CephCluster) -> Iterator[CephConnection]:
    connection = admin(cluster)
    yield connection
    connection.close()


def dump_rows(cluster: CephCluster) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = json.loads(cluster.ceph("config", "dump", "--format", "json"))
    return rows


# --------------------------------------------------------------------------- connection
def test_version_is_the_release(cluster: CephCluster, conn: CephConnection) -> None:
    assert conn.version()[0] == cluster.release


def test_cephx_key_format() -> None:
    key = make_cephx_key(bytes(range(16)), 1_700_000_000)
    assert cephx_key_is_valid(key)
    assert len(key) == 40
    assert not cephx_key_is_valid("not base64!")
    assert not cephx_key_is_valid(key[:-4])
    with pytest.raises(ValueError):
        make_cephx_key(b"short", 0)


# --------------------------------------------------------------------------- config
def test_config_set_exact_readback(cluster: CephCluster, conn: CephConnection) -> None:
    store = ConfigStore(conn)
    value = Sensitive("p@ss w0rd 'quoted' \"double\" =;#")
    store.set(RGW, PASSWORD, value)
    assert store.get(RGW, PASSWORD) == value
    # what the CLI's config dump says is the exact value; config get would add a newline
    rows = [r for r in dump_rows(cluster) if r["section"] == RGW and r["name"] == PASSWORD]
    assert [r["value"] for r in rows] == [value.reveal()]
    store.set(RGW, PASSWORD, value)  # idempotent
    store.remove(RGW, PASSWORD)
    assert store.get(RGW, PASSWORD) is None
    store.remove(RGW, PASSWORD)  # absent is fine


def test_get_fast_agrees_with_config_dump(conn: CephConnection) -> None:
    store = ConfigStore(conn)
    who = "client.rgw.fastread"
    assert store.get_fast(who, PASSWORD) is None  # absent: inconclusive, still config dump
    assert store._fast is None
    store.set(who, PASSWORD, Sensitive("fast-1"))
    assert store.get_fast(who, PASSWORD) == Sensitive("fast-1")  # checked against the dump
    assert store._fast is True
    store.set(who, PASSWORD, Sensitive("fast-2"))
    assert store.get_fast(who, PASSWORD) == Sensitive("fast-2") == store.get(who, PASSWORD)
    store.remove(who, PASSWORD)
    assert store.get_fast(who, PASSWORD) is None and store.get(who, PASSWORD) is None


def test_unknown_option_is_rejected_and_nothing_changes(
    cluster: CephCluster, conn: CephConnection
) -> None:
    before = dump_rows(cluster)
    with pytest.raises(CephRejected) as info:
        ConfigStore(conn).set("client.rgw.x", "no_such_option", Sensitive(CANARY))
    assert str(info.value) == "config set client.rgw.x/no_such_option: unrecognized option"
    assert_no_secret(info.value, CANARY)
    assert dump_rows(cluster) == before


def test_apply_all_rolls_back_on_third_failure(conn: CephConnection) -> None:
    store = ConfigStore(conn)
    who = "client.rgw.rollback"
    store.set(who, "rgw_keystone_admin_user", Sensitive("old-user"))
    assert store.get(who, PASSWORD) is None
    with pytest.raises(CephRejected, match="no_such_option: unrecognized option") as info:
        store.apply_all(
            [
                (who, "rgw_keystone_admin_user", Sensitive("new-user")),
                (who, PASSWORD, Sensitive(CANARY)),
                (who, "no_such_option", Sensitive(CANARY)),
            ]
        )
    assert_no_secret(info.value, CANARY)
    assert store.get(who, "rgw_keystone_admin_user") == Sensitive("old-user")
    assert store.get(who, PASSWORD) is None
    # and the happy path
    store.apply_all(
        [
            (who, "rgw_keystone_admin_user", Sensitive("u2")),
            (who, PASSWORD, Sensitive("p2")),
        ]
    )
    snap = store.snapshot([(who, "rgw_keystone_admin_user"), (who, PASSWORD)])
    assert snap == {
        (who, "rgw_keystone_admin_user"): Sensitive("u2"),
        (who, PASSWORD): Sensitive("p2"),
    }
    store.restore({(who, "rgw_keystone_admin_user"): None, (who, PASSWORD): None})
    assert store.get(who, PASSWORD) is None


# --------------------------------------------------------------------------- config-key
def test_config_key_roundtrip(conn: CephConnection) -> None:
    store = ConfigKeyStore(conn)
    key = "mgr/dashboard/vaultbridge_test"
    store.remove(key)
    assert store.get(key) is None
    assert not store.exists(key)
    value = Sensitive('line1\nline2 "q" \t')
    store.set(key, value)
    assert store.exists(key)
    assert store.get(key) == value
    store.set(key, value)  # idempotent
    store.remove(key)
    assert store.get(key) is None
    store.remove(key)


# --------------------------------------------------------------------------- cephx
def test_the_cluster_says_which_key_types_it_allows(
    cluster: CephCluster, conn: CephConnection
) -> None:
    """Tentacle: a new cluster allows AES256K only and refuses an AES key at authentication;
    an upgraded one (AES allowed again, as after an upgrade) takes both. Older releases: AES."""
    auth = CephxAuth(conn)
    if cluster.release < 20:
        assert auth.key_types() == ("aes", ("aes",))
        return
    assert auth.key_types() == ("aes256k", ("aes256k",))
    name, caps = "client.vbtest.types", {"mon": "allow r"}
    aes = Sensitive(make_cephx_key(os.urandom(16), int(time.time())))
    auth.remove_entity(name)
    auth.add_entity(name, aes, caps)
    with pytest.raises(CephPermissionDenied):
        auth.verify_key(name, aes, {"prefix": "mon stat"}, None)
    cluster.ceph("mon", "set", "auth_allowed_ciphers", "aes,aes256k")
    try:
        assert auth.key_types() == ("aes256k", ("aes", "aes256k"))
        auth.verify_key(name, aes, {"prefix": "mon stat"}, None)  # an upgraded cluster: both
        auth.verify_key(name, aes, {"prefix": "mon stat"}, None)
        strong = new_key()
        auth.import_entity(name, strong, caps)
        auth.verify_key(name, strong, {"prefix": "mon stat"}, None)
    finally:
        cluster.ceph("mon", "set", "auth_allowed_ciphers", "aes256k")
        auth.remove_entity(name)


def test_auth_add_fresh_connection_and_key_swap(conn: CephConnection) -> None:
    auth = CephxAuth(conn)
    name = "client.vbtest.1"
    caps = {"mon": "allow r"}
    auth.remove_entity(name)
    key = new_key()
    auth.add_entity(name, key, caps)
    auth.add_entity(name, key, caps)  # idempotent
    entity = auth.get_entity(name)
    assert entity is not None and entity.key == key and entity.caps == caps
    assert key.reveal() not in repr(entity)
    assert name in auth.list_entities("client.vbtest.")

    with pytest.raises(CephRejected, match="different key or caps"):
        auth.add_entity(name, new_key(), caps)

    auth.verify_key(name, key, {"prefix": "mon dump"}, {"prefix": "config-key set", "key": "x"})

    wrong = new_key()
    with pytest.raises(CephPermissionDenied, match="authentication") as info:
        auth.verify_key(name, wrong, {"prefix": "mon dump"})
    assert_no_secret(info.value, wrong.reveal(), key.reveal())

    # in-place swap: the old key stops working at once for new connections
    newer = new_key()
    auth.import_entity(name, newer, {"mon": "allow r", "osd": "allow rw pool=app"})
    auth.verify_key(name, newer, {"prefix": "mon dump"})
    with pytest.raises(CephPermissionDenied):
        auth.verify_key(name, key, {"prefix": "mon dump"})

    with pytest.raises(CephRejected, match="capability parse failed"):
        auth.import_entity(name, new_key(), {"mon": "allow bogus"})
    still = auth.get_entity(name)
    assert still is not None and still.key == newer  # nothing changed

    narrow = 'allow command "config get" with who=client.rgw name=rgw_keystone_admin_password'
    auth.set_caps(name, {"mon": narrow})
    got = auth.get_entity(name)
    assert got is not None and got.caps == {"mon": narrow}

    auth.remove_entity(name)
    assert auth.get_entity(name) is None
    auth.remove_entity(name)


def test_verify_key_probes(conn: CephConnection) -> None:
    auth = CephxAuth(conn)
    name = "client.vbtest.probe"
    key = new_key()
    auth.remove_entity(name)
    auth.add_entity(name, key, {"mon": "allow r"})
    try:
        with pytest.raises(CephRejected, match="must refuse"):
            auth.verify_key(name, key, {"prefix": "mon dump"}, {"prefix": "quorum_status"})
        with pytest.raises(CephPermissionDenied, match="caps do not allow 'config-key set'"):
            auth.verify_key(name, key, {"prefix": "config-key set", "key": "x"})
        with pytest.raises(CephRejected, match="not a valid cephx key") as info:
            auth.verify_key(name, Sensitive(CANARY), {"prefix": "mon dump"})
        assert_no_secret(info.value, CANARY)
    finally:
        auth.remove_entity(name)


def test_sessions_on_every_mon(cluster: CephCluster, conn: CephConnection) -> None:
    auth = CephxAuth(conn)
    name = "client.vbtest.sess"
    key = new_key()
    auth.remove_entity(name)
    auth.add_entity(name, key, {"mon": "allow r"})
    client = CephConnection(str(cluster.conf), name, "", key=key)
    try:
        assert auth.sessions(name) == []
        client.mon_command({"prefix": "mon dump"})
        holding = auth.sessions(name)
        assert len(holding) == 1 and holding[0] in cluster.mon_ids
        assert auth.sessions("client.admin")  # this module's admin connection
    finally:
        client.close()
        auth.remove_entity(name)


def test_secret_never_in_errors(cluster: CephCluster, conn: CephConnection) -> None:
    auth = CephxAuth(conn)
    name = "client.vbtest.canary"
    key = new_key()
    auth.remove_entity(name)
    auth.add_entity(name, key, {"mon": "allow r"})
    limited = CephConnection(str(cluster.conf), name, "", key=key)
    errors: list[BaseException] = []
    attempts = [
        lambda: ConfigStore(conn).set(RGW, "rgw_max_chunk_size", Sensitive(CANARY)),
        lambda: ConfigStore(limited).set(RGW, PASSWORD, Sensitive(CANARY)),
        lambda: ConfigKeyStore(limited).set("mgr/x", Sensitive(CANARY)),
        lambda: conn.mon_command(
            {"prefix": "config set", "who": "nope.x", "name": PASSWORD, "value": Sensitive(CANARY)}
        ),
        lambda: auth.add_entity("client.vbtest.canary2", Sensitive(CANARY), {"mon": "allow r"}),
    ]
    try:
        for attempt in attempts:
            with pytest.raises((CephRejected, CephPermissionDenied)) as info:
                attempt()
            errors.append(info.value)
    finally:
        limited.close()
        auth.remove_entity(name)
    for error in errors:
        assert_no_secret(error, CANARY, key.reveal())
    assert isinstance(errors[1], CephPermissionDenied)
    assert "config set client.rgw.store/rgw_keystone_admin_password" in str(errors[1])
    # librados never got the malformed key, so no client log holds it either
    for log in (cluster.workdir / "log").glob("*"):
        assert CANARY not in log.read_text(errors="replace"), log


# --------------------------------------------------------------------------- degraded
def test_quorum_two_of_three_then_mon_rejoins(cluster: CephCluster, conn: CephConnection) -> None:
    store = ConfigStore(conn)
    auth = CephxAuth(conn)
    name = "client.vbtest.degraded"
    auth.remove_entity(name)
    conn.mon_command({"prefix": "mon dump"})
    cluster.stop_mon("c", kill=True, wait_quorum=False)
    try:
        # straight away, while the survivors may still be electing
        t0 = time.monotonic()
        store.set(RGW, PASSWORD, Sensitive("during-degraded"))
        key = new_key()
        auth.add_entity(name, key, {"mon": "allow r"})
        auth.verify_key(name, key, {"prefix": "mon dump"})
        assert time.monotonic() - t0 < conn.timeout * 2
        assert set(cluster.quorum()) == {"a", "b"}
        # a brand-new admin connection also works with one mon down
        with admin(cluster) as fresh:
            assert ConfigStore(fresh).get(RGW, PASSWORD) == Sensitive("during-degraded")
    finally:
        cluster.start_mon("c")
    assert set(cluster.quorum()) == {"a", "b", "c"}
    assert store.get(RGW, PASSWORD) == Sensitive("during-degraded")
    # mon c caught up on what was written while it was down: ask it directly
    rows = json.loads(conn.mon_command({"prefix": "sessions"}, target="c"))
    assert isinstance(rows, list)
    assert auth.get_entity(name) is not None
    auth.remove_entity(name)
    store.remove(RGW, PASSWORD)


# --------------------------------------------------------------------------- unreachable
def test_unreachable_cluster_fails_fast(tmp_path_factory: pytest.TempPathFactory) -> None:
    lone = start_ceph(tmp_path_factory.mktemp("ceph1"), mons=1)
    connection = admin(lone, timeout=2.0)
    try:
        ConfigStore(connection).set(RGW, PASSWORD, Sensitive(CANARY))
        lone.stop()
        t0 = time.monotonic()
        with pytest.raises(CephUnavailable) as info:
            ConfigStore(connection).set(RGW, PASSWORD, Sensitive(CANARY + "2"))
        elapsed = time.monotonic() - t0
        assert elapsed < 2 * 2.0 + 1.5, elapsed  # get + one read-back at most, never a hang
        assert_no_secret(info.value, CANARY)
        assert info.value.transient

        t0 = time.monotonic()
        with pytest.raises(CephUnavailable), admin(lone, timeout=1.0) as fresh:
            fresh.mon_command({"prefix": "mon dump"})
        assert time.monotonic() - t0 < 3.0
    finally:
        connection.close()
        lone.stop()
