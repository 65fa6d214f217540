"""spec.cluster: the parsing of the objects a cluster is read from, the registry's refreshes,
and the engine pinning a rotation to its cluster (in-memory clusters; the real mons are in
tests/integration/test_clusters*.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from vaultbridge.adapters.clusters import ClusterRegistry, read_connection
from vaultbridge.engine.clusters import FixedCluster
from vaultbridge.engine.engine import Engine
from vaultbridge.engine.memory import MemoryCeph, MemoryCephx, MemoryListing, MemoryWorld
from vaultbridge.engine.ports import CephCluster
from vaultbridge.model.cluster import (
    ClusterConfigError,
    ClusterRef,
    cluster_key,
    parse_ceph_conf,
    parse_keyring,
    parse_rook_endpoints,
    parse_rook_secret,
    rook_mon_host,
)
from vaultbridge.model.errors import PreconditionError
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import CredentialRef, SpecError, parse_spec

KEY = "AQBJ2mhj8Nd3HhAAdD9n/RSe1ENTJSPGrT7cxg=="
OTHER_KEY = "AQCk2mhjAAAAABAAr9Uo3Zq3bT2zZq8f8zZq8w=="
FSID = "7341faaf-7c0f-489d-bd6a-3b841fb4348f"
OTHER_FSID = "0b1f7c2e-1111-4a4a-9c9c-0123456789ab"
ROOK = ClusterRef("rook", "rook-ceph", "rook-ceph-mon-endpoints", "vb-ceph")


def wrapped(**data: str) -> dict[str, Sensitive]:
    return {k: Sensitive(v) for k, v in data.items()}


# -- parsing -------------------------------------------------------------------------------------


def test_rook_endpoints_in_rooks_format() -> None:
    mons = parse_rook_endpoints("a=127.0.0.1:6789,b=127.0.0.2:3300,c=[::1]:6789", "cm")
    assert mons == (("a", "127.0.0.1:6789"), ("b", "127.0.0.2:3300"), ("c", "[::1]:6789"))
    assert rook_mon_host(mons) == "v1:127.0.0.1:6789,v2:127.0.0.2:3300,v1:[::1]:6789"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("127.0.0.1:6789", "entry 1 is not NAME=ADDRESS:PORT"),
        ("a=mon-a.local:6789", "is not IP:PORT"),
        ("a=127.0.0.1", "is not IP:PORT"),
        ("a=127.0.0.1:0", "port of"),
        ("a=127.0.0.1:70000", "port of"),
        ("a=127.0.0.1:6789,a=127.0.0.2:6789", "listed twice"),
        ("a=127.0.0.1:6789,,", "entry 2"),
    ],
)
def test_malformed_endpoints_say_where(text: str, says: str) -> None:
    with pytest.raises(ClusterConfigError) as caught:
        parse_rook_endpoints(text, "ConfigMap rook-ceph/rook-ceph-mon-endpoints key data")
    assert caught.value.reason == "MonEndpointsMalformed"
    assert str(caught.value).startswith("ConfigMap rook-ceph/rook-ceph-mon-endpoints key data")
    assert says in str(caught.value)


def test_rook_secret_layouts() -> None:
    assert parse_rook_secret(
        wrapped(fsid=FSID, **{"ceph-username": "client.vb", "ceph-secret": KEY}), "s"
    )[:2] == (FSID, "client.vb")
    assert (
        parse_rook_secret(wrapped(fsid=FSID, **{"ceph-username": "vb", "ceph-secret": KEY}), "s")[1]
        == "client.vb"
    )
    fsid, user, key = parse_rook_secret(wrapped(fsid=FSID, **{"admin-secret": KEY}), "s")
    assert (fsid, user, key.reveal()) == (FSID, "client.admin", KEY)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"admin-secret": KEY}, "has no key fsid"),
        ({"fsid": "x", "admin-secret": KEY}, "fsid is not a UUID"),
        ({"fsid": FSID}, "needs ceph-username and ceph-secret"),
        ({"fsid": FSID, "ceph-username": "client.vb"}, "no ceph-secret"),
        ({"fsid": FSID, "ceph-username": "client.vb", "ceph-secret": "short"}, "not a cephx key"),
        ({"fsid": FSID, "ceph-username": "client.a/b", "ceph-secret": KEY}, "not a client entity"),
        ({"fsid": FSID, "admin-secret": " "}, "not a cephx key"),
    ],
)
def test_bad_rook_secrets_never_echo_a_value(data: dict[str, str], says: str) -> None:
    with pytest.raises(ClusterConfigError) as caught:
        parse_rook_secret(wrapped(**data), "Secret rook-ceph/vb-ceph")
    assert caught.value.reason == "ClusterSecretMalformed"
    assert says in str(caught.value)
    assert "Secret rook-ceph/vb-ceph" in str(caught.value)
    assert KEY not in str(caught.value) and "short" not in str(caught.value)


def test_keyring_and_ceph_conf() -> None:
    user, key = parse_keyring(wrapped(keyring=f"[client.vb]\n\tkey = {KEY}\n\tcaps mon = x\n"), "s")
    assert (user, key.reveal()) == ("client.vb", KEY)
    conf = f"[global]\nfsid = {FSID}\nmon host = [v2:127.0.0.1:3300]\nms bind ipv6 = false\n"
    assert parse_ceph_conf(conf, "c") == ("[v2:127.0.0.1:3300]", FSID, (("ms_bind_ipv6", "false"),))
    for bad, says in (
        ("[global]\nfsid = " + FSID + "\n", "no mon_host"),
        ("[global]\nmon host = x\nkey = " + KEY + "\n", "the key belongs in the Secret"),
        ("[client]\nkeyring = /etc/ceph/k\n[global]\nmon_host = x\n", "sets keyring"),
        ("mon host = x\n", "not a ceph.conf"),
        ("[global]\nmon host = x\nfsid = nope\n", "fsid is not a UUID"),
    ):
        with pytest.raises(ClusterConfigError) as caught:
            parse_ceph_conf(bad, "ConfigMap ext/ceph-conf key ceph.conf")
        assert says in str(caught.value)
        assert KEY not in str(caught.value)
    with pytest.raises(ClusterConfigError, match="is not a client entity"):
        parse_keyring(wrapped(keyring="[mon.]\nkey = " + KEY), "s")


def test_spec_cluster_forms_and_problems() -> None:
    base = {
        "source": {"mount": "secret", "path": "p"},
        "secret": {"name": "cred"},
        "target": {"configKey": {"key": "k"}},
    }
    rook = parse_spec({**base, "cluster": {"rook": {"namespace": "rook-ceph", "secret": "vb"}}})
    assert rook.cluster == ClusterRef("rook", "rook-ceph", "rook-ceph-mon-endpoints", "vb")
    external = parse_spec(
        {**base, "cluster": {"external": {"namespace": "x", "configMap": "c", "secret": "s"}}}
    )
    assert external.cluster is not None
    assert external.cluster.key == "external:x/c/s"
    assert ClusterRef.from_key(external.cluster.key) == external.cluster
    assert ClusterRef.from_key("default") is None
    assert cluster_key(None) == "default"
    assert parse_spec(base).cluster is None
    for cluster, says in (
        ({}, "exactly one of rook or external"),
        ({"rook": {"namespace": "a", "secret": "b"}, "external": {}}, "exactly one"),
        ({"rook": {"secret": "b"}}, "spec.cluster.rook.namespace: required"),
        ({"rook": {"namespace": "A_b", "secret": "b"}}, "not a valid object name"),
        ({"external": {"namespace": "a", "secret": "b"}}, "spec.cluster.external.configMap"),
    ):
        with pytest.raises(SpecError) as caught:
            parse_spec({**base, "cluster": cluster})
        assert says in str(caught.value.problems)


# -- the registry --------------------------------------------------------------------------------


@dataclass
class Objects:
    maps: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict[str, Sensitive]] = field(default_factory=dict)

    def config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.maps.get((namespace, name))

    def secret(self, namespace: str, name: str) -> dict[str, Sensitive] | None:
        return self.secrets.get((namespace, name))


def rook_objects(endpoints: str = "a=127.0.0.1:6789", key: str = KEY, fsid: str = FSID) -> Objects:
    objects = Objects()
    objects.maps[("rook-ceph", "rook-ceph-mon-endpoints")] = {"data": endpoints}
    objects.secrets[("rook-ceph", "vb-ceph")] = wrapped(fsid=fsid, **{"admin-secret": key})
    return objects


def test_read_connection_names_the_missing_object() -> None:
    with pytest.raises(ClusterConfigError, match="ConfigMap rook-ceph/rook-ceph-mon-endpoints"):
        read_connection(ROOK, Objects())
    objects = rook_objects()
    del objects.secrets[("rook-ceph", "vb-ceph")]
    with pytest.raises(ClusterConfigError, match="Secret rook-ceph/vb-ceph does not exist"):
        read_connection(ROOK, objects)
    spec = read_connection(ROOK, rook_objects())
    assert (spec.mon_host, spec.user, spec.fsid) == ("v1:127.0.0.1:6789", "client.admin", FSID)


def test_refresh_tells_what_changed() -> None:
    objects = rook_objects()
    registry = ClusterRegistry(None, objects)
    live = registry.cluster(ROOK)
    assert live is registry.cluster(ROOK)  # one connection per cluster
    assert registry.refresh(ROOK) is None
    objects.maps[("rook-ceph", "rook-ceph-mon-endpoints")] = {"data": "b=127.0.0.9:6789"}
    moved = registry.refresh(ROOK)
    assert moved is not None and moved.kind == "moved"
    assert "v1:127.0.0.9:6789" in moved.message
    assert live.conn.options["mon_host"] == "v1:127.0.0.9:6789"  # type: ignore[attr-defined]
    objects.secrets[("rook-ceph", "vb-ceph")] = wrapped(fsid=FSID, **{"admin-secret": OTHER_KEY})
    changed = registry.refresh(ROOK)
    assert changed is not None and changed.kind == "credentials"
    assert KEY not in changed.message and OTHER_KEY not in changed.message
    objects.maps[("rook-ceph", "rook-ceph-mon-endpoints")] = {"data": "garbage"}
    broken = registry.refresh(ROOK)
    assert broken is not None and broken.kind == "broken"
    assert registry.refresh(ROOK) is None  # the same problem again is not news
    with pytest.raises(PreconditionError) as caught:
        registry.cluster(ROOK)
    assert caught.value.reason == "MonEndpointsMalformed"
    objects.maps[("rook-ceph", "rook-ceph-mon-endpoints")] = {"data": "b=127.0.0.9:6789"}
    fixed = registry.refresh(ROOK)
    assert fixed is not None and fixed.kind == "fixed"
    objects.secrets[("rook-ceph", "vb-ceph")] = wrapped(fsid=OTHER_FSID, **{"admin-secret": KEY})
    identity = registry.refresh(ROOK)
    assert identity is not None and identity.kind == "identity"
    assert registry.retain([]) == [ROOK.key]
    assert registry.known() == []


def test_the_registry_is_bounded_and_refuses_without_objects() -> None:
    objects = rook_objects()
    other = ClusterRef("rook", "other", "rook-ceph-mon-endpoints", "vb-ceph")
    objects.maps[("other", "rook-ceph-mon-endpoints")] = {"data": "a=127.0.0.2:6789"}
    objects.secrets[("other", "vb-ceph")] = wrapped(fsid=FSID, **{"admin-secret": KEY})
    registry = ClusterRegistry(None, objects, limit=1)
    registry.cluster(ROOK)
    with pytest.raises(PreconditionError, match="VAULTBRIDGE_CEPH__MAX_CLUSTERS"):
        registry.cluster(other)
    registry.retain([other.key])
    assert registry.cluster(other) is not None
    with pytest.raises(PreconditionError) as caught:
        ClusterRegistry(None, None).cluster(ROOK)
    assert caught.value.reason == "ClusterNotConfigured"
    with pytest.raises(PreconditionError) as caught:
        ClusterRegistry(None, objects).cluster(None)
    assert caught.value.reason == "CephNotConfigured"


# -- the engine ----------------------------------------------------------------------------------

REF = CredentialRef("ns", "cred")


class Clusters:
    """Two in-memory clusters: the default and ROOK (whose fsid a test may change)."""

    def __init__(self, world: MemoryWorld) -> None:
        self.default = FixedCluster(world.ceph, world.cephx, world.listing)
        ceph, cephx = MemoryCeph(world.faults), MemoryCephx(world.faults)
        self.rook = FixedCluster(
            ceph, cephx, MemoryListing(world.faults, ceph, cephx), ROOK.key, FSID
        )

    def cluster(self, ref: ClusterRef | None) -> CephCluster:
        return self.default if ref is None else self.rook


def config_key_spec(cluster: ClusterRef | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": {"mount": "secret", "path": "p"},
        "secret": {"name": "cred"},
        "target": {"configKey": {"key": "k"}},
    }
    if cluster is not None:
        spec["cluster"] = {"rook": {"namespace": cluster.namespace, "secret": cluster.secret}}
    return spec


def test_a_rotation_is_pinned_to_its_cluster_and_fsid() -> None:
    world = MemoryWorld()
    clusters = Clusters(world)
    vb = Engine(
        **world.engine_ports(),
        holder="a",
        takeover_after=timedelta(seconds=30),
        clusters=clusters,
    )
    world.crs.create(REF, config_key_spec(ROOK))
    world.vault.put("secret", "p", {"value": "v1"})
    seen: list[dict[str, Any]] = []

    def check(when: str, action: str) -> None:
        journal = world.crs.load(REF).status.rotation
        if journal is not None:
            seen.append({"cluster": journal.cluster, "fsid": journal.fsid})

    from vaultbridge.engine import faults

    faults.add_hook(check)
    try:
        assert vb.sync(REF).result == "promoted"
    finally:
        faults.remove_hook(check)
    assert seen and all(s == {"cluster": ROOK.key, "fsid": FSID} for s in seen)
    rook_ceph = clusters.rook.ceph
    assert isinstance(rook_ceph, MemoryCeph)
    assert rook_ceph.config_keys["k"].reveal() == "v1"
    assert "k" not in world.ceph.config_keys

    # the mons now answer as another cluster: nothing is applied, the rotation is held
    world.vault.put("secret", "p", {"value": "v2"})
    clusters.rook = FixedCluster(
        clusters.rook.ceph, clusters.rook.cephx, clusters.rook.listing, ROOK.key, OTHER_FSID
    )
    calls: list[str] = []

    def switch(when: str, action: str) -> None:
        calls.append(f"{when}:{action}")
        if (when, action) == ("after", "Snapshot"):
            clusters.rook = FixedCluster(
                clusters.rook.ceph, clusters.rook.cephx, clusters.rook.listing, ROOK.key, FSID
            )

    faults.add_hook(switch)
    try:
        outcome = vb.sync(REF)
    finally:
        faults.remove_hook(switch)
    assert outcome.result != "promoted"
    assert "ClusterIdentityChanged" in (outcome.reason or "") or "fsid" in outcome.message
    assert rook_ceph.config_keys["k"].reveal() == "v1"
