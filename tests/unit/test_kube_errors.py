"""Error translation of vaultbridge.kube without a server: bodies stripped, values scrubbed."""

from __future__ import annotations

import base64
import json
import traceback

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from vaultbridge.kube import (
    KubeConflict,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
    KubeUnavailable,
    KubeWatchExpired,
)
from vaultbridge.kube.errors import Operation, raise_translated, scrub, translate

CANARY = "canary-5d1e-never-print"
OP = Operation("update", "secrets", "ns", "s")


def _api_exception(status: int, message: str) -> ApiException:
    exc = ApiException(status=status, reason="Reason")
    exc.body = json.dumps({"kind": "Status", "message": message, "details": {"echo": CANARY}})
    exc.headers = {"Content-Type": "application/json"}
    return exc


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (404, KubeNotFound),
        (409, KubeConflict),
        (403, KubeForbidden),
        (422, KubeInvalid),
        (410, KubeWatchExpired),
        (500, KubeUnavailable),
        (503, KubeUnavailable),
        (429, KubeUnavailable),
    ],
)
def test_status_codes_map_to_errors(status: int, kind: type[Exception]) -> None:
    error = translate(_api_exception(status, "server says no"), OP)
    assert type(error) is kind
    assert "update secrets 's' in namespace 'ns'" in str(error)
    assert "server says no" in str(error)


def test_secret_values_are_scrubbed_and_bodies_stripped() -> None:
    encoded = base64.b64encode(CANARY.encode()).decode()
    exc = _api_exception(422, f"data[x]: Invalid value: {CANARY!r} / {encoded}")
    with pytest.raises(KubeInvalid) as caught:
        try:
            raise exc
        except ApiException as raised:
            raise_translated(raised, OP, secrets=[CANARY])
    text = "".join(traceback.format_exception(caught.value))
    assert CANARY not in text
    assert encoded not in text
    assert "<redacted>" in str(caught.value)
    assert caught.value.__cause__ is exc
    assert exc.body is None


def test_connection_errors_are_transient() -> None:
    error = translate(urllib3.exceptions.MaxRetryError(None, "/x", "refused"), OP)  # type: ignore[arg-type]
    assert isinstance(error, KubeUnavailable)
    assert error.transient


def test_scrub_ignores_tiny_values() -> None:
    assert scrub("abc value", ["abc"]) == "abc value"
    assert scrub("the s3cret here", ["s3cret"]) == "the <redacted> here"
