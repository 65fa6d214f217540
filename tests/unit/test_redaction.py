"""The logging filter's second line of defence scrubs every key format vaultbridge handles."""

from __future__ import annotations

import base64
import logging
import struct

import pytest

from vaultbridge.ceph.cephx import make_cephx_key
from vaultbridge.observability.logging import RedactingFilter, redact


def aes256k_key(secret: bytes = b"k" * 32) -> str:
    """A key as Tentacle makes it: type 2 (AES256K), a 32-byte secret, 60 characters."""
    return base64.b64encode(struct.pack("<HIIH", 2, 1_764_000_000, 7, 32) + secret).decode()


AES = make_cephx_key(b"c" * 16, 1_764_000_000)
CASES = {
    "aes cephx key": AES,
    "aes256k cephx key": aes256k_key(),
    "vault token": "hvs.CAESIJ4gq1xQmZ3T0pLrS9fX2wYbN7eKd",
    "openbao token": "s.Zk2uB9Y4qWJr8TnPcV6mE1xA",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_secret_in_a_message_is_redacted(name: str) -> None:
    secret = CASES[name]
    text = redact(f"rotating with {secret} now; keyring: [client.app]\n\tkey = {secret}\n")
    assert secret not in text
    assert text.count("<redacted>") == 2


def test_the_key_formats_have_the_lengths_ceph_prints() -> None:
    assert len(AES) == 40 and AES.startswith("AQ")
    assert len(aes256k_key()) == 60 and aes256k_key().startswith("Ag")


def test_headers_keep_their_name_and_lose_their_value() -> None:
    assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer <redacted>"
    assert redact("{'X-Vault-Token': 'hvs.x'}") == "{'X-Vault-Token': '<redacted>'}"


def test_the_filter_rewrites_a_record_and_its_arguments() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "key %s", (aes256k_key(),), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "key <redacted>"
