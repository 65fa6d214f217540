"""How vaultbridge gets a Vault token: one small interface, four methods.

- ``token``: a static token from the settings.
- ``kubernetes``: the pod's ServiceAccount JWT, read from a file *at each login* (projected
  tokens rotate), exchanged at ``auth/<mount>/login`` for a token bound to ``role``.
- ``approle``: ``role_id`` + ``secret_id`` (the secret_id from a value or a file).
- ``agent``: the token sink file kept up to date by Vault Agent, re-read when it changes.

Login-based authenticators keep the lease they got and act at 2/3 of its TTL: renew it when it
is renewable and renewal still extends it, log in again otherwise. The HTTP side of a login is
done by :class:`~vaultbridge.vault.client.VaultClient` through the :class:`LoginTransport` it
binds; this module itself never talks HTTP and never imports hvac.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vaultbridge.model.sensitive import Sensitive
from vaultbridge.vault.errors import VaultAuthError, VaultConfigError, VaultError

DEFAULT_KUBERNETES_JWT_PATH = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
RENEW_AT = 2.0 / 3.0  # fraction of the TTL after which the token is renewed or replaced


@dataclass(frozen=True)
class LoginResult:
    """A token and its lease as Vault granted it. ``ttl`` 0 means it never expires."""

    token: Sensitive
    ttl: float
    renewable: bool


class LoginTransport(Protocol):
    """What an authenticator needs from the client: the two unauthenticated/self calls."""

    def login(
        self, mount: str, payload: dict[str, Sensitive | str], *, method: str, role: str | None
    ) -> LoginResult: ...

    def renew_self(self, token: Sensitive, *, method: str, role: str | None) -> LoginResult: ...


class Authenticator(ABC):
    """Produces the token for each request. Thread-safe."""

    method: str = ""
    role: str | None = None

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._transport: LoginTransport | None = None

    def bind(self, transport: LoginTransport) -> None:
        """Called by the client that will use this authenticator."""
        self._transport = transport

    @abstractmethod
    def token(self) -> Sensitive:
        """The token to send now; logs in (or reads the sink) when there is none yet."""

    def renew_if_needed(self) -> None:  # noqa: B027 - optional hook
        """Renew or replace the token when its lease is nearly used up. Cheap when not."""

    def invalidate(self) -> bool:
        """Forget the current token after Vault rejected it.

        Returns True when asking again may give a different token (worth one retry).
        """
        return False

    def describe(self) -> str:
        return f"{self.method} auth" + (f" (role {self.role})" if self.role else "")

    def _require_transport(self) -> LoginTransport:
        if self._transport is None:
            raise VaultConfigError(f"{self.describe()}: authenticator is not bound to a client")
        return self._transport


class TokenAuthenticator(Authenticator):
    """A static token (``VAULTBRIDGE_VAULT__TOKEN``). Never renewed, never replaced."""

    method = "token"

    def __init__(self, token: Sensitive | str) -> None:
        super().__init__()
        value = token if isinstance(token, Sensitive) else Sensitive(token)
        if not value.reveal():
            raise VaultConfigError("token auth: the Vault token is empty")
        self._token = value

    def token(self) -> Sensitive:
        return self._token


class _LoginAuthenticator(Authenticator):
    """Shared lease handling for methods that log in."""

    mount: str = ""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._lease: LoginResult | None = None
        self._obtained_at = 0.0

    @abstractmethod
    def _credentials(self) -> dict[str, Sensitive | str]:
        """The login payload, read fresh for every login."""

    def token(self) -> Sensitive:
        with self._lock:
            if self._lease is None:
                self._login()
            assert self._lease is not None
            return self._lease.token

    def renew_if_needed(self) -> None:
        with self._lock:
            lease = self._lease
            if lease is None:
                self._login()
                return
            if lease.ttl <= 0:
                return
            age = self._clock() - self._obtained_at
            if age < lease.ttl * RENEW_AT:
                return
            if lease.renewable:
                try:
                    renewed = self._require_transport().renew_self(
                        lease.token, method=self.method, role=self.role
                    )
                except VaultError:
                    renewed = None
                # a renewal capped by the max TTL soon stops helping: then log in afresh
                if renewed is not None and renewed.ttl > lease.ttl * (1.0 - RENEW_AT):
                    self._lease = LoginResult(renewed.token, renewed.ttl, renewed.renewable)
                    self._obtained_at = self._clock()
                    return
            self._login()

    def invalidate(self) -> bool:
        with self._lock:
            self._lease = None
            return True

    def _login(self) -> None:
        result = self._require_transport().login(
            self.mount, self._credentials(), method=self.method, role=self.role
        )
        self._lease = result
        self._obtained_at = self._clock()

    def describe(self) -> str:
        role = f"role {self.role} " if self.role else ""
        return f"{self.method} auth ({role}at auth/{self.mount})"


class KubernetesAuthenticator(_LoginAuthenticator):
    """ServiceAccount JWT -> ``auth/<mount>/login`` with ``role``; the JWT is re-read each login."""

    method = "kubernetes"

    def __init__(
        self,
        role: str,
        *,
        jwt_path: Path = DEFAULT_KUBERNETES_JWT_PATH,
        mount: str = "kubernetes",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        if not role:
            raise VaultConfigError("kubernetes auth: a Vault role is required")
        self.role = role
        self._role_name = role
        self.jwt_path = Path(jwt_path)
        self.mount = mount.strip("/")

    def _credentials(self) -> dict[str, Sensitive | str]:
        try:
            jwt = self.jwt_path.read_text().strip()
        except OSError as exc:
            raise VaultAuthError(
                f"kubernetes auth (role {self.role}): cannot read the ServiceAccount token file "
                f"{self.jwt_path}: {exc.strerror}",
                method=self.method,
                role=self.role,
            ) from None
        if not jwt:
            raise VaultAuthError(
                f"kubernetes auth (role {self.role}): ServiceAccount token file {self.jwt_path} "
                "is empty",
                method=self.method,
                role=self.role,
            )
        return {"role": self._role_name, "jwt": Sensitive(jwt)}


class AppRoleAuthenticator(_LoginAuthenticator):
    """``role_id`` + ``secret_id`` -> ``auth/<mount>/login``.

    ``secret_id_file`` is re-read at each login (it may be re-issued); ``role_name`` is only
    used in messages, since the role_id itself is treated as a credential.
    """

    method = "approle"

    def __init__(
        self,
        role_id: Sensitive | str,
        *,
        secret_id: Sensitive | str | None = None,
        secret_id_file: Path | None = None,
        mount: str = "approle",
        role_name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self._role_id = role_id if isinstance(role_id, Sensitive) else Sensitive(role_id)
        if not self._role_id.reveal():
            raise VaultConfigError("approle auth: role_id is required")
        if secret_id is not None and secret_id_file is not None:
            raise VaultConfigError("approle auth: give secret_id or secret_id_file, not both")
        self._secret_id = (
            None
            if secret_id is None
            else secret_id
            if isinstance(secret_id, Sensitive)
            else Sensitive(secret_id)
        )
        self.secret_id_file = Path(secret_id_file) if secret_id_file is not None else None
        self.mount = mount.strip("/")
        self.role = role_name

    def _credentials(self) -> dict[str, Sensitive | str]:
        payload: dict[str, Sensitive | str] = {"role_id": self._role_id}
        if self.secret_id_file is not None:
            try:
                value = self.secret_id_file.read_text().strip()
            except OSError as exc:
                raise VaultAuthError(
                    f"{self.describe()}: cannot read secret_id file {self.secret_id_file}: "
                    f"{exc.strerror}",
                    method=self.method,
                    role=self.role,
                ) from None
            if not value:
                raise VaultAuthError(
                    f"{self.describe()}: secret_id file {self.secret_id_file} is empty",
                    method=self.method,
                    role=self.role,
                )
            payload["secret_id"] = Sensitive(value)
        elif self._secret_id is not None:
            payload["secret_id"] = self._secret_id
        return payload


class AgentAuthenticator(Authenticator):
    """The token sink file of a Vault Agent sidecar (auto-auth keeps it renewed).

    The file is stat'ed on every ``token()`` call and re-read when its mtime, size or inode
    changed; a rejected token makes the next call re-read it unconditionally.
    """

    method = "agent"

    def __init__(self, token_file: Path) -> None:
        super().__init__()
        self.token_file = Path(token_file)
        self._stamp: tuple[int, int, int] | None = None
        self._token: Sensitive | None = None

    def describe(self) -> str:
        return f"agent auth (token sink {self.token_file})"

    def token(self) -> Sensitive:
        with self._lock:
            try:
                st = self.token_file.stat()
            except OSError as exc:
                raise VaultAuthError(
                    f"agent auth: Vault Agent token sink {self.token_file} is not readable "
                    f"({exc.strerror}); is the agent running and its sink configured?",
                    method=self.method,
                ) from None
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if self._token is None or stamp != self._stamp:
                try:
                    value = self.token_file.read_text().strip()
                except OSError as exc:
                    raise VaultAuthError(
                        f"agent auth: cannot read Vault Agent token sink {self.token_file} "
                        f"({exc.strerror})",
                        method=self.method,
                    ) from None
                if not value:
                    raise VaultAuthError(
                        f"agent auth: Vault Agent token sink {self.token_file} is empty; the "
                        "agent has not authenticated yet",
                        method=self.method,
                    )
                self._token = Sensitive(value)
                self._stamp = stamp
            return self._token

    def renew_if_needed(self) -> None:
        self.token()  # picks up a rewritten sink; the agent does the renewing

    def invalidate(self) -> bool:
        with self._lock:
            before = self._token
            self._token = None
            try:
                return self.token() != before
            except VaultAuthError:
                return False


def make_authenticator(
    method: str,
    *,
    token: Sensitive | str | None = None,
    role: str | None = None,
    token_file: Path | None = None,
    kubernetes_jwt_path: Path = DEFAULT_KUBERNETES_JWT_PATH,
    kubernetes_mount: str = "kubernetes",
    approle_role_id: Sensitive | str | None = None,
    approle_secret_id: Sensitive | str | None = None,
    approle_secret_id_file: Path | None = None,
    approle_mount: str = "approle",
) -> Authenticator:
    """Build the authenticator named by ``VAULTBRIDGE_VAULT__AUTH`` from plain settings.

    Raises :class:`VaultConfigError` naming the missing setting (never its value).
    """
    if method == "token":
        if token is None:
            raise VaultConfigError("vault auth 'token' needs a token (VAULTBRIDGE_VAULT__TOKEN)")
        return TokenAuthenticator(token)
    if method == "kubernetes":
        if not role:
            raise VaultConfigError("vault auth 'kubernetes' needs a role (VAULTBRIDGE_VAULT__ROLE)")
        return KubernetesAuthenticator(role, jwt_path=kubernetes_jwt_path, mount=kubernetes_mount)
    if method == "approle":
        if approle_role_id is None:
            raise VaultConfigError("vault auth 'approle' needs a role_id")
        if approle_secret_id is None and approle_secret_id_file is None:
            raise VaultConfigError("vault auth 'approle' needs a secret_id or a secret_id file")
        return AppRoleAuthenticator(
            approle_role_id,
            secret_id=approle_secret_id,
            secret_id_file=approle_secret_id_file,
            mount=approle_mount,
            role_name=role,
        )
    if method == "agent":
        if token_file is None:
            raise VaultConfigError(
                "vault auth 'agent' needs the agent's token sink file "
                "(VAULTBRIDGE_VAULT__TOKEN_FILE)"
            )
        return AgentAuthenticator(token_file)
    raise VaultConfigError(
        f"unknown vault auth method {method!r}; expected token, kubernetes, approle or agent"
    )
