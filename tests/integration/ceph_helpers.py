"""Helpers for the Ceph integration tests (real mons from vaultbridge.testenv.ceph)."""

from __future__ import annotations

import os
import time
import traceback

from vaultbridge.ceph import CephConnection, make_cephx_key
from vaultbridge.model.sensitive import Sensitive
from vaultbridge.testenv.ceph import CephCluster
from vaultbridge.testenv.releases import INSIDE


def admin(cluster: CephCluster, timeout: float = 5.0) -> CephConnection:
    return CephConnection(str(cluster.conf), cluster.user, str(cluster.admin_keyring), timeout)


def new_key() -> Sensitive:
    """A key of the type the cluster under test prefers: AES256K on Tentacle, AES before."""
    if int(os.environ.get(INSIDE) or 16) >= 20:
        return Sensitive(make_cephx_key(os.urandom(32), int(time.time()), "aes256k"))
    return Sensitive(make_cephx_key(os.urandom(16), int(time.time())))


def exception_texts(exc: BaseException) -> list[str]:
    """str, repr, notes and the formatted traceback of ``exc`` and every cause/context."""
    texts: list[str] = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), *getattr(current, "__notes__", [])]
        current = current.__cause__ or current.__context__
    return texts


def assert_no_secret(exc: BaseException, *secrets: str) -> None:
    for text in exception_texts(exc):
        for secret in secrets:
            assert secret not in text, f"secret leaked into exception text: {text!r}"
