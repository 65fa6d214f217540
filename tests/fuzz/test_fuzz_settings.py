"""Settings from the environment, as an operator may mistype them: settings or one line per
problem naming the variable, and never the value (tokens are secrets)."""

from __future__ import annotations

import os

from fuzz_inputs import CANARY
from hypothesis import given
from hypothesis import strategies as st

from vaultbridge.settings import ENV_PREFIX, Settings, SettingsError, load_settings

NAMES = [
    "VAULT__ADDR",
    "VAULT__TOKEN",
    "VAULT__ROLE",
    "VAULT__AUTH_METHOD",
    "KUBE__NAMESPACES",
    "HTTP__PORT",
    "HTTP__BIND",
    "TRIGGERS__POLL_INTERVAL",
    "TRIGGERS__POLL_BUDGET",
    "TRIGGERS__WEBHOOK_TOKEN",
    "TRIGGERS__AUDIT_TOKEN",
    "TRIGGERS__AUDIT_PEERS",
    "TRIGGERS__AUDIT_UIDS",
    "TRIGGERS__SAFETY_POLL_PERIOD",
    "CONTROLLER__MAX_CONCURRENT_ROTATIONS",
    "CONTROLLER__RETRY_PERIOD",
    "CONTROLLER__RESYNC_INTERVAL",
    "ROTATION__TAKEOVER_AFTER",
    "LOG_LEVEL",
    "VAULT",
    "CONTROLLER",
    "NO_SUCH_SETTING",
]
values = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
        max_size=30,
    ),
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "1e309",
            "nan",
            "{",
            "[1,2]",
            '{"a": 1}',
            "true",
            CANARY,
            CANARY + ",1",
            "10.0.0.0/8," + CANARY,
        ]
    ),
)


@given(st.dictionaries(st.sampled_from(NAMES), values, max_size=4))
def test_settings_load_or_name_each_problem_without_its_value(env: dict[str, str]) -> None:
    saved = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    for key in saved:
        del os.environ[key]
    os.environ.update({ENV_PREFIX + key: value for key, value in env.items()})
    try:
        settings = load_settings()
    except SettingsError as exc:
        assert exc.problems
        assert CANARY not in str(exc)
        assert all(
            problem.startswith(ENV_PREFIX) or "settings" in problem for problem in exc.problems
        )
    else:
        assert isinstance(settings, Settings)
    finally:
        for key in env:
            os.environ.pop(ENV_PREFIX + key, None)
        os.environ.update(saved)
