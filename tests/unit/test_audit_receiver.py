"""The audit-device receiver (``triggers/audit.py``, ``triggers/audit_socket.py``): which
entries queue a credential, and bad input (not JSON, truncated streams, unwatched paths, a
flood, refused senders). The entries are shaped as OpenBao 2.7 sends them; the integration
test ``tests/integration/test_audit_trigger.py`` has a real OpenBao send them."""

from __future__ import annotations

import json
import socket
import time
import tracemalloc
from typing import Any

import pytest

from vaultbridge.triggers.audit import AuditReceiver, kv_write
from vaultbridge.triggers.audit_socket import AddressError, AuditSocket, parse_address
from vaultbridge.triggers.workqueue import WorkQueue

CANARY = "canary-audit-3f9a1c"


def entry(path: str, operation: str = "create", **extra: Any) -> dict[str, Any]:
    return {
        "type": "response",
        "auth": {"client_token": "hmac-sha256:abc"},
        "request": {
            "operation": operation,
            "mount_point": "secret/",
            "mount_type": "kv",
            "path": path,
            "data": {"data": {"value": CANARY}},
        },
        "response": {"data": {"version": 3}},
        **extra,
    }


@pytest.mark.parametrize(
    ("path", "operation"),
    [
        ("secret/data/app/db", "create"),
        ("secret/data/app/db", "update"),
        ("secret/data/app/db", "delete"),
        ("secret/delete/app/db", "update"),
        ("secret/undelete/app/db", "update"),
        ("secret/destroy/app/db", "update"),
        ("secret/metadata/app/db", "delete"),
    ],
)
def test_successful_kv_v2_writes_name_their_path(path: str, operation: str) -> None:
    assert kv_write(entry(path, operation)) == ("secret", "app/db")


@pytest.mark.parametrize(
    "bad",
    [
        entry("secret/data/app/db", "read"),
        entry("secret/metadata/app/db", "update"),  # labels: no new version
        entry("secret/data/app/db", error="permission denied"),
        {**entry("secret/data/app/db"), "type": "request"},
        entry("secret/data/", "create"),
        entry("sys/audit/x", "update"),
        {"type": "response", "request": "not a dict"},
        [],
        "text",
        None,
    ],
)
def test_other_entries_name_nothing(bad: Any) -> None:
    assert kv_write(bad) is None


def receiver(token: str | None = "tok") -> tuple[AuditReceiver[str], list[tuple[str, str]]]:
    queued: list[tuple[str, str]] = []
    watched = {("secret", "app/db"): ["ns/db"]}
    return (
        AuditReceiver(
            lambda m, p: watched.get((m, p), []), lambda k, t: queued.append((k, t)), token=token
        ),
        queued,
    )


def test_bad_input_is_counted_and_never_raises() -> None:
    audit, queued = receiver()
    good = json.dumps(entry("secret/data/app/db")).encode()
    stream = b"\n".join(
        [b"not json", b'{"truncated": ', good, json.dumps(entry("secret/data/other")).encode()]
    )
    assert audit.lines(stream) == 1
    assert queued == [("ns/db", "audit")]
    counts = audit.counts
    assert (counts.malformed, counts.queued, counts.unwatched) == (2, 1, 1)


def test_the_token_is_checked_in_either_header_form() -> None:
    audit, _ = receiver()
    assert audit.authorized("tok") and audit.authorized("Bearer tok")
    assert not audit.authorized("Bearer other") and not audit.authorized(None)
    assert not receiver(token=None)[0].authorized("tok")


def test_a_flood_queues_a_credential_once_while_it_is_in_flight() -> None:
    queue: WorkQueue[str] = WorkQueue()
    audit = AuditReceiver(
        lambda m, p: ["ns/db"] if p == "app/db" else [], lambda k, t: queue.add(k, "reconcile", t)
    )
    line = json.dumps(entry("secret/data/app/db")).encode()
    tracemalloc.start()
    began = time.monotonic()
    audit.lines(b"\n".join([line] * 10_000))
    seconds = time.monotonic() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    item = queue.get(timeout=0)
    assert item is not None and item.merged == 10_000
    assert queue.get(timeout=0) is None  # one item, in flight now
    audit.lines(b"\n".join([line] * 1_000))
    assert queue.get(timeout=0) is None  # waits as one merged item until done
    queue.done("ns/db")
    assert queue.get(timeout=0.1) is not None
    assert peak < 64 * 1024 * 1024, peak
    print(f"10,000 entries in {seconds * 1000:.0f} ms")


def test_addresses_are_checked() -> None:
    assert parse_address("tcp://127.0.0.1:9300") == ("tcp", ("127.0.0.1", 9300))
    assert parse_address("unix:///run/vb.sock") == ("unix", "/run/vb.sock")
    for bad in ("127.0.0.1:9300", "tcp://host", "unix://relative"):
        with pytest.raises(AddressError):
            parse_address(bad)


def _wait(check: Any) -> None:
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_the_socket_serves_allowed_peers_and_drops_a_truncated_tail(tmp_path: Any) -> None:
    audit, queued = receiver()
    rejected: list[str] = []
    for address in ("tcp://127.0.0.1:0", f"unix://{tmp_path}/audit.sock"):
        listener = AuditSocket(address, audit, rejected=rejected.append)
        listener.start()
        try:
            if listener.kind == "tcp":
                sock = socket.create_connection(("127.0.0.1", listener.port))
            else:
                sock = socket.socket(socket.AF_UNIX)
                sock.connect(str(listener.path))
            good = json.dumps(entry("secret/data/app/db")).encode()
            sock.sendall(b"garbage\n" + good + b"\n" + good[:40])
            sock.close()
            _wait(lambda: len(queued) == 1)
            queued.clear()
        finally:
            listener.stop()
    assert rejected == []


def test_a_peer_outside_the_allowed_networks_is_refused() -> None:
    audit, queued = receiver()
    rejected: list[str] = []
    listener = AuditSocket(
        "tcp://127.0.0.1:0", audit, peers=["10.9.9.0/24"], rejected=rejected.append
    )
    listener.start()
    try:
        sock = socket.create_connection(("127.0.0.1", listener.port))
        sock.sendall(json.dumps(entry("secret/data/app/db")).encode() + b"\n")
        _wait(lambda: rejected == ["peer"])
        sock.close()
    finally:
        listener.stop()
    assert queued == []


def test_an_over_long_line_is_dropped_up_to_its_newline() -> None:
    audit, queued = receiver()
    listener = AuditSocket("tcp://127.0.0.1:0", audit)
    listener.start()
    try:
        sock = socket.create_connection(("127.0.0.1", listener.port))
        good = json.dumps(entry("secret/data/app/db")).encode()
        sock.sendall(b"x" * (3 * 1024 * 1024) + b"\n" + good + b"\n")
        _wait(lambda: len(queued) == 1)
        sock.close()
    finally:
        listener.stop()
    assert audit.counts.malformed >= 1
