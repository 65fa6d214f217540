"""The Ceph adapter: the only package in vaultbridge that imports ``rados`` (python3-rados).

It talks to the monitors only (no OSD I/O): the mon configuration database (``config``), the
config-key store (``config-key``) and the cephx auth database (``auth``). Every call goes through
one long-lived :class:`CephConnection` with its own wall-clock deadline; every rados failure is
translated at this boundary into :class:`CephError` subclasses that say what failed and where and
never carry a secret. Credential values travel as :class:`~vaultbridge.model.sensitive.Sensitive`
and are revealed only when handed to librados.
"""

from vaultbridge.ceph.cephx import (
    CephxAuth,
    Entity,
    cephx_key_is_valid,
    cephx_key_type,
    keyring_text,
    make_cephx_key,
)
from vaultbridge.ceph.config import ConfigStore
from vaultbridge.ceph.configkey import ConfigKeyStore
from vaultbridge.ceph.connection import CephConnection
from vaultbridge.ceph.errors import (
    CephError,
    CephIdentityMismatch,
    CephPermissionDenied,
    CephRejected,
    CephUnavailable,
)
from vaultbridge.ceph.release import read_mon_release

__all__ = [
    "CephConnection",
    "CephError",
    "CephIdentityMismatch",
    "CephPermissionDenied",
    "CephRejected",
    "CephUnavailable",
    "CephxAuth",
    "ConfigKeyStore",
    "ConfigStore",
    "Entity",
    "cephx_key_is_valid",
    "cephx_key_type",
    "keyring_text",
    "make_cephx_key",
    "read_mon_release",
]
