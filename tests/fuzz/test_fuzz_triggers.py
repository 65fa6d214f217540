"""Webhook bodies and audit entries, as anyone who reaches the port may send them: an answer
(never an exception), nothing queued twice, and nothing of the body in a reply or a count."""

from __future__ import annotations

import json
from typing import Any

from fuzz_inputs import CANARY, json_values, keys
from hypothesis import given
from hypothesis import strategies as st

from vaultbridge.triggers.audit import AuditReceiver, kv_write
from vaultbridge.triggers.webhook import TriggerEndpoint

WEBHOOK_KEYS = keys("credential", "mount", "path", "version", "namespace", "name")
AUDIT_KEYS = keys(
    "type",
    "request",
    "response",
    "error",
    "operation",
    "path",
    "mount_type",
    "mount_point",
    "data",
    "auth",
    "headers",
    "id",
    "namespace",
    "remote_address",
)
PATHS = st.sampled_from(
    [
        "secret/data/ceph/a",
        "secret/metadata/ceph/a",
        "secret/delete/ceph/a",
        "secret/undelete/ceph/a",
        "secret/destroy/ceph/a",
        "sys/mounts",
        "",
    ]
)


def bodies(shaped: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200),
        shaped.map(lambda value: json.dumps(value).encode()),
        shaped.map(lambda value: json.dumps(value).encode()[:-3]),  # truncated
    )


@given(bodies(st.one_of(json_values(WEBHOOK_KEYS), st.dictionaries(WEBHOOK_KEYS, json_values()))))
def test_a_webhook_body_gets_an_answer_that_echoes_no_value(body: bytes) -> None:
    queued: list[str] = []
    endpoint: TriggerEndpoint[str] = TriggerEndpoint(
        lambda mount, path: ["ns/a"] if (mount, path) == ("secret", "ceph/a") else [],
        lambda namespace, name: f"{namespace}/{name}" if (namespace, name) == ("ns", "a") else None,
        lambda key, why: queued.append(key),
    )
    status, reply = endpoint.handle(body)
    assert status in (202, 400, 404, 413)
    assert CANARY not in json.dumps(reply)
    assert (status == 202) == bool(queued) and set(queued) <= {"ns/a"}


audit_entries = st.one_of(
    json_values(AUDIT_KEYS),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["response", "request", "x"]),
            "request": st.fixed_dictionaries(
                {
                    "operation": st.sampled_from(["create", "update", "delete", "read", "x"]),
                    "path": PATHS,
                },
                optional={
                    "mount_type": st.sampled_from(["kv", "kv-v2", "x"]),
                    "data": json_values(),
                    "headers": json_values(),
                },
            ),
        },
        optional={"error": json_values(), "response": json_values(AUDIT_KEYS)},
    ),
)


@given(audit_entries)
def test_kv_write_picks_a_mount_and_path_or_nothing(entry: Any) -> None:
    found = kv_write(entry)
    assert found is None or (isinstance(found, tuple) and all(isinstance(p, str) for p in found))


@given(st.lists(bodies(audit_entries), max_size=6))
def test_an_audit_stream_is_counted_and_queues_each_credential_once(lines: list[bytes]) -> None:
    queued: list[str] = []
    receiver: AuditReceiver[str] = AuditReceiver(
        lambda mount, path: ["ns/a"] if (mount, path) == ("secret", "ceph/a") else [],
        lambda key, why: queued.append(key),
        token=CANARY,
    )
    receiver.lines(b"\n".join(lines))
    counts = receiver.counts
    assert counts.queued + counts.unwatched + counts.ignored + counts.malformed == counts.entries
    assert CANARY not in repr(counts)
