"""cephx key formats: AES (``AQ...``, Pacific onwards) and AES256K (``Ag...``, Tentacle)."""

from __future__ import annotations

import base64
import struct

import pytest

from vaultbridge.ceph.cephx import cephx_key_is_valid, cephx_key_type, make_cephx_key


def test_an_aes_key_is_40_characters_and_valid() -> None:
    key = make_cephx_key(b"\x01" * 16, 1_764_000_000)
    assert len(key) == 40 and key.startswith("AQ")
    assert cephx_key_type(key) == "aes" and cephx_key_is_valid(key)


def test_an_aes256k_key_is_60_characters_and_valid() -> None:
    key = make_cephx_key(b"\x02" * 32, 1_764_000_000, "aes256k")
    assert len(key) == 60 and key.startswith("Ag")
    assert cephx_key_type(key) == "aes256k" and cephx_key_is_valid(key)


@pytest.mark.parametrize(
    ("key_type", "length"), [("aes", 32), ("aes256k", 16), ("aes", 15), ("rot13", 16)]
)
def test_a_secret_of_the_wrong_length_or_type_is_refused(key_type: str, length: int) -> None:
    with pytest.raises(ValueError):
        make_cephx_key(b"\x03" * length, 0, key_type)


@pytest.mark.parametrize(
    "blob",
    [
        struct.pack("<HIIH", 1, 0, 0, 32) + b"x" * 32,  # AES type with a 32-byte secret
        struct.pack("<HIIH", 2, 0, 0, 16) + b"x" * 16,  # AES256K type with a 16-byte secret
        struct.pack("<HIIH", 3, 0, 0, 16) + b"x" * 16,  # unknown type
        struct.pack("<HIIH", 1, 0, 0, 16) + b"x" * 15,  # truncated
        b"short",
    ],
)
def test_malformed_blobs_are_not_keys(blob: bytes) -> None:
    assert cephx_key_type(base64.b64encode(blob).decode()) is None


def test_text_that_is_not_base64_is_not_a_key() -> None:
    assert cephx_key_type("not a key!") is None
    assert cephx_key_type("ÄQ" * 20) is None
