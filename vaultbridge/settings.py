"""Settings from the environment (prefix ``VAULTBRIDGE_``, nested delimiter ``__``) or a YAML file.

Bad settings fail at start with one clear line per problem; a value is never echoed back, so a
mistyped token cannot leak into a log.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "VAULTBRIDGE_"
CONFIG_FILE_VARIABLE = "VAULTBRIDGE_CONFIG"


class VaultSettings(BaseModel):
    addr: str = "http://127.0.0.1:8200"
    auth: Literal["token", "kubernetes", "approle", "agent"] = "token"
    token: SecretStr | None = None
    role: str | None = None
    token_file: Path | None = None
    cacert: Path | None = None
    namespace: str | None = None
    kubernetes_mount: str = "kubernetes"
    jwt_file: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
    approle_mount: str = "approle"
    secret_id: SecretStr | None = None
    secret_id_file: Path | None = None
    timeout: float = Field(default=5.0, gt=0)

    @field_validator("addr")
    @classmethod
    def _addr_is_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    def missing(self) -> list[str]:
        """What the chosen auth method still needs (checked when Vault is first used)."""
        needs = []
        if self.auth == "token" and (self.token is None or not self.token.get_secret_value()):
            needs.append("auth=token needs VAULTBRIDGE_VAULT__TOKEN")
        if self.auth in ("kubernetes", "approle") and not self.role:
            needs.append(f"auth={self.auth} needs VAULTBRIDGE_VAULT__ROLE")
        if self.auth == "approle" and self.secret_id is None and self.secret_id_file is None:
            needs.append(
                "auth=approle needs VAULTBRIDGE_VAULT__SECRET_ID or VAULTBRIDGE_VAULT__SECRET_ID_FILE"  # noqa: E501
            )
        if self.auth == "agent" and self.token_file is None:
            needs.append("auth=agent needs VAULTBRIDGE_VAULT__TOKEN_FILE (the Vault Agent sink)")
        return [f"VAULTBRIDGE_VAULT__AUTH: {need}" for need in needs]


class KubeSettings(BaseModel):
    kubeconfig: Path | None = None
    # comma-separated in the environment; empty: every namespace
    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    lease_namespace: str | None = None
    lease_name: str = "vaultbridge-leader"

    @field_validator("namespaces", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class CephSettings(BaseModel):
    conf: Path = Path("/etc/ceph/ceph.conf")
    user: str = "client.admin"
    keyring: Path | None = None
    timeout: float = Field(default=5.0, gt=0)
    # clusters named by spec.cluster (besides this default one) with a connection open at once
    max_clusters: int = Field(default=16, ge=1, le=256)
    # reconciles at once in one cluster when credentials name more than one (0: half the
    # controller's workers, at least 1), so one cluster that hangs cannot take every worker
    max_in_flight_per_cluster: int = Field(default=0, ge=0, le=64)

    @field_validator("user")
    @classmethod
    def _user_is_entity(cls, value: str) -> str:
        if "." not in value:
            raise ValueError("must be a full entity name such as client.vaultbridge")
        return value


class HttpSettings(BaseModel):
    port: int = Field(default=8080, ge=0, le=65535)
    bind: str = "0.0.0.0"  # noqa: S104 - a controller Pod serves metrics to the cluster
    # share bind:port with other processes of the same user (host-network Pods on one node)
    reuse_port: bool = False
    # also serve the same endpoints on this Unix socket: a probe that reaches this process only
    socket: Path | None = None


class TriggerSettings(BaseModel):
    poll_interval: float = Field(default=30.0, ge=0)
    # KV metadata reads per poll cycle at most: 80 every 30 s is 9,600 an hour in all
    poll_budget: int = Field(default=80, ge=1)
    # the audit-device push (docs/audit-trigger.md): POST /v1/audit with this token, and/or a
    # socket device at tcp://host:port or unix:///path; either turns polling into a safety
    # poll that checks every source once per safety_poll_period seconds
    audit_token: SecretStr | None = None
    audit_socket: str | None = None
    audit_peers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"]
    )
    audit_uids: Annotated[list[int], NoDecode] = Field(default_factory=list)  # empty: our uid
    safety_poll_period: float = Field(default=86400.0, gt=0)
    webhook_token: SecretStr | None = None
    # ServiceAccount usernames allowed to trigger, comma-separated; empty: any ServiceAccount
    webhook_subjects: Annotated[list[str], NoDecode] = Field(default_factory=list)
    agent_file: Path | None = None
    agent_interval: float = Field(default=0.02, gt=0)  # seconds between looks at agent_file
    schedule_jitter: float = Field(default=0.0, ge=0)  # seconds of random delay per run

    @field_validator("webhook_subjects", "audit_peers", "audit_uids", mode="before")
    @classmethod
    def _subjects_comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def audit_push(self) -> bool:
        return self.audit_token is not None or self.audit_socket is not None


class ControllerSettings(BaseModel):
    max_concurrent_rotations: int = Field(default=4, ge=1, le=64)
    min_interval: float = Field(default=2.0, ge=0)  # seconds between rotations of a credential
    resync_interval: float = Field(default=600.0, ge=0)  # the drift sweep; 0: only at start
    lease_duration: float = Field(default=15.0, gt=0)
    renew_deadline: float = Field(default=10.0, gt=0)
    retry_period: float = Field(default=4.0, gt=0)
    identity: str | None = None  # default: host name, pid and a random suffix (Lease + journal)


class RotationSettings(BaseModel):
    # seconds another engine's rotation must go unheard of (no journal write) before this one
    # takes it over; an engine rewrites a long rotation's journal every third of it
    takeover_after: float = Field(default=30.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    vault: VaultSettings = Field(default_factory=VaultSettings)
    kube: KubeSettings = Field(default_factory=KubeSettings)
    ceph: CephSettings = Field(default_factory=CephSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    triggers: TriggerSettings = Field(default_factory=TriggerSettings)
    controller: ControllerSettings = Field(default_factory=ControllerSettings)
    rotation: RotationSettings = Field(default_factory=RotationSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_VARIABLE)
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)


class SettingsError(Exception):
    """Settings are invalid; ``problems`` holds one line per problem, without values."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _variable_name(location: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in location if not str(part).startswith("function-")]
    return ENV_PREFIX + "__".join(part.upper() for part in parts)


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings, or raise SettingsError with one line per problem."""
    config_file = os.environ.get(CONFIG_FILE_VARIABLE)
    if config_file and not Path(config_file).is_file():
        raise SettingsError([f"{CONFIG_FILE_VARIABLE}: config file {config_file} does not exist"])
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{_variable_name(tuple(error['loc']))}: {message}")
        raise SettingsError(problems) from None
    except Exception as exc:  # e.g. malformed JSON in a complex env value or a bad YAML file
        raise SettingsError([f"settings could not be read: {type(exc).__name__}"]) from None
