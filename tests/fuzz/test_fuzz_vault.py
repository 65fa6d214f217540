"""Vault's answers to the KV v2 reads, as a misbehaving server or proxy may send them: a value
or a VaultError, never another exception, and no value in the error's text. The client is
replaced by one that returns the fuzzed body (the reader's parsing is what is under test; the
integration tests read a real OpenBao)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
from fuzz_inputs import CANARY, json_values, keys
from hypothesis import given
from hypothesis import strategies as st

from vaultbridge.vault.client import VaultClient
from vaultbridge.vault.errors import VaultError
from vaultbridge.vault.kv import KvMetadata, KvV2Source, SecretVersion

KV_KEYS = keys(
    "data",
    "metadata",
    "version",
    "created_time",
    "deletion_time",
    "destroyed",
    "custom_metadata",
    "versions",
    "current_version",
    "oldest_version",
    "updated_time",
    "max_versions",
    "cas_required",
)
times = st.sampled_from(["2026-12-07T04:48:33.123456789Z", "", "yesterday", "0001-01-01T00:00:00Z"])
versions = st.one_of(st.integers(-3, 2**40), st.text(max_size=4), st.none(), st.just([1]))
shaped = st.fixed_dictionaries(
    {
        "data": st.fixed_dictionaries(
            {
                "data": st.one_of(
                    st.dictionaries(st.text(max_size=6), st.just(CANARY)), json_values()
                ),
                "metadata": st.one_of(
                    json_values(KV_KEYS),
                    st.fixed_dictionaries(
                        {"version": versions},
                        optional={
                            "created_time": times,
                            "deletion_time": times,
                            "destroyed": json_values(),
                            "custom_metadata": json_values(),
                        },
                    ),
                ),
            },
            optional={
                "versions": st.one_of(
                    json_values(), st.dictionaries(st.text(max_size=3), json_values(KV_KEYS))
                ),
                "current_version": versions,
                "oldest_version": versions,
                "updated_time": times,
                "custom_metadata": json_values(),
            },
        )
    },
)


class Answers:
    """Stands in for VaultClient: every request answers ``body``."""

    def __init__(self, body: Any) -> None:
        self.body = body

    def request(self, method: str, url: str, **_: Any) -> Any:
        return self.body

    def call(self, fn: Callable[[Any], Any], **_: Any) -> Any:
        return fn(None)


def source(body: Any) -> KvV2Source:
    return KvV2Source(cast(VaultClient, Answers(body)))


@pytest.mark.parametrize(
    ("read", "kind"),
    [
        (lambda kv: kv.read("secret", "ceph/a"), SecretVersion),
        (lambda kv: kv.metadata("secret", "ceph/a"), KvMetadata),
    ],
    ids=["data", "metadata"],
)
@given(body=st.one_of(shaped, json_values(KV_KEYS)))
def test_a_kv_read_gives_its_answer_or_a_vault_error(
    read: Callable[[KvV2Source], Any], kind: type, body: Any
) -> None:
    try:
        answer = read(source(body))
    except VaultError as exc:
        assert CANARY not in str(exc)
        return
    assert isinstance(answer, kind)
    # values are Sensitive (custom metadata, Vault's labels, is not a secret)
    assert CANARY not in repr(getattr(answer, "data", {}))
