"""Errors of the Kubernetes adapter, and the one place that translates client exceptions.

Messages name verbs, resources, namespaces and object names, never a Secret's data or a token.
``KubeUnavailable`` is the only transient error (retry with backoff); ``KubeConflict`` means
"re-read and try again"; the others need a change in the cluster, its RBAC or the resource.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NoReturn

import urllib3
from kubernetes.client.exceptions import ApiException, OpenApiException
from pydantic import ValidationError

from vaultbridge.model.errors import BackendError

MAX_MESSAGE = 1000


class KubeError(BackendError):
    backend = "kubernetes"
    """Base of every error raised by :mod:`vaultbridge.kube`."""

    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        verb: str = "",
        resource: str = "",
        namespace: str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.verb = verb
        self.resource = resource
        self.namespace = namespace
        self.name = name


class KubeNotFound(KubeError):  # noqa: N818 - contract names
    """404: the object (or its namespace, or the resource type) does not exist."""


class KubeConflict(KubeError):  # noqa: N818 - contract names
    """409: a stale resourceVersion on update, or the object exists already on create."""


class KubeForbidden(KubeError):  # noqa: N818 - contract names
    """403: RBAC does not allow the verb on the resource in the namespace."""


class KubeUnauthorized(KubeError):  # noqa: N818 - contract names
    """401: the credentials were rejected (expired or invalid token, unknown client cert)."""

    unusable = True


class KubeInvalid(KubeError):  # noqa: N818 - contract names
    """422 (or 400): the server rejected the object; the message is the server's explanation."""


class KubeUnavailable(KubeError):  # noqa: N818 - contract names
    """The API server cannot be reached or cannot serve now: refused, timed out, 5xx, 429."""

    transient = True


class KubeWatchExpired(KubeError):  # noqa: N818 - contract names
    """410 Gone: the resourceVersion a watch started from is too old. List again, then watch."""


class KubeOwnershipError(KubeError):
    """The Secret exists and is not controlled by this CredentialRotation (and adopt is off)."""

    def __init__(
        self,
        message: str,
        *,
        namespace: str,
        name: str,
        controller: str | None,
    ) -> None:
        super().__init__(message, verb="update", resource="secrets", namespace=namespace, name=name)
        self.controller = controller


@dataclass(frozen=True)
class Operation:
    """What was being done, for error messages: ``verb resource namespace/name``."""

    verb: str
    resource: str
    namespace: str | None = None
    name: str | None = None

    def describe(self) -> str:
        where = f" {self.name!r}" if self.name else ""
        scope = f" in namespace {self.namespace!r}" if self.namespace else ""
        return f"{self.verb} {self.resource}{where}{scope}"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value (plain and base64) replaced by ``<redacted>``."""
    for value in secrets:
        if len(value) < 4:  # too short to scrub without mangling the message; never echoed
            continue
        for form in {value, base64.b64encode(value.encode()).decode()}:
            text = text.replace(form, "<redacted>")
    return text


def _server_message(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body:
        try:
            status = json.loads(body)
        except ValueError:
            return ""
        if isinstance(status, dict) and isinstance(status.get("message"), str):
            return str(status["message"])
    return ""


def _strip(exc: BaseException) -> BaseException:
    """Remove response bodies and headers (which may echo a Secret) from a chained exception."""
    if isinstance(exc, ApiException):
        exc.body = None
        exc.data = None
        exc.headers = None
        return exc
    if isinstance(exc, ValidationError):
        # pydantic includes the offending input (maybe a Secret) in its text
        return TypeError("the kubernetes client rejected the request arguments")
    return exc


def translate(exc: BaseException, op: Operation, *, secrets: Iterable[str] = ()) -> KubeError:
    """The :class:`KubeError` for a kubernetes/urllib3 exception raised while doing ``op``.

    Strips the response body from ``exc`` (callers chain it: ``raise translate(...) from exc``).
    """
    secrets = list(secrets)

    def make(cls: type[KubeError], message: str, status: int | None = None) -> KubeError:
        return cls(
            message,
            status=status,
            verb=op.verb,
            resource=op.resource,
            namespace=op.namespace,
            name=op.name,
        )

    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        detail = scrub(_server_message(exc) or str(exc.reason or ""), secrets)[:MAX_MESSAGE]
        _strip(exc)
        what = op.describe()
        suffix = f": {detail}" if detail else ""
        if status == 404:
            return make(KubeNotFound, f"not found: {what}{suffix}", status)
        if status == 409:
            return make(KubeConflict, f"conflict: {what}{suffix}", status)
        if status == 403:
            return make(KubeForbidden, f"forbidden: cannot {what}{suffix}", status)
        if status == 401:
            return make(
                KubeUnauthorized, f"unauthorized: credentials rejected to {what}{suffix}", status
            )
        if status == 410:
            return make(KubeWatchExpired, f"expired: {what}{suffix}", status)
        if status in (400, 422):
            return make(KubeInvalid, f"invalid: {what}{suffix}", status)
        if status in {0, 429} or status >= 500:
            reason = "unreachable" if status == 0 else f"HTTP {status}"
            return make(
                KubeUnavailable, f"API server unavailable ({reason}) to {what}{suffix}", status
            )
        return make(KubeError, f"HTTP {status} to {what}{suffix}", status)
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError | TimeoutError):
        kind = type(exc).__name__
        return make(KubeUnavailable, f"API server unavailable ({kind}) to {op.describe()}")
    if isinstance(exc, ValidationError | OpenApiException | ValueError | TypeError):
        return make(KubeError, f"bad request to {op.describe()}: {type(exc).__name__}")
    return make(KubeError, f"{type(exc).__name__} while trying to {op.describe()}")


def raise_translated(exc: BaseException, op: Operation, *, secrets: Iterable[str] = ()) -> NoReturn:
    """Raise the translated error, chained to ``exc`` with its response body removed."""
    error = translate(exc, op, secrets=secrets)
    raise error from _strip(exc)


TRANSLATABLE: tuple[type[BaseException], ...] = (
    ApiException,
    OpenApiException,
    urllib3.exceptions.HTTPError,
    OSError,
    ValidationError,
    ValueError,
    TypeError,
)
"""Exceptions the kubernetes client raises for a failed request (catch these, then translate)."""
