"""Kubernetes adapter: the only package that imports ``kubernetes``.

Everything vaultbridge does with the Kubernetes API goes through here: the CredentialRotation
custom resource (get, list, watch with bookmarks, status writes, installing the CRD), the
Secrets it owns (ownerReferences, optimistic concurrency, never trampling foreign keys),
Events, leader election on a Lease, ServiceAccount tokens (TokenRequest/TokenReview), and the
Pod-template annotation that rolls a workload after a promotion.

Rules kept by this package:

- objects cross this boundary as plain JSON dicts (what the API server sends), Secret data as
  :class:`~vaultbridge.model.sensitive.Sensitive`;
- kubernetes, urllib3 and pydantic exceptions are translated at the boundary into
  :mod:`vaultbridge.kube.errors` (``raise ... from exc``); response bodies are stripped from
  the chained exception and Secret values are scrubbed from messages;
- every request has a timeout; nothing here starts a thread except a multi-namespace watch.
"""

from vaultbridge.kube.client import DEFAULT_TIMEOUT, KubeClient
from vaultbridge.kube.crd import (
    API_VERSION,
    CRD_NAME,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    CredentialRotationClient,
    ListSnapshot,
    bundled_crd_path,
)
from vaultbridge.kube.errors import (
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
    KubeOwnershipError,
    KubeUnauthorized,
    KubeUnavailable,
    KubeWatchExpired,
)
from vaultbridge.kube.events import EventRecorder, ObjectRef
from vaultbridge.kube.lease import LeaderElector
from vaultbridge.kube.named import NamedObjects
from vaultbridge.kube.secret_bodies import (
    EXTRA_OWNERS_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    OWNER_ANNOTATION,
    OWNER_UID_ANNOTATION,
    ROTATION_ANNOTATION,
    VERSION_ANNOTATION,
    OwnedSecret,
    OwnerInfo,
)
from vaultbridge.kube.secrets import SecretSink
from vaultbridge.kube.secretwatch import ManagedSecretWatch
from vaultbridge.kube.tokens import TokenClient, request_token, review_token
from vaultbridge.kube.workloads import WorkloadClient

__all__ = [
    "API_VERSION",
    "CRD_NAME",
    "DEFAULT_TIMEOUT",
    "EXTRA_OWNERS_ANNOTATION",
    "GROUP",
    "KIND",
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "OWNER_ANNOTATION",
    "OWNER_UID_ANNOTATION",
    "PLURAL",
    "ROTATION_ANNOTATION",
    "VERSION",
    "VERSION_ANNOTATION",
    "CredentialRotationClient",
    "EventRecorder",
    "KubeClient",
    "KubeConflict",
    "KubeError",
    "KubeForbidden",
    "KubeInvalid",
    "KubeNotFound",
    "KubeOwnershipError",
    "KubeUnauthorized",
    "KubeUnavailable",
    "KubeWatchExpired",
    "LeaderElector",
    "ListSnapshot",
    "ManagedSecretWatch",
    "NamedObjects",
    "ObjectRef",
    "OwnedSecret",
    "OwnerInfo",
    "SecretSink",
    "TokenClient",
    "WorkloadClient",
    "bundled_crd_path",
    "request_token",
    "review_token",
]
