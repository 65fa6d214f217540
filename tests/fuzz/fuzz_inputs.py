"""Strategies for what vaultbridge reads from outside: any JSON, and JSON shaped like the
objects each parser expects (their keys, wrong types under them). ``CANARY`` stands for a
secret value wherever one may appear."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

CANARY = "s3cr3t-CANARY-7f1e"

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.just(CANARY),
    st.sampled_from(["", "1", "-1", "2026-12-07T04:48:33Z", "abc", "secret", "a/b", "ns/name"]),
)


def json_values(keys: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Any]:
    """Any JSON value; with ``keys``, objects mostly use those keys."""
    key_strategy = st.text(max_size=12) if keys is None else st.one_of(keys, st.text(max_size=8))
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(key_strategy, children, max_size=6),
        ),
        max_leaves=40,
    )


def keys(*names: str) -> st.SearchStrategy[str]:
    return st.sampled_from(names)
