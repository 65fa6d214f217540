"""The CR's spec and status, as a user or another tool may have written them: a valid value or
a typed error (SpecError, StatusError), never another exception."""

from __future__ import annotations

from typing import Any

from fuzz_inputs import json_values, keys
from hypothesis import given
from hypothesis import strategies as st

from vaultbridge.model.spec import CredentialSpec, SpecError, parse_spec
from vaultbridge.model.status import Status, StatusError

SPEC_KEYS = keys(
    "source",
    "secret",
    "target",
    "schedule",
    "maxAge",
    "suspend",
    "generate",
    "mount",
    "path",
    "field",
    "name",
    "key",
    "config",
    "configKey",
    "cephx",
    "who",
    "option",
    "entity",
    "strategy",
    "caps",
    "adopt",
    "deletionPolicy",
    "keepPrior",
    "verify",
    "entries",
    "rolloutRestartTargets",
    "kind",
    "template",
    "length",
    "format",
    "graceSeconds",
)
STATUS_KEYS = keys(
    "phase",
    "conditions",
    "currentVersion",
    "previousVersion",
    "pendingVersion",
    "currentEntity",
    "lastRotationTime",
    "lastVerifiedTime",
    "rotation",
    "history",
    "observedGeneration",
    "consecutiveFailures",
    "nextRetryTime",
    "retiring",
    "type",
    "status",
    "reason",
    "message",
    "lastTransitionTime",
    "id",
    "version",
    "step",
    "startedAt",
    "finishedAt",
    "result",
    "rotationId",
    "holder",
    "heartbeatAt",
    "entity",
    "attempt",
    "transient",
)


@given(st.one_of(json_values(SPEC_KEYS), st.dictionaries(SPEC_KEYS, json_values(SPEC_KEYS))))
def test_parse_spec_gives_a_spec_or_a_spec_error(obj: Any) -> None:
    try:
        spec = parse_spec(obj)
    except SpecError as exc:
        assert exc.problems and all(isinstance(p, str) for p in exc.problems)
    else:
        assert isinstance(spec, CredentialSpec)


@given(st.one_of(json_values(STATUS_KEYS), st.dictionaries(STATUS_KEYS, json_values(STATUS_KEYS))))
def test_a_status_edited_by_hand_reads_or_is_refused(obj: Any) -> None:
    try:
        status = Status.from_dict(obj)
    except StatusError:
        return
    assert isinstance(status, Status)
    assert Status.from_dict(status.to_dict()) == status  # what it reads, it writes back
