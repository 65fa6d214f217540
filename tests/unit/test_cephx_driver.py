"""The cephx driver's pure decisions and the Ceph >= 17 pending-key command sequence (fake store)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import pytest

from vaultbridge.engine.cephx import PendingKeySwap, entity_for, make_driver, parse_keyring, probes
from vaultbridge.engine.ports import CephxEntity
from vaultbridge.model.ceph_release import MonRelease
from vaultbridge.model.errors import PreconditionError
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.model.spec import CephxTarget, parse_spec
from vaultbridge.model.status import Status


def key(n: int) -> Sensitive:
    return Sensitive(
        base64.b64encode(bytes([1, 0]) + bytes(8) + bytes([16, 0]) + bytes([n]) * 16).decode()
    )


class FakeStore:
    """An in-memory auth database that records every command, like the mons would see them."""

    def __init__(self, version: tuple[int, int, int] = (17, 2, 7)) -> None:
        self.version = version
        self.entities: dict[str, CephxEntity] = {}
        self.pending: dict[str, Sensitive] = {}
        self.log: list[str] = []
        self.next_pending = key(9)

    def mon_release(self) -> MonRelease:
        return MonRelease((self.version,))

    def get_entity(self, name: str) -> CephxEntity | None:
        found = self.entities.get(name)
        if found is None or name not in self.pending:
            return found
        return CephxEntity(found.name, found.key, found.caps, self.pending[name])

    def add_entity(self, name: str, key: Sensitive, caps: Mapping[str, str]) -> None:
        self.log.append(f"auth add {name}")
        self.entities[name] = CephxEntity(name, key, dict(caps))

    def import_entity(self, name: str, key: Sensitive, caps: Mapping[str, str]) -> None:
        self.log.append(f"auth import {name}")
        self.entities[name] = CephxEntity(name, key, dict(caps))

    def set_caps(self, name: str, caps: Mapping[str, str]) -> None:
        self.log.append(f"auth caps {name}")
        self.entities[name] = CephxEntity(name, self.entities[name].key, dict(caps))

    def remove_entity(self, name: str) -> None:
        self.log.append(f"auth rm {name}")
        self.entities.pop(name, None)

    def verify_key(
        self,
        name: str,
        key: Sensitive,
        probe_allowed: Mapping[str, Any],
        probe_refused: Mapping[str, Any] | None,
    ) -> None:
        self.log.append(f"verify {name}")

    def sessions(self, entity: str) -> list[str]:
        return []

    def make_key(self, random16: bytes, created: int) -> Sensitive:
        return key(random16[0])

    def key_type_of(self, key: Sensitive) -> str | None:
        return "aes" if self.key_is_valid(key) else None

    def key_is_valid(self, key: Sensitive) -> bool:
        try:
            return len(base64.b64decode(key.reveal(), validate=True)) == 28
        except ValueError:
            return False

    def keyring_text(self, name: str, key: Sensitive, caps: Mapping[str, str] | None) -> Sensitive:
        return Sensitive(f"[{name}]\n\tkey = {key.reveal()}\n")

    def get_or_create_pending(self, entity: str) -> Sensitive:
        self.log.append(f"auth get-or-create-pending {entity}")
        return self.pending.setdefault(entity, self.next_pending)

    def commit_pending(self, entity: str) -> None:
        self.log.append(f"auth commit-pending {entity}")
        pending = self.pending.pop(entity)
        old = self.entities[entity]
        self.entities[entity] = CephxEntity(entity, pending, old.caps)

    def clear_pending(self, entity: str) -> None:
        self.log.append(f"auth clear-pending {entity}")
        self.pending.pop(entity, None)


def spec(strategy: str = "in-place", generate: bool = True) -> Any:
    return parse_spec(
        {
            "source": {"mount": "secret", "path": "p", "field": "key"},
            "secret": {"name": "cred"},
            "generate": generate,
            "target": {
                "cephx": {"entity": "client.app", "caps": {"mon": "allow r"}, "strategy": strategy}
            },
        }
    )


def target(s: Any) -> CephxTarget:
    assert isinstance(s.target, CephxTarget)
    return s.target


def test_pending_key_swap_sequence() -> None:
    store = FakeStore()
    store.entities["client.app"] = CephxEntity("client.app", key(1), {"mon": "allow r"})
    swap = PendingKeySwap(store, "client.app")
    swap.stage(key(9))
    swap.commit()
    assert store.log == ["auth get-or-create-pending client.app", "auth commit-pending client.app"]
    assert store.entities["client.app"].key == key(9)


def test_pending_key_mismatch_is_cleared_and_refused() -> None:
    store = FakeStore()
    store.entities["client.app"] = CephxEntity("client.app", key(1), {"mon": "allow r"})
    with pytest.raises(PreconditionError) as caught:
        PendingKeySwap(store, "client.app").stage(key(5))
    assert caught.value.reason == "PendingKeyMismatch"
    assert store.log[-1] == "auth clear-pending client.app" and not store.pending


def test_mode_follows_the_mon_version() -> None:
    s = spec()
    assert make_driver(s, target(s), FakeStore((16, 2, 15)), None, 2).mode == "in-place"
    assert make_driver(s, target(s), FakeStore((17, 2, 7)), None, 2).mode == "pending"
    written = spec(generate=False)  # a key someone wrote to Vault cannot be a pending key
    assert make_driver(written, target(written), FakeStore((18, 2, 0)), None, 2).mode == "in-place"
    alt = spec("alternate")
    assert make_driver(alt, target(alt), FakeStore((18, 2, 0)), None, 2).mode == "alternate"


def test_pending_driver_stages_reads_back_and_leaves_the_key_pending() -> None:
    """Reef and later: the first authentication with a pending key commits it, so Verify reads
    it back instead, and Promote leaves it pending (docs/cephx.md, "Pending keys")."""
    store = FakeStore()
    store.entities["client.app"] = CephxEntity("client.app", key(1), {"mon": "allow r"})
    s = spec()
    driver = make_driver(s, target(s), store, None, 2)
    data = driver.data_from_source({"key": key(9)})
    preimage = driver.read()
    driver.apply(data)
    assert store.entities["client.app"].key == key(1)  # the old key still works until commit
    assert driver.verify(data) == []  # read back: never an authentication with the pending key
    driver.restore(preimage)
    assert store.log == [
        "auth get-or-create-pending client.app",
        "auth clear-pending client.app",
        "auth import client.app",  # idempotent re-import of the snapshot (same key and caps)
    ]
    assert store.entities["client.app"].key == key(1) and not store.pending
    store.log.clear()
    driver.apply(data)
    driver.before_promote()
    assert store.log == ["auth get-or-create-pending client.app"]  # promoted, still pending
    assert store.entities["client.app"].key == key(1) and store.pending["client.app"] == key(9)


def test_alternate_restore_never_touches_protected_or_foreign_entities() -> None:
    store = FakeStore((16, 2, 15))
    s = spec("alternate")
    status = Status(current_version=1, current_entity="client.app.1")
    store.entities["client.app.1"] = CephxEntity("client.app.1", key(1), {"mon": "allow r"})
    driver = make_driver(s, target(s), store, status, 2)
    assert driver.entity == "client.app.2"
    data = driver.data_from_source({"key": key(2)})
    driver.apply(data)
    driver.restore({})
    assert "client.app.2" not in store.entities and "client.app.1" in store.entities
    store.entities["client.app.2"] = CephxEntity("client.app.2", key(7), {})
    with pytest.raises(PreconditionError, match="already exists"):
        driver.check_new()
    driver.restore({})
    assert store.entities["client.app.2"].key == key(7)  # not ours: left alone


def test_malformed_key_is_refused_without_echoing_it() -> None:
    s = spec("alternate")
    driver = make_driver(s, target(s), FakeStore((16, 2, 15)), None, 1)
    with pytest.raises(PreconditionError) as caught:
        driver.data_from_source({"key": Sensitive("CANARY-not-a-key")})
    assert caught.value.reason == "MalformedCephxKey" and "CANARY" not in str(caught.value)


def test_entity_for_versions() -> None:
    s = spec("alternate")
    assert entity_for(s, target(s), None, 4) == "client.app.4"
    assert (
        entity_for(s, target(s), Status(current_version=1, current_entity="client.app"), 1)
        == "client.app"
    )
    inplace = spec()
    assert entity_for(inplace, target(inplace), None, 4) == "client.app"


def test_probes() -> None:
    assert probes("client.a", {"mon": "allow r"}) == (
        {"prefix": "mon stat"},
        {"prefix": "auth get", "entity": "client.a"},
    )
    assert probes("client.a", {"mon": "allow *"})[1] is None
    assert probes("client.a", {"osd": "allow rw"})[0] == {"prefix": "get_command_descriptions"}


def test_parse_keyring() -> None:
    name, found = parse_keyring(
        Sensitive(f'[client.a]\n\tkey = {key(3).reveal()}\n\tcaps mon = "allow r"\n')
    )
    assert name == "client.a" and found == key(3)
    assert parse_keyring(Sensitive("[client.a]\nkey = x\n[client.b]\nkey = y\n")) == (None, None)
    assert parse_keyring(Sensitive("garbage")) == (None, None)
