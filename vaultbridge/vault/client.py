"""One hvac client (one keep-alive HTTP session) with authentication and error translation.

Every request to Vault goes through :meth:`VaultClient.call`, which

1. lets the authenticator renew or replace its token when the lease is nearly used up,
2. runs the hvac call with the current token,
3. on 403 asks Vault whether the token itself is still valid (``auth/token/lookup-self``): a
   valid token means a policy denial (:class:`VaultPermissionDenied`, naming the path); an
   invalid one is dropped, the authenticator logs in again (or re-reads the agent sink) and the
   request is retried once; a token that stays invalid gives :class:`VaultAuthError`,
4. translates every other hvac/requests exception into :mod:`vaultbridge.vault.errors`,
   stripping response bodies and request objects from the chained original first.

The KV requests of a rotation go out through :meth:`VaultClient.request`, a lean path on
urllib3 (which ``requests`` uses underneath) that raises the same exceptions as hvac's
adapter: ``requests`` and hvac's adapter cost about twice the CPU of the request itself
(~0.75 ms against ~0.3 ms per request here), and the Vault read is on a rotation's critical
path. Authentication and the rarer calls keep using hvac.
"""

from __future__ import annotations

import json as _json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import hvac
import hvac.exceptions as hvac_exc
import hvac.utils as hvac_utils
import requests
import urllib3

from vaultbridge.model.sensitive import REDACTED, Sensitive
from vaultbridge.vault.auth import Authenticator, LoginResult
from vaultbridge.vault.errors import (
    VaultAuthError,
    VaultConfigError,
    VaultConflict,
    VaultError,
    VaultNotFound,
    VaultPermissionDenied,
    VaultUnavailable,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_TRANSIENT_HVAC = (
    hvac_exc.InternalServerError,
    hvac_exc.VaultDown,
    hvac_exc.BadGateway,
    hvac_exc.RateLimitExceeded,
    hvac_exc.VaultNotInitialized,
    hvac_exc.PreconditionFailed,
    hvac_exc.UnexpectedError,
)


class VaultClient:
    """A Vault/OpenBao client for one address and one authenticator. Thread-safe (serialised)."""

    def __init__(
        self,
        addr: str,
        authenticator: Authenticator,
        cacert: Path | str | None = None,
        timeout: float = 5.0,
        namespace: str | None = None,
    ) -> None:
        if not addr.startswith(("http://", "https://")):
            raise VaultConfigError(f"Vault address must start with http:// or https://: {addr!r}")
        self.addr = addr.rstrip("/")
        self.timeout = timeout
        self.namespace = namespace
        self._auth = authenticator
        self._lock = threading.RLock()
        verify: bool | str = True
        if cacert is not None:
            if not Path(cacert).is_file():
                raise VaultConfigError(f"Vault CA certificate file not found: {cacert}")
            verify = str(cacert)
        session = requests.Session()
        session.verify = verify
        # requests re-reads the proxy variables from the environment on every request (a scan
        # of os.environ each time); read them once here instead, with the same meaning
        session.proxies = {
            scheme: url for scheme, url in requests.utils.get_environ_proxies(addr).items()
        }
        session.trust_env = False
        # url and token given explicitly: hvac must not fall back to VAULT_ADDR/VAULT_TOKEN or
        # ~/.vault-token from the environment.
        self._hvac = hvac.Client(
            url=self.addr,
            token="",
            verify=verify,
            timeout=timeout,
            namespace=namespace,
            session=session,
        )
        # the lean path; through a proxy, requests (which also speaks SOCKS) carries everything
        self._pool = None if session.proxies else _pool(self.addr, verify)
        authenticator.bind(self)

    @property
    def authenticator(self) -> Authenticator:
        return self._auth

    def close(self) -> None:
        self._hvac.adapter.close()
        if self._pool is not None:
            self._pool.clear()

    def __enter__(self) -> VaultClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the one request path -------------------------------------------------------------

    def call(
        self,
        fn: Callable[[Any], T],
        *,
        op: str,
        path: str,
        not_found: str | None = None,
        write: bool = False,
    ) -> T:
        """Run ``fn(hvac_client)`` authenticated; translate errors.

        ``op`` and ``path`` name the operation in messages ("read", "secret/data/x");
        ``not_found`` replaces the message of a 404; ``write`` withholds Vault's error text
        (a write request carries secret values and a server may echo them).
        """
        with self._lock:
            self._auth.renew_if_needed()
            try:
                return self._attempt(fn, op=op, path=path, not_found=not_found, write=write)
            except hvac_exc.Forbidden as first:
                denied = first
            if self._token_valid():
                raise self._denied(op, path) from _scrub(denied, withhold=write)
            if self._auth.invalidate():
                try:
                    return self._attempt(fn, op=op, path=path, not_found=not_found, write=write)
                except hvac_exc.Forbidden as second:
                    denied = second
                if self._token_valid():
                    raise self._denied(op, path) from _scrub(denied, withhold=write)
            raise VaultAuthError(
                f"Vault rejected the token from {self._auth.describe()} (invalid, expired or "
                f"revoked) on {op} {path}",
                method=self._auth.method,
                role=self._auth.role,
            ) from _scrub(denied, withhold=write)

    def _attempt(
        self,
        fn: Callable[[Any], T],
        *,
        op: str,
        path: str,
        not_found: str | None,
        write: bool,
    ) -> T:
        token = self._auth.token()
        self._hvac.token = token.reveal()
        started = time.perf_counter()
        try:
            return fn(self._hvac)
        except hvac_exc.Forbidden:
            raise
        except (hvac_exc.VaultError, requests.RequestException) as exc:
            raise self._translate(
                exc, op=op, path=path, not_found=not_found, write=write
            ) from _scrub(exc, withhold=write)
        finally:
            log.debug("vault %s %s took %.1f ms", op, path, (time.perf_counter() - started) * 1e3)

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """One request to ``url`` (``/v1/...``) with the current token, for use inside
        :meth:`call`: the parsed body of a 200, else ``None``; the exceptions hvac's adapter
        raises for an error status, and requests' for a failed transport."""
        while "//" in url:  # as hvac does: Vault reads "//" as "/"
            url = url.replace("//", "/")
        url = quote(url)  # a path may hold "?", "#", "%" or spaces
        if self._pool is None:
            headers = {"Content-Type": content_type} if json is not None else None
            response = self._hvac.adapter.request(
                method, url, params=dict(params or {}), json=json, headers=headers
            )
            return response if isinstance(response, dict) else None
        headers = {"X-Vault-Request": "true"}
        if self._hvac.token:
            headers["X-Vault-Token"] = self._hvac.token
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        body = None
        if json is not None:
            headers["Content-Type"] = content_type
            body = _json.dumps(json).encode()
        target = self.addr + url + (f"?{urlencode(params)}" if params else "")
        try:
            response = self._pool.request(
                method.upper(),
                target,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
            )
        except urllib3.exceptions.HTTPError as exc:
            raise _as_requests_error(exc) from None
        if response.status >= 400:
            _raise_for_status(method, target, response)
        if response.status != 200:
            return None
        try:
            return _json.loads(response.data)
        except ValueError:
            return None

    def _token_valid(self) -> bool:
        """Whether Vault still accepts the current token (a 403 then means "policy")."""
        token = self._auth.token()
        self._hvac.token = token.reveal()
        try:
            self._hvac.auth.token.lookup_self()
        except hvac_exc.Forbidden:
            return False
        except (hvac_exc.VaultError, requests.RequestException) as exc:
            raise self._translate(
                exc, op="lookup", path="auth/token/lookup-self", not_found=None, write=False
            ) from _scrub(exc, withhold=False)
        return True

    def _denied(self, op: str, path: str) -> VaultPermissionDenied:
        return VaultPermissionDenied(
            f"permission denied: {self._auth.describe()} may not {op} {path} "
            "(check the Vault policy attached to it)",
            path=path,
            operation=op,
        )

    def _translate(
        self,
        exc: Exception,
        *,
        op: str,
        path: str,
        not_found: str | None,
        write: bool,
        redact: Sequence[Sensitive] = (),
    ) -> VaultError:
        where = f"{op} {path}"
        if isinstance(exc, requests.exceptions.SSLError):
            return VaultError(
                f"TLS handshake with Vault at {self.addr} failed on {where}; check the CA "
                "certificate setting (VAULTBRIDGE_VAULT__CACERT)"
            )
        if isinstance(exc, requests.exceptions.Timeout):
            maybe = " (the write may or may not have been applied)" if write else ""
            return VaultUnavailable(
                f"Vault at {self.addr} did not answer within {self.timeout:g} s on {where}{maybe}"
            )
        if isinstance(exc, requests.exceptions.ConnectionError):
            return VaultUnavailable(f"cannot connect to Vault at {self.addr} ({where})")
        if isinstance(exc, requests.RequestException):
            return VaultUnavailable(
                f"request to Vault at {self.addr} failed on {where}: {type(exc).__name__}"
            )
        assert isinstance(exc, hvac_exc.VaultError)
        detail = _server_errors(exc, withhold=write, redact=redact)
        if isinstance(exc, hvac_exc.InvalidPath):
            return VaultNotFound(not_found or f"not found in Vault: {path} ({op})")
        if isinstance(exc, hvac_exc.VaultDown):
            return VaultUnavailable(f"Vault at {self.addr} is sealed or in standby ({where})")
        if isinstance(exc, _TRANSIENT_HVAC):
            return VaultUnavailable(f"Vault at {self.addr} failed on {where}: {detail}")
        if isinstance(exc, hvac_exc.Unauthorized):
            return VaultAuthError(
                f"Vault refused {self._auth.describe()} on {where}: {detail}",
                method=self._auth.method,
                role=self._auth.role,
            )
        errors = " ".join(exc.errors or []) if isinstance(exc.errors, list) else ""
        if "check-and-set" in errors:
            return VaultConflict(
                f"check-and-set conflict on {where}: the current version is not the one "
                "expected (another writer was first)"
            )
        if isinstance(exc, hvac_exc.ParamValidationError):
            return VaultConfigError(f"invalid request parameters for {where}")
        return VaultError(f"Vault rejected {where}: {detail}")

    # -- LoginTransport -------------------------------------------------------------------

    def login(
        self, mount: str, payload: Mapping[str, Sensitive | str], *, method: str, role: str | None
    ) -> LoginResult:
        secrets = [v for v in payload.values() if isinstance(v, Sensitive)]
        body = {k: v.reveal() if isinstance(v, Sensitive) else v for k, v in payload.items()}
        path = f"auth/{mount}/login"
        who = f"{method} login at {path}" + (f" (role {role})" if role else "")
        with self._lock:
            self._hvac.token = None  # login paths take no token; never send a stale one
            try:
                response = self._hvac.adapter.post(f"/v1/{path}", json=body)
            except (hvac_exc.VaultError, requests.RequestException) as exc:
                translated = self._translate(
                    exc, op="login", path=path, not_found=None, write=True, redact=secrets
                )
                if isinstance(translated, VaultNotFound):
                    translated = VaultAuthError(
                        f"{who} failed: no auth method is enabled at auth/{mount}",
                        method=method,
                        role=role,
                    )
                elif not translated.transient and not isinstance(translated, VaultConfigError):
                    detail = _server_errors(exc, withhold=False, redact=secrets)
                    translated = VaultAuthError(f"{who} failed: {detail}", method=method, role=role)
                raise translated from _scrub(exc, withhold=True)
        return _login_result(response, who=who, method=method, role=role)

    def renew_self(self, token: Sensitive, *, method: str, role: str | None) -> LoginResult:
        with self._lock:
            self._hvac.token = token.reveal()
            try:
                response = self._hvac.auth.token.renew_self()
            except (hvac_exc.VaultError, requests.RequestException) as exc:
                raise self._translate(
                    exc, op="renew", path="auth/token/renew-self", not_found=None, write=True
                ) from _scrub(exc, withhold=True)
        return _login_result(response, who=f"{method} token renewal", method=method, role=role)

    # -- small sys calls ------------------------------------------------------------------

    def capabilities(self, paths: Iterable[str]) -> dict[str, list[str]]:
        """What the current token may do on each path (``sys/capabilities-self``)."""
        wanted = [p.strip("/") for p in paths]
        if not wanted:
            return {}
        response = self.call(
            lambda c: c.adapter.post("/v1/sys/capabilities-self", json={"paths": wanted}),
            op="check capabilities on",
            path="sys/capabilities-self",
        )
        data = (response.get("data") or response) if isinstance(response, dict) else {}
        return {p: sorted(str(c) for c in data.get(p, [])) for p in wanted}

    def health(self) -> dict[str, Any]:
        """``sys/health`` (unauthenticated). Raises :class:`VaultUnavailable` unless unsealed."""
        with self._lock:
            try:
                response = self._hvac.adapter.get("/v1/sys/health", raise_exception=False)
            except requests.RequestException as exc:
                raise self._translate(
                    exc, op="read", path="sys/health", not_found=None, write=False
                ) from _scrub(exc, withhold=False)
        body: Any = response if isinstance(response, dict) else _json_or_empty(response)
        if not body.get("initialized") or body.get("sealed"):
            raise VaultUnavailable(f"Vault at {self.addr} is not initialized or is sealed")
        return {k: body.get(k) for k in ("initialized", "sealed", "standby", "version")}


def _pool(addr: str, verify: bool | str) -> urllib3.PoolManager:
    """Keep-alive connections to Vault, verified as requests verifies them; no retries but
    redirects (a standby answers with one to the active node)."""
    retries = urllib3.Retry(total=None, connect=0, read=0, redirect=5, status=0, other=0)
    if not addr.startswith("https://"):
        return urllib3.PoolManager(num_pools=2, maxsize=8, retries=retries)
    ca_certs = verify if isinstance(verify, str) else requests.utils.DEFAULT_CA_BUNDLE_PATH
    return urllib3.PoolManager(
        num_pools=2, maxsize=8, retries=retries, cert_reqs="CERT_REQUIRED", ca_certs=ca_certs
    )


def _raise_for_status(method: str, url: str, response: urllib3.BaseHTTPResponse) -> None:
    """Raise what hvac's adapter raises for this error response (the same fields)."""
    text = response.data.decode("utf-8", "replace")
    body: Any = None
    errors = None
    if response.headers.get("Content-Type") == "application/json":
        try:
            body = _json.loads(text)
        except ValueError:
            body = None
        else:
            errors = body.get("errors") if isinstance(body, dict) else None
    hvac_utils.raise_for_error(
        method,
        url,
        response.status,
        text if errors is None else None,
        errors=errors,
        text=text,
        json=body,
    )


_UNREACHABLE = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProtocolError)


def _as_requests_error(exc: urllib3.exceptions.HTTPError) -> requests.RequestException:
    """The requests exception for a failed urllib3 transport (one translation for both)."""
    reason = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    what = type(reason).__name__
    if isinstance(reason, urllib3.exceptions.SSLError):
        return requests.exceptions.SSLError(what)
    if isinstance(reason, _UNREACHABLE):  # before timeouts: a refused connection is one too
        return requests.exceptions.ConnectionError(what)
    if isinstance(reason, urllib3.exceptions.ConnectTimeoutError):
        return requests.exceptions.ConnectTimeout(what)
    if isinstance(reason, urllib3.exceptions.ReadTimeoutError):
        return requests.exceptions.ReadTimeout(what)
    return requests.RequestException(what)


def _login_result(response: Any, *, who: str, method: str, role: str | None) -> LoginResult:
    auth = response.get("auth") if isinstance(response, dict) else None
    if not isinstance(auth, dict) or not auth.get("client_token"):
        raise VaultAuthError(f"{who}: Vault answered without a token", method=method, role=role)
    return LoginResult(
        token=Sensitive(str(auth["client_token"])),
        ttl=float(auth.get("lease_duration") or 0),
        renewable=bool(auth.get("renewable")),
    )


def _json_or_empty(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _server_errors(exc: Exception, *, withhold: bool, redact: Sequence[Sensitive] = ()) -> str:
    """Vault's own error strings, or a note that they were withheld. Never the raw body."""
    status = type(exc).__name__
    if withhold:
        return f"{status} (details withheld: the request carried secret values)"
    errors = getattr(exc, "errors", None)
    if not isinstance(errors, list) or not errors:
        return status
    text = "; ".join(_first_line(str(e)) for e in errors)[:300]
    for secret in redact:
        value = secret.reveal()
        if value:
            text = text.replace(value, REDACTED)
    return f"{status}: {text}"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _scrub(exc: BaseException, *, withhold: bool) -> BaseException:
    """Strip what could carry secrets from an exception before it is chained.

    hvac exceptions keep the response body (``text``, ``json``); requests exceptions keep the
    prepared request (headers with the token, body with the payload) and the response.
    """
    if isinstance(exc, hvac_exc.VaultError):
        exc.text = None
        exc.json = None
        if withhold:
            exc.errors = None
            exc.args = ("response withheld",)
    if isinstance(exc, requests.RequestException):
        exc.request = None
        exc.response = None
    return exc
