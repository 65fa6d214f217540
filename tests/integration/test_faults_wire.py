"""Faults on the wire: latency, resets, black holes and cut responses between vaultbridge and
each real server, switched on at each step of a rotation, for each target kind.

After every fault clears: Ceph, the Secret, the Vault labels and the CR status agree; the old or
the new credential was live throughout (read past the proxies every 200 ms); every rotation the
journal showed is in the history. ``make test`` runs a subset that strikes each fault on each
backend once; ``make chaos`` (VAULTBRIDGE_CHAOS=1) runs all of them and prints the table.
"""

from __future__ import annotations

import itertools
import os

import pytest
from fault_helpers import BACKENDS, STEPS, TARGETS, Wired, report, run_case
from kubernetes import client as k8s

from vaultbridge.testenv.faultproxy import FAULTS

pytestmark = pytest.mark.integration


def _cases() -> list[tuple[str, str, str, str]]:
    full = list(itertools.product(TARGETS, BACKENDS, FAULTS, STEPS))
    if os.environ.get("VAULTBRIDGE_CHAOS") == "1":
        return full
    # each fault on each backend once; the targets and steps taken in turn
    return [
        (TARGETS[i % len(TARGETS)], backend, fault, STEPS[(i * 3) % len(STEPS)])
        for i, (backend, fault) in enumerate(itertools.product(BACKENDS, FAULTS))
    ]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: "-".join(c).replace(":", "_"))
def test_a_fault_at_a_step_loses_nothing(
    wired: Wired, api: k8s.ApiClient, ns: str, case: tuple[str, str, str, str]
) -> None:
    result = run_case(wired, api, ns, case)
    report(result)
    assert result.problems == [], result.to_json()
    assert result.dead_ticks == 0, result.to_json()
    assert result.unrecorded == [], result.to_json()
    assert result.consumer_failures == 0, result.to_json()  # only in the in-place window
