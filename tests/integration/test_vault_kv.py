"""KV v2 source against a real OpenBao: versions, metadata, check-and-set, labels, randomness."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import hvac
import pytest

from vaultbridge.model.sensitive import Sensitive
from vaultbridge.testenv.bao import OpenBaoServer, start_openbao
from vaultbridge.testenv.common import free_port
from vaultbridge.vault import (
    KvV2Source,
    StagingLabels,
    TokenAuthenticator,
    VaultClient,
    VaultConflict,
    VaultNotFound,
    VaultUnavailable,
)
from vaultbridge.vault.kv import PASSWORD_ALPHABET

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    server = start_openbao(tmp_path_factory.mktemp("bao"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kv(bao: OpenBaoServer) -> Iterator[KvV2Source]:
    with VaultClient(bao.addr, TokenAuthenticator(bao.token)) as client:
        yield KvV2Source(client)


@pytest.fixture
def root(bao: OpenBaoServer) -> hvac.Client:
    return hvac.Client(url=bao.addr, token=bao.token)


def unique(prefix: str = "ceph") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:10]}"


def s(value: str) -> Sensitive:
    return Sensitive(value)


def test_round_trip_with_cas(kv: KvV2Source) -> None:
    path = unique()
    before = datetime.now(UTC) - timedelta(seconds=5)
    v1 = kv.write("secret", path, {"value": s("one"), "user": s("admin")}, cas=0)
    v2 = kv.write("secret", path, {"value": s("two"), "user": s("admin")}, cas=v1)
    assert (v1, v2) == (1, 2)

    latest = kv.read("secret", path)
    assert latest.version == 2
    assert latest.data["value"].reveal() == "two"
    assert not latest.deleted
    assert before < latest.created_time <= datetime.now(UTC) + timedelta(seconds=5)

    first = kv.read("secret", path, version=1)
    assert first.version == 1 and first.data["value"].reveal() == "one"
    assert kv.read_field("secret", path, "value", version=1).reveal() == "one"
    assert kv.read_field("secret", path, "user").reveal() == "admin"

    meta = kv.metadata("secret", path)
    assert meta.current_version == 2
    assert sorted(meta.versions) == [1, 2]
    assert meta.versions[2].created_time == latest.created_time
    assert not meta.versions[1].deleted
    assert "one" not in repr(first) and "two" not in repr(latest)


def test_cas_conflict_does_not_clobber(kv: KvV2Source) -> None:
    path = unique()
    kv.write("secret", path, {"value": s("a")}, cas=0)
    kv.write("secret", path, {"value": s("b")}, cas=1)
    with pytest.raises(VaultConflict, match="check-and-set"):
        kv.write("secret", path, {"value": s("stale")}, cas=1)  # the other writer won
    with pytest.raises(VaultConflict):
        kv.write("secret", path, {"value": s("new")}, cas=0)  # "must not exist yet"
    assert kv.read_field("secret", path, "value").reveal() == "b"


def test_non_string_values_are_wrapped_as_json(kv: KvV2Source, root: hvac.Client) -> None:
    path = unique()
    root.secrets.kv.v2.create_or_update_secret(path, {"n": 5, "l": [1, "x"]}, mount_point="secret")
    got = kv.read("secret", path)
    assert got.data["n"].reveal() == "5"
    assert got.data["l"].reveal() == '[1,"x"]'


def test_missing_path_field_version(kv: KvV2Source) -> None:
    path = unique()
    with pytest.raises(VaultNotFound) as missing:
        kv.read("secret", path)
    assert path in str(missing.value) and "'secret'" in str(missing.value)
    with pytest.raises(VaultNotFound, match="no metadata"):
        kv.metadata("secret", path)

    kv.write("secret", path, {"user": s("u"), "value": s("hunter2")}, cas=0)
    with pytest.raises(VaultNotFound) as field:
        kv.read_field("secret", path, "password")
    text = str(field.value)
    assert "'password'" in text and "'user'" in text and "'value'" in text
    assert path in text and "version 1" in text
    assert "hunter2" not in text

    with pytest.raises(VaultNotFound) as version:
        kv.read("secret", path, version=7)
    assert "version 7" in str(version.value) and path in str(version.value)

    with pytest.raises(VaultNotFound, match="'nomount'"):
        kv.read("nomount", path)


def test_deleted_and_destroyed_versions(kv: KvV2Source, root: hvac.Client) -> None:
    path = unique()
    kv.write("secret", path, {"value": s("a")}, cas=0)
    kv.write("secret", path, {"value": s("b")}, cas=1)
    kv.write("secret", path, {"value": s("c")}, cas=2)
    root.secrets.kv.v2.delete_secret_versions(path, versions=[1], mount_point="secret")
    root.secrets.kv.v2.destroy_secret_versions(path, versions=[2], mount_point="secret")

    one = kv.read("secret", path, version=1)
    assert one.deleted and not one.destroyed and one.data == {}
    two = kv.read("secret", path, version=2)
    assert two.deleted and two.destroyed and two.data == {}
    with pytest.raises(VaultNotFound, match=r"version 1 .* is deleted"):
        kv.read_field("secret", path, "value", version=1)
    with pytest.raises(VaultNotFound, match="destroyed"):
        kv.read_field("secret", path, "value", version=2)

    meta = kv.metadata("secret", path)
    assert meta.versions[1].deleted and meta.versions[2].destroyed
    assert not meta.versions[3].deleted


def test_labels_set_move_clear_preserve_foreign_metadata(kv: KvV2Source, root: hvac.Client) -> None:
    path = unique()
    kv.write("secret", path, {"value": s("a")}, cas=0)
    kv.write("secret", path, {"value": s("b")}, cas=1)
    root.secrets.kv.v2.update_metadata(
        path,
        max_versions=7,
        delete_version_after="240h",
        custom_metadata={"owner": "team-storage", "ticket": "OPS-1"},
        mount_point="secret",
    )
    assert kv.labels("secret", path) == StagingLabels()

    kv.set_labels("secret", path, current=1, previous=None, pending=2)
    assert kv.labels("secret", path) == StagingLabels(current=1, previous=None, pending=2)

    kv.set_labels("secret", path, current=2, previous=1, pending=None)  # promote
    meta = kv.metadata("secret", path)
    assert meta.labels == StagingLabels(current=2, previous=1, pending=None)
    assert meta.custom_metadata == {
        "owner": "team-storage",
        "ticket": "OPS-1",
        "vaultbridge-current": "2",
        "vaultbridge-previous": "1",
    }

    kv.set_labels("secret", path, current=None, previous=None, pending=None)
    raw = root.secrets.kv.v2.read_secret_metadata(path, mount_point="secret")["data"]
    assert raw["custom_metadata"] == {"owner": "team-storage", "ticket": "OPS-1"}
    assert raw["max_versions"] == 7 and raw["delete_version_after"] == "240h0m0s"

    with pytest.raises(VaultNotFound):
        kv.set_labels("secret", unique(), current=1, previous=None, pending=None)


def test_random_bytes_and_password(kv: KvV2Source) -> None:
    for n in (1, 16, 32, 1000):
        assert len(kv.random_bytes(n)) == n
    assert kv.random_bytes(32) != kv.random_bytes(32)
    password = kv.generate_password()
    assert isinstance(password, Sensitive)
    assert len(password.reveal()) == 32
    assert set(password.reveal()) <= set(PASSWORD_ALPHABET)
    assert len(kv.generate_password(64).reveal()) == 64
    assert password.reveal() not in repr(password)
    with pytest.raises(ValueError):
        kv.random_bytes(0)


def test_paths_with_reserved_characters_round_trip(kv: KvV2Source, root: hvac.Client) -> None:
    # "?", "#", "%", "&" and ":" are valid in a KV path: each request sends them escaped
    path = f"odd/{uuid.uuid4().hex[:6]}?a=1#b%20&c:d"
    assert kv.write("secret", path, {"value": s("one")}, cas=0) == 1
    assert kv.read("secret", path).data == {"value": s("one")}
    kv.set_labels("secret", path, current=1, previous=None, pending=None)
    assert kv.metadata("secret", path).labels == StagingLabels(current=1)
    stored = root.secrets.kv.v2.read_secret_version(
        path, mount_point="secret", raise_on_deleted_version=True
    )
    assert stored["data"]["data"] == {"value": "one"}


def test_a_proxy_for_the_vault_address_carries_every_request(
    bao: OpenBaoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the lean request path must not bypass a configured proxy: one that is down means Vault
    # cannot be reached, although Vault itself answers
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    with VaultClient(bao.addr, TokenAuthenticator(bao.token)) as client:
        kv = KvV2Source(client)
        with pytest.raises(VaultUnavailable, match="cannot connect to Vault"):
            kv.read("secret", unique())
        with pytest.raises(VaultUnavailable, match="cannot connect to Vault"):
            kv.set_labels("secret", unique(), current=1, previous=None, pending=None)


def test_a_redirect_to_the_active_node_is_followed(bao: OpenBaoServer, root: hvac.Client) -> None:
    # a standby answers every request with a redirect to the active node (here: the real one)
    class Standby(BaseHTTPRequestHandler):
        def answer(self) -> None:
            self.send_response(307)
            self.send_header("Location", bao.addr + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PATCH = answer

        def log_message(self, *args: object) -> None:
            pass

    standby = ThreadingHTTPServer(("127.0.0.1", 0), Standby)
    threading.Thread(target=standby.serve_forever, daemon=True).start()
    try:
        addr = f"http://127.0.0.1:{standby.server_address[1]}"
        with VaultClient(addr, TokenAuthenticator(bao.token)) as client:
            kv = KvV2Source(client)
            path = unique()
            assert kv.write("secret", path, {"value": s("via-standby")}, cas=0) == 1
            assert kv.read("secret", path).data == {"value": s("via-standby")}
            kv.set_labels("secret", path, current=1, previous=None, pending=None)
        metadata = root.secrets.kv.v2.read_secret_metadata(path, mount_point="secret")
        assert metadata["data"]["custom_metadata"] == {"vaultbridge-current": "1"}
    finally:
        standby.shutdown()
