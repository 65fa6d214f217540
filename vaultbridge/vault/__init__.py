"""Vault / OpenBao adapter: the only package that imports hvac.

Everything vaultbridge needs from Vault goes through here: authentication (static token,
Kubernetes ServiceAccount, AppRole, Vault Agent token sink), the KV v2 source (versions, cheap
metadata polling, check-and-set writes), the staging labels kept in KV v2 custom metadata,
random bytes for generated credentials, and capability prechecks.

Rules kept by this package:

- every credential value read from Vault is wrapped in
  :class:`~vaultbridge.model.sensitive.Sensitive` at once, and values handed to Vault
  are revealed only inside the request;
- hvac and requests exceptions are translated at the boundary into :mod:`vaultbridge.vault.errors`
  (``raise ... from exc``); messages name mounts, paths, fields and versions, never values,
  and response bodies are stripped from the chained hvac exception.
"""

from vaultbridge.vault.auth import (
    AgentAuthenticator,
    AppRoleAuthenticator,
    Authenticator,
    KubernetesAuthenticator,
    TokenAuthenticator,
    make_authenticator,
)
from vaultbridge.vault.client import VaultClient
from vaultbridge.vault.errors import (
    VaultAuthError,
    VaultConfigError,
    VaultConflict,
    VaultError,
    VaultNotFound,
    VaultPermissionDenied,
    VaultUnavailable,
)
from vaultbridge.vault.kv import (
    LABEL_CURRENT,
    LABEL_PENDING,
    LABEL_PREVIOUS,
    KvMetadata,
    KvV2Source,
    KvVersionInfo,
    SecretVersion,
    StagingLabels,
)

__all__ = [
    "LABEL_CURRENT",
    "LABEL_PENDING",
    "LABEL_PREVIOUS",
    "AgentAuthenticator",
    "AppRoleAuthenticator",
    "Authenticator",
    "KubernetesAuthenticator",
    "KvMetadata",
    "KvV2Source",
    "KvVersionInfo",
    "SecretVersion",
    "StagingLabels",
    "TokenAuthenticator",
    "VaultAuthError",
    "VaultClient",
    "VaultConfigError",
    "VaultConflict",
    "VaultError",
    "VaultNotFound",
    "VaultPermissionDenied",
    "VaultUnavailable",
    "make_authenticator",
]
