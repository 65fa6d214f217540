"""Errors of the Vault adapter. Messages name mounts, paths, fields, versions and auth methods,
never a secret value, token, JWT or secret_id.

``VaultUnavailable`` is the only transient one (retry with backoff); the others need a change
in Vault, in its policies or in vaultbridge's settings.
"""

from __future__ import annotations

from vaultbridge.model.errors import BackendError


class VaultError(BackendError):
    backend = "vault"
    """Base of every error raised by :mod:`vaultbridge.vault`."""

    transient: bool = False


class VaultNotFound(VaultError):  # noqa: N818 - contract names
    """A mount, path, version or field does not exist (or the version is deleted/destroyed)."""


class VaultPermissionDenied(VaultError):  # noqa: N818 - contract names
    """Vault answered 403 for a valid token: its policies do not allow this operation."""

    def __init__(self, message: str, *, path: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.operation = operation


class VaultUnavailable(VaultError):  # noqa: N818 - contract names
    """Vault cannot be reached or cannot serve now: refused, timed out, 5xx, sealed, 429."""

    transient = True


class VaultAuthError(VaultError):
    """Logging in failed, or Vault rejected the token (invalid, expired, revoked)."""

    unusable = True

    def __init__(self, message: str, *, method: str = "", role: str | None = None) -> None:
        super().__init__(message)
        self.method = method
        self.role = role


class VaultConflict(VaultError):  # noqa: N818 - contract names
    """A check-and-set write lost: the secret has a newer version than the one expected."""


class VaultConfigError(VaultError):
    """The adapter's settings are incomplete or contradictory (found before any request)."""
