"""Errors raised by the Ceph adapter.

Each says what was attempted and where (command prefix, who/option, entity, mon) and never
contains a credential value or a command's input buffer. The class tells the caller what to do:
:class:`CephUnavailable` is transient (retry with backoff), :class:`CephRejected` and
:class:`CephPermissionDenied` are permanent until someone changes the request or the caps.
"""

from __future__ import annotations

import errno as _errno

from vaultbridge.model.errors import BackendError

__all__ = [
    "CephError",
    "CephIdentityMismatch",
    "CephPermissionDenied",
    "CephRejected",
    "CephUnavailable",
    "error_for_errno",
]


class CephError(BackendError):
    backend = "ceph"
    """Base class. ``errno`` is the positive errno Ceph answered with, when there was one."""

    transient = False

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno

    def __str__(self) -> str:
        return self.message


class CephUnavailable(CephError):  # noqa: N818 - public name
    """No answer in time, no quorum, connection refused or lost: retry later."""

    transient = True


class CephRejected(CephError):  # noqa: N818 - public name
    """The mons refused the command (EINVAL, ENOENT, EEXIST, ...): retrying will not help."""


class CephPermissionDenied(CephError):  # noqa: N818 - public name
    """Authentication failed or the caps do not allow the command (EACCES, EPERM)."""


class CephIdentityMismatch(CephRejected):
    """The mons answered with another fsid than the cluster's objects name: nothing is sent."""


_TRANSIENT = frozenset(
    {
        _errno.ETIMEDOUT,
        _errno.EAGAIN,
        _errno.EINTR,
        _errno.ENOTCONN,
        _errno.ECONNREFUSED,
        _errno.ECONNRESET,
        _errno.ECONNABORTED,
        _errno.ESHUTDOWN,
        _errno.EHOSTUNREACH,
        _errno.ENETUNREACH,
        _errno.EIO,
        _errno.EBUSY,
    }
)
_DENIED = frozenset({_errno.EACCES, _errno.EPERM})


def errno_name(code: int) -> str:
    return _errno.errorcode.get(abs(code), f"errno {abs(code)}")


def error_for_errno(code: int, message: str) -> CephError:
    """The right :class:`CephError` subclass for a (positive or negative) errno."""
    code = abs(code)
    if code in _DENIED:
        return CephPermissionDenied(message, errno=code)
    if code in _TRANSIENT:
        return CephUnavailable(message, errno=code)
    return CephRejected(message, errno=code)
