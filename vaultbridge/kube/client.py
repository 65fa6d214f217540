"""One configured connection to the Kubernetes API: the ``ApiClient`` every adapter shares."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import RESTResponse
from kubernetes.config.config_exception import ConfigException

from vaultbridge.kube.breaker import ConnectionBreaker
from vaultbridge.kube.errors import TRANSLATABLE, KubeError, Operation, raise_translated

DEFAULT_TIMEOUT = 10.0
"""Seconds for one ordinary request (connect + read). Watches use their own, longer, timeouts."""


def _configuration() -> Any:
    """A client configuration with one immediate retry of a failed connection (a keep-alive
    connection the server closed), not urllib3's three: when the API server is down, each of
    our requests would otherwise cost four connection attempts, on top of our own backoff."""
    configuration = k8s.Configuration()
    configuration.retries = 1
    return configuration


class KubeClient:
    """Holds one :class:`kubernetes.client.ApiClient` and the per-request timeout.

    Build it with :meth:`from_settings` (kubeconfig path, else ``KUBECONFIG``, else in-cluster),
    :meth:`from_kubeconfig` or :meth:`from_token`. The typed API objects are created lazily and
    share the one connection pool.
    """

    def __init__(self, api_client: Any, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.api_client = api_client
        self.timeout = timeout
        self._dynamic: Any = None
        self._discovery_dir: str | None = None
        self.breaker = ConnectionBreaker()

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_settings(
        cls, kubeconfig: str | os.PathLike[str] | None = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> KubeClient:
        """``kubeconfig`` if given, else the ``KUBECONFIG`` variable, else in-cluster config."""
        path = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG") or None
        if path:
            # KUBECONFIG may list several files; the first one that exists wins
            candidates = [p for p in path.split(os.pathsep) if p]
            existing = [p for p in candidates if Path(p).exists()]
            if not existing:
                raise KubeError(f"kubeconfig not found: {', '.join(candidates)}")
            return cls.from_kubeconfig(existing[0], timeout=timeout)
        configuration = _configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException as exc:
            raise KubeError(
                "no Kubernetes configuration: set VAULTBRIDGE_KUBE__KUBECONFIG or KUBECONFIG, "
                f"or run in a pod with a ServiceAccount ({exc})"
            ) from exc
        return cls(k8s.ApiClient(configuration), timeout=timeout)

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | os.PathLike[str],
        *,
        context: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> KubeClient:
        configuration = _configuration()
        try:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(path),
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        except (ConfigException, OSError, ValueError) as exc:
            raise KubeError(f"cannot load kubeconfig {str(path)!r}: {exc}") from exc
        return cls(k8s.ApiClient(configuration), timeout=timeout)

    @classmethod
    def from_token(
        cls,
        server: str,
        token: Any,
        *,
        ca_cert: str | os.PathLike[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> KubeClient:
        """A client authenticating with a bearer token (``str`` or ``Sensitive``)."""
        configuration = _configuration()
        configuration.host = server
        raw = token.reveal() if hasattr(token, "reveal") else str(token)
        configuration.api_key = {"BearerToken": raw}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        if ca_cert is not None:
            configuration.ssl_ca_cert = str(ca_cert)
        return cls(k8s.ApiClient(configuration), timeout=timeout)

    # -- typed APIs -------------------------------------------------------------------------

    @property
    def server(self) -> str:
        return str(self.api_client.configuration.host)

    def core(self) -> Any:
        return k8s.CoreV1Api(self.api_client)

    def custom(self) -> Any:
        return k8s.CustomObjectsApi(self.api_client)

    def apiextensions(self) -> Any:
        return k8s.ApiextensionsV1Api(self.api_client)

    def coordination(self) -> Any:
        return k8s.CoordinationV1Api(self.api_client)

    def events(self) -> Any:
        return k8s.EventsV1Api(self.api_client)

    def authentication(self) -> Any:
        return k8s.AuthenticationV1Api(self.api_client)

    def authorization(self) -> Any:
        return k8s.AuthorizationV1Api(self.api_client)

    def dynamic(self) -> Any:
        """The dynamic client (API discovery on first use), for objects of any kind."""
        if self._dynamic is None:
            from kubernetes.dynamic import DynamicClient

            # a private discovery cache: the default one is a predictable file in /tmp
            self._discovery_dir = tempfile.mkdtemp(prefix="vaultbridge-discovery-")
            cache = os.path.join(self._discovery_dir, "discovery.json")
            self._dynamic = DynamicClient(self.api_client, cache_file=cache)  # type: ignore[no-untyped-call]
        return self._dynamic

    def call(
        self,
        op: Operation,
        method: Callable[..., Any],
        *args: Any,
        secrets: Iterable[str] = (),
        timeout: float | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Run one typed-API ``method`` and return the response as plain JSON (camelCase keys).

        Every failure becomes a :class:`~vaultbridge.kube.errors.KubeError` (``secrets`` are
        scrubbed from its message; the chained client exception loses its response body).
        """
        try:
            response = method(
                *args,
                _preload_content=False,
                _request_timeout=timeout if timeout is not None else self.timeout,
                **kwargs,
            )
            try:
                raw = response.data
            finally:
                response.release_conn()
            decoded = json.loads(raw) if raw else {}
        except TRANSLATABLE as exc:
            raise_translated(exc, op, secrets=secrets)
        if not isinstance(decoded, dict):
            raise KubeError(f"unexpected response to {op.describe()}")
        return decoded

    def request(
        self,
        op: Operation,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        secrets: Iterable[str] = (),
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One JSON request to ``path`` (e.g. ``/api/v1/namespaces/ns/secrets/name``).

        The hot path of a rotation (the CR, its Secret, Events) and of the watches: it skips
        the typed API's argument validation and model serialisation, which cost more CPU than
        the request itself (and ~0.5 s on a method's first use), but uses the same connection
        pool, TLS settings and credentials (including a refreshed in-cluster token). Errors
        are translated exactly as :meth:`call` does.
        """
        seconds = timeout if timeout is not None else self.timeout
        try:
            response = self._send(
                method, path, body, query, content_type, urllib3.Timeout(total=seconds), True
            )
            decoded = json.loads(response.data) if response.data else {}
        except TRANSLATABLE as exc:
            raise_translated(exc, op, secrets=secrets)
        if not isinstance(decoded, dict):
            raise KubeError(f"unexpected response to {op.describe()}")
        return decoded

    def open_stream(
        self, op: Operation, path: str, query: Mapping[str, Any], *, read_timeout: float
    ) -> Any:
        """A GET whose body is read as it arrives (a watch); the caller closes the response."""
        try:
            timeout = urllib3.Timeout(connect=self.timeout, read=read_timeout)
            return self._send("GET", path, None, query, "", timeout, False)
        except TRANSLATABLE as exc:
            raise_translated(exc, op)

    def _send(  # noqa: PLR0917
        self,
        method: str,
        path: str,
        body: Any,
        query: Mapping[str, Any] | None,
        content_type: str,
        timeout: urllib3.Timeout,
        preload: bool,
    ) -> Any:
        headers = {"Accept": "application/json", **self.api_client.default_headers}
        if body is not None:
            headers["Content-Type"] = content_type
        self.api_client.update_params_for_auth(headers, [], ["BearerToken"], path, method, body)
        url = self.api_client.configuration.host + path
        if query:
            url += "?" + urlencode(
                {k: str(v).lower() if isinstance(v, bool) else v for k, v in query.items()}
            )
        self.breaker.before()
        try:
            response = self.api_client.rest_client.pool_manager.request(
                method,
                url,
                body=None if body is None else json.dumps(body).encode(),
                headers=headers,
                timeout=timeout,
                preload_content=preload,
            )
        except (urllib3.exceptions.MaxRetryError, urllib3.exceptions.ProtocolError, OSError):
            self.breaker.failed()
            raise
        self.breaker.answered()
        if not 200 <= response.status <= 299:
            data = response.data  # reads the error body of a stream too
            wrapped = RESTResponse(response)
            wrapped.data = data
            ApiException.from_response(
                http_resp=wrapped, body=data.decode("utf-8", "replace"), data=None
            )
        return response

    def close(self) -> None:
        self.api_client.close()
        if self._discovery_dir is not None:
            import shutil

            shutil.rmtree(self._discovery_dir, ignore_errors=True)
            self._discovery_dir = None

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
