"""Parsing and validation of the CredentialRotation spec."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from vaultbridge.model.spec import (
    CephxTarget,
    ConfigEntry,
    ConfigKeyTarget,
    ConfigTarget,
    CredentialRef,
    OwnerRef,
    SpecError,
    VaultSource,
    parse_duration,
    parse_spec,
    secret_data_keys,
    source_fields,
)


def problems(obj: Any) -> tuple[str, ...]:
    with pytest.raises(SpecError) as info:
        parse_spec(obj)
    return info.value.problems


def base(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": {"mount": "secret", "path": "ceph/rgw-keystone"},
        "secret": {"name": "rgw-keystone"},
        "target": {
            "config": {"who": "client.rgw.my-store", "option": "rgw_keystone_admin_password"}
        },
    }
    spec.update(changes)
    return spec


# -- CredentialRef ---------------------------------------------------------------------------


def test_credential_ref_round_trip() -> None:
    ref = CredentialRef.parse("rook-ceph/rgw-keystone")
    assert ref == CredentialRef("rook-ceph", "rgw-keystone")
    assert str(ref) == "rook-ceph/rgw-keystone"


@pytest.mark.parametrize("text", ["", "name", "/name", "ns/", "a/b/c"])
def test_credential_ref_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected NAMESPACE/NAME"):
        CredentialRef.parse(text)


# -- happy paths -----------------------------------------------------------------------------


def test_single_config_defaults() -> None:
    spec = parse_spec(base())
    assert spec.source == VaultSource("secret", "ceph/rgw-keystone", "value")
    assert spec.secret.name == "rgw-keystone"
    assert spec.secret.key == "value"
    assert spec.secret.extra_owners == ()
    assert spec.secret.adopt is False
    assert spec.target == ConfigTarget(
        (ConfigEntry("client.rgw.my-store", "rgw_keystone_admin_password", "value"),),
        is_list=False,
    )
    assert spec.generate is False
    assert spec.schedule is None
    assert spec.max_age is None
    assert spec.suspend is False
    assert spec.history_limit == 10
    assert secret_data_keys(spec) == ("value",)
    assert source_fields(spec) == ("value",)


def test_full_example_from_architecture() -> None:
    spec = parse_spec(
        {
            "source": {"mount": "secret", "path": "ceph/rgw-keystone", "field": "password"},
            "secret": {
                "name": "rgw-keystone",
                "key": "pw",
                "adopt": True,
                "extraOwners": [
                    {"apiVersion": "ceph.rook.io/v1", "kind": "CephObjectStore", "name": "my-store"}
                ],
            },
            "target": {"config": {"who": "client.rgw.my-store", "option": "rgw_x"}},
            "schedule": "0 3  * * 0",
            "generate": False,
            "maxAge": "720h",
            "suspend": True,
            "historyLimit": 5,
        }
    )
    assert spec.secret.extra_owners == (OwnerRef("ceph.rook.io/v1", "CephObjectStore", "my-store"),)
    assert spec.secret.adopt is True
    assert spec.target == ConfigTarget(
        (ConfigEntry("client.rgw.my-store", "rgw_x", "password"),), False
    )
    assert spec.schedule == "0 3 * * 0"
    assert spec.max_age == timedelta(hours=720)
    assert spec.suspend is True
    assert spec.history_limit == 5
    assert secret_data_keys(spec) == ("pw",)
    assert source_fields(spec) == ("password",)


def test_config_list() -> None:
    spec = parse_spec(
        base(
            target={
                "config": [
                    {"who": "client.rgw.s", "option": "rgw_keystone_admin_user", "field": "user"},
                    {
                        "who": "client.rgw.s",
                        "option": "rgw_keystone_admin_password",
                        "field": "password",
                    },
                    {
                        "who": "client.rgw.t",
                        "option": "rgw_keystone_admin_password",
                        "field": "password",
                    },
                ]
            }
        )
    )
    assert isinstance(spec.target, ConfigTarget)
    assert spec.target.is_list
    assert len(spec.target.entries) == 3
    assert secret_data_keys(spec) == ("user", "password")
    assert source_fields(spec) == ("user", "password")


def test_config_without_source_reads_the_secret() -> None:
    spec = parse_spec(base(source=None))
    assert spec.source is None
    assert source_fields(spec) == ()
    assert secret_data_keys(spec) == ("value",)


def test_config_key() -> None:
    spec = parse_spec(base(target={"configKey": {"key": "mgr/dashboard/x"}}, generate=True))
    assert spec.target == ConfigKeyTarget("mgr/dashboard/x")
    assert spec.generate is True
    assert secret_data_keys(spec) == ("value",)


def test_cephx_defaults() -> None:
    spec = parse_spec(
        base(
            target={
                "cephx": {
                    "entity": "client.app",
                    "caps": {"osd": "allow rw pool=app", "mon": "allow r"},
                }
            }
        )
    )
    assert spec.target == CephxTarget(
        entity="client.app",
        caps=(("mon", "allow r"), ("osd", "allow rw pool=app")),
        strategy="alternate",
        retire_after=timedelta(minutes=10),
        keep_prior=1,
    )
    assert spec.generate is True
    assert secret_data_keys(spec) == ("userID", "userKey", "keyring")


def test_cephx_in_place_without_source_when_not_generating() -> None:
    spec = parse_spec(
        base(
            source=None,
            generate=False,
            target={
                "cephx": {
                    "entity": "client.a-b_c.d",
                    "strategy": "in-place",
                    "retireAfter": "0s",
                    "keepPrior": 3,
                }
            },
        )
    )
    assert isinstance(spec.target, CephxTarget)
    assert spec.target.strategy == "in-place"
    assert spec.target.retire_after == timedelta(0)
    assert spec.target.keep_prior == 3
    assert spec.generate is False


# -- error paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"secret": None}, "spec.secret: required"),
        ({"secret": "x"}, "spec.secret: must be an object"),
        ({"secret": {}}, "spec.secret.name: required"),
        ({"secret": {"name": ""}}, "spec.secret.name: must not be empty"),
        ({"secret": {"name": 3}}, "spec.secret.name: must be a string"),
        (
            {"secret": {"name": "Bad_Name"}},
            "spec.secret.name: 'Bad_Name' is not a valid Secret name (lowercase RFC 1123 subdomain)",
        ),
        (
            {"secret": {"name": "s", "key": "a/b"}},
            "spec.secret.key: 'a/b' is not a valid Secret data key ([-._a-zA-Z0-9]+)",
        ),
        ({"secret": {"name": "s", "adopt": "yes"}}, "spec.secret.adopt: must be true or false"),
        ({"secret": {"name": "s", "extraOwners": {}}}, "spec.secret.extraOwners: must be a list"),
        (
            {"secret": {"name": "s", "extraOwners": [7]}},
            "spec.secret.extraOwners[0]: must be an object",
        ),
        (
            {"secret": {"name": "s", "extraOwners": [{"apiVersion": "v1", "kind": "X"}]}},
            "spec.secret.extraOwners[0].name: required",
        ),
        ({"source": "x"}, "spec.source: must be an object"),
        ({"source": {"path": "p"}}, "spec.source.mount: required"),
        ({"source": {"mount": "m"}}, "spec.source.path: required"),
        (
            {"source": {"mount": "m", "path": "p", "field": ""}},
            "spec.source.field: must not be empty",
        ),
        ({"target": None}, "spec.target: required"),
        ({"target": []}, "spec.target: must be an object"),
        ({"target": {}}, "spec.target: exactly one of config, configKey, cephx is required"),
        (
            {"target": {"config": {"who": "a", "option": "b"}, "cephx": {"entity": "client.a"}}},
            "spec.target: exactly one of config, configKey, cephx is allowed, got config, cephx",
        ),
        ({"target": {"config": "x"}}, "spec.target.config: must be an object or a list of objects"),
        ({"target": {"config": []}}, "spec.target.config: must not be empty"),
        ({"target": {"config": {"option": "o"}}}, "spec.target.config.who: required"),
        ({"target": {"config": {"who": "w"}}}, "spec.target.config.option: required"),
        ({"target": {"config": ["x"]}}, "spec.target.config[0]: must be an object"),
        (
            {
                "target": {
                    "config": [
                        {"who": "w", "option": "o", "field": "f"},
                        {"who": "w", "option": "p"},
                    ]
                }
            },
            "spec.target.config[1].field: required",
        ),
        (
            {
                "target": {
                    "config": [
                        {"who": "w", "option": "o", "field": "f"},
                        {"who": "w", "option": "o", "field": "g"},
                    ]
                }
            },
            "spec.target.config[1]: duplicate of spec.target.config[0] (who=w, option=o)",
        ),
        ({"target": {"configKey": "k"}}, "spec.target.configKey: must be an object"),
        ({"target": {"configKey": {}}}, "spec.target.configKey.key: required"),
        ({"target": {"cephx": {}}}, "spec.target.cephx.entity: required"),
        (
            {"target": {"cephx": {"entity": "app"}}},
            "spec.target.cephx.entity: 'app' must be 'client.' followed by letters, digits, '_', '.' or '-'",
        ),
        (
            {"target": {"cephx": {"entity": "client.a b"}}},
            "spec.target.cephx.entity: 'client.a b' must be 'client.' followed by letters, digits, '_', '.' or '-'",
        ),
        (
            {"target": {"cephx": {"entity": "client.a", "caps": "allow r"}}},
            "spec.target.cephx.caps: must be an object mapping mon/osd/mds/mgr to a cap string",
        ),
        (
            {"target": {"cephx": {"entity": "client.a", "caps": {"rgw": "allow"}}}},
            "spec.target.cephx.caps.rgw: unknown service (expected mon, osd, mds, mgr)",
        ),
        (
            {"target": {"cephx": {"entity": "client.a", "caps": {"mon": ""}}}},
            "spec.target.cephx.caps.mon: must be a non-empty string",
        ),
        (
            {"target": {"cephx": {"entity": "client.a", "strategy": "swap"}}},
            "spec.target.cephx.strategy: must be alternate or in-place, got 'swap'",
        ),
        (
            {"target": {"cephx": {"entity": "client.a", "keepPrior": 0}}},
            "spec.target.cephx.keepPrior: must be between 1 and 10, got 0",
        ),
        (
            {"target": {"cephx": {"entity": "client.a", "retireAfter": 10}}},
            "spec.target.cephx.retireAfter: must be a duration string such as '720h' or '10m'",
        ),
        (
            {"schedule": "0 3 * *"},
            "spec.schedule: must have 5 fields (minute hour day-of-month month day-of-week), got 4",
        ),
        ({"schedule": 5}, "spec.schedule: must be a string"),
        ({"generate": "true"}, "spec.generate: must be true or false"),
        ({"suspend": 1}, "spec.suspend: must be true or false"),
        ({"maxAge": "0s"}, "spec.maxAge: must be greater than zero, got '0s'"),
        (
            {"maxAge": "30d"},
            "spec.maxAge: invalid duration '30d': expected a number and unit (h, m, s, ms, us, ns) "
            "repeated, such as '720h', '1h30m' or '45s'",
        ),
        ({"historyLimit": 0}, "spec.historyLimit: must be between 1 and 100, got 0"),
        ({"historyLimit": 101}, "spec.historyLimit: must be between 1 and 100, got 101"),
        ({"historyLimit": True}, "spec.historyLimit: must be an integer"),
        ({"historyLimit": "10"}, "spec.historyLimit: must be an integer"),
        ({"source": None, "generate": True}, "spec.source: required when spec.generate is true"),
        (
            {"source": None, "target": {"cephx": {"entity": "client.a"}}},
            "spec.source: required for cephx targets unless spec.generate is false",
        ),
    ],
)
def test_single_problem(changes: dict[str, Any], expected: str) -> None:
    assert problems(base(**changes)) == (expected,)


def test_not_a_mapping() -> None:
    assert problems([]) == ("spec: must be an object",)


def test_every_problem_is_listed() -> None:
    found = problems(
        {
            "secret": {"name": ""},
            "target": {"config": [{"who": "w"}, {"option": "o", "field": "f"}]},
            "schedule": "* *",
            "historyLimit": 0,
            "generate": True,
        }
    )
    assert found == (
        "spec.secret.name: must not be empty",
        "spec.target.config[0].option: required",
        "spec.target.config[0].field: required",
        "spec.target.config[1].who: required",
        "spec.schedule: must have 5 fields (minute hour day-of-month month day-of-week), got 2",
        "spec.source: required when spec.generate is true",
        "spec.historyLimit: must be between 1 and 100, got 0",
    )


def test_spec_error_message_joins_problems() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({"target": {}})
    assert str(info.value) == (
        "invalid spec: spec.secret: required; "
        "spec.target: exactly one of config, configKey, cephx is required"
    )


# -- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("720h", timedelta(hours=720)),
        ("10m", timedelta(minutes=10)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("45s", timedelta(seconds=45)),
        ("1.5h", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("2us", timedelta(microseconds=2)),
        ("1h0m0s", timedelta(hours=1)),
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "h", "10", "30d", "1h 30m", "-1h", "1hh", "abc", "1.h2", " "])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid duration .*: expected a number and unit"):
        parse_duration(text)


# -- deletion policies -----------------------------------------------------------------------


def test_deletion_policies_default_to_none_and_retain() -> None:
    spec = parse_spec(base())
    assert spec.secret.deletion_policy is None  # Delete if created, Retain if adopted
    cephx = parse_spec(base(target={"cephx": {"entity": "client.a"}}))
    assert isinstance(cephx.target, CephxTarget)
    assert cephx.target.deletion_policy == "Retain"


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_deletion_policies_are_read(policy: str) -> None:
    spec = parse_spec(base(secret={"name": "s", "deletionPolicy": policy}))
    assert spec.secret.deletion_policy == policy
    cephx = parse_spec(base(target={"cephx": {"entity": "client.a", "deletionPolicy": policy}}))
    assert isinstance(cephx.target, CephxTarget)
    assert cephx.target.deletion_policy == policy


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"secret": {"name": "s", "deletionPolicy": "Orphan"}},
            "spec.secret.deletionPolicy: must be Retain or Delete, got 'Orphan'",
        ),
        (
            {"target": {"cephx": {"entity": "client.a", "deletionPolicy": "delete"}}},
            "spec.target.cephx.deletionPolicy: must be Retain or Delete, got 'delete'",
        ),
        (
            {"source": None, "secret": {"name": "s", "deletionPolicy": "Delete"}},
            "spec.secret.deletionPolicy: Delete is not allowed without spec.source: the Secret "
            "is the source, the user's own data, and is always retained",
        ),
    ],
)
def test_deletion_policy_problems(changes: dict[str, Any], expected: str) -> None:
    assert problems(base(**changes)) == (expected,)


def test_a_source_secret_may_say_retain() -> None:
    spec = parse_spec(base(source=None, secret={"name": "s", "deletionPolicy": "Retain"}))
    assert spec.source is None and spec.secret.deletion_policy == "Retain"
