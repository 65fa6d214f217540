"""The error vocabulary every adapter translates its library's exceptions into.

The engine only needs to know three things about a failure: which backend, a CamelCase reason
for conditions and Events, and whether trying again later can help. Messages say what and where
and never hold a credential value.
"""

from __future__ import annotations


class BackendError(Exception):
    """A Vault, Kubernetes or Ceph request failed.

    ``transient`` is True when the same request may succeed later (timeouts, no quorum, 5xx);
    False for configuration or permission problems that need a human. ``unusable`` is True when
    no request to the backend can succeed (our own login or credentials were refused), as
    opposed to a problem of one credential's spec: readiness reports the backend as failing.
    """

    backend = "backend"
    transient = True
    unusable = False

    @property
    def reason(self) -> str:
        """CamelCase, for conditions and Events: the class name (VaultNotFound, CephRejected)."""
        return type(self).__name__


class PreconditionError(Exception):
    """The credential's spec and the world disagree before anything was changed."""

    def __init__(self, reason: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.transient = transient


class PromotionUnknown(BackendError):  # noqa: N818 - reads as the condition it reports
    """The Secret write of a promotion failed without saying whether it landed, and reading
    the Secret back failed too. Rolling Ceph back could leave the Secret holding a credential
    Ceph no longer accepts, so the rotation stays where it is (verified) and a later attempt
    promotes again."""

    transient = True


class ConcurrentRotation(BackendError):  # noqa: N818 - reads as the condition it reports
    """Another process changed the credential between our read and our claim of a rotation."""

    transient = True
