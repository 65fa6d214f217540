"""Adapters: the concrete clients of ``vaultbridge.vault``, ``vaultbridge.kube`` and
``vaultbridge.ceph`` shaped to the engine's ports (``vaultbridge.engine.ports``).

The engine knows only its ports; each client package knows only its own server. This layer
is the one place where the two meet, one module per backend, so that neither side depends on
the other and ``vaultbridge.app`` only has to pick which ones to wire together.
"""

from vaultbridge.adapters.ceph import CephListings, CephMon, CephxMon
from vaultbridge.adapters.kube import KubeCredentials, KubeEvents, KubeSecrets, credential_from
from vaultbridge.adapters.vault import VaultKv

__all__ = [
    "CephListings",
    "CephMon",
    "CephxMon",
    "KubeCredentials",
    "KubeEvents",
    "KubeSecrets",
    "VaultKv",
    "credential_from",
]
