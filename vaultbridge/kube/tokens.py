"""ServiceAccount tokens: TokenRequest (issue) and TokenReview (check)."""

from __future__ import annotations

from vaultbridge.kube.client import KubeClient
from vaultbridge.kube.errors import KubeError, Operation
from vaultbridge.model.sensitive import Sensitive


def request_token(
    client: KubeClient,
    namespace: str,
    service_account: str,
    audiences: list[str] | None = None,
    expiration_seconds: int = 3600,
) -> Sensitive:
    """A bound token for ``namespace/service_account`` (the API enforces >= 600 s)."""
    spec: dict[str, object] = {"expirationSeconds": int(expiration_seconds)}
    if audiences:
        spec["audiences"] = list(audiences)
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    op = Operation("create", "serviceaccounts/token", namespace, service_account)
    result = client.call(
        op,
        client.core().create_namespaced_service_account_token,
        service_account,
        namespace,
        body,
    )
    token = result.get("status", {}).get("token")
    if not token:
        raise KubeError(f"TokenRequest for {namespace}/{service_account} returned no token")
    return Sensitive(str(token))


def review_token(
    client: KubeClient, token: Sensitive | str, audiences: list[str] | None = None
) -> tuple[bool, str | None]:
    """``(authenticated, username)`` for ``token`` according to the API server."""
    raw = token.reveal() if isinstance(token, Sensitive) else token
    spec: dict[str, object] = {"token": raw}
    if audiences:
        spec["audiences"] = list(audiences)
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
    op = Operation("create", "tokenreviews")
    result = client.call(op, client.authentication().create_token_review, body, secrets=[raw])
    status = result.get("status", {})
    authenticated = bool(status.get("authenticated"))
    username = status.get("user", {}).get("username") if authenticated else None
    return authenticated, (str(username) if username else None)


class TokenClient:
    """:func:`request_token` and :func:`review_token` bound to one client."""

    def __init__(self, client: KubeClient) -> None:
        self.kube = client

    def request_token(
        self,
        namespace: str,
        service_account: str,
        audiences: list[str] | None = None,
        expiration_seconds: int = 3600,
    ) -> Sensitive:
        return request_token(self.kube, namespace, service_account, audiences, expiration_seconds)

    def review_token(
        self, token: Sensitive | str, audiences: list[str] | None = None
    ) -> tuple[bool, str | None]:
        return review_token(self.kube, token, audiences)
