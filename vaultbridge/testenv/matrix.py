"""The Ceph-facing suites on another Ceph release, with that release's client library.

The machine's pytest starts an environment whose mons are of release N (OpenBao and the
Kubernetes API as always) and records it in a state folder. A second pytest then runs the
Ceph-facing suites inside release N's root filesystem, on its Python and its
``python3-rados``, reusing that environment (``VAULTBRIDGE_TESTENV_REUSE``): what is tested is
what an image built on that release would contain.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vaultbridge.testenv.common import TestenvError
from vaultbridge.testenv.env import Environment, start
from vaultbridge.testenv.kube import find_binaries, repo_root
from vaultbridge.testenv.releases import INSIDE, release


def requirements(checkout: Path) -> list[str]:
    """What the suites import besides the standard library, from the checkout's pyproject.toml:
    the project's dependencies and its pytest plugins (the project runs from the checkout)."""
    project = tomllib.loads((checkout / "pyproject.toml").read_text())["project"]
    dev = project.get("optional-dependencies", {}).get("dev", [])
    return [*project["dependencies"], *(d for d in dev if d.startswith("pytest"))]


SUITE_TIMEOUT = 1800.0


@dataclass(frozen=True)
class SuiteRun:
    release: int
    returncode: int
    output: str
    seconds: float
    python: str

    @property
    def summary(self) -> str:
        lines = [line for line in self.output.splitlines() if line.strip()]
        return lines[-1] if lines else "(no output)"


def run_inside(
    major: int, env: Environment, args: Sequence[str], *, timeout: float = SUITE_TIMEOUT
) -> tuple[subprocess.CompletedProcess[str], str]:
    """``python args...`` inside release ``major``'s root filesystem, on its Python with the
    project's requirements, from the checkout, reusing the running ``env`` (its mons must be of
    that release). Returns the finished process and the Python it ran."""
    chosen = release(major)
    repo = repo_root()
    if repo is None:
        raise TestenvError("running inside a release's root needs a checkout; none found")
    python = chosen.python_for(requirements(repo), repo)
    with tempfile.TemporaryDirectory(prefix="vaultbridge-inside-") as state:
        (Path(state) / "state.json").write_text(json.dumps(env.to_dict()))
        binds = [repo, env.workdir, Path(state), find_binaries()]
        done = subprocess.run(
            chosen.command([python, *args], binds=binds, cwd=repo),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={
                **os.environ,
                "VAULTBRIDGE_TESTENV_REUSE": "1",
                "VAULTBRIDGE_TESTENV_STATE": state,
                INSIDE: str(major),
                "PYTHONDONTWRITEBYTECODE": "1",
            },
        )
    return done, python


def run_suites(major: int, suites: list[str], *, mons: int = 3) -> SuiteRun:
    """Run ``suites`` (paths relative to the checkout) against mons of release ``major`` from
    inside its root filesystem; the environment is stopped afterwards."""
    began = time.monotonic()
    env = start(mons=mons, ceph=major)
    try:
        done, python = run_inside(
            major, env, ["-m", "pytest", "-q", "-p", "no:cacheprovider", *suites]
        )
    finally:
        env.stop()
    return SuiteRun(
        major, done.returncode, done.stdout + done.stderr, time.monotonic() - began, python
    )
