"""Hypothesis profiles for the fuzz suite: ``ci`` (the default, in ``make test``: a few hundred
examples each, derandomized so that a run is repeatable) and ``fuzz`` (``make fuzz``, or
``VAULTBRIDGE_FUZZ_PROFILE=fuzz``: 10,000 examples each, a fresh seed every run)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "ci",
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=_QUIET,
)
settings.register_profile(
    "fuzz", max_examples=10_000, deadline=None, suppress_health_check=_QUIET, print_blob=True
)
# chosen here, not by --hypothesis-profile: this conftest loads after the plugin reads it
settings.load_profile(os.environ.get("VAULTBRIDGE_FUZZ_PROFILE", "ci"))
