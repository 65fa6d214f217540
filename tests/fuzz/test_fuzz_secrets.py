"""What vaultbridge reads of Secrets and keyrings: a value or a typed answer, and a secret value
never in an error's text."""

from __future__ import annotations

import base64
from typing import Any

from fuzz_inputs import CANARY, json_values, keys
from hypothesis import given
from hypothesis import strategies as st

from vaultbridge.engine.cephx import parse_keyring
from vaultbridge.kube.secret_bodies import OwnedSecret, decode
from vaultbridge.model.sensitive import Sensitive

VALUE = "d4t4-CANARY-only-in-data"  # a Secret's value: never in a repr or an error
SECRET_KEYS = keys(
    "metadata",
    "data",
    "type",
    "name",
    "namespace",
    "uid",
    "labels",
    "annotations",
    "ownerReferences",
    "resourceVersion",
    "stringData",
)
encoded = st.one_of(
    st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
    st.just(base64.b64encode(VALUE.encode()).decode()),
    st.text(max_size=20),
)


@given(
    st.one_of(
        json_values(SECRET_KEYS),
        st.fixed_dictionaries(
            {"data": st.dictionaries(st.text(max_size=10), encoded, max_size=4)},
            optional={"metadata": json_values(SECRET_KEYS), "type": json_values()},
        ),
    )
)
def test_a_secret_decodes_or_fails_with_a_value_error_that_names_no_value(raw: Any) -> None:
    if not isinstance(raw, dict):
        return  # the API server answers objects; the client refuses anything else first
    try:
        secret = decode(raw)
    except ValueError as exc:
        assert VALUE not in str(exc)
        return
    assert isinstance(secret, OwnedSecret)
    assert VALUE not in repr(secret)  # values are Sensitive: never in a repr


keyring_lines = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "[client.a]",
                "[client.b]",
                "\tkey = " + CANARY,
                "caps mon = 'allow r'",
                "# comment",
                "",
                "key=",
                "[",
                "]",
                "[ ]",
            ]
        ),
        st.text(max_size=30),
    ),
    max_size=8,
)


@given(keyring_lines)
def test_a_keyring_gives_its_one_entity_or_nothing(lines: list[str]) -> None:
    name, key = parse_keyring(Sensitive("\n".join(lines)))
    assert name is None or isinstance(name, str)
    assert key is None or isinstance(key, Sensitive)
    if key is not None:
        assert CANARY not in repr(key)
