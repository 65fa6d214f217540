"""The crash matrix: ``kill -9`` of the engine at a random moment of each journal step, for each
target kind, then a restart.

The rotation runs in its own ``vaultbridge sync``/``rotate`` process with the step stretched
(``VAULTBRIDGE_FAULT=stretch:STEP:0.5``: half a second before the action and half a second
after it). The test kills it at a moment drawn uniformly from that second, starts it again
(``takeover_after`` 1 s, so the dead holder's journal is taken over at once), and checks what
the wire suite checks:

- Ceph, the Secret, the Vault labels and the status agree on Vault's latest version;
- the old or the new credential was live throughout (a probe every 200 ms);
- a consumer authenticating with the Secret's key every 200 ms failed only inside the
  documented in-place window (cephx in-place without pending keys, between Apply and Promote).

``make test`` runs one moment per step and target (16 runs); ``make chaos`` ten (160).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import time
from typing import Any

import pytest
from fault_helpers import TARGETS, Probe, Target, Wired, report_line
from kubernetes import client as k8s
from rotation_helpers import cli_env, get_cr, unique, vault_put, vaultbridge_cmd

pytestmark = pytest.mark.integration

STEPS = ("Snapshot", "Apply", "Verify", "Promote")
STRETCH = 0.5
RUNS = 10 if os.environ.get("VAULTBRIDGE_CHAOS") == "1" else 1


def _env(wired: Wired, **extra: str) -> dict[str, str]:
    return cli_env(wired.env, **wired.variables(), **extra)


def _cli(wired: Wired, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*vaultbridge_cmd(), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(wired, **extra),
        check=False,
    )


def _start(target: Target, ns: str) -> list[str]:
    """The command that rotates to a new version: the key generated (cephx), or Vault
    written first."""
    if target.cephx:
        return ["rotate", f"{ns}/cred"]
    vault_put(target.wired.env, target.path, {"value": unique("value")})
    return ["sync", f"{ns}/cred"]


@pytest.mark.parametrize(
    "case",
    [(t, s, i) for t, s in itertools.product(TARGETS, STEPS) for i in range(RUNS)],
    ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}",
)
def test_kill_9_at_a_random_moment_of_a_step_loses_nothing(
    wired: Wired, api: k8s.ApiClient, ns: str, case: tuple[str, str, int]
) -> None:
    kind, step, run = case
    moment = random.Random(f"{kind}-{step}-{run}").uniform(0, 2 * STRETCH)
    target = Target(kind, wired, api, ns)
    if not target.cephx:
        vault_put(wired.env, target.path, {"value": unique("value")})
    target.create()
    first = _cli(wired, "rotate" if target.cephx else "sync", f"{ns}/cred")
    assert first.returncode == 0, first.stderr
    version, value = target.vault_version()
    killed_at: str | None = None
    with Probe(target, (target.entity_of(version), value)) as probe:
        proc = subprocess.Popen(
            [*vaultbridge_cmd(), *_start(target, ns)],
            stderr=subprocess.PIPE,
            text=True,
            env=_env(wired, VAULTBRIDGE_FAULT=f"stretch:{step}:{STRETCH}"),
        )
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while "fault point" not in (line := proc.stderr.readline()):
            assert line or proc.poll() is None, "the rotation ended before the step"
            assert time.monotonic() < deadline, "the step was never reached"
        time.sleep(moment)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_at = f"{moment:.2f} s into {step}"
        proc.wait()
        journal = (target_status(target).get("rotation") or {}).get("step")
        began = time.monotonic()
        resumed = _cli(wired, "sync", f"{ns}/cred", VAULTBRIDGE_ROTATION__TAKEOVER_AFTER="1")
        recovered = time.monotonic() - began
        time.sleep(0.4)  # two more probe ticks on the settled state
    admin = wired.admin()
    try:
        problems = target.problems(admin)
    finally:
        admin.close()
    history = [f"{h['version']}:{h['result']}" for h in target_status(target).get("history", [])]
    line: dict[str, Any] = {
        "suite": "crash",
        "backend": "engine",
        "fault": "kill -9",
        "target": kind,
        "step": step,
        "struck": killed_at is not None,
        "killed_at": killed_at,
        "journal_left_at": journal,
        "problems": problems,
        "dead_ticks": probe.dead,
        "ticks": probe.ticks,
        "consumer_failures": probe.consumer_failures,
        "in_window_failures": probe.in_window_failures,
        "unrecorded": [],
        "history": history,
        "settled_in": round(recovered, 1),
    }
    report_line(line)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert problems == [], line
    assert probe.dead == 0, line
    assert probe.consumer_failures == 0, line


def target_status(target: Target) -> dict[str, Any]:
    return dict(get_cr(target.api, target.ns, "cred").get("status") or {})
