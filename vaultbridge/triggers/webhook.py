"""``POST /v1/trigger``: authenticate, validate and queue, as plain logic (no HTTP server here).

Authentication is a bearer token: the configured shared token (compared in constant time) or a
Kubernetes ServiceAccount token, checked with a TokenReview (``review(token)`` returns
``(authenticated, username)``; positive answers are cached briefly under a hash of the token).
Answers are ``(status, json_body)``: 202 with the credentials queued, or 400/401/403/404/413/503
with a message. A token or a request body never appears in a message or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

MAX_BODY = 64 * 1024
REVIEW_CACHE_SECONDS = 60.0
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"

Reply = tuple[int, dict[str, Any]]
EXPECTED = (
    'expected a JSON object {"mount": "<kv mount>", "path": "<path>"} or {"credential": "NS/NAME"}'
)


class Rejected(Exception):  # noqa: N818 - reads better at the raise site
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Authorizer:
    """Who may call the trigger endpoints."""

    shared_token: str | None
    review: Callable[[str], tuple[bool, str | None]] | None = None
    allowed_subjects: tuple[str, ...] = ()
    """ServiceAccount usernames allowed (``system:serviceaccount:NS:NAME``); empty: any SA."""

    def __post_init__(self) -> None:
        self._cache: dict[bytes, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def _review(self, token: str) -> tuple[bool, str | None]:
        assert self.review is not None
        try:
            return self.review(token)
        except Exception as exc:
            if getattr(exc, "transient", True) is False:
                # forbidden or unauthorized: asking again will not help, so the token is
                # refused rather than answered with a "retry" (rbac.tokenReview in the chart)
                log.warning("TokenReview refused (%s): token rejected", type(exc).__name__)
                raise Rejected(401, "invalid token") from None
            log.warning("TokenReview failed: %s", type(exc).__name__)
            raise Rejected(503, "cannot check the token right now (TokenReview failed)") from None

    def check(self, authorization: str | None) -> str:
        """The caller's identity, or :class:`Rejected` (401/403/503)."""
        if not authorization:
            raise Rejected(401, "missing Authorization: Bearer <token> header")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Rejected(401, "the Authorization header must be 'Bearer <token>'")
        if self.shared_token and hmac.compare_digest(
            token.encode("utf-8", "replace"), self.shared_token.encode()
        ):
            return "shared-token"
        if self.review is None:
            raise Rejected(401, "invalid token")
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            username: str | None = cached[1]
        else:
            authenticated, username = self._review(token)
            if not authenticated or not username:
                raise Rejected(401, "invalid token")
            with self._lock:
                if len(self._cache) > 1000:
                    self._cache.clear()
                self._cache[digest] = (now + REVIEW_CACHE_SECONDS, username)
        assert username is not None
        if self.allowed_subjects:
            if username not in self.allowed_subjects:
                raise Rejected(403, f"{username} is not allowed to trigger rotations")
        elif not username.startswith(SERVICE_ACCOUNT_PREFIX):
            raise Rejected(
                403, f"{username} is not a ServiceAccount; only ServiceAccounts may trigger"
            )
        return username


class TriggerEndpoint(Generic[K]):
    """Turns a request body into queued credentials."""

    def __init__(
        self,
        by_path: Callable[[str, str], Iterable[K]],
        by_name: Callable[[str, str], K | None],
        queue: Callable[[K, str], None],
        *,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.by_path = by_path
        self.by_name = by_name
        self.queue = queue
        self.ready = ready

    def handle(self, body: bytes, trigger: str = "webhook") -> Reply:
        if not self.ready():  # a standby knows no credentials: say so rather than 404
            return 503, {"error": "not the leader; send triggers to the leader (or retry)"}
        try:
            keys = self.resolve(body)
        except Rejected as exc:
            return exc.status, {"error": exc.message}
        for key in keys:
            self.queue(key, trigger)
        return 202, {"queued": [str(key) for key in keys]}

    def resolve(self, body: bytes) -> list[K]:
        if len(body) > MAX_BODY:
            raise Rejected(413, f"request body larger than {MAX_BODY} bytes")
        try:
            data = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError):
            raise Rejected(400, "request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise Rejected(
                400,
                EXPECTED,
            )
        unknown = sorted(set(data) - {"mount", "path", "credential"})
        if unknown:
            raise Rejected(400, f"unknown field(s): {', '.join(map(repr, unknown[:5]))}")
        if "credential" in data:
            if "mount" in data or "path" in data:
                raise Rejected(400, "name either a credential or a mount/path, not both")
            name = data["credential"]
            if not isinstance(name, str):
                raise Rejected(400, "credential must be a string NS/NAME")
            namespace, sep, short = name.partition("/")
            if not sep or not namespace or not short or "/" in short or len(name) > 320:
                raise Rejected(400, "credential must look like NAMESPACE/NAME")
            key = self.by_name(namespace, short)
            if key is None:
                raise Rejected(404, f"no CredentialRotation {namespace}/{short} is watched here")
            return [key]
        mount, path = data.get("mount"), data.get("path")
        if not isinstance(mount, str) or not isinstance(path, str) or not mount or not path:
            raise Rejected(
                400,
                EXPECTED,
            )
        if len(mount) + len(path) > 1024:
            raise Rejected(400, "mount/path too long")
        keys = list(self.by_path(mount.strip("/"), path.strip("/")))
        if not keys:
            shown = f"{mount.strip('/')}/{path.strip('/')}"
            raise Rejected(404, f"no CredentialRotation reads Vault path {shown!r}")
        return keys
